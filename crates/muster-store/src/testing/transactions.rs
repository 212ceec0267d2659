//! What a transaction promises: a failed write undoes only its own changes, even when a
//! batching backend commits it together with others; a setting written is read back; and what
//! was committed is still there after the database is closed and opened again.

use super::make_token;
use crate::{Store, StoreError};

pub async fn failed_write_rolls_back_alone(store: Store) {
    // Submit a failing and a succeeding write together, so that on a batching backend they share
    // one transaction: the failure must undo only its own changes.
    let failing = store.write(|tx| {
        tx.put_setting("doomed", "1")?;
        Err::<(), _>(StoreError::Conflict("deliberate".into()))
    });
    let succeeding = store.write(|tx| tx.put_setting("kept", "1"));
    let (f, s) = tokio::join!(failing, succeeding);
    assert!(matches!(f, Err(StoreError::Conflict(_))));
    s.expect("the other write commits");
    assert_eq!(
        store
            .read(|tx| tx.get_setting("doomed"))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        store
            .read(|tx| tx.get_setting("kept"))
            .await
            .expect("read")
            .as_deref(),
        Some("1")
    );
}

pub async fn settings_round_trip(store: Store) {
    assert_eq!(
        store.read(|tx| tx.get_setting("k")).await.expect("read"),
        None
    );
    store
        .write(|tx| tx.put_setting("k", "v1"))
        .await
        .expect("write");
    store
        .write(|tx| tx.put_setting("k", "v2"))
        .await
        .expect("write");
    assert_eq!(
        store
            .read(|tx| tx.get_setting("k"))
            .await
            .expect("read")
            .as_deref(),
        Some("v2")
    );
}

/// Not one of the cases [`conformance_tests!`](crate::conformance_tests) expands, because it
/// needs more than a fresh store: `open` must open the same database each time it is called.
pub async fn committed_state_survives_reopen(open: impl Fn() -> Store) {
    {
        let store = open();
        make_token(&store, "durable", 60_000).await;
        store.close();
    }
    let store = open();
    let names: Vec<String> = store
        .read(|tx| tx.list_tokens())
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["durable"]);
}
