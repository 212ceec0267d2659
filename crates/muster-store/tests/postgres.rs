//! The conformance suite against PostgreSQL (one test per case, `conformance::*`), plus what
//! several replicas sharing one database rely on: one winner when replicas race for a token, one
//! migration when they start together, and connections that heal.
//!
//! Needs a PostgreSQL server: `MUSTER_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`. Each test works in its own fresh schema, so they
//! run in parallel, and drops it afterwards. If the server is unreachable the tests fail and say
//! how to start it, unless `MUSTER_SKIP_POSTGRES=1` is set, in which case they are skipped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use muster_store::flows::tokens;
use muster_store::flows::workers;
use muster_store::postgres::PostgresBackend;
use muster_store::testing::token_enrollment::race_to_enroll;
use muster_store::testing::{at, audit, make_token, name, precreated, transactions};
use muster_store::upgrades;
use muster_store::{Store, StoreError};
use postgres::{Client, NoTls};
use rand::Rng;
use tokio::sync::{Semaphore, SemaphorePermit};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const START_HINT: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// PostgreSQL accepts 100 connections by default and every open store holds a pool of 8. The
/// harness runs tests in parallel, one per core, so each test first takes a permit per store it
/// holds open at once: however many cores, these tests hold at most 64 connections.
const MAX_OPEN_STORES: usize = 8;
static OPEN_STORES: Semaphore = Semaphore::const_new(MAX_OPEN_STORES);

/// The server's URL, or `None` when it is unreachable and skipping was asked for. Otherwise an
/// unreachable server fails the test, saying how to start it. The server is tried once per test
/// binary, not once per test.
fn database_url() -> Option<String> {
    static REACHABLE: OnceLock<Result<String, String>> = OnceLock::new();
    let reachable = REACHABLE.get_or_init(|| {
        let url = std::env::var("MUSTER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        // Through `StoreError`, whose text includes the cause ("Connection refused").
        match admin(&url, |c| c.batch_execute("SELECT 1")).map_err(StoreError::from) {
            Ok(()) => Ok(url),
            Err(e) => Err(format!("PostgreSQL at `{url}` is unreachable: {e}")),
        }
    });
    match reachable {
        Ok(url) => Some(url.clone()),
        Err(unreachable) if std::env::var("MUSTER_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: {unreachable} and MUSTER_SKIP_POSTGRES=1");
            None
        }
        Err(unreachable) => panic!(
            "{unreachable}\n\
             hint: start it with `{START_HINT}`, point MUSTER_TEST_POSTGRES_URL at another \
             server, or set MUSTER_SKIP_POSTGRES=1 to skip these tests"
        ),
    }
}

/// Runs `f` on a fresh connection on its own thread: the synchronous client must not be used
/// inside the test's async runtime.
fn admin<R, F>(url: &str, f: F) -> Result<R, postgres::Error>
where
    R: Send + 'static,
    F: FnOnce(&mut Client) -> Result<R, postgres::Error> + Send + 'static,
{
    let url = url.to_owned();
    std::thread::spawn(move || f(&mut Client::connect(&url, NoTls)?))
        .join()
        .expect("admin thread")
}

/// One test's own schema on the test server, so tests running at once never see each other's
/// rows. It is dropped when this goes out of scope, also when the test panics; only then is the
/// test's share of [`OPEN_STORES`] given back.
struct TestSchema {
    url: String,
    name: String,
    _permits: SemaphorePermit<'static>,
}

impl TestSchema {
    /// A fresh schema for a test that holds up to `stores` stores open at once, or `None` when
    /// the test is skipped (see [`database_url`]).
    async fn new(stores: u32) -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = database_url()?;
        let permits = OPEN_STORES
            .acquire_many(stores)
            .await
            .expect("the semaphore is never closed");
        let name = format!(
            "muster_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::thread_rng().r#gen::<u32>()
        );
        Some(Self {
            url,
            name,
            _permits: permits,
        })
    }

    fn open(&self) -> Store {
        self.open_at(&self.url)
    }

    /// Opens a store in this schema through another connection string for the same server.
    fn open_at(&self, url: &str) -> Store {
        Store::new(Arc::new(
            PostgresBackend::open_in_schema(url, &self.name).expect("open"),
        ))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        if let Err(e) = admin(&self.url, move |c| c.batch_execute(&drop_schema)) {
            eprintln!("cannot drop test schema `{}`: {e}", self.name);
        }
    }
}

/// A fresh, empty store in its own schema, for one conformance case.
async fn fresh_store() -> Option<(Store, TestSchema)> {
    let schema = TestSchema::new(1).await?;
    Some((schema.open(), schema))
}

