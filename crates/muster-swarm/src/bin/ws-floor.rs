//! `ws-floor`: a bare tokio-tungstenite server with muster's buffer and TLS settings, holding
//! idle connections, so the benchmark can compare muster's memory per worker with the floor.
//!
//! ```text
//! ws-floor [--listen 127.0.0.1:0] [--no-tls] [--ready-file F]
//! ```

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "ws-floor", about = "A bare WebSocket server: the memory floor")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Plain WebSocket instead of TLS.
    #[arg(long)]
    no_tls: bool,
    /// Write `{"url","fingerprint","pid"}` here once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Runtime worker threads (muster's server uses one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    muster_swarm::sys::raise_fd_limit();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(muster_swarm::floor::serve(
        &args.listen,
        !args.no_tls,
        |ready| {
            let text = serde_json::to_string(ready).unwrap_or_default();
            println!("{text}");
            if let Some(path) = &args.ready_file {
                // Written whole and then renamed, so a reader never sees half of it.
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, &text).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        },
    ))
}
