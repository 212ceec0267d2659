//! Replicas that share a certificate share their TLS ticket keys (in the database, sealed under
//! the TLS private key), and a worker keeps one TLS session store for all its `--url`s: a worker
//! whose replica is killed with -9 resumes its TLS session on the next one, and still proves its
//! key there (it shows `connected`). A replica serving another certificate, even with the same
//! private key, cannot use those keys: the same worker moving on to it does a full handshake.
//!
//! Needs PostgreSQL on 127.0.0.1:5432, as the replica tests do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Server, ServerOpts, wait_until};
use crate::replicas::Database;

/// A CA the worker trusts, and two certificates it signed for 127.0.0.1 over one key pair: what
/// the replicas share, and another one.
struct Certificates {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    shared: PathBuf,
    other: PathBuf,
    key: PathBuf,
}

impl Certificates {
    fn make() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "muster test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = |name: &str| {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.signed_by(&key, &ca, &ca_key).unwrap().pem()
        };
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", &ca.pem()),
            shared: write("shared.pem", &leaf("replicas")),
            other: write("other.pem", &leaf("another")),
            key: write("key.pem", &key.serialize_pem()),
            _dir: dir,
        }
    }
}

fn replica(db: &Database, cert: &Path, key: &Path) -> Server {
    Server::start(ServerOpts {
        env: vec![
            ("MUSTER_DATABASE_URL".into(), db.url()),
            ("MUSTER_TLS_CERT".into(), cert.display().to_string()),
            ("MUSTER_TLS_KEY".into(), key.display().to_string()),
        ],
        ..ServerOpts::default()
    })
}

/// `(full, resumed)` TLS handshakes this replica completed.
fn handshakes(server: &Server) -> (f64, f64) {
    let (_, text) = server.diag("/metrics");
    let count = |kind: &str| {
        let series = format!("muster_tls_handshakes_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (count("full"), count("resumed"))
}

/// A worker that trusts the CA, enrolled through its first URL, which it tries first.
fn worker(ca: &str, name: &str, urls: [&Server; 2]) -> crate::harness::Worker {
    let (token, _) = urls[0].create_token(name, "1h");
    urls[0]
        .worker(name)
        .no_fingerprint()
        .url(format!("{},{}", urls[0].url(), urls[1].url()))
        .arg("--ca-file")
        .arg(ca)
        .token(&token)
        .start()
}

/// Waits until `name` is connected to `server` (by its replica id).
fn on(server: &Server, name: &str, worker: &crate::harness::Worker) {
    let id = std::fs::read_to_string(server.data_dir().join("server-id"))
        .expect("the replica's id")
        .trim()
        .to_owned();
    server.wait_status(name, "connected", Duration::from_secs(30));
    wait_until(
        &format!("{name} held by replica {id}"),
        Duration::from_secs(30),
        || {
            let w = server.cli_json(&["workers", "show", name]);
            let held = w["status"] == "connected" && w["replica"] == id.as_str();
            (held.then_some(()), format!("{w:#}\n{}", worker.logs.dump()))
        },
    );
}

#[test]
fn a_worker_failing_over_resumes_on_a_replica_with_the_same_certificate_only() {
    let Some(db) = Database::create() else { return };
    let certs = Certificates::make();
    let mut a = replica(&db, &certs.shared, &certs.key);
    let mut b = replica(&db, &certs.shared, &certs.key);
    let c = replica(&db, &certs.other, &certs.key);
    let ca = certs.ca.display().to_string();
    // Connected to A (its first URL), then A dies: the worker's other URL is B, which opens the
    // ticket A gave: resumed. The worker proves its key over the resumed connection's own
    // exporter value, or B would not admit it.
    let first = worker(&ca, "first", [&a, &b]);
    on(&a, "first", &first);
    assert_eq!(handshakes(&b).1, 0.0, "nothing resumed on B yet");
    a.kill9();
    on(&b, "first", &first);
    let (_, resumed) = handshakes(&b);
    assert!(
        resumed >= 1.0,
        "the worker resumed on B the TLS session A gave it ({resumed} resumed)\n{}",
        b.dump()
    );

    // Connected to B, then B dies: C serves another certificate (over the same private key),
    // cannot open B's ticket, so the worker's offer is ignored and a full handshake admits it.
    let second = worker(&ca, "second", [&b, &c]);
    on(&b, "second", &second);
    b.kill9();
    on(&c, "second", &second);
    let (full, resumed) = handshakes(&c);
    assert_eq!(
        resumed, 0.0,
        "C resumed a session made under the other certificate"
    );
    assert!(full >= 1.0);
}
