//! Keys in the store: replicas with one certificate agree on them, they are sealed so that
//! neither a reader of the database nor a replica with another TLS key or certificate can use
//! them, and they are erased on schedule. On a real store (SQLite here; the replica test in
//! muster-cli runs them on PostgreSQL between processes).

use std::sync::Arc;

use muster_store::Store;

use super::*;

const CERT: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000a1";
const OTHER_CERT: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000a2";
/// Stand-ins for two TLS private keys' DER encodings (HKDF takes any bytes).
const TLS_KEY: &[u8] = b"the TLS private key both replicas were given";
const OTHER_TLS_KEY: &[u8] = b"another TLS private key";
/// Somewhere in a period, not at its start.
const AT: u64 = 1_800_000_123;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("muster.db")).unwrap();
    (dir, store)
}

fn wrap(key: &[u8], cert: &str) -> Arc<KeyWrap> {
    Arc::new(KeyWrap::derive(key, cert))
}

fn names(keys: &[Key]) -> Vec<([u8; NAME_LEN], u64)> {
    keys.iter().map(|k| (k.name, k.created)).collect()
}

async fn rows(store: &Store, cert: &str) -> Vec<SealedTicketKey> {
    let cert = cert.to_owned();
    store.read(move |tx| tx.ticket_keys(&cert)).await.unwrap()
}

#[tokio::test]
async fn replicas_with_one_certificate_agree_on_the_keys_a_period_ahead() {
    let (_dir, store) = store();
    let a = sync(&store, &wrap(TLS_KEY, CERT), AT).await.unwrap();
    let b = sync(&store, &wrap(TLS_KEY, CERT), AT).await.unwrap();
    assert_eq!(
        names(&a),
        names(&b),
        "the second replica reads the first's keys"
    );
    assert_eq!(a[0].secret, b[0].secret);
    let period = ROTATE_EVERY.as_secs();
    assert_eq!(
        a.iter().map(|k| k.created).collect::<Vec<_>>(),
        vec![(AT / period + 1) * period, AT / period * period],
        "the next period's key and the current one, newest first"
    );
    // At the rotation, the key that seals next was known all along: nothing new is made.
    let later = sync(&store, &wrap(TLS_KEY, CERT), AT + period)
        .await
        .unwrap();
    assert_eq!(names(&later)[1..], names(&a)[..]);
}

#[tokio::test]
async fn sealed_keys_are_useless_without_the_tls_key_and_to_another_certificate() {
    let (_dir, store) = store();
    let keys = sync(&store, &wrap(TLS_KEY, CERT), AT).await.unwrap();
    let stored = rows(&store, CERT).await;
    assert_eq!(stored.len(), 2);
    for row in &stored {
        for key in &keys {
            assert!(
                !row.sealed.windows(32).any(|w| w == key.secret),
                "a key is stored in the clear"
            );
        }
        // A database reader who guesses everything but the TLS private key.
        assert!(wrap(OTHER_TLS_KEY, CERT).open(row).is_none());
        // A row moved to another period does not open either.
        let moved = SealedTicketKey {
            period: row.period + 1,
            ..row.clone()
        };
        assert!(wrap(TLS_KEY, CERT).open(&moved).is_none());
        // Nor does one relabelled for another certificate served with the same key.
        let relabelled = SealedTicketKey {
            certificate: OTHER_CERT.to_owned(),
            ..row.clone()
        };
        assert!(wrap(TLS_KEY, OTHER_CERT).open(&relabelled).is_none());
        assert!(wrap(TLS_KEY, CERT).open(row).is_some());
    }
    // A replica with the same certificate but a key that does not open them uses none of them.
    assert!(
        sync(&store, &wrap(OTHER_TLS_KEY, CERT), AT)
            .await
            .unwrap()
            .is_empty()
    );
    // A replica with another certificate makes keys of its own and never sees these.
    let other = sync(&store, &wrap(TLS_KEY, OTHER_CERT), AT).await.unwrap();
    assert_eq!(other.len(), 2);
    for key in &other {
        assert!(
            keys.iter()
                .all(|k| k.name != key.name && k.secret != key.secret)
        );
    }
}

#[tokio::test]
async fn keys_are_erased_once_their_last_ticket_expired() {
    let (_dir, store) = store();
    let first = sync(&store, &wrap(TLS_KEY, CERT), AT).await.unwrap();
    let period = ROTATE_EVERY.as_secs();
    let current_start = AT / period * period;
    // The current period's key seals until its end; its tickets live TICKET_LIFETIME longer.
    let last_ticket_expires = current_start + period + TICKET_LIFETIME.as_secs();
    let kept = sync(&store, &wrap(TLS_KEY, CERT), last_ticket_expires - 1)
        .await
        .unwrap();
    assert!(kept.iter().any(|k| k.name == first[1].name));
    let erased = sync(&store, &wrap(TLS_KEY, CERT), last_ticket_expires)
        .await
        .unwrap();
    assert!(erased.iter().all(|k| k.name != first[1].name));
    assert!(
        rows(&store, CERT)
            .await
            .iter()
            .all(|r| r.period != period_of(current_start))
    );
}
