//! Server replicas sharing one PostgreSQL database, one fleet: one view of who is connected
//! (and busy, and where), revocations and jobs across replicas, one license, names and
//! `--max-enrollments` judged fleet-wide, a replica killed with -9 (workers and jobs fail over,
//! with several `--url`s or behind HAProxy), and the catch-up of a replica that stopped
//! listening.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth), as on CI machines; each test gets a fresh
//! database, dropped afterwards. `MUSTER_SKIP_POSTGRES=1` skips with a message.

use std::time::Duration;

use crate::harness::{Server, ServerOpts};

const ADMIN_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database of its own, dropped when the test ends (pass or fail).
pub struct Database {
    name: String,
}

impl Database {
    pub fn create() -> Option<Self> {
        if std::env::var_os("MUSTER_SKIP_POSTGRES").is_some() {
            eprintln!("skipped: MUSTER_SKIP_POSTGRES is set");
            return None;
        }
        let mut admin = postgres::Client::connect(ADMIN_URL, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at 127.0.0.1:5432 ({e}); start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set MUSTER_SKIP_POSTGRES=1 to skip"
            )
        });
        let name = format!("muster_it_{}", hex::encode(rand::random::<[u8; 6]>()));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        Some(Self { name })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(ADMIN_URL, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

pub fn replica(db: &Database) -> Server {
    Server::start(ServerOpts {
        env: vec![("MUSTER_DATABASE_URL".into(), db.url())],
        ..ServerOpts::default()
    })
}

#[test]
fn a_revocation_through_one_replica_cuts_off_a_worker_connected_to_the_other() {
    let Some(db) = Database::create() else { return };
    let a = replica(&db);
    let b = replica(&db);
    let (token, _) = a.create_token("edge-1", "1h");
    // The worker enrolls with, and connects to, replica B.
    let mut worker = b.worker("edge-1").token(&token).start();
    b.wait_status("edge-1", "connected", Duration::from_secs(15));
    // One view: A shows it connected too, held by B.
    let on_a = a.wait_status("edge-1", "connected", Duration::from_secs(15));
    let on_b = crate::harness::find(&b.workers(), "edge-1")
        .expect("record")
        .clone();
    assert!(on_a["replica"].is_string(), "{on_a:#}");
    assert_eq!(
        on_a["replica"], on_b["replica"],
        "both name the replica holding it"
    );
    assert_eq!(
        a.cli_json(&["workers", "show", "edge-1"])["replica"],
        on_b["replica"]
    );

    // Busy on both within a beat: a job placed through A on the worker B holds.
    let marker = a.path("busy");
    let script = format!("touch {}; sleep 3", marker.display());
    let busy = a.cli_json(&[
        "job", "run", "--detach", "--worker", "edge-1", "--", "sh", "-c", &script,
    ]);
    for replica in [&a, &b] {
        crate::harness::wait_until("the worker to show busy", Duration::from_secs(10), || {
            let w = replica.cli_json(&["workers", "show", "edge-1"]);
            ((w["running_jobs"] == 1).then_some(()), format!("{w:#}"))
        });
    }
    let id = busy["id"].as_str().unwrap().to_owned();
    crate::harness::wait_until("the job to end", Duration::from_secs(20), || {
        let j = b.cli_json(&["job", "show", &id]);
        ((j["state"] == "succeeded").then_some(()), format!("{j:#}"))
    });

    // A job queued through A runs on the worker connected to B.
    let out = a.cli_ok(&[
        "job",
        "run",
        "--worker",
        "edge-1",
        "--queue-timeout",
        "20s",
        "--",
        "echo",
        "from-b",
    ]);
    assert_eq!(out, "from-b\n");

    a.cli_ok(&["token", "revoke", "edge-1"]);
    let code = worker.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        5,
        "cut off by the revocation made on the other replica\n{}",
        worker.logs.dump()
    );
    assert_eq!(
        crate::harness::find(&b.workers(), "edge-1").expect("record")["status"],
        "revoked"
    );
}

