//! What a package installs beside the binary: shell completions (`muster completions SHELL`,
//! clap_complete) and man pages (`muster man --dir DIR`, clap_mangen), both generated from the
//! command line as declared in `cli.rs`, so they never drift from it.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::CliError;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    use std::io::Write;
    // Rendered first: the generator panics on a write error, and a reader that closes early
    // (`| head`) is not one.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "muster", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::failed(
            format!("cannot print the completions: {e}"),
            "redirect them into a file",
        )),
        _ => Ok(()),
    }
}

/// Writes `muster.1` and one page per subcommand (`muster-token-create.1`...) into `dir`.
pub fn man(dir: &Path) -> Result<(), CliError> {
    let failed = |e: std::io::Error| {
        CliError::failed(
            format!("cannot write man pages into `{}`: {e}", dir.display()),
            "give a directory you can write to with `--dir`",
        )
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)?;
    println!("man pages written to {}", dir.display());
    Ok(())
}
