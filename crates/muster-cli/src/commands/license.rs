//! `muster license show|install|trial|remove`.

use muster_proto::api::{Edition, LicenseView};

use crate::admin;
use crate::cli::LicenseCommand;
use crate::error::CliError;
use crate::output::{now, print_json, when};
use crate::tables;

pub async fn run(command: LicenseCommand) -> Result<(), CliError> {
    // These commands show the license's warning themselves; it is not repeated on stderr.
    match command {
        LicenseCommand::Show { admin } => {
            let view = admin::quiet_client(&admin)?.license().await?;
            print(&view, admin.json, None);
        }
        LicenseCommand::Install { file, admin } => {
            let text = read_license(&file)?;
            let view = admin::quiet_client(&admin)?.install_license(&text).await?;
            let headline = format!(
                "Installed license `{}` for `{}`; it is in force on every replica now.",
                view.id.as_deref().unwrap_or("-"),
                view.licensee.as_deref().unwrap_or("-")
            );
            print(&view, admin.json, Some(&headline));
        }
        LicenseCommand::Trial { admin } => {
            let view = admin::quiet_client(&admin)?.start_trial().await?;
            let headline = format!(
                "Started the 30-day trial: external workers can join, without a limit, until {}.",
                when(view.expires_at.as_deref(), now())
            );
            print(&view, admin.json, Some(&headline));
        }
        LicenseCommand::Remove { admin } => {
            let view = admin::quiet_client(&admin)?.remove_license().await?;
            print(
                &view,
                admin.json,
                Some(
                    "This server runs Community Edition now: workers that joined stay connected; new external workers are refused.",
                ),
            );
        }
    }
    Ok(())
}

fn print(view: &LicenseView, json: bool, headline: Option<&str>) {
    if json {
        print_json(view);
        return;
    }
    if let Some(headline) = headline {
        println!("{headline}");
        println!();
    }
    println!("{}", tables::license(view, now()));
    if let Some(warning) = &view.warning {
        println!();
        println!("warning: {warning}");
    }
    if view.edition == Edition::Community {
        println!();
        println!(
            "Community Edition runs jobs on the built-in worker; external workers cannot join. Start a 30-day trial with `muster license trial`, or install a license with `muster license install FILE`."
        );
    }
}

/// The license text from a file, or standard input for `-`.
fn read_license(path: &std::path::Path) -> Result<String, CliError> {
    super::read_file_or_stdin(path).map_err(|e| {
        CliError::usage(
            format!("cannot read `{}`: {e}", path.display()),
            "give the license file, or `-` for standard input",
        )
    })
}