/// `job run` judges "nothing matches" fleet-wide: through a replica with no worker of its own,
/// a job for a worker another replica holds runs without a word, and one nobody can take says
/// so at once, counting every replica's workers.
#[test]
fn job_run_through_one_replica_counts_the_workers_the_others_hold() {
    let Some(db) = Database::create() else { return };
    let a = replica(&db);
    let b = replica(&db);
    let (token, _) = a.create_token("gpu-1", "1h");
    let _worker = b
        .worker("gpu-1")
        .token(&token)
        .arg("--label")
        .arg("pool=gpu")
        .start();
    a.wait_status("gpu-1", "connected", Duration::from_secs(15));

    let waits = "no connected worker matches";
    for selector in [["--label", "pool=gpu"], ["--worker", "gpu-1"]] {
        let mut args = vec!["job", "run"];
        args.extend(selector);
        args.extend(["--queue-timeout", "20s", "--", "echo", "there"]);
        let out = a.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "there\n");
        assert!(!stderr.contains(waits), "B's worker matches: {stderr}");
    }

    let out = a.cli(&[
        "job",
        "run",
        "--label",
        "pool=cpu",
        "--queue-timeout",
        "1s",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{waits} a worker with labels pool=cpu (1 worker connected)"
        )),
        "the worker B holds is counted: {stderr}"
    );
}

/// Licenses are fleet-wide: installed, removed or a trial started through one replica, it holds
/// on the other at once; both count the same seats, so a worker joining through one replica
/// takes the seat the other would have given.
#[test]
fn two_replicas_see_one_license_and_count_one_set_of_seats() {
    let Some(db) = Database::create() else { return };
    let community = |db: &Database| {
        Server::start(ServerOpts {
            env: vec![("MUSTER_DATABASE_URL".into(), db.url())],
            edition: crate::harness::Edition::Community,
            ..ServerOpts::default()
        })
    };
    let a = community(&db);
    let b = community(&db);
    let installed = a.install_license(&crate::harness::license::sign(Some(1), -1, 365));
    let on_b = b.cli_json(&["license", "show"]);
    assert_eq!(on_b["edition"], "licensed");
    assert_eq!(on_b["id"], installed["id"]);
    assert_eq!(on_b["max_workers"], 1);

    // A worker joins through B and takes the only seat, as A sees.
    let (token, _) = a.create_token("edge-1", "1h");
    let mut first = b.worker("edge-1").token(&token).start();
    b.wait_status("edge-1", "connected", Duration::from_secs(15));
    let on_a = a.cli_json(&["license", "show"]);
    assert_eq!(on_a["workers_used"], 1);
    assert_eq!(on_a["can_join"], false);
    let (token, _) = b.create_token("edge-2", "1h");
    let mut second = a.worker("edge-2").token(&token).start();
    let line = crate::refusals::exits_at_once(&mut second, 3);
    assert!(line.contains("(1 of 1 used)"), "{line}");

    // Removed through B: A runs Community Edition at once; a trial started through A cannot
    // start again through B.
    b.cli_ok(&["license", "remove"]);
    assert_eq!(a.cli_json(&["license", "show"])["edition"], "community");
    a.cli_ok(&["license", "trial"]);
    assert_eq!(b.cli_json(&["license", "show"])["edition"], "trial");
    let (code, line) = b.cli_err(&["license", "trial"]);
    assert_eq!(code, 1);
    assert!(line.contains("trial already ran"), "{line}");
    // None of it touched the worker that joined.
    first.assert_running();
    b.wait_status("edge-1", "connected", Duration::from_secs(15));
}