muster_store::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_one_token_have_exactly_one_winner() {
    let Some(schema) = TestSchema::new(2).await else {
        return;
    };
    let replicas = [schema.open(), schema.open()];
    muster_store::testing::licensed(&replicas[0]).await;
    // Several rounds, each with a fresh token, so a lucky interleaving cannot hide a lost race.
    for round in 0..5 {
        let token_name = format!("race-{round}");
        let secret = make_token(&replicas[0], &token_name, 60_000).await;
        let machines = format!("machine-{round}");
        let winners = race_to_enroll(&replicas, &secret, &machines).await;
        assert_eq!(winners, 1, "round {round}");
    }
    for replica in &replicas {
        let workers = replica.read(|tx| tx.list_workers()).await.expect("list");
        assert_eq!(
            workers.len(),
            5,
            "one worker per token, seen by both replicas"
        );
    }
}

/// A token and a worker may not share a name (the token's worker would take it). On SQLite the
/// single writer makes the check-then-insert atomic; here two replicas must not both pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_cannot_create_a_token_and_a_worker_of_one_name() {
    let Some(schema) = TestSchema::new(2).await else {
        return;
    };
    let (a, b) = (schema.open(), schema.open());
    for i in 0..20 {
        let n = format!("clash-{i}");
        let token = muster_core::Token::new(
            name(&n),
            muster_core::SecretHash::of("x"),
            muster_core::Labels::new(),
            at(0),
            Duration::from_secs(60),
        );
        let worker = precreated(&n);
        let (ev1, ev2) = (audit("token.create", &n), audit("worker.create", &n));
        let (t, w) = tokio::join!(
            a.write(move |tx| tokens::create(tx, &token, &ev1)),
            b.write(move |tx| workers::create(tx, &worker, at(0), Some(&ev2))),
        );
        let created = [t.expect("store").is_ok(), w.expect("store").is_ok()];
        assert_eq!(
            created.iter().filter(|ok| **ok).count(),
            1,
            "`{n}`: exactly one of the token and the worker is created, got {created:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_state_survives_reopen() {
    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    transactions::committed_state_survives_reopen(|| schema.open()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    let Some(schema) = TestSchema::new(4).await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (url, name) = (schema.url.clone(), schema.name.clone());
            std::thread::spawn(move || PostgresBackend::open_in_schema(&url, &name).map(drop))
        })
        .collect();
    for open in opens {
        open.join().expect("thread").expect("every replica opens");
    }
    let name = schema.name.clone();
    let versions = admin(&schema.url, move |c| {
        let rows = c.query(
            &format!("SELECT version FROM \"{name}\".schema_migrations ORDER BY version"),
            &[],
        )?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>())
    })
    .expect("query");
    let mut once = versions.clone();
    once.dedup();
    assert!(!versions.is_empty(), "migrations were applied");
    assert_eq!(
        versions, once,
        "each migration step was applied exactly once"
    );
    assert_eq!(versions.first(), Some(&1));
}

/// A database a newer muster migrated (a version this build does not know) is refused at open,
/// and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_muster_is_refused() {
    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    schema.open().close();
    let name = schema.name.clone();
    let future = admin(&schema.url, move |c| {
        let row = c.query_one(
            &format!(
                "INSERT INTO \"{name}\".schema_migrations (version, applied_at)
                 SELECT MAX(version) + 1, 0 FROM \"{name}\".schema_migrations RETURNING version"
            ),
            &[],
        )?;
        Ok(row.get::<_, i64>(0))
    })
    .expect("insert a future version");
    let (url, name) = (schema.url.clone(), schema.name.clone());
    let opened = std::thread::spawn(move || PostgresBackend::open_in_schema(&url, &name).map(drop))
        .join()
        .expect("thread");
    match opened {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!(found, future);
            assert_eq!(known, future - 1);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// Connections can break under a running server (a restart, a failover, an idle timeout). The
/// next jobs must get new connections, not errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connections_are_replaced() {
    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    // A unique application name, so only this store's sessions are terminated.
    let (url, app) = (schema.url.clone(), schema.name.clone());
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = schema.open_at(&format!("{url}{separator}application_name={app}"));
    store
        .write(|tx| tx.put_setting("before", "1"))
        .await
        .expect("write");

    let killed = {
        let app = app.clone();
        admin(&url, move |c| {
            let n = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )?;
            // Wait until the sessions are gone, so no job can start on a dying one.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let left: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )?
                    .get(0);
                if left == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(n)
        })
        .expect("terminate")
    };
    assert!(killed > 0, "the store's sessions were found");

    // More concurrent jobs than connections, so every thread meets its broken connection.
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| tx.put_setting(&format!("after-{i}"), "1"))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .expect("task")
            .expect("a job after a broken connection succeeds");
    }
    let v = store
        .read(|tx| tx.get_setting("after-31"))
        .await
        .expect("read");
    assert_eq!(v.as_deref(), Some("1"));
}

