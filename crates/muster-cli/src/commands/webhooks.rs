//! `muster webhooks add|list|remove|test|deliveries`.

use muster_proto::api::CreateWebhookRequest;

use crate::admin;
use crate::cli::WebhooksCommand;
use crate::error::CliError;
use crate::output::{now, print_json};
use crate::tables;

pub async fn run(command: WebhooksCommand) -> Result<(), CliError> {
    match command {
        WebhooksCommand::Add {
            receiver,
            events,
            secret_file,
            admin,
        } => {
            let text = super::read_file_or_stdin(&secret_file).map_err(|e| {
                CliError::usage(
                    format!("cannot read `{}`: {e}", secret_file.display()),
                    "give a readable file, or `-` for standard input",
                )
            })?;
            let secret = text.trim_end_matches(['\n', '\r']).to_owned();
            let req = CreateWebhookRequest {
                url: receiver,
                events,
                secret,
            };
            let created = admin::client(&admin)?.create_webhook(&req).await?;
            if admin.json {
                print_json(&created);
            } else {
                println!(
                    "Added webhook `{}`: events are POSTed to {}, signed with your secret in `Muster-Signature`.",
                    created.id, created.url
                );
                println!(
                    "Send a test event with `muster webhooks test {}`.",
                    created.id
                );
            }
        }
        WebhooksCommand::List { admin } => {
            let hooks = admin::client(&admin)?.list_webhooks().await?;
            if admin.json {
                print_json(&hooks);
            } else {
                println!("{}", tables::webhooks(&hooks, now()));
            }
        }
        WebhooksCommand::Remove { id, admin } => {
            admin::client(&admin)?.remove_webhook(&id).await?;
            if admin.json {
                print_json(&serde_json::json!({ "removed": id }));
            } else {
                println!("Removed webhook `{id}` and its delivery log.");
            }
        }
        WebhooksCommand::Test { id, admin } => {
            let delivery = admin::client(&admin)?.test_webhook(&id).await?;
            if admin.json {
                print_json(&delivery);
            } else {
                println!(
                    "{}",
                    tables::deliveries(std::slice::from_ref(&delivery), now())
                );
            }
            if delivery.state != "delivered" {
                return Err(CliError::failed(
                    format!(
                        "the test event was not delivered: {}",
                        delivery
                            .last_error
                            .as_deref()
                            .unwrap_or("the receiver did not answer 2xx")
                    ),
                    "check that the receiver is up and answers 2xx; the delivery is retried by itself",
                ));
            }
        }
        WebhooksCommand::Deliveries { id, limit, admin } => {
            let log = admin::client(&admin)?
                .webhook_deliveries(&id, limit)
                .await?;
            if admin.json {
                print_json(&log);
            } else {
                println!("{}", tables::deliveries(&log, now()));
            }
        }
    }
    Ok(())
}
