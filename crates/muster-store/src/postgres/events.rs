//! Hearing what other replicas announce: a dedicated connection that `LISTEN`s on the store's
//! events channel and hands each payload to the server. A broken connection is reopened; events
//! sent while it was down are missed: the server hears [`Heard::Deaf`] when it breaks and
//! [`Heard::Listening`] when it is back, and catches up in between (see the server's
//! `replica::catch_up`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::conn::Connector;
use crate::Heard;

/// How often the listener wakes to see whether the store is closing.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn listen(connector: &Connector, stop: &AtomicBool, on_event: &crate::EventHandler) {
    let channel = connector.events_channel();
    // Whether the server was told the listener is down (and must hear it is back).
    let mut deaf = false;
    let go_deaf = |deaf: &mut bool| {
        if !*deaf {
            *deaf = true;
            on_event(Heard::Deaf);
        }
    };
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            go_deaf(&mut deaf);
        }
        first = false;
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
        if std::mem::take(&mut deaf) {
            tracing::info!("listening for replica events again");
            on_event(Heard::Listening);
        }
        while !stop.load(Ordering::Relaxed) {
            let next = conn.client.notifications().timeout_iter(POLL).next();
            match next {
                Ok(Some(n)) => on_event(Heard::Event(n.payload())),
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
