//! `muster backup` and `muster restore`: thin over `muster_server::backup`, which owns the
//! archive and what goes into it.

use muster_server::backup::{self, ArchivedDatabase, BackupError};

use crate::cli::{BackupArgs, RestoreArgs, default_data_dir};
use crate::error::CliError;
use crate::output;

fn failed(error: &BackupError) -> CliError {
    CliError::Failed {
        message: error.to_string(),
        hint: error.hint().map(str::to_owned),
    }
}

pub async fn backup(args: BackupArgs) -> Result<(), CliError> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let output_path = args.output.clone();
    let now = output::now().to_rfc3339();
    let manifest =
        tokio::task::spawn_blocking(move || backup::create(&data_dir, &output_path, now))
            .await
            .map_err(|e| CliError::failed(format!("the backup stopped: {e}"), "run it again"))?
            .map_err(|e| failed(&e))?;
    if args.json {
        output::print_json(&manifest);
        return Ok(());
    }
    match manifest.database {
        ArchivedDatabase::Sqlite { schema_version } => println!(
            "backup written to {}: the database (schema version {schema_version}) and {} file(s) of the data dir",
            args.output.display(),
            manifest.files.len()
        ),
        ArchivedDatabase::Postgres => {
            println!(
                "backup written to {}: {} file(s) of the data dir",
                args.output.display(),
                manifest.files.len()
            );
            output::print_warning(
                "this server keeps its fleet in PostgreSQL, which is not in the archive: back it up with `pg_dump`",
            );
        }
    }
    for path in &manifest.not_archived {
        output::print_warning(&format!(
            "`{path}` (given with `--tls-cert`/`--tls-key`) is outside the data dir and not in the archive"
        ));
    }
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> Result<(), CliError> {
    let restored = backup::restore(&args.archive, &args.data_dir, args.database.as_deref())
        .await
        .map_err(|e| failed(&e))?;
    println!(
        "restored {} (made by muster {} at {}) into {}",
        args.archive.display(),
        restored.manifest.muster_version,
        restored.manifest.created_at,
        args.data_dir.display()
    );
    match restored.tickets_forgotten {
        Some(n) => println!(
            "{n} worker(s) will be recognised by their keys at their next connection; start the server with `muster serve --data-dir {}`",
            args.data_dir.display()
        ),
        None => output::print_warning(
            "the archive holds no database (the server used PostgreSQL): restore it with `pg_restore`, then run this again with `--database URL` on a new directory so workers are recognised by their keys",
        ),
    }
    Ok(())
}
