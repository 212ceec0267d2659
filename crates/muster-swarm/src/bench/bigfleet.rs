//! A large fleet written straight into a stopped server's SQLite database through muster's own
//! store: minting 100,000 workers through the admin API would take most of a run, and what the
//! list and page figures measure is reading them, not creating them.

use std::path::Path;

use muster_core::credentials::{ApiKey, generate_id};
use muster_core::{EnrolledVia, Labels, MachineId, Name, Timestamp, Worker, WorkerId};
use muster_store::Store;

use crate::creds::{Credential, How};

/// Rows written per transaction.
const BATCH: usize = 2_000;

/// Writes `count` pre-created workers named `w-000000` … into the database of the data dir
/// `data` (the server must be stopped), 1% labelled `pool=gpu`, the rest `pool=cpu`, each in one
/// of ten zones. The first `connectable` get API keys of their own, returned as credentials for
/// a swarm, and are left unbound (never connected), as `muster workers create` leaves them; the
/// others share one key and look like machines that connected once.
pub async fn fill(
    data: &Path,
    count: usize,
    connectable: usize,
    run_id: &str,
) -> anyhow::Result<Vec<Credential>> {
    let store = Store::open_sqlite(&data.join("muster.db"))?;
    let now = Timestamp::from_unix_millis(i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?);
    let shared_key = ApiKey::generate(&mut rand::rngs::OsRng);
    let mut creds = Vec::with_capacity(connectable.min(count));
    for start in (0..count).step_by(BATCH) {
        let mut batch = Vec::with_capacity(BATCH);
        for i in start..count.min(start + BATCH) {
            let name = format!("w-{i:06}");
            let pool = if i % 100 == 0 { "gpu" } else { "cpu" };
            // Random ids and machine ids, as a real fleet has: they are most of what gzip
            // cannot shrink.
            let id = generate_id(&mut rand::rngs::OsRng);
            let (key_hash, machine_id, last_seen_at) = if i < connectable {
                let key = ApiKey::generate(&mut rand::rngs::OsRng);
                creds.push(Credential {
                    machine_id: crate::bench::mint::machine_id(run_id, &name),
                    name: name.clone(),
                    how: How::Precreated {
                        worker_id: id.clone(),
                        api_key: key.expose().to_owned(),
                    },
                });
                (key.hash(), None, None)
            } else {
                let machine = MachineId::parse(&generate_id(&mut rand::rngs::OsRng))?;
                (shared_key.hash(), Some(machine), Some(now))
            };
            batch.push(Worker {
                id: WorkerId::parse(&id)?,
                name: Name::parse(&name)?,
                enrolled_via: EnrolledVia::Precreated,
                token_name: None,
                machine_id,
                labels: Labels::parse_list(&format!("pool={pool},zone=z{}", i % 10))?,
                key_hash,
                created_at: now,
                expires_at: None,
                revoked_at: None,
                last_seen_at,
                identity: Default::default(),
            });
        }
        store
            .write(move |tx| {
                for w in &batch {
                    tx.insert_worker(w)?;
                }
                Ok(())
            })
            .await?;
    }
    store.close();
    Ok(creds)
}
