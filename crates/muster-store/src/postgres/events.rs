//! Hearing what other replicas announce: a dedicated connection that `LISTEN`s on the store's
//! events channel and hands each payload to the server. A broken connection is reopened; events
//! sent while it was down are missed, which is why the server also re-checks a worker's record
//! when it connects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::conn::Connector;

/// How often the listener wakes to see whether the store is closing.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn listen(connector: &Connector, stop: &AtomicBool, on_event: &crate::EventHandler) {
    let channel = connector.events_channel();
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match connector.connect() {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to listen for replica events; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        // The channel name comes from a validated schema name: plain identifier characters.
        if let Err(e) = conn.client.batch_execute(&format!("LISTEN {channel}")) {
            tracing::warn!(error = %e, "cannot listen for replica events; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let next = conn.client.notifications().timeout_iter(POLL).next();
            match next {
                Ok(Some(n)) => on_event(n.payload()),
                Ok(None) => {
                    // Nothing within the poll interval; `timeout_iter` also returns None when the
                    // connection closed, which the next query would reveal.
                    if conn.client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the replica events connection; reconnecting");
                    break;
                }
            }
        }
    }
}
