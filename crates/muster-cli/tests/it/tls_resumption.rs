//! TLS session resumption for workers: a reconnect resumes its TLS session (also after the
//! server was killed and restarted, with the ticket keys it keeps in its data dir), and the
//! resumed connection still has to prove the worker's key over its own exporter value — a proof
//! relayed from another connection is refused on it.
//!
//! The client here is the worker's own TLS configuration (`Endpoint`, so its session store) and
//! the worker's own signature over a real state dir's key, with the connect request written by
//! hand so the test chooses which connection's exporter is signed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use muster_core::identity::{Binding, WorkerKey};
use muster_proto::{PROTOCOL_VERSION, headers};
use muster_worker::channel::Endpoint;
use muster_worker::identity::{FileTickets, Prover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{STARTUP, Server, block_on, wait_until};

/// A worker's identity, read from its state dir.
struct Holder {
    worker_id: String,
    api_key: String,
    machine_id: String,
    prover: Prover,
}

impl Holder {
    fn read(state: &Path) -> Self {
        let identity: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("identity.json")).unwrap())
                .unwrap();
        let key = WorkerKey::from_file(&std::fs::read_to_string(state.join("worker-key")).unwrap())
            .unwrap();
        Self {
            worker_id: identity["worker_id"].as_str().unwrap().to_owned(),
            api_key: identity["api_key"].as_str().unwrap().to_owned(),
            machine_id: std::fs::read_to_string(state.join("machine-id"))
                .unwrap()
                .trim()
                .to_owned(),
            prover: Prover::new(
                Arc::new(key),
                Arc::new(FileTickets::open(state.join("ticket"))),
            ),
        }
    }
}

/// A TLS connection through the endpoint's configuration (and so its session store).
async fn tls(endpoint: &Endpoint, server: &Server) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(endpoint.tls().unwrap()))
        .connect(name, tcp)
        .await
        .unwrap()
}

fn exporter(stream: &TlsStream<TcpStream>) -> Binding {
    let value = stream
        .get_ref()
        .1
        .export_keying_material([0u8; 32], muster_proto::identity::EXPORTER_LABEL, None)
        .unwrap();
    Binding::TlsExporter(value)
}

fn resumed(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// Sends the connect request with a proof signed over `signed`, and returns the status line and
/// the rest of what the server answered first.
async fn connect(stream: &mut TlsStream<TcpStream>, holder: &Holder, signed: &Binding) -> String {
    let ticket = holder.prover.tickets.current();
    let proof = holder
        .prover
        .sign_connect(signed, &holder.worker_id, ticket.as_ref());
    let mut request = format!(
        "GET /api/v1/connect HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}: {PROTOCOL_VERSION}\r\n{}: {}\r\n{}: {}\r\n{}: {}\r\n{}: {proof}\r\n{}: {}\r\nauthorization: Bearer {}\r\n",
        headers::PROTOCOL,
        headers::WORKER_ID,
        holder.worker_id,
        headers::MACHINE_ID,
        holder.machine_id,
        headers::PUBLIC_KEY,
        holder.prover.key.public_key(),
        headers::PROOF,
        headers::PROCESS,
        holder.prover.process,
        holder.api_key,
    );
    if let Some(ticket) = &ticket {
        request.push_str(&format!("{}: {}\r\n", headers::TICKET, ticket.encode()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn resumed_handshakes(server: &Server) -> f64 {
    let (_, text) = server.diag("/metrics");
    text.lines()
        .find(|l| l.starts_with("muster_tls_handshakes_total{kind=\"resumed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Every connection below proves its key over an exporter value: its own (admitted), or another
/// connection's (refused), on full and resumed handshakes, before and after a restart.
#[test]
fn a_resumed_connection_still_proves_the_key_and_a_relayed_proof_fails_on_it() {
    let mut server = Server::start_default();
    let (token, _) = server.create_token("resumer", "1h");
    let mut worker = server.worker("resumer").token(&token).start();
    server.wait_status("resumer", "connected", STARTUP);
    worker.terminate(Duration::from_secs(10));
    let holder = Holder::read(&worker.state_dir);
    let keys = server.data_dir().join("tls/ticket-keys");
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600,
        "the ticket keys are owner-only"
    );
    let trust = muster_client::Trust::from_options(None, Some(&server.fingerprint())).unwrap();
    let endpoint = Endpoint::new(&server.url(), &trust).unwrap();

    block_on(async {
        // A full handshake; its own exporter signed: admitted. (Reading the answer also reads
        // the session ticket the server sent after the handshake.)
        let mut first = tls(&endpoint, &server).await;
        assert!(!resumed(&first));
        let first_binding = exporter(&first);
        let answer = connect(&mut first, &holder, &first_binding).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");

        // Resumed, with the first connection's proof relayed onto it: refused.
        let mut relayed = tls(&endpoint, &server).await;
        assert!(resumed(&relayed), "the reconnect resumed its TLS session");
        assert_ne!(exporter(&relayed), first_binding);
        let answer = connect(&mut relayed, &holder, &first_binding).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("proof_invalid"), "{answer}");

        // Resumed, its own exporter signed: admitted.
        let mut own = tls(&endpoint, &server).await;
        assert!(resumed(&own));
        let binding = exporter(&own);
        let answer = connect(&mut own, &holder, &binding).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    });
    assert!(resumed_handshakes(&server) >= 2.0);

    // A crash and a restart: the ticket keys come back from the data dir.
    server.kill9();
    server.restart();
    block_on(async {
        let mut after = tls(&endpoint, &server).await;
        assert!(resumed(&after), "resumed across the restart");
        let binding = exporter(&after);
        let answer = connect(&mut after, &holder, &binding).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        // (A client uses each ticket once; the one this resumes came with that answer.)
        let mut relayed = tls(&endpoint, &server).await;
        assert!(resumed(&relayed));
        let answer = connect(&mut relayed, &holder, &binding).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    });
    assert!(resumed_handshakes(&server) >= 2.0);

    // The real worker, restarted, reconnects through a resumed handshake of its own after a
    // server restart, and stays connected.
    let _worker = server.worker("resumer").start();
    server.wait_status("resumer", "connected", STARTUP);
    server.kill9();
    server.restart();
    wait_until(
        "the worker reconnects through a resumed handshake",
        STARTUP,
        || {
            let resumed = resumed_handshakes(&server);
            ((resumed >= 1.0).then_some(()), format!("{resumed} resumed"))
        },
    );
    server.wait_status("resumer", "connected", STARTUP);
}
