//! `muster enrollment status|enable|disable|rotate`.

use muster_proto::api::{EnableEnrollmentRequest, EnableEnrollmentResponse, EnrollmentStatus};

use crate::admin;
use crate::cli::{EnrollmentCommand, SecretArgs};
use crate::error::CliError;
use crate::output::{now, print_json};
use crate::tables;

pub async fn run(command: EnrollmentCommand) -> Result<(), CliError> {
    match command {
        EnrollmentCommand::Status { admin } => {
            let status = admin::client(&admin)?.enrollment_status().await?;
            if admin.json {
                print_json(&status);
            } else {
                print_status(&status);
            }
        }
        EnrollmentCommand::Enable {
            secret,
            window,
            max_enrollments,
            name_pattern,
            expect,
            admin,
        } => {
            if let Some(w) = &window {
                muster_core::parse_duration(w)
                    .map_err(|e| CliError::usage(e.to_string(), "for example `--for 2h`"))?;
            }
            let (secret_value, generate) = read_secret(&secret)?;
            let request = EnableEnrollmentRequest {
                secret: secret_value,
                generate,
                window,
                max_enrollments,
                name_pattern,
                expect,
            };
            let answer = admin::client(&admin)?.enable_enrollment(&request).await?;
            print_answer(&answer, admin.json, "Auto-enrollment is on.");
        }
        EnrollmentCommand::Disable { admin } => {
            let status = admin::client(&admin)?.disable_enrollment().await?;
            if admin.json {
                print_json(&status);
            } else {
                println!(
                    "Auto-enrollment is off. Enrolled workers keep working; new ones are refused."
                );
            }
        }
        EnrollmentCommand::Rotate { secret, admin } => {
            let (secret_value, generate) = read_secret(&secret)?;
            if secret_value.is_none() && !generate {
                return Err(CliError::usage(
                    "rotate needs a new secret",
                    "pass `--generate`, or `--secret-file FILE`",
                ));
            }
            let request = EnableEnrollmentRequest {
                secret: secret_value,
                generate,
                ..Default::default()
            };
            let answer = admin::client(&admin)?.rotate_enrollment(&request).await?;
            print_answer(
                &answer,
                admin.json,
                "The secret is replaced. Enrolled workers keep working; new workers need the new secret.",
            );
        }
    }
    Ok(())
}

/// Reads `--secret-file` (or stdin for `-`), checking the length rule before anything is sent.
fn read_secret(args: &SecretArgs) -> Result<(Option<String>, bool), CliError> {
    let Some(path) = &args.secret_file else {
        return Ok((None, args.generate));
    };
    let text = super::read_file_or_stdin(path).map_err(|e| {
        CliError::usage(
            format!("cannot read `{}`: {e}", path.display()),
            "give a readable file, or `-` for standard input",
        )
    })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    muster_core::credentials::validate_shared_secret(&secret).map_err(|e| {
        CliError::usage(
            e.to_string(),
            "use `--generate` for a random 43-character secret",
        )
    })?;
    Ok((Some(secret), false))
}

fn print_answer(answer: &EnableEnrollmentResponse, json: bool, headline: &str) {
    if json {
        print_json(answer);
        return;
    }
    println!("{headline}");
    if let Some(secret) = &answer.generated_secret {
        println!();
        println!("  {secret}");
        println!();
        println!(
            "This secret is shown only this once. Start a worker with it (named after its host):"
        );
        println!();
        println!("  {}", answer.worker_command);
        println!();
        println!("Once a worker has enrolled, remove the secret from its configuration.");
    } else if !answer.worker_command.is_empty() {
        println!();
        println!("Start a worker with the secret (replace SECRET; it is named after its host):");
        println!();
        println!("  {}", answer.worker_command);
    }
    println!();
    print_status(&answer.status);
}

fn print_status(s: &EnrollmentStatus) {
    println!("{}", tables::enrollment(s, now()));
}
