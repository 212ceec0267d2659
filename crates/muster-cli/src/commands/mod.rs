//! One module per command group; each turns parsed arguments into library calls and output.

mod audit;
mod backup;
mod enrollment;
mod install;
mod job;
pub mod job_exec;
mod license;
mod serve;
mod token;
mod webhooks;
mod worker;
mod workers;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output::print_error;

/// Runs the command and returns the process exit code. With `json`, a failure is also printed
/// as a JSON object on stdout (`CliError::json`), for scripts.
pub async fn dispatch(cli: Cli, json: bool) -> u8 {
    match run(cli).await {
        Ok(()) => 0,
        Err(error) => {
            // A failure without a message is silent: `job run` passing on a command's exit code.
            if let Some(message) = error.message() {
                print_error(&message, error.hint().as_deref());
            }
            if json && let Some(object) = error.json() {
                println!("{object}");
            }
            error.exit_code()
        }
    }
}

/// Runs the command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Workers(cmd) => workers::run(cmd).await,
        Command::Job(cmd) => job::run(cmd).await,
        Command::Enrollment(cmd) => enrollment::run(cmd).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Completions { shell } => install::completions(shell),
        Command::Man { dir } => install::man(&dir),
        // `main` runs the launcher before any runtime starts; inside one it must not run.
        Command::JobExec(_) => Err(CliError::usage(
            "the job launcher cannot run here",
            "it is started by `muster worker` for each job, never by hand",
        )),
        Command::License(cmd) => license::run(cmd).await,
        Command::Webhooks(cmd) => webhooks::run(cmd).await,
    }
}

/// The contents of the file at `path`, or of standard input for `-`.
pub fn read_file_or_stdin(path: &std::path::Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// Parses repeated `--label k=v` arguments into the wire form.
pub fn parse_labels(
    inputs: &[String],
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    muster_core::Labels::parse_all(inputs.iter().map(String::as_str))
        .map(muster_core::Labels::into_map)
        .map_err(|e| {
            CliError::usage(
                e.to_string(),
                "labels are `key=value`, like `--label region=eu`",
            )
        })
}

#[cfg(test)]
mod tests;