/// After a failed statement PostgreSQL aborts the transaction, and COMMIT then silently rolls
/// back. A job that swallows the error must not be told its writes were committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_statement_error_is_not_reported_as_committed() {
    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    let store = schema.open();
    let w = precreated("dup");
    let again = w.clone();
    store
        .write(move |tx| tx.insert_worker(&w))
        .await
        .expect("first insert");
    let result = store
        .write(move |tx| {
            tx.put_setting("before-the-error", "1")?;
            // Ignores the conflict, which SQLite would allow: there, only the failed statement
            // is undone.
            let _ = tx.insert_worker(&again);
            Ok(())
        })
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    let v = store
        .read(|tx| tx.get_setting("before-the-error"))
        .await
        .expect("read");
    assert_eq!(v, None, "the whole job was rolled back, as reported");
}

#[test]
fn an_unreachable_server_fails_open_with_an_error() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let result = PostgresBackend::open("postgres://postgres@127.0.0.1:1/test");
    assert!(matches!(result, Err(StoreError::Backend(_))));
}

/// `--max-enrollments N` holds exactly when replicas enroll at the same moment: before, each
/// transaction counted the window's enrollments, saw room, and inserted, so concurrent
/// enrollments could overshoot the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_secret_enrollments_on_replicas_never_exceed_the_limit() {
    use muster_core::credentials::generate_id;
    use muster_core::{ApiKey, Labels, WorkerId};
    use muster_store::flows::enrollment::{self, Change, SecretEnrollment, Window};
    let Some(schema) = TestSchema::new(2).await else {
        return;
    };
    let replicas = [schema.open(), schema.open()];
    muster_store::testing::licensed(&replicas[0]).await;
    let on = Change {
        enabled: Some(true),
        secret: Some(muster_core::credentials::SlowHash::from_stored(
            "stub".into(),
        )),
        new_window: Some(Window {
            closes_at: None,
            max_enrollments: Some(5),
            name_pattern: None,
            expected_names: None,
        }),
    };
    let ev = audit("enrollment.enable", "auto-enrollment");
    let set_at = replicas[0]
        .write(move |tx| enrollment::change(tx, &on, at(0), &ev))
        .await
        .expect("store")
        .expect("enabled")
        .settings
        .secret_set_at
        .expect("set");
    let mut attempts = Vec::new();
    for i in 0..40 {
        let store = replicas[i % 2].clone();
        let req = SecretEnrollment {
            name: name(&format!("node-{i}")),
            machine: muster_store::testing::machine(&format!("machine-{i}")),
            labels: Labels::new(),
            now: at(1),
            verified_secret_set_at: set_at,
            new_worker_id: WorkerId::parse(&generate_id(&mut rand::rngs::OsRng)).expect("id"),
            new_key: ApiKey::generate(&mut rand::rngs::OsRng).hash(),
            public_key: muster_store::testing::machine_key(&format!("machine-{i}")).public_key(),
            remote_addr: None,
        };
        attempts.push(tokio::spawn(async move {
            store
                .write(move |tx| enrollment::enroll(tx, &req, &|_: &WorkerId| false))
                .await
                .expect("store")
                .is_ok()
        }));
    }
    let mut enrolled = 0;
    for attempt in attempts {
        if attempt.await.expect("task") {
            enrolled += 1;
        }
    }
    assert_eq!(
        enrolled, 5,
        "exactly the window's five, across both replicas"
    );
}

/// License seats hold when replicas enroll at the same moment: each join counts the seats under
/// the enrollment lock, so the two replicas never admit more workers than the license allows,
/// and both count the same seats afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_on_replicas_never_exceed_the_license_seats() {
    let Some(schema) = TestSchema::new(2).await else {
        return;
    };
    let replicas = [schema.open(), schema.open()];
    let joined = muster_store::testing::license::race_for_seats(&replicas, 4, 24).await;
    assert_eq!(
        joined, 4,
        "exactly the license's four seats, across both replicas"
    );
}

