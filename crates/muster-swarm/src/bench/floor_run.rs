//! The floor: `ws-floor` holding the same number of idle connections from the same swarm
//! machinery, and its memory growth per connection.

use std::path::Path;
use std::time::Duration;

use super::fleet::{Fleet, Target};
use super::procs::Floor;
use crate::creds::{self, Credential, How};

#[derive(Debug, Default)]
pub struct FloorResult {
    pub connected: usize,
    pub per_conn_bytes: Option<f64>,
}

/// Placeholder identities: the floor ignores them, but the worker code sends them.
pub fn write_creds(path: &Path, count: usize) -> anyhow::Result<()> {
    let creds: Vec<Credential> = (0..count)
        .map(|i| Credential {
            name: format!("f-{i:05}"),
            machine_id: format!("floor-machine-{i:05}"),
            how: How::Precreated {
                worker_id: "floor".into(),
                api_key: "floor".into(),
            },
        })
        .collect();
    creds::write(path, &creds)
}

#[allow(clippy::too_many_arguments)]
pub async fn measure(
    floor_bin: &Path,
    swarm_bin: &Path,
    work: &Path,
    creds: &Path,
    count: usize,
    processes: usize,
    tls: bool,
    timeout: Duration,
) -> anyhow::Result<FloorResult> {
    let label = if tls { "floor-tls" } else { "floor-plain" };
    let floor = Floor::start(floor_bin, tls, work).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = floor.rss();
    let fleet = Fleet::start(
        swarm_bin,
        creds,
        Target::Url {
            url: &floor.url,
            fingerprint: floor.fingerprint.as_deref(),
        },
        processes,
        work,
        label,
        &[],
    )?;
    let (connected, _) = fleet
        .tracker
        .wait_for(&format!("{label} connected"), count, timeout, |s| {
            s.connected
        })
        .await;
    // Let handshake garbage settle, as for the server.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = floor.rss();
    let per_conn_bytes = match (baseline, loaded) {
        (Some(b), Some(l)) if connected > 0 => Some((l as f64 - b as f64) / connected as f64),
        _ => None,
    };
    fleet.stop().await;
    floor.stop().await;
    Ok(FloorResult {
        connected,
        per_conn_bytes,
    })
}
