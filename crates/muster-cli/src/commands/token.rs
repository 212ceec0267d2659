//! `muster token create|list|show|revoke`.

use muster_proto::api::{CreateTokenRequest, TokenView};

use crate::admin;
use crate::cli::TokenCommand;
use crate::commands::parse_labels;
use crate::error::CliError;
use crate::output::{now, page_size, print_json, print_table, when};
use crate::tables;

pub async fn run(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            name,
            duration,
            labels,
            admin,
        } => {
            // Check what can be checked here, so a typo never reaches the server.
            muster_core::Name::parse(&name)
                .map_err(|e| CliError::usage(e.to_string(), "for example `ingest-01`"))?;
            muster_core::parse_duration(&duration)
                .map_err(|e| CliError::usage(e.to_string(), "for example `--duration 24h`"))?;
            let labels = parse_labels(&labels)?;
            let client = admin::client(&admin)?;
            let created = client
                .create_token(&CreateTokenRequest {
                    name,
                    duration,
                    labels,
                })
                .await?;
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
                    when(Some(&created.expires_at), now())
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
        TokenCommand::List {
            state,
            shape,
            admin,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(state.clone().map(|s| ("state", s)));
            query.extend(page_size().map(|n| ("limit", n)));
            let tokens: Vec<TokenView> = admin::client(&admin)?
                .list_all("/api/v1/tokens", &query)
                .await?;
            if admin.json {
                print_json(&tokens);
            } else if shape.quiet {
                for t in &tokens {
                    println!("{}", t.name);
                }
            } else if tokens.is_empty() && !shape.no_headers {
                if state.is_some() {
                    println!("No enrollment tokens match.");
                } else {
                    println!(
                        "No enrollment tokens. Mint one with `muster token create NAME --duration 24h`."
                    );
                }
            } else if !tokens.is_empty() {
                print_table(&tables::tokens(&tokens, now()), shape.no_headers);
            }
            Ok(())
        }
        TokenCommand::Show { name, admin } => {
            let token = admin::client(&admin)?.show_token(&name).await?;
            print_one(&token, admin.json);
            Ok(())
        }
        TokenCommand::Revoke { name, admin } => {
            let token = admin::client(&admin)?.revoke_token(&name).await?;
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
    } else {
        println!("{}", tables::token(token, now()));
    }
}