/// A database an older build left (migrations 1–4, with ended jobs) gains the jobs' ending kinds,
/// derived from their words, when a newer build opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_ended_before_ending_kinds_get_theirs_at_upgrade() {
    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    let quoted = format!("\"{}\"", schema.name);
    admin(&schema.url, move |c| {
        c.batch_execute(&format!(
            "SET client_min_messages = warning; CREATE SCHEMA {quoted}; SET search_path TO {quoted};
             CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);"
        ))?;
        let before = [
            include_str!("../src/postgres/migrations/0001_initial.sql"),
            include_str!("../src/postgres/migrations/0002_jobs.sql"),
            include_str!("../src/postgres/migrations/0003_indexes.sql"),
            include_str!("../src/postgres/migrations/0004_job_dispatcher.sql"),
        ];
        for (version, sql) in (1i64..).zip(before) {
            c.batch_execute(sql)?;
            c.execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[&version])?;
        }
        c.batch_execute(&upgrades::jobs_before_ending_kinds())
    })
    .expect("an older build's database");
    let store = schema.open();
    upgrades::assert_ending_kinds_derived(&store).await;
}

/// A replica's lease must be renewed while every connection of its pool is busy (a storm of
/// admissions, slow writes): `write_lease` runs on a connection of its own. The pool is filled
/// with writes that wait for the test, so an ordinary write provably queues; the lease write
/// must still commit. Before the lease had its own path it queued behind them, and this test
/// timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_every_pooled_connection_is_busy() {
    use muster_store::flows::replicas;
    use muster_store::postgres::POOL_SIZE;
    use std::sync::atomic::AtomicUsize;

    let Some(schema) = TestSchema::new(1).await else {
        return;
    };
    let store = schema.open();
    // Closed until the test opens it: each blocking write waits for it inside its transaction.
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let blockers: Vec<_> = (0..POOL_SIZE)
        .map(|i| {
            let (store, gate, inside) = (store.clone(), Arc::clone(&gate), Arc::clone(&inside));
            tokio::spawn(async move {
                store
                    .write(move |tx| {
                        inside.fetch_add(1, Ordering::SeqCst);
                        let (open, opened) = &*gate;
                        let mut open = open.lock().expect("gate");
                        while !*open {
                            open = opened.wait(open).expect("gate");
                        }
                        drop(open);
                        tx.put_setting(&format!("slow-{i}"), "1")
                    })
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inside.load(Ordering::SeqCst) < POOL_SIZE {
        assert!(Instant::now() < deadline, "the pool never filled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The pool is full: an ordinary write waits.
    let queued = tokio::spawn({
        let store = store.clone();
        async move { store.write(|tx| tx.put_setting("queued", "1")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !queued.is_finished(),
        "an ordinary write should wait for the full pool"
    );

    let lease = store.write_lease(|tx| {
        replicas::beat_on_store_clock(tx, "replica-a", at(0), Duration::from_secs(5))
    });
    let renewed = tokio::time::timeout(Duration::from_secs(20), lease)
        .await
        .expect("the lease waited behind the pool's writes")
        .expect("lease");
    assert!(renewed.dead.is_empty());
    assert!(
        !queued.is_finished(),
        "the pool was still full while the lease was renewed"
    );

    *gate.0.lock().expect("gate") = true;
    gate.1.notify_all();
    for blocker in blockers {
        blocker.await.expect("task").expect("slow write");
    }
    queued.await.expect("task").expect("queued write");
}

/// Leases are written and judged on the database's clock, read in the transaction: a replica
/// whose own clock runs an hour ahead (or that read its clock before waiting for a connection)
/// must not take over a live replica. Judged on the replicas' own clocks, replica b would find
/// a's heartbeat an hour old and take it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_clock_ahead_does_not_take_over_a_live_one() {
    use muster_store::flows::replicas;

    let Some(schema) = TestSchema::new(2).await else {
        return;
    };
    let (a, b) = (schema.open(), schema.open());
    let system_now = || {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        muster_core::Timestamp::from_unix_millis(i64::try_from(ms).expect("ms"))
    };
    let lease = Duration::from_secs(5);
    let now = system_now();
    a.write_lease(move |tx| replicas::beat_on_store_clock(tx, "replica-a", now, lease))
        .await
        .expect("a beats");
    let ahead = system_now().saturating_add(Duration::from_secs(3600));
    let taken = b
        .write_lease(move |tx| replicas::beat_on_store_clock(tx, "replica-b", ahead, lease))
        .await
        .expect("b beats");
    assert!(
        taken.dead.is_empty(),
        "b took over a live replica on its own clock: {:?}",
        taken.dead
    );
    // The database's clock is what was used: close to the real time, not b's.
    let clock = b
        .read(|tx| tx.store_clock())
        .await
        .expect("clock")
        .expect("PostgreSQL has a clock");
    assert!(system_now().until(clock) < Duration::from_secs(60));
    assert!(clock.until(system_now()) < Duration::from_secs(60));
}
