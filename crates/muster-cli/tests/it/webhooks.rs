//! Events and webhooks against a real receiver: a small HTTP server on loopback in this test,
//! which checks every request's signature with its own HMAC-SHA256 (not muster's), answers 500
//! as long as it is told to, and records what it got. Deliveries survive a server killed
//! between retries, are never sent again after a 2xx, and carry one id per event; the event
//! stream (SSE) shows every audit record and resumes from `Last-Event-ID`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Server, ServerOpts, wait_until};

const SECRET: &str = "a-webhook-secret-of-some-length";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    event_id_header: String,
    signature_ok: bool,
    body: Value,
    answered: u16,
}

/// An HTTP receiver on loopback, on its own runtime thread.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicUsize>,
}

impl Receiver {
    fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fail_next = Arc::new(AtomicUsize::new(0));
        let (seen2, fail2) = (Arc::clone(&seen), Arc::clone(&fail_next));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (seen, fail) = (Arc::clone(&seen2), Arc::clone(&fail2));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let (seen, fail) = (Arc::clone(&seen), Arc::clone(&fail));
                            async move { Ok::<_, Infallible>(receive(req, &seen, &fail).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            seen,
            fail_next,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    fn of_type(&self, kind: &str) -> Vec<Received> {
        self.seen()
            .into_iter()
            .filter(|r| r.body["type"] == kind)
            .collect()
    }
}

async fn receive(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Received>>,
    fail: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (signature, event_id_header) = (header("muster-signature"), header("muster-event-id"));
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let failing = fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if failing { 500 } else { 204 };
    seen.lock().unwrap().push(Received {
        event_id_header,
        signature_ok: verify(&signature, &body, SECRET.as_bytes()),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered,
    });
    Response::builder()
        .status(answered)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// HMAC-SHA256 (RFC 2104), written here so the test does not trust muster's own.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks `t=UNIX_SECONDS,v1=HEX` against the body.
fn verify(header: &str, body: &[u8], secret: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex::encode(hmac_sha256(secret, &signed)) == v1
}

fn deliveries(server: &Server, id: &str) -> Vec<Value> {
    crate::harness::array(server.cli_json(&["webhooks", "deliveries", id]))
}

#[test]
fn the_receivers_hmac_agrees_with_a_known_value() {
    // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
    assert!(verify(
        "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686",
        br#"{"a":1}"#,
        b"secret"
    ));
    assert!(!verify("t=1700000001,v1=49f2", br#"{"a":1}"#, b"secret"));
}

#[test]
fn webhooks_are_signed_retried_across_a_restart_and_never_resent_after_2xx() {
    let receiver = Receiver::start();
    let mut server = Server::start(ServerOpts {
        env: vec![("MUSTER_WEBHOOK_FIRST_RETRY".into(), "2s".into())],
        ..Default::default()
    });
    let secret_file = server.path("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_arg = secret_file.to_str().unwrap();

    // Admin input is checked.
    let (_, line) = server.cli_err(&[
        "webhooks",
        "add",
        "http://alerts.example.com/hook",
        "--secret-file",
        secret_arg,
    ]);
    assert!(line.contains("only to a receiver on this host"), "{line}");
    let (_, line) = server.cli_err(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--event",
        "worker.exploded",
        "--secret-file",
        secret_arg,
    ]);
    assert!(line.contains("not an event type"), "{line}");
    let short = server.path("short.secret");
    std::fs::write(&short, "short").unwrap();
    let (_, line) = server.cli_err(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--secret-file",
        short.to_str().unwrap(),
    ]);
    assert!(line.contains("at least 16"), "{line}");

    let added = server.cli_json(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--event",
        "token.created",
        "--event",
        "token.revoked",
        "--secret-file",
        secret_arg,
    ]);
    let id = added["id"].as_str().unwrap().to_owned();
    let listed = crate::harness::array(server.cli_json(&["webhooks", "list"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["events"],
        serde_json::json!(["token.created", "token.revoked"])
    );
    assert!(
        !serde_json::to_string(&listed).unwrap().contains(SECRET),
        "the secret is write-only"
    );

    // The receiver fails the first two attempts.
    receiver.fail_next.store(2, Ordering::SeqCst);
    server.create_token("wh-1", "1h");
    // An event the webhook did not ask for.
    server.cli_ok(&["enrollment", "enable", "--generate"]);
    wait_until(
        "a first, failed attempt on record",
        Duration::from_secs(20),
        || {
            let log = deliveries(&server, &id);
            let done = log.len() == 1 && log[0]["attempts"] == 1;
            (done.then_some(()), format!("{log:?}"))
        },
    );
    // Killed between retries: the delivery is in the store, not in the process.
    server.kill9();
    server.restart();
    let delivered = wait_until("the event delivered", Duration::from_secs(60), || {
        let got = receiver.of_type("token.created");
        let ok = got.iter().any(|r| r.answered == 204);
        (ok.then(|| got.clone()), format!("{got:?}"))
    });
    assert_eq!(
        delivered.len(),
        3,
        "two failures, then one success: {delivered:?}"
    );
    let event_id = delivered[0].body["id"].as_str().unwrap().to_owned();
    for r in &delivered {
        assert!(
            r.signature_ok,
            "every request is signed with the secret: {r:?}"
        );
        assert_eq!(
            r.event_id_header, event_id,
            "one id per event, in header and body"
        );
        assert_eq!(r.body["id"], event_id.as_str());
        assert_eq!(r.body["target"], "wh-1");
    }
    // This run of the server made the last two attempts: one failed, one delivered.
    let (status, text) = server.diag("/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let attempts = |outcome: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "muster_webhook_attempts_total"
                    && s.labels.get("outcome") == Some(outcome)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(attempts("retry"), Some(1.0), "{text}");
    assert_eq!(attempts("delivered"), Some(1.0), "{text}");
    assert_eq!(attempts("failed"), Some(0.0), "{text}");
    let log = deliveries(&server, &id);
    assert_eq!(log[0]["state"], "delivered", "{log:?}");
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["last_status"], 204);
    assert_eq!(log[0]["event_id"], event_id.as_str());

    // Once answered 2xx, never again: another restart, then a later event is delivered, and the
    // first one was not sent before it.
    server.restart_gracefully();
    server.cli_ok(&["token", "revoke", "wh-1"]);
    wait_until("the revocation delivered", Duration::from_secs(30), || {
        let got = receiver.of_type("token.revoked");
        (
            got.iter().any(|r| r.answered == 204).then_some(()),
            format!("{:?}", receiver.seen()),
        )
    });
    assert_eq!(
        receiver.of_type("token.created").len(),
        3,
        "no resend after a 2xx"
    );
    assert!(
        receiver.of_type("enrollment.changed").is_empty(),
        "only the events asked for"
    );

    // `webhooks test` sends now and says what the receiver answered.
    let tested = server.cli_json(&["webhooks", "test", &id]);
    assert_eq!(tested["state"], "delivered", "{tested}");
    assert_eq!(tested["event_type"], "webhook.test");
    let tests = receiver.of_type("webhook.test");
    assert_eq!(tests.len(), 1);
    assert!(tests[0].signature_ok);

    // A receiver that fails: the test says so and exits non-zero; the log keeps it pending.
    receiver.fail_next.store(1, Ordering::SeqCst);
    let (code, line) = server.cli_err(&["webhooks", "test", &id]);
    assert_ne!(code, 0);
    assert!(line.contains("500"), "{line}");

    server.cli_ok(&["webhooks", "remove", &id]);
    assert!(crate::harness::array(server.cli_json(&["webhooks", "list"])).is_empty());
    let (_, line) = server.cli_err(&["webhooks", "test", &id]);
    assert!(line.contains("no webhook"), "{line}");
}

/// Reads the SSE stream until `until` holds for what arrived; returns the text.
async fn read_stream(
    server: &Server,
    last_event_id: Option<&str>,
    until: impl Fn(&str) -> bool,
    mut act: impl FnMut(),
) -> String {
    let mut request = server
        .http()
        .get(format!("{}/api/v1/events", server.url()))
        .bearer_auth(server.admin_token())
        .timeout(Duration::from_secs(30));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.expect("the event stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "an SSE stream"
    );
    act();
    let mut text = String::new();
    while !until(&text) {
        let chunk = response
            .chunk()
            .await
            .expect("read")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[test]
fn the_event_stream_carries_audit_records_and_resumes_from_the_last_id() {
    let server = Server::start_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(read_stream(
        &server,
        None,
        |t| t.contains("sse-2"),
        || {
            server.create_token("sse-1", "1h");
            server.create_token("sse-2", "1h");
        },
    ));
    assert!(text.contains("event: token.created"), "{text}");
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("data is JSON"))
        .collect();
    let first = data
        .iter()
        .find(|d| d["target"] == "sse-1")
        .expect("the first event");
    assert_eq!(first["type"], "token.created");
    assert_eq!(first["action"], "token.create");
    let seq = first["id"]
        .as_str()
        .unwrap()
        .trim_start_matches("evt_")
        .to_owned();
    assert!(text.contains(&format!("id: {seq}\n")), "{text}");

    // Resuming after the first: the second comes again, the first does not.
    let resumed = rt.block_on(read_stream(
        &server,
        Some(&seq),
        |t| t.contains("sse-2"),
        || {},
    ));
    assert!(!resumed.contains("\"sse-1\""), "{resumed}");

    // Admins only.
    let status = rt.block_on(async {
        server
            .http()
            .get(format!("{}/api/v1/events", server.url()))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);
}

/// `muster webhooks add` for `receiver`, with the tests' secret, for events of type `event`.
fn subscribe(server: &Server, receiver: &Receiver, event: &str) {
    let secret_file = server.path("webhook.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    server.cli_json(&[
        "webhooks",
        "add",
        &receiver.url(),
        "--event",
        event,
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
}

#[test]
fn an_unfamiliar_name_is_flagged_on_its_enrolled_event() {
    const ENROLL_SECRET: &str = "it-expect-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let receiver = Receiver::start();
    let server = Server::start_default();
    subscribe(&server, &receiver, "worker.enrolled");
    let (_, line) = server.cli_err(&["enrollment", "enable", "--generate", "--expect", "Edge-*"]);
    assert!(line.contains("malformed"), "{line}");
    let answer = crate::enrollment::enable(&server, ENROLL_SECRET, &["--expect", "edge-*"]);
    assert_eq!(answer["status"]["expected_names"], "edge-*", "{answer:#}");

    let _familiar = server
        .worker("edge-1")
        .secret("edge-1", ENROLL_SECRET)
        .start();
    let _stranger = server
        .worker("rogue")
        .secret("rogue", ENROLL_SECRET)
        .start();
    server.wait_status("edge-1", "connected", crate::harness::STARTUP);
    server.wait_status("rogue", "connected", crate::harness::STARTUP);
    let got = wait_until(
        "both enrollments delivered",
        Duration::from_secs(30),
        || {
            let got = receiver.of_type("worker.enrolled");
            ((got.len() == 2).then(|| got.clone()), format!("{got:?}"))
        },
    );
    let expected_of = |name: &str| {
        got.iter()
            .find(|r| r.body["target"] == name)
            .map(|r| r.body["expected"].clone())
            .unwrap_or_else(|| panic!("no event for {name}: {got:?}"))
    };
    assert_eq!(expected_of("edge-1"), true);
    assert_eq!(expected_of("rogue"), false, "the unfamiliar one is flagged");
    assert!(got.iter().all(|r| r.signature_ok));
}

#[test]
fn every_end_of_a_job_is_a_job_ended_event() {
    let receiver = Receiver::start();
    let server = Server::start_default();
    subscribe(&server, &receiver, "job.ended");
    let (token, _) = server.create_token("runner", "1h");
    let _worker = server.worker("runner").token(&token).start();
    server.wait_status("runner", "connected", crate::harness::STARTUP);

    let out = server.cli(&[
        "job", "run", "--worker", "runner", "--", "sh", "-c", "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // A job no worker matches, cancelled while queued.
    let queued = server.cli_json(&[
        "job",
        "run",
        "--detach",
        "--label",
        "pool=none",
        "--",
        "true",
    ]);
    let queued_id = queued["id"].as_str().unwrap().to_owned();
    server.cli_ok(&["job", "cancel", &queued_id]);

    let got = wait_until("two job.ended events", Duration::from_secs(30), || {
        let got = receiver.of_type("job.ended");
        ((got.len() >= 2).then(|| got.clone()), format!("{got:?}"))
    });
    assert_eq!(got.len(), 2, "one event per end: {got:?}");
    assert!(got.iter().all(|r| r.signature_ok));
    let failed = got
        .iter()
        .find(|r| r.body["target"] != queued_id.as_str())
        .expect("the failed job's event");
    assert_eq!(failed.body["detail"], "failed, exit code 3", "{failed:?}");
    assert_eq!(failed.body["action"], "job.end");
    let cancelled = got
        .iter()
        .find(|r| r.body["target"] == queued_id.as_str())
        .expect("the cancelled job's event");
    assert_eq!(cancelled.body["detail"], "cancelled", "{cancelled:?}");
}
