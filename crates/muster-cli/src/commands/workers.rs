//! `muster workers list|show|create|revoke|remove`.

use muster_proto::api::{CreateWorkerRequest, WorkerView};

use crate::admin;
use crate::cli::WorkersCommand;
use crate::commands::parse_labels;
use crate::output::{self, Failure, print_json, print_table, table, when};

pub async fn run(command: WorkersCommand) -> Result<(), Failure> {
    match command {
        WorkersCommand::List { admin } => {
            let workers = admin::client(&admin)?
                .list_workers()
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&workers);
            } else if workers.is_empty() {
                println!("No workers yet. Mint an enrollment token with `muster token create`.");
            } else {
                let mut t = table(&[
                    "NAME",
                    "STATUS",
                    "JOBS",
                    "ENROLLED VIA",
                    "MACHINE",
                    "LABELS",
                    "LAST SEEN",
                ]);
                for w in &workers {
                    t.add_row(vec![
                        w.name.clone(),
                        w.status.clone(),
                        jobs(w),
                        w.enrolled_via.clone(),
                        output::or_dash(w.machine_id.as_deref()),
                        output::labels(&w.labels),
                        when(w.last_seen_at.as_deref()),
                    ]);
                }
                print_table(t);
            }
            Ok(())
        }
        WorkersCommand::Show { name, admin } => {
            let worker = admin::client(&admin)?
                .show_worker(&name)
                .await
                .map_err(Failure::from_client)?;
            print_one(&worker, admin.json);
            Ok(())
        }
        WorkersCommand::Create {
            name,
            labels,
            admin,
        } => {
            muster_core::Name::parse(&name)
                .map_err(|e| Failure::usage(e.to_string(), "for example `edge-01`"))?;
            let labels = parse_labels(&labels)?;
            let created = admin::client(&admin)?
                .create_worker(&CreateWorkerRequest { name, labels })
                .await
                .map_err(Failure::from_client)?;
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
                println!("Start the worker with both set (and MUSTER_URL): `muster worker`.");
            }
            Ok(())
        }
        WorkersCommand::Revoke { name, admin } => {
            let worker = admin::client(&admin)?
                .revoke_worker(&name)
                .await
                .map_err(Failure::from_client)?;
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
            admin::client(&admin)?
                .remove_worker(&name)
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("Worker `{name}` is removed.");
            }
            Ok(())
        }
    }
}

fn jobs(w: &WorkerView) -> String {
    if w.status != "connected" {
        return "-".into();
    }
    let state = if w.running_jobs == 0 { "idle" } else { "busy" };
    format!("{state} {}/{}", w.running_jobs, w.slots)
}

fn print_one(w: &WorkerView, json: bool) {
    if json {
        print_json(w);
        return;
    }
    let mut t = table(&["FIELD", "VALUE"]);
    t.add_row(vec!["name".into(), w.name.clone()]);
    t.add_row(vec!["id".into(), w.id.clone()]);
    t.add_row(vec!["status".into(), w.status.clone()]);
    t.add_row(vec!["jobs".into(), jobs(w)]);
    t.add_row(vec!["enrolled via".into(), w.enrolled_via.clone()]);
    t.add_row(vec!["token".into(), output::or_dash(w.token.as_deref())]);
    t.add_row(vec![
        "machine".into(),
        output::or_dash(w.machine_id.as_deref()),
    ]);
    t.add_row(vec!["labels".into(), output::labels(&w.labels)]);
    t.add_row(vec!["created".into(), when(Some(&w.created_at))]);
    t.add_row(vec!["expires".into(), when(w.expires_at.as_deref())]);
    t.add_row(vec!["revoked".into(), when(w.revoked_at.as_deref())]);
    t.add_row(vec!["last seen".into(), when(w.last_seen_at.as_deref())]);
    t.add_row(vec![
        "address".into(),
        output::or_dash(w.remote_addr.as_deref()),
    ]);
    print_table(t);
}
