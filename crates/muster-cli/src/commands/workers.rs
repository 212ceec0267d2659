//! `muster workers list|show|create|revoke|remove`.

use muster_proto::api::{CreateWorkerRequest, WorkerView};

use crate::admin;
use crate::cli::WorkersCommand;
use crate::commands::parse_labels;
use crate::error::CliError;
use crate::output::{now, page_size, print_json, print_table};
use crate::tables;

pub async fn run(command: WorkersCommand) -> Result<(), CliError> {
    match command {
        WorkersCommand::List {
            status,
            labels,
            name,
            sort,
            shape,
            admin,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(status.clone().map(|s| ("status", s)));
            query.extend(labels.iter().map(|l| ("label", l.clone())));
            query.extend(name.clone().map(|n| ("name", n)));
            query.extend(sort.clone().map(|s| ("sort", s)));
            query.extend(page_size().map(|n| ("limit", n)));
            let filtered = query.iter().any(|(k, _)| !matches!(*k, "limit" | "sort"));
            let workers = admin::client(&admin)?.list_workers_where(&query).await?;
            if admin.json {
                print_json(&workers);
            } else if shape.quiet {
                for w in &workers {
                    println!("{}", w.name);
                }
            } else if workers.is_empty() && !shape.no_headers {
                if filtered {
                    println!("No workers match.");
                } else {
                    println!(
                        "No workers yet. Mint an enrollment token with `muster token create`."
                    );
                }
            } else if !workers.is_empty() {
                print_table(&tables::workers(&workers, now()), shape.no_headers);
            }
            Ok(())
        }
        WorkersCommand::Show { name, admin } => {
            let worker = admin::client(&admin)?.show_worker(&name).await?;
            print_one(&worker, admin.json);
            Ok(())
        }
        WorkersCommand::Create {
            name,
            labels,
            admin,
        } => {
            muster_core::Name::parse(&name)
                .map_err(|e| CliError::usage(e.to_string(), "for example `edge-01`"))?;
            let labels = parse_labels(&labels)?;
            let created = admin::client(&admin)?
                .create_worker(&CreateWorkerRequest { name, labels })
                .await?;
            if admin.json {
                print_json(&created);
            } else {
                println!(
                    "Created worker `{}`. Its API key is shown only this once.",
                    created.name
                );
                println!();
                println!("  MUSTER_WORKER_ID={}", created.id);
                println!("  MUSTER_WORKER_API_KEY={}", created.api_key);
                println!();
                println!("Start the worker on its machine with:");
                println!();
                println!("  {}", created.worker_command);
            }
            Ok(())
        }
        WorkersCommand::Revoke { name, admin } => {
            let worker = admin::client(&admin)?.revoke_worker(&name).await?;
            if admin.json {
                print_json(&worker);
            } else {
                println!(
                    "Worker `{}` is revoked: cut off now, and refused from here on.",
                    worker.name
                );
            }
            Ok(())
        }
        WorkersCommand::Remove { name, admin } => {
            admin::client(&admin)?.remove_worker(&name).await?;
            if admin.json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("Worker `{name}` is removed.");
            }
            Ok(())
        }
    }
}

fn print_one(w: &WorkerView, json: bool) {
    if json {
        print_json(w);
    } else {
        println!("{}", tables::worker(w, now()));
    }
}
