//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/`, from real data:
//! sessions recorded with rustls's own client, messages and bodies made by the wire types' own
//! encoders. Run once when a target is added or its input layout changes:
//! `cargo run -p muster-fuzz --bin fuzz-seeds`. (The fuzzer grows the corpora from there; see
//! `fuzz/README.md`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use muster_fuzz::lean_tls::Plan;
use muster_fuzz::lean_tls::record::{Script, record};
use muster_proto::api::{EnrollRequest, JobEvent};
use muster_proto::control::{JobExit, JobStart, ServerMessage, Welcome, WorkerMessage, frame};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    lean_tls(&root.join("lean_tls"))?;
    control_message(&root.join("control_message"))?;
    enroll_body(&root.join("enroll_body"))?;
    names_labels_durations(&root.join("names_labels_durations"))?;
    follow_reader(&root.join("follow_reader"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path: PathBuf = dir.join(format!("seed-{name}"));
    std::fs::write(path, data)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire types encode")
}

fn lean_tls(dir: &Path) -> std::io::Result<()> {
    let kx = rustls::crypto::ring::kx_group::SECP384R1;
    let scripts = [
        ("tls13", Script::default()),
        (
            "tls12",
            Script {
                versions: muster_fuzz::lean_tls::record::TLS12_ONLY,
                ..Script::default()
            },
        ),
        (
            "tls13-p384",
            Script {
                groups: vec![kx],
                ..Script::default()
            },
        ),
        (
            "tls13-key-update-no-close",
            Script {
                messages: vec![b"one".to_vec(), vec![b'x'; 20_000], b"three".to_vec()],
                key_update: true,
                close_notify: false,
                ..Script::default()
            },
        ),
    ];
    for (name, script) in scripts {
        let recorded = record(&script)?;
        let whole = Plan {
            preread: false,
            repeat: 1,
            reads: vec![],
            writes: vec![],
            reply: script.reply,
            stream: &recorded.stream,
        };
        write(dir, name, &whole.encode())?;
        let split = Plan {
            preread: true,
            reads: vec![0, 7, 1, 300, 0, 16_389],
            writes: vec![0, 40],
            ..whole.clone()
        };
        write(dir, &format!("{name}-split"), &split.encode())?;
        // The ClientHello alone, as the listener reads it before the handshake starts.
        let hello_len =
            5 + usize::from(u16::from_be_bytes([recorded.stream[3], recorded.stream[4]]));
        let hello = Plan {
            preread: true,
            stream: &recorded.stream[..hello_len],
            ..whole.clone()
        };
        write(dir, &format!("{name}-client-hello"), &hello.encode())?;
    }
    Ok(())
}

fn control_message(dir: &Path) -> std::io::Result<()> {
    let exits = [
        JobExit::Exited { code: 0 },
        JobExit::Exited { code: 3 },
        JobExit::Signalled { signal: 9 },
        JobExit::TimedOut,
        JobExit::Cancelled,
        JobExit::SpawnFailed {
            error: "No such file or directory (os error 2)".into(),
        },
    ];
    for (i, exit) in exits.into_iter().enumerate() {
        let message = WorkerMessage::JobFinished {
            id: "0123456789abcdef".into(),
            exit,
        };
        write(dir, &format!("job-finished-{i}"), &json(&message))?;
    }
    let server = [
        ServerMessage::Welcome(Welcome {
            worker_id: "5f0c6d1e9a8b4c3d2e1f0a9b8c7d6e5f".into(),
            name: "ingest-01".into(),
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            ticket: None,
        }),
        ServerMessage::Reconnect {
            after_ms: 2_500,
            reason: "server shutting down".into(),
        },
        ServerMessage::JobStart(JobStart {
            id: "fedcba9876543210".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: BTreeMap::from([("RUST_LOG".into(), "debug".into())]),
            timeout_ms: Some(60_000),
        }),
        ServerMessage::JobCancel {
            id: "fedcba9876543210".into(),
        },
    ];
    for (i, message) in server.iter().enumerate() {
        write(dir, &format!("server-{i}"), &json(message))?;
    }
    let job = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    write(
        dir,
        "frame-stdout",
        &frame::encode(frame::STDOUT, job, b"hello\n"),
    )?;
    write(
        dir,
        "frame-stderr",
        &frame::encode(frame::STDERR, job, b"oops"),
    )?;
    Ok(())
}

fn enroll_body(dir: &Path) -> std::io::Result<()> {
    let labels = BTreeMap::from([
        ("region".to_owned(), "eu".to_owned()),
        ("gpu".to_owned(), "a100".to_owned()),
    ]);
    let bodies = [
        EnrollRequest {
            machine_id: "3b9f1c2d4e5f60718293a4b5c6d7e8f9".into(),
            token: Some("ingest-01.q4Jc0m9dXh3yNfP2sLk7WvA1bR8tZ5eG6uY0iO3pQwE".into()),
            name: None,
            enrollment_key: None,
            labels: labels.clone(),
            public_key: None,
            proof: None,
            nonce: None,
        },
        EnrollRequest {
            machine_id: "3b9f1c2d4e5f60718293a4b5c6d7e8f9".into(),
            token: None,
            name: Some("ingest-02".into()),
            enrollment_key: Some("correct horse battery staple, but longer".into()),
            labels,
            public_key: None,
            proof: None,
            nonce: None,
        },
        EnrollRequest {
            machine_id: "m-1".into(),
            token: None,
            name: None,
            enrollment_key: None,
            labels: BTreeMap::new(),
            public_key: None,
            proof: None,
            nonce: None,
        },
    ];
    for (i, body) in bodies.iter().enumerate() {
        write(dir, &format!("enroll-{i}"), &json(body))?;
    }
    Ok(())
}

fn names_labels_durations(dir: &Path) -> std::io::Result<()> {
    let texts = [
        ("name", "ingest-01"),
        ("pair", "region=eu-west/1"),
        ("header", "region=eu, gpu=a100,zone=b"),
        ("duration", "1h30m"),
        ("duration-days", "7d"),
        ("duration-ms", "1500ms"),
        ("duration-max", "3650d"),
        ("pattern", "ingest-*\ningest-01"),
        ("pattern-question", "node-??-*\nnode-ab-x"),
    ];
    for (name, text) in texts {
        write(dir, name, text.as_bytes())?;
    }
    Ok(())
}

fn follow_reader(dir: &Path) -> std::io::Result<()> {
    let events = [
        JobEvent::Output {
            seq: 1,
            stream: muster_proto::api::OutputStream::Stdout,
            data: "aGVsbG8K".into(),
            at: Some("2026-01-02T03:04:05.678Z".into()),
        },
        JobEvent::Skipped { chunks: 3 },
        JobEvent::Truncated { kept_bytes: 1024 },
    ];
    let mut ndjson = Vec::new();
    for event in &events {
        ndjson.extend_from_slice(&json(event));
        ndjson.push(b'\n');
    }
    // The end event as the server sends it (written out, so a change to the job view does not
    // stop seeds from being made).
    ndjson.extend_from_slice(
        br#"{"type":"end","job":{"id":"0123456789abcdef","state":"succeeded","worker":"ingest-01","exit_code":0,"command":["echo","hi"],"env_keys":[],"selector":"","created_at":"2030-01-01T00:00:00Z","started_at":"2030-01-01T00:00:01Z","finished_at":"2030-01-01T00:00:02Z","reason":null,"timeout_ms":null,"output_bytes":6,"output_truncated":false}}"#,
    );
    ndjson.push(b'\n');
    // [limit: the real one][no chunk sizes: all at once] and [a short limit][chunks of 1, 7, 64].
    let mut whole = vec![0, 0];
    whole.extend_from_slice(&ndjson);
    write(dir, "stream", &whole)?;
    let mut split = vec![200, 3, 1, 7, 64];
    split.extend_from_slice(&ndjson);
    write(dir, "stream-split", &split)?;
    Ok(())
}