/// A replica killed with -9 is noticed by the other through its lapsed lease: a worker that
/// knows only the dead replica shows `disconnected` everywhere; a worker given both URLs fails
/// over, reports the job it kept running, and the job ends `succeeded` on the survivor, run once.
#[test]
fn a_replica_killed_with_sigkill_is_noticed_and_its_worker_and_job_fail_over() {
    use crate::restarts::{counting_script, logs, scratch, wait_job, wait_lines};
    let Some(db) = Database::create() else { return };
    let plain = |db: &Database| {
        // Plain HTTP on loopback: one URL list serves both replicas without two certificates.
        Server::start(ServerOpts {
            env: vec![("MUSTER_DATABASE_URL".into(), db.url())],
            no_tls: true,
            ..ServerOpts::default()
        })
    };
    let a = plain(&db);
    let mut b = plain(&db);
    let (token, _) = a.create_token("roams", "1h");
    let _roams = b
        .worker("roams")
        .url(format!("{},{}", b.url(), a.url()))
        .token(&token)
        .start();
    let (token, _) = a.create_token("stays", "1h");
    let _stays = b.worker("stays").token(&token).start();
    let held = b.wait_status("roams", "connected", Duration::from_secs(15));
    b.wait_status("stays", "connected", Duration::from_secs(15));
    let dead = held["replica"].clone();
    assert!(dead.is_string(), "{held:#}");

    let marker = scratch(&a, "ran");
    let script = counting_script(&marker);
    let shown = a.cli_json(&[
        "job", "run", "--detach", "--worker", "roams", "--", "sh", "-c", &script,
    ]);
    let id = shown["id"].as_str().unwrap().to_owned();
    wait_lines(&marker, 3);
    b.kill9();

    // `stays` knows only B: A clears it once B's lease lapses.
    a.wait_status("stays", "disconnected", Duration::from_secs(30));
    // `roams` is on A now, with its job.
    crate::harness::wait_until("roams to be held by A", Duration::from_secs(30), || {
        let w = a.cli_json(&["workers", "show", "roams"]);
        let moved = w["status"] == "connected" && w["replica"] != dead;
        (moved.then_some(()), format!("{w:#}"))
    });
    let done = wait_job(&a, &id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["exit_code"], 0, "{done:#}");
    let text = logs(&a, &id);
    for i in 5..=10 {
        assert!(text.contains(&format!("line {i}\n")), "{text}");
    }
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.matches("started").count(), 1, "it ran once: {ran}");
}

/// A replica whose listening connection to the database breaks may miss a revocation; it admits
/// nobody until it has caught up, and catching up cuts off a worker revoked meanwhile. The
/// revocation here is written without its notification (as one sent while the replica was not
/// listening), so only the catch-up can apply it.
#[test]
fn a_replica_that_lost_its_event_connection_catches_up_on_a_revocation_it_missed() {
    let Some(db) = Database::create() else { return };
    let b = replica(&db);
    let (token, _) = b.create_token("edge-1", "1h");
    let mut worker = b.worker("edge-1").token(&token).start();
    b.wait_status("edge-1", "connected", Duration::from_secs(15));

    let mut sql = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={}",
            db.name()
        ),
        postgres::NoTls,
    )
    .expect("connect to the test database");
    sql.execute(
        "UPDATE workers SET revoked_at = (extract(epoch from now()) * 1000)::BIGINT WHERE name = 'edge-1'",
        &[],
    )
    .expect("revoke behind the replica's back");
    // Break the replica's listening connection (and only it).
    let killed = sql
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .expect("terminate the listener");
    assert_eq!(killed.len(), 1, "one replica listens");

    let code = worker.wait_exit(Duration::from_secs(20));
    assert_eq!(code, 5, "cut off by the catch-up\n{}", worker.logs.dump());
    crate::harness::wait_until(
        "the replica to say it caught up",
        Duration::from_secs(10),
        || {
            let out = b.all_output();
            (
                out.contains("caught up on missed events").then_some(()),
                String::new(),
            )
        },
    );
}

