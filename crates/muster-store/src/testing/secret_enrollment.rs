//! Enrolling with the fleet's shared secret: its settings and guard rails (window, limit, name
//! pattern, rotation), and when a new enrollment may supersede a worker of the same name.

use muster_core::audit::Outcome;
use muster_core::credentials::SlowHash;
use muster_core::enrollment::{AutoRefusal, NamePattern};
use muster_core::worker::AdmitRefusal;
use muster_core::{ApiKey, EnrolledVia, Labels, Timestamp, WorkerId};
use rand::rngs::OsRng;

use super::{at, audit, enroll, enrollment, machine, make_token, name};
use crate::flows::enrollment::{self, SecretEnrollment};
use crate::flows::tokens::Enrolled;
use crate::flows::workers;
use crate::{AuditFilter, Store};

pub(super) fn secret_request(
    worker_name: &str,
    machine_id: &str,
    now: i64,
    verified: Timestamp,
) -> (SecretEnrollment, ApiKey) {
    let key = ApiKey::generate(&mut OsRng);
    let req = SecretEnrollment {
        name: name(worker_name),
        machine: machine(machine_id),
        labels: Labels::new(),
        now: at(now),
        verified_secret_set_at: verified,
        new_worker_id: WorkerId::parse(&muster_core::credentials::generate_id(&mut OsRng))
            .expect("id"),
        new_key: key.hash(),
        public_key: super::machine_key(machine_id).public_key(),
        remote_addr: Some("127.0.0.3".into()),
    };
    (req, key)
}

type SecretResult = Result<(Enrolled, Option<WorkerId>), AutoRefusal>;

pub(super) async fn secret_enroll(
    store: &Store,
    req: SecretEnrollment,
    connected: Option<WorkerId>,
) -> SecretResult {
    store
        .write(move |tx| {
            enrollment::enroll(tx, &req, &|id: &WorkerId| connected.as_ref() == Some(id))
        })
        .await
        .expect("store")
}

pub(super) async fn change(
    store: &Store,
    change: enrollment::Change,
    now: i64,
) -> Result<enrollment::Status, enrollment::ChangeRefusal> {
    let ev = audit("enrollment.change", "auto-enrollment");
    store
        .write(move |tx| enrollment::change(tx, &change, at(now), &ev))
        .await
        .expect("store")
}

pub(super) fn stub_hash() -> SlowHash {
    SlowHash::from_stored(
        "$argon2id$v=19$m=19456,t=2,p=1$c3R1YnN0dWI$c3R1YnN0dWJzdHVic3R1YnN0dWI".into(),
    )
}

pub async fn secret_enrollment_settings_and_guard_rails(store: Store) {
    super::licensed(&store).await;
    let status = store.read(enrollment::status).await.expect("status");
    assert!(!status.settings.enabled, "off by default");
    let (req, _) = secret_request("w1", "machine-a", 1, at(0));
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::Disabled)
    );

    let refused = change(
        &store,
        enrollment::Change {
            enabled: Some(true),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(
        refused.map(|_| ()),
        Err(enrollment::ChangeRefusal::NoSecret),
        "no secret, no enabling"
    );

    let window = enrollment::Window {
        closes_at: Some(at(10_000)),
        max_enrollments: Some(2),
        name_pattern: Some(NamePattern::parse("w*").expect("pattern")),
        expected_names: Some(NamePattern::parse("w1").expect("pattern")),
    };
    let on = enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(window),
    };
    let status = change(&store, on, 5).await.expect("enabled");
    assert!(status.settings.enabled);
    assert_eq!(status.settings.secret_set_at, Some(at(5)));
    let set_at = at(5);

    let (req, _) = secret_request("x1", "machine-a", 6, set_at);
    assert!(matches!(
        secret_enroll(&store, req, None).await,
        Err(AutoRefusal::NameNotAllowed { .. })
    ));
    let (req, key) = secret_request("w1", "machine-a", 6, set_at);
    let (enrolled, superseded) = secret_enroll(&store, req, None).await.expect("enrolled");
    assert_eq!(superseded, None);
    assert_eq!(enrolled.worker.enrolled_via, EnrolledVia::Secret);
    assert!(enrolled.worker.key_hash.matches(key.expose()));
    let (req, _) = secret_request("w2", "machine-b", 7, set_at);
    secret_enroll(&store, req, None)
        .await
        .expect("second enrollment");
    let (req, _) = secret_request("w3", "machine-c", 8, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::LimitReached(2))
    );
    let status = store.read(enrollment::status).await.expect("status");
    assert_eq!((status.enrolled_count, status.enrolled_in_window), (2, 2));
    // `w1` was expected, `w2` enrolled but is flagged; the refused `x1` wrote no enrollment.
    let records = store
        .read(|tx| tx.audit_after(0, 100))
        .await
        .expect("audit");
    let flags: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == "enroll.secret")
        .map(|r| (r.event.target.as_str(), r.event.expected))
        .collect();
    assert_eq!(flags, [("w1", Some(true)), ("w2", Some(false))]);

    // A new window resets the count; its deadline closes it.
    let reopen = enrollment::Change {
        enabled: Some(true),
        new_window: Some(enrollment::Window {
            closes_at: Some(at(100)),
            ..Default::default()
        }),
        ..Default::default()
    };
    change(&store, reopen, 50).await.expect("reopened");
    let (req, _) = secret_request("w3", "machine-c", 60, set_at);
    secret_enroll(&store, req, None)
        .await
        .expect("inside the new window");
    let (req, _) = secret_request("w4", "machine-d", 100, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::WindowClosed(at(100)))
    );

    // Rotation: a presentation verified against the old secret no longer counts.
    let rotate = enrollment::Change {
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
        ..Default::default()
    };
    let status = change(&store, rotate, 200).await.expect("rotated");
    assert!(status.settings.enabled, "rotation keeps auto-enrollment on");
    let (req, _) = secret_request("w5", "machine-e", 201, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::SecretMismatch)
    );
    let (req, _) = secret_request("w5", "machine-e", 201, at(200));
    secret_enroll(&store, req, None)
        .await
        .expect("the new secret works");

    change(
        &store,
        enrollment::Change {
            enabled: Some(false),
            ..Default::default()
        },
        300,
    )
    .await
    .expect("disabled");
    let (req, _) = secret_request("w6", "machine-f", 301, at(200));
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::Disabled)
    );
    let ids: Vec<_> = store
        .read(|tx| tx.list_workers())
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name.to_string())
        .collect();
    assert_eq!(
        ids,
        ["w1", "w2", "w3", "w5"],
        "enrolled workers are untouched by disable and rotate"
    );

    let records = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("enroll.secret".into()),
                limit: 50,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    // The six refusals changed nothing and are left to the server, which aggregates refused
    // attempts; the four enrollments are audited with them.
    assert_eq!(records.len(), 4, "each enrollment is audited");
    assert!(
        records
            .iter()
            .all(|r| r.event.outcome == Outcome::Ok && r.event.detail.contains("enrolled"))
    );
}

