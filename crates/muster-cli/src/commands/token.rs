//! `muster token create|list|show|revoke`.

use muster_proto::api::{CreateTokenRequest, TokenView};

use crate::admin;
use crate::cli::TokenCommand;
use crate::commands::parse_labels;
use crate::output::{self, Failure, print_json, print_table, table, when};

pub async fn run(command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create {
            name,
            duration,
            labels,
            admin,
        } => {
            // Check what can be checked here, so a typo never reaches the server.
            muster_core::Name::parse(&name)
                .map_err(|e| Failure::usage(e.to_string(), "for example `ingest-01`"))?;
            muster_core::parse_duration(&duration)
                .map_err(|e| Failure::usage(e.to_string(), "for example `--duration 24h`"))?;
            let labels = parse_labels(&labels)?;
            let client = admin::client(&admin)?;
            let created = client
                .create_token(&CreateTokenRequest {
                    name,
                    duration,
                    labels,
                })
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&serde_json::json!({
                    "name": created.name,
                    "token": created.token,
                    "expires_at": created.expires_at,
                    "worker_command": created.worker_command,
                }));
            } else {
                println!(
                    "Created enrollment token `{}`, expiring {}.",
                    created.name,
                    when(Some(&created.expires_at))
                );
                println!();
                println!("  {}", created.token);
                println!();
                println!("It is shown only this once. Start a worker with it:");
                println!();
                println!("  {}", created.worker_command);
            }
            Ok(())
        }
        TokenCommand::List { admin } => {
            let tokens = admin::client(&admin)?
                .list_tokens()
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&tokens);
            } else if tokens.is_empty() {
                println!(
                    "No enrollment tokens. Mint one with `muster token create NAME --duration 24h`."
                );
            } else {
                let mut t = table(&["NAME", "STATE", "EXPIRES", "BOUND MACHINE", "LABELS"]);
                for token in &tokens {
                    t.add_row(vec![
                        token.name.clone(),
                        token.state.clone(),
                        when(Some(&token.expires_at)),
                        output::or_dash(token.bound_machine.as_deref()),
                        output::labels(&token.labels),
                    ]);
                }
                print_table(t);
            }
            Ok(())
        }
        TokenCommand::Show { name, admin } => {
            let token = admin::client(&admin)?
                .show_token(&name)
                .await
                .map_err(Failure::from_client)?;
            print_one(&token, admin.json);
            Ok(())
        }
        TokenCommand::Revoke { name, admin } => {
            let token = admin::client(&admin)?
                .revoke_token(&name)
                .await
                .map_err(Failure::from_client)?;
            if admin.json {
                print_json(&token);
            } else {
                println!("Enrollment token `{}` is revoked.", token.name);
                if let Some(worker) = &token.worker {
                    println!("Worker `{worker}` was cut off and cannot reconnect.");
                }
            }
            Ok(())
        }
    }
}

fn print_one(token: &TokenView, json: bool) {
    if json {
        print_json(token);
        return;
    }
    let mut t = table(&["FIELD", "VALUE"]);
    t.add_row(vec!["name".into(), token.name.clone()]);
    t.add_row(vec!["state".into(), token.state.clone()]);
    t.add_row(vec!["created".into(), when(Some(&token.created_at))]);
    t.add_row(vec!["expires".into(), when(Some(&token.expires_at))]);
    t.add_row(vec![
        "bound machine".into(),
        output::or_dash(token.bound_machine.as_deref()),
    ]);
    t.add_row(vec!["enrolled".into(), when(token.enrolled_at.as_deref())]);
    t.add_row(vec!["revoked".into(), when(token.revoked_at.as_deref())]);
    t.add_row(vec![
        "worker".into(),
        output::or_dash(token.worker.as_deref()),
    ]);
    t.add_row(vec!["labels".into(), output::labels(&token.labels)]);
    print_table(t);
}