/// "Name in use by a connected worker" and `--max-enrollments` are judged on the store, so they
/// hold across replicas: a name connected through one replica cannot be taken through the
/// other, and enrollments racing through both never exceed the limit.
#[test]
fn name_in_use_and_max_enrollments_hold_across_replicas() {
    use crate::enrollment::{SECRET, enable};
    use crate::refusals::expect_exit;
    let Some(db) = Database::create() else { return };
    let a = replica(&db);
    let b = replica(&db);
    enable(&a, SECRET, &[]);
    let mut first = b.worker("edge-first").secret("edge", SECRET).start();
    b.wait_status("edge", "connected", Duration::from_secs(15));
    // Another machine, through the other replica, for the same name.
    let mut second = a.worker("edge-second").secret("edge", SECRET).start();
    expect_exit(&mut second, 3, "already in use by a connected worker");
    first.assert_running();

    // Six machines at once, three through each replica, against a limit of three.
    enable(&b, SECRET, &["--max-enrollments", "3"]);
    let mut racing: Vec<crate::harness::Worker> = (0..6)
        .map(|i| {
            let name = format!("race-{i}");
            let server = if i % 2 == 0 { &a } else { &b };
            server.worker(&name).secret(&name, SECRET).start()
        })
        .collect();
    let mut refused = 0;
    for worker in &mut racing {
        // Each either enrolls and stays, or is refused at once.
        if let Some(code) =
            crate::harness::wait_until("an outcome", Duration::from_secs(30), || {
                match worker.try_exit() {
                    Some(code) => (Some(Some(code)), String::new()),
                    None if worker.stderr().contains("control channel open") => {
                        (Some(None), String::new())
                    }
                    None => (None, worker.stderr()),
                }
            })
        {
            assert_eq!(code, 3, "{}", worker.logs.dump());
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "exactly the limit enrolled");
    for server in [&a, &b] {
        let raced = server
            .workers()
            .into_iter()
            .filter(|w| w["name"].as_str().is_some_and(|n| n.starts_with("race-")))
            .count();
        assert_eq!(raced, 3);
    }
}

/// HAProxy (TCP mode) in front of two replicas: the worker knows only the balancer's address.
/// The replica holding it is killed with -9; the worker comes back through the balancer to the
/// other one, which takes over the job it kept running. Fails, saying so, where HAProxy is not
/// installed (`scripts/test` installs it).
#[test]
fn behind_haproxy_a_worker_and_its_job_survive_the_death_of_their_replica() {
    use std::process::{Command, Stdio};

    use crate::restarts::{counting_script, logs, scratch, wait_job, wait_lines};
    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    // scripts/test installs it; a run without it fails and says so rather than pass unseen.
    let haproxy = haproxy.expect("HAProxy is not installed: `apt-get install haproxy`");
    let Some(db) = Database::create() else { return };
    let plain = |db: &Database| {
        Server::start(ServerOpts {
            env: vec![("MUSTER_DATABASE_URL".into(), db.url())],
            no_tls: true,
            ..ServerOpts::default()
        })
    };
    let mut replicas = [plain(&db), plain(&db)];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = replicas[0].path("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 2s\n  \
             timeout client 60s\n  timeout server 60s\nfrontend fleet\n  bind 127.0.0.1:{port}\n  \
             default_backend replicas\nbackend replicas\n  balance roundrobin\n  \
             server a 127.0.0.1:{a} check inter 300ms fall 1 rise 1\n  \
             server b 127.0.0.1:{b} check inter 300ms fall 1 rise 1\n",
            a = replicas[0].info().port,
            b = replicas[1].info().port,
        ),
    )
    .expect("write the HAProxy configuration");
    /// Stopped however the test ends.
    struct Balancer(std::process::Child);
    impl Drop for Balancer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _balancer = Balancer(
        Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start HAProxy"),
    );
    let balanced = format!("http://127.0.0.1:{port}");

    let (token, _) = replicas[0].create_token("behind", "1h");
    let _worker = replicas[0]
        .worker("behind")
        .url(balanced)
        .token(&token)
        .start();
    let shown = replicas[0].wait_status("behind", "connected", Duration::from_secs(15));
    // Which replica holds it: its id is in its data dir.
    let holder = shown["replica"].as_str().expect("replica").to_owned();
    let id_of = |s: &Server| {
        std::fs::read_to_string(s.data_dir().join("server-id"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let dies = replicas
        .iter()
        .position(|s| id_of(s) == holder)
        .expect("the holder is one of the replicas");
    let survives = 1 - dies;

    let marker = scratch(&replicas[survives], "ran");
    let script = counting_script(&marker);
    let job = replicas[survives].cli_json(&[
        "job", "run", "--detach", "--worker", "behind", "--", "sh", "-c", &script,
    ]);
    let id = job["id"].as_str().unwrap().to_owned();
    wait_lines(&marker, 3);
    replicas[dies].kill9();

    let survivor = &replicas[survives];
    crate::harness::wait_until(
        "the worker back through the balancer",
        Duration::from_secs(30),
        || {
            let w = survivor.cli_json(&["workers", "show", "behind"]);
            let back = w["status"] == "connected" && w["replica"] != holder.as_str();
            (back.then_some(()), format!("{w:#}"))
        },
    );
    let done = wait_job(survivor, &id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["exit_code"], 0, "{done:#}");
    let text = logs(survivor, &id);
    assert!(text.contains("line 10\n"), "{text}");
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.matches("started").count(), 1, "it ran once: {ran}");
}

/// Signs in to a replica's web UI with `password`, and returns a client and the session cookie.
fn ui_session(server: &Server, password: &str) -> (reqwest::Client, String) {
    let digest = muster_client::trust::parse_fingerprint(&server.fingerprint()).expect("fp");
    let tls = muster_client::Trust::Fingerprint(digest)
        .client_config()
        .expect("tls config");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = server.url();
    let cookie_of = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    };
    let session = crate::harness::block_on(async {
        let form = client
            .get(format!("{base}/signin"))
            .send()
            .await
            .expect("sign-in page");
        let signin = cookie_of(&form, "muster_signin").expect("the sign-in cookie");
        let csrf = signin.trim_start_matches("muster_signin=").to_owned();
        let signed = client
            .post(format!("{base}/signin"))
            .header("cookie", signin)
            .form(&[
                ("csrf", csrf.as_str()),
                ("user", "admin"),
                ("password", password),
            ])
            .send()
            .await
            .expect("sign in");
        // Over TLS the session cookie carries the `__Host-` prefix.
        cookie_of(&signed, "__Host-muster_session").expect("signed in")
    });
    (client, session)
}

/// The overview above the Workers page counts connected workers fleet-wide: through a replica
/// that holds none itself, the worker the other replica holds is counted connected, not
/// disconnected, and the summary under the filters says the same.
#[test]
fn the_workers_overview_counts_the_workers_every_replica_holds() {
    let Some(db) = Database::create() else { return };
    let a = replica(&db);
    let b = replica(&db);
    let (token, _) = a.create_token("edge-1", "1h");
    a.cli_ok(&["workers", "create", "edge-2"]);
    let _worker = b.worker("edge-1").token(&token).start();
    a.wait_status("edge-1", "connected", Duration::from_secs(15));
    // The first replica generated the password; the others found its hash in the store.
    let password = std::fs::read_to_string(a.data_dir().join("admin-password"))
        .expect("the first replica wrote the admin password");
    let (client, session) = ui_session(&a, password.trim());
    let url = format!("{}/workers", a.url());
    crate::harness::wait_until(
        "the overview to count the worker B holds",
        Duration::from_secs(15),
        || {
            let page = crate::harness::block_on(async {
                client
                    .get(&url)
                    .header("cookie", &session)
                    .send()
                    .await
                    .expect("the Workers page")
                    .text()
                    .await
                    .expect("a page")
            });
            let counted = page.contains(r#"data-count="connected">1<"#)
                && page.contains(r#"data-count="disconnected">1<"#)
                && page.contains("1 connected in the whole fleet");
            (counted.then_some(()), page)
        },
    );
}
