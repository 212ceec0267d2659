//! `muster`: parses arguments, sets up logging, and hands off to a library. Nothing else.

mod admin;
mod cli;
mod commands;
mod error;
mod job_lines;
mod output;
/// The generated reference pages (`docs/reference/`), checked by its tests.
#[cfg(test)]
mod reference;
mod tables;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// The version `muster --version` and the server's banner show: the release and the commit it
/// was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MUSTER_GIT_COMMIT"),
    ")"
);

fn main() -> ExitCode {
    let matches = match cli::Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return ExitCode::from(output::command_line_error(&e)),
    };
    // `--json` anywhere in the command: a failure is a JSON object on stdout too.
    let json = cli::json_requested(&matches);
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The job launcher must stay single-threaded (it acts between fork and exec), so it runs
    // before the async runtime and its threads exist.
    if let cli::Command::JobExec(args) = &cli.command {
        return ExitCode::from(commands::job_exec::run(args));
    }
    init_tracing(&cli.command, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::print_error(&format!("cannot start the async runtime: {e}"), None);
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli, json));
    // Do not wait for stray blocking tasks (a stdin reader, say) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

/// What the server and the worker log when `MUSTER_LOG` does not say: muster's own INFO lines
/// and only warnings and errors from the libraries under it (hyper, rustls, tungstenite, the
/// database clients...), whose INFO and DEBUG lines are for their own developers.
const SERVICE_FILTER: &str = "warn,muster=info,muster_server=info,muster_worker=info,\
muster_store=info,muster_client=info,muster_fs=info,muster_core=info,muster_proto=info";
/// Admin commands print their results; their logs are only for what went wrong.
const COMMAND_FILTER: &str = "warn";

/// Logs go to stderr (data goes to stdout), as text or JSON lines (`--log-format`).
/// `MUSTER_LOG` (or `RUST_LOG`) sets the filter, in `tracing`'s `EnvFilter` syntax
/// (`debug`, `info,muster_server=debug`).
fn init_tracing(command: &cli::Command, format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;

    let default = match command {
        cli::Command::Serve(_) | cli::Command::Worker(_) => SERVICE_FILTER,
        _ => COMMAND_FILTER,
    };
    let asked = std::env::var("MUSTER_LOG").or_else(|_| std::env::var("RUST_LOG"));
    let filter = match asked {
        Ok(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            output::print_warning(&format!(
                "`MUSTER_LOG={directives}` is not a log filter ({e}); logging as by default"
            ));
            EnvFilter::new(default)
        }),
        Err(_) => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        cli::LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
