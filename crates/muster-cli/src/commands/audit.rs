//! `muster audit`.

use crate::admin;
use crate::cli::AuditArgs;
use crate::output::{Failure, print_json, print_table, table};

pub async fn run(args: AuditArgs) -> Result<(), Failure> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(action) = &args.action {
        query.push(("action", action.clone()));
    }
    if let Some(q) = &args.search {
        query.push(("q", q.clone()));
    }
    let entries = admin::client(&args.admin)?
        .audit(&query)
        .await
        .map_err(Failure::from_client)?;
    if args.admin.json {
        print_json(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        println!("No audit records match.");
        return Ok(());
    }
    let mut t = table(&[
        "TIME", "ACTOR", "ACTION", "TARGET", "FROM", "OUTCOME", "DETAIL",
    ]);
    for e in &entries {
        t.add_row(vec![
            e.at.split('.').next().unwrap_or(&e.at).replace('T', " "),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            e.remote_addr.clone().unwrap_or_else(|| "-".into()),
            e.outcome.clone(),
            e.detail.clone(),
        ]);
    }
    print_table(t);
    Ok(())
}
