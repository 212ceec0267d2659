//! `muster audit`.

use crate::admin;
use crate::cli::AuditArgs;
use crate::error::CliError;
use crate::output::print_json;
use crate::tables;

pub async fn run(args: AuditArgs) -> Result<(), CliError> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(action) = &args.action {
        query.push(("action", action.clone()));
    }
    if let Some(q) = &args.search {
        query.push(("q", q.clone()));
    }
    let entries = admin::client(&args.admin)?.audit(&query).await?;
    if args.admin.json {
        print_json(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        println!("No audit records match.");
        return Ok(());
    }
    println!("{}", tables::audit(&entries));
    Ok(())
}
