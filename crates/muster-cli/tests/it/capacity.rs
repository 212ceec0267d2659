//! The connection cap near the open-file limit, on a real `muster serve` given a small limit
//! (`prlimit`): workers that fill it leave places for an operator's API calls, and a flood of
//! connections is turned away without `accept` ever failing for want of descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_core::identity::WorkerKey;
use muster_proto::api::{CreateWorkerRequest, CreatedWorker};
use muster_worker::channel::{ChannelOptions, Endpoint, Identity, Quiet};
use muster_worker::identity::{MemoryTickets, Prover};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::harness::{Server, ServerOpts, array};

/// The server's open-file limit: less the server's reserve of 256 descriptors, a cap of 34
/// connections, of which 30 may be workers' control channels (4 are kept for API calls).
const NOFILE: u64 = 290;
const WORKER_CAP: usize = 30;
/// More workers than fit.
const WORKERS: usize = 40;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn connect_from(source: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// Before: the cap counted every connection alike, so workers filled it and an operator's
/// command got "the server holds as many connections as it can"; and every connection past the
/// cap was accepted and held through its polite refusal, so a flood used up the descriptors kept
/// in reserve and `accept` failed with "Too many open files".
#[test]
fn workers_filling_the_cap_leave_room_for_the_api_and_a_flood_never_fails_accept() {
    let server = Server::start(ServerOpts {
        nofile: Some(NOFILE),
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let trust = muster_client::Trust::Fingerprint(
        muster_client::trust::parse_fingerprint(&server.fingerprint()).expect("fingerprint"),
    );
    let admin = muster_client::Client::new(&server.url(), &trust, Some(server.admin_token()))
        .expect("client");
    let created: Vec<CreatedWorker> = runtime.block_on(async {
        let mut created = Vec::new();
        for i in 0..WORKERS {
            let request = CreateWorkerRequest {
                name: format!("w{i:02}"),
                labels: Default::default(),
            };
            created.push(admin.create_worker(&request).await.expect("create worker"));
        }
        created
    });

    // The workers, each running the worker's own reconnect loop.
    let endpoint = Endpoint::new(&server.url(), &trust).expect("endpoint");
    let (stop, stopped) = watch::channel(false);
    for (i, worker) in created.into_iter().enumerate() {
        let (endpoint, mut stopped) = (endpoint.clone(), stopped.clone());
        runtime.spawn(async move {
            let identity = Identity {
                worker_id: worker.id,
                api_key: worker.api_key,
                machine_id: format!("capacity-{i:02}"),
                prover: Prover::new(
                    Arc::new(WorkerKey::generate(&mut rand::rngs::OsRng)),
                    Arc::new(MemoryTickets::default()),
                ),
            };
            let _ = muster_worker::maintain(
                &endpoint,
                &identity,
                &ChannelOptions::default(),
                true,
                &mut stopped,
                &mut Quiet,
                None,
            )
            .await;
        });
    }
    // They fill the places workers may take, and the rest are turned away. Nothing asks the
    // server meanwhile: while 40 connect at once, any connection past the cap is closed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log_count = |what: &str| server.all_output().matches(what).count();
    while log_count("worker connected") < WORKER_CAP {
        assert!(
            Instant::now() < deadline,
            "the workers never filled the cap\n{}",
            server.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The burst is over; the turned-away come back every few seconds and are turned away again.
    std::thread::sleep(Duration::from_secs(3));

    // An operator's commands get through, on the places kept for them.
    let listed = array(server.cli_json(&["workers", "list"]));
    assert_eq!(listed.len(), WORKERS);
    server.create_token("after-the-fill", "1h");
    let connected = listed.iter().filter(|w| w["status"] == "connected").count();
    assert!(
        (WORKER_CAP - 2..=WORKER_CAP).contains(&connected),
        "{connected} workers connected, expected the {WORKER_CAP} places workers may take"
    );
    assert!(log_count("turning a worker away") > 0, "{}", server.dump());

    // A flood from several sources: connections that send nothing, far more than the
    // descriptors left. Past the cap each is closed as soon as it is accepted, so the server
    // never runs out of descriptors.
    let before_flood = open_fds(server.pid());
    let closed_before = log_count("closing a connection unanswered");
    let addr = server.addr();
    let flood: Vec<TcpStream> = runtime.block_on(async {
        let mut held = Vec::new();
        for source in 2..7u8 {
            for _ in 0..50 {
                if let Ok(stream) = connect_from([127, 0, 0, source], addr).await {
                    held.push(stream);
                }
            }
        }
        held
    });
    assert!(flood.len() >= 200, "the flood opened {}", flood.len());
    std::thread::sleep(Duration::from_secs(2));
    let during_flood = open_fds(server.pid());
    let output = server.all_output();
    assert!(
        output.matches("closing a connection unanswered").count() > closed_before,
        "the flood never reached the cap\n{}",
        server.dump()
    );
    assert!(
        !output.contains("accept failed"),
        "accept failed during the flood (descriptors: {before_flood} before, {during_flood} during)\n{}",
        server.dump()
    );
    assert!(
        during_flood < usize::try_from(NOFILE).expect("small"),
        "{during_flood} descriptors open"
    );
    eprintln!(
        "server descriptors: {before_flood} with the workers, {during_flood} during a flood of {}",
        flood.len()
    );
    // Once the flood is gone the operator gets through again, and the workers stayed.
    drop(flood);
    std::thread::sleep(Duration::from_secs(1));
    server.create_token("after-the-flood", "1h");
    let connected = server
        .workers()
        .iter()
        .filter(|w| w["status"] == "connected")
        .count();
    assert!(
        connected + 2 >= WORKER_CAP,
        "{connected} workers connected after the flood"
    );
    stop.send_replace(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
