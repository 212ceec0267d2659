//! `/api/v1/jobs`.

use axum::http::StatusCode;
use http_body_util::BodyExt;
use muster_proto::control::ServerMessage;
use serde_json::{Value, json};

use super::Api;
use crate::control::registry::Command;

/// The messages a session was sent (not its close commands).
fn sent(session: &crate::control::registry::Session) -> Vec<ServerMessage> {
    session
        .inbox
        .drain()
        .into_iter()
        .filter_map(|c| match c {
            Command::Send(message) => Some(message),
            Command::Close { .. } | Command::Probe => None,
        })
        .collect()
}

#[tokio::test]
async fn a_job_with_no_worker_for_it_waits_queued_and_can_be_cancelled() {
    let api = Api::new();
    let submitted = api
        .post(
            "/api/v1/jobs",
            json!({
                "command": ["echo", "s3cr3t-argument"],
                "labels": {"gpu": "a100"},
                "env": {"TOKEN": "s3cr3t-value"},
                "timeout": "1m",
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = submitted.body["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted.body["state"], "queued");
    assert_eq!(submitted.body["env_keys"], json!(["TOKEN"]));
    assert_eq!(submitted.body["timeout_ms"], 60_000);
    assert_eq!(submitted.body["worker"], Value::Null);
    assert!(
        !submitted.text.contains("s3cr3t-value"),
        "env values stay hidden"
    );
    // Only the answer to the submission says who could take it: nobody is connected.
    assert_eq!(
        submitted.body["placement"],
        json!({"connected": 0, "matching": 0})
    );

    let shown = api
        .get(&format!("/api/v1/jobs/{id}"))
        .await
        .expect(StatusCode::OK);
    let mut without_placement = submitted.body.clone();
    without_placement
        .as_object_mut()
        .unwrap()
        .remove("placement");
    assert_eq!(shown.body, without_placement);
    let queued = api
        .get("/api/v1/jobs?state=queued")
        .await
        .expect(StatusCode::OK);
    assert_eq!(queued.body.as_array().unwrap().len(), 1);
    let running = api
        .get("/api/v1/jobs?state=running")
        .await
        .expect(StatusCode::OK);
    assert_eq!(running.body, json!([]));

    // Without `follow`, the output is what is stored (nothing yet), then the job as it is.
    let output = api
        .get(&format!("/api/v1/jobs/{id}/output"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(output.content_type, "application/x-ndjson");
    let lines: Vec<Value> = output
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", output.text);
    assert_eq!(lines[0]["type"], "end");
    assert_eq!(lines[0]["job"]["id"], id.as_str());

    let cancelled = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cancelled.body["state"], "cancelled");
    let reply = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .await
        .refused(
            StatusCode::CONFLICT,
            "conflict",
            "has already ended (cancelled)",
        );
    assert!(reply.hint().contains("muster job show"));

    let audit = api
        .get("/api/v1/audit?action=job.")
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit.body[2]["action"], "job.submit");
    assert_eq!(
        audit.body[2]["detail"],
        "runs `echo` on a worker with labels gpu=a100"
    );
    // The cancel and the end it caused, in one transaction (`job.ended` for webhooks).
    assert_eq!(audit.body[1]["action"], "job.end");
    assert_eq!(audit.body[1]["detail"], "cancelled");
    assert_eq!(audit.body[0]["action"], "job.cancel");
    assert!(
        !audit.text.contains("s3cr3t"),
        "the audit names the program only"
    );
}

#[tokio::test]
async fn a_job_for_a_free_worker_starts_at_once_and_a_cancel_reaches_the_worker() {
    let api = Api::new();
    let id = api.worker("w1").await;
    let session = api.connect(&id, "w1", 1);
    let submitted = api
        .post("/api/v1/jobs", json!({"command": ["true"], "worker": "w1"}))
        .await
        .expect(StatusCode::CREATED);
    let job = submitted.body["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted.body["state"], "running");
    assert_eq!(submitted.body["worker"], "w1");
    assert!(matches!(
        sent(&session).as_slice(),
        [ServerMessage::JobStart(start)] if start.id == job
    ));

    let cancelled = api
        .post(&format!("/api/v1/jobs/{job}/cancel"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cancelled.body["state"], "running", "the worker ends it");
    assert_eq!(
        sent(&session),
        [ServerMessage::JobCancel { id: job.clone() }]
    );
}

#[tokio::test]
async fn job_requests_with_bad_input_are_refused_naming_the_rule() {
    let api = Api::new();
    let before = api.everything().await;
    let cases = [
        (
            json!({"command": []}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"command": ["x"], "timeout": "later"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
        ),
        (
            json!({"command": ["x"], "queue_timeout": "-1s"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
        ),
        (
            json!({"command": ["x"], "labels": {"": "y"}}),
            StatusCode::BAD_REQUEST,
            "invalid_label",
        ),
        (
            json!({"command": ["x"], "worker": "No Such"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"command": "echo hi"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"command": ["x"], "worker": "ghost"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (body, status, code) in cases {
        api.post("/api/v1/jobs", body)
            .await
            .refused(status, code, "");
    }
    assert_eq!(api.everything().await, before);
}

#[tokio::test]
async fn job_lookups_refuse_bad_ids_and_unknown_jobs() {
    let api = Api::new();
    let unknown = "0123456789abcdef";
    let before = api.everything().await;
    api.get(&format!("/api/v1/jobs/{unknown}")).await.refused(
        StatusCode::NOT_FOUND,
        "not_found",
        unknown,
    );
    api.get(&format!("/api/v1/jobs/{unknown}/output?follow=true"))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", unknown);
    api.post(&format!("/api/v1/jobs/{unknown}/cancel"), json!({}))
        .await
        .refused(StatusCode::NOT_FOUND, "not_found", unknown);
    for path in ["/api/v1/jobs/not-an-id", "/api/v1/jobs/not-an-id/output"] {
        api.get(path)
            .await
            .refused(StatusCode::BAD_REQUEST, "bad_request", "");
    }
    api.get("/api/v1/jobs?state=sleeping").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown job state `sleeping`",
    );
    api.get("/api/v1/jobs?limit=many").await.refused(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "limit",
    );
    api.get(&format!("/api/v1/jobs/{unknown}/output?after=x"))
        .await
        .refused(StatusCode::BAD_REQUEST, "bad_request", "after");
    assert_eq!(api.everything().await, before);
}

/// A follower that reads nothing while its job writes three times its queue, all of it under the
/// cap: it is skipped ahead while it does not read, and fills the gap from the store once it does,
/// so it gets every chunk, in order, and no `skipped` notice.
#[tokio::test]
async fn a_follower_that_falls_behind_gets_what_the_store_keeps_in_full() {
    use crate::control::session::Inbound;
    use muster_core::job::JobId;
    use muster_proto::control::{JobExit, WorkerMessage, frame};

    let api = Api::new();
    let worker = api.worker("w1").await;
    let session = api.connect(&worker, "w1", 1);
    let job = api
        .post("/api/v1/jobs", json!({"command": ["true"], "worker": "w1"}))
        .await
        .expect(StatusCode::CREATED)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job_id = JobId::parse(&job).unwrap();
    let output = |n: usize| {
        bytes::Bytes::from(frame::encode(
            frame::STDOUT,
            job_id.to_bytes(),
            format!("{n}\n").as_bytes(),
        ))
    };

    let response = api
        .open(&format!("/api/v1/jobs/{job}/output?follow=true"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // The first chunk read back means the follower has subscribed (it does before reading the
    // store); from here on it reads nothing until the job has ended.
    api.app.jobs.output(&session, output(1)).await;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    const CHUNKS: usize = 3 * crate::jobs::live::QUEUE;
    for n in 2..=CHUNKS {
        api.app.jobs.output(&session, output(n)).await;
    }
    let done = WorkerMessage::JobFinished {
        id: job.clone(),
        exit: JobExit::Exited { code: 0 },
    };
    api.app.jobs.message(&session, done).await;
    let rest = tokio::time::timeout(std::time::Duration::from_secs(60), body.collect())
        .await
        .expect("the stream ends with the job")
        .unwrap()
        .to_bytes();

    let text = String::from_utf8([&first[..], &rest[..]].concat()).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "output")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=CHUNKS as u64).collect::<Vec<_>>());
    assert!(
        !events.iter().any(|e| e["type"] == "skipped"),
        "nothing was lost, so nothing is said to be: {text}"
    );
    assert_eq!(events.last().unwrap()["type"], "end");
}