pub async fn secret_enrollment_supersedes_only_when_allowed(store: Store) {
    super::licensed(&store).await;
    let on = enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
    };
    let set_at = change(&store, on, 0)
        .await
        .expect("enabled")
        .settings
        .secret_set_at
        .expect("set");
    let (req, old_key) = secret_request("node", "machine-a", 1, set_at);
    let (first, _) = secret_enroll(&store, req, None).await.expect("enrolled");

    // Another machine right after: the name is taken (it has not even connected yet).
    let (req, _) = secret_request("node", "machine-b", 2, set_at);
    assert_eq!(
        secret_enroll(&store, req, None).await.map(|_| ()),
        Err(AutoRefusal::NameJustTaken(name("node")))
    );
    // Connected right now: refused.
    let (req, _) = secret_request("node", "machine-b", 120_000, set_at);
    assert_eq!(
        secret_enroll(&store, req, Some(first.worker.id.clone()))
            .await
            .map(|_| ()),
        Err(AutoRefusal::NameInUseConnected(name("node")))
    );
    // Not connected, later: the new enrollment supersedes the old identity.
    let (req, _) = secret_request("node", "machine-b", 120_000, set_at);
    let (second, superseded) = secret_enroll(&store, req, None).await.expect("superseded");
    assert_eq!(superseded, Some(first.worker.id.clone()));
    assert_ne!(second.worker.id, first.worker.id);
    let old_id = first.worker.id.clone();
    let k = old_key.expose().to_owned();
    let admitted = store
        .read(move |tx| workers::admit(tx, &old_id, &k, &machine("machine-a"), at(120_001)))
        .await
        .expect("store");
    assert_eq!(
        admitted.map(|w| w.name),
        Err(AdmitRefusal::UnknownIdentity),
        "the old key is useless"
    );
    let audit_rows = store
        .read(|tx| {
            tx.list_audit(&AuditFilter {
                action_prefix: Some("worker.superseded".into()),
                limit: 5,
                ..Default::default()
            })
        })
        .await
        .expect("audit");
    assert_eq!(audit_rows.len(), 1);
    assert!(
        audit_rows[0]
            .event
            .detail
            .contains(first.worker.id.as_str())
    );

    // A name held by a token-enrolled worker is never taken over by the secret.
    let secret = make_token(&store, "tok-node", 600_000).await;
    let (req, _) = enrollment(&secret, "machine-t", 1);
    enroll(&store, req).await.expect("token enrolled");
    let (req, _) = secret_request("tok-node", "machine-x", 300_000, set_at);
    assert!(matches!(
        secret_enroll(&store, req, None).await,
        Err(AutoRefusal::NameTakenOtherKind { .. })
    ));
}

/// Auto-enrollment never takes the name of an enrollment token (its holder would then be told
/// the name is in use) nor the built-in worker's name, even on a server without one.
pub async fn secret_enrollment_never_takes_a_token_or_reserved_name(store: Store) {
    let on = enrollment::Change {
        enabled: Some(true),
        secret: Some(stub_hash()),
        new_window: Some(Default::default()),
    };
    let set_at = change(&store, on, 0)
        .await
        .expect("enabled")
        .settings
        .secret_set_at
        .expect("set");
    make_token(&store, "reserved-for-token", 60_000).await;
    for (taken, expected) in [
        (
            "reserved-for-token",
            AutoRefusal::NameOfToken(name("reserved-for-token")),
        ),
        ("builtin", AutoRefusal::NameReserved(name("builtin"))),
    ] {
        let (req, _) = secret_request(taken, "machine-a", 10, set_at);
        assert_eq!(
            secret_enroll(&store, req, None).await.map(|_| ()),
            Err(expected)
        );
        let taken = name(taken);
        assert!(
            store
                .read(move |tx| tx.get_worker_by_name(&taken))
                .await
                .expect("get")
                .is_none()
        );
    }
}
