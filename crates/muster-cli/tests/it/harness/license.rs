//! Licenses for tests: the tests' own issuer (made once per test process, trusted by every
//! server the harness starts), licenses it signs, and a license written into a server's store
//! as the store would hold it weeks after it was installed.

use std::sync::OnceLock;

use muster_core::Timestamp;
use muster_core::license::License;
use muster_license::{IssuerSecret, Terms};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The tests' issuer.
pub fn issuer() -> &'static IssuerSecret {
    static ISSUER: OnceLock<IssuerSecret> = OnceLock::new();
    ISSUER.get_or_init(|| IssuerSecret::generate().expect("an issuer key"))
}

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("millis")
}

/// `days` from now (negative: ago).
pub fn days_from_now(days: i64) -> Timestamp {
    Timestamp::from_unix_millis(now() + days * DAY_MS)
}

/// The terms of a license for `ACME Test` with `max_workers` (`None`: no limit), issued
/// `issued` days from now and expiring `expires` days from now.
pub fn terms(max_workers: Option<u64>, issued: i64, expires: i64) -> Terms {
    Terms {
        id: format!("lic-test-{}", hex::encode(rand::random::<[u8; 4]>())),
        licensee: "ACME Test".into(),
        max_workers,
        issued_at: days_from_now(issued),
        expires_at: days_from_now(expires),
    }
}

/// A license signed by the tests' issuer.
pub fn sign(max_workers: Option<u64>, issued: i64, expires: i64) -> String {
    muster_license::sign(issuer(), &terms(max_workers, issued, expires)).expect("sign")
}

/// Writes `terms` into the store at `database` (a SQLite file or a PostgreSQL URL) as the
/// server would have installed them: what the store holds weeks after an install, for a
/// license that has since expired (an expired license cannot be installed). The server reads
/// the license afresh at every join, so it holds at once, also while the server runs.
pub fn write_into_store(database: &str, terms: &Terms) {
    let store = if database.starts_with("postgres://") {
        muster_store::Store::open_postgres(database)
    } else {
        muster_store::Store::open_sqlite(std::path::Path::new(database))
    }
    .expect("open the server's store");
    let token = muster_license::sign(issuer(), terms).expect("sign");
    let license = License {
        id: terms.id.clone(),
        licensee: terms.licensee.clone(),
        max_workers: terms.max_workers,
        issued_at: terms.issued_at,
        expires_at: terms.expires_at,
        issuer: issuer().public().id().to_owned(),
    };
    let event = muster_core::audit::AuditEvent {
        expected: None,
        at: terms.issued_at,
        actor: "test".into(),
        action: "license.changed".into(),
        target: "license".into(),
        remote_addr: None,
        outcome: muster_core::audit::Outcome::Ok,
        detail: String::new(),
    };
    let installed_at = terms.issued_at;
    crate::harness::block_on(async move {
        store
            .write(move |tx| {
                muster_store::flows::license::install(tx, &license, &token, installed_at, &event)
            })
            .await
            .expect("write the license");
        store.close();
    });
}
