//! `muster`: parses arguments, sets up logging, and hands off to a library. Nothing else.

mod admin;
mod cli;
mod commands;
mod error;
mod output;
mod tables;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The job launcher must stay single-threaded (it acts between fork and exec), so it runs
    // before the async runtime and its threads exist.
    if let cli::Command::JobExec(args) = &cli.command {
        return ExitCode::from(commands::job_exec::run(args));
    }
    init_tracing(&cli.command);
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
    let code = runtime.block_on(commands::dispatch(cli));
    // Do not wait for stray blocking tasks (a stdin reader, say) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

/// Logs go to stderr (data goes to stdout). `MUSTER_LOG` (or `RUST_LOG`) sets the filter; the
/// server and worker log at `info` by default, admin commands only warnings.
fn init_tracing(command: &cli::Command) {
    let default = match command {
        cli::Command::Serve(_) | cli::Command::Worker(_) => "info",
        _ => "warn",
    };
    let filter = std::env::var("MUSTER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
