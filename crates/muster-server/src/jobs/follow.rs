//! Streaming a job's output to a client: what is stored, then (with `follow`) what arrives live,
//! then the job as it ended. Newline-delimited JSON, one [`JobEvent`] per line.

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use muster_core::Timestamp;
use muster_core::job::JobId;
use muster_proto::api::JobEvent;
use muster_proto::control::frame;
use tokio::sync::mpsc;

use crate::jobs::LiveEvent;
use crate::jobs::live::Subscription;
use crate::state::AppState;
use crate::views;

/// Stored chunks read per query.
const PAGE: u32 = 256;
/// How often to look for news of a job another replica runs.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

fn line(event: &JobEvent) -> Bytes {
    let mut text = serde_json::to_vec(event).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn output_line(seq: u64, stream: u8, data: &[u8], at: Option<Timestamp>) -> Bytes {
    line(&JobEvent::Output {
        seq,
        stream: frame::stream(stream),
        data: STANDARD.encode(data),
        at: at.map(|t| t.to_rfc3339()),
    })
}

/// The response body. The producer stops when the client goes away (its sends fail).
pub fn body(app: AppState, id: JobId, after: u64, follow: bool) -> Body {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if let Err(e) = produce(&app, &id, after, follow, &tx).await {
            tracing::debug!(job = %id, "output stream ended early: {e}");
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|item| item.map(Ok::<Bytes, std::convert::Infallible>))
    });
    Body::from_stream(stream)
}

async fn produce(
    app: &AppState,
    id: &JobId,
    after: u64,
    follow: bool,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), String> {
    let send =
        |bytes: Bytes| async move { tx.send(bytes).await.map_err(|_| "client gone".to_owned()) };
    // Subscribe before reading what is stored, so nothing falls between the two.
    let mut live = if follow { app.jobs.subscribe(id) } else { None };
    let mut last = after;
    let job = loop {
        send_stored(app, id, &mut last, &send).await?;
        let key = id.clone();
        let job = app
            .store
            .read(move |t| t.get_job(&key))
            .await
            .map_err(|e| e.to_string())?;
        let Some(job) = job else { return Ok(()) };
        if !follow || job.state.is_terminal() {
            // Whatever was stored between our last read and the end.
            send_stored(app, id, &mut last, &send).await?;
            break job;
        }
        match live.as_mut() {
            // This replica runs (or queues) the job: its output arrives live.
            Some(receiver) => {
                follow_live(app, id, receiver, &mut last, &send).await?;
                live = None;
            }
            // Another replica runs it: what it stores is all this one can see.
            None => tokio::time::sleep(POLL).await,
        }
    };
    if job.truncated {
        send(line(&JobEvent::Truncated {
            kept_bytes: job.output_bytes.min(app.jobs.output_cap()),
        }))
        .await?;
    }
    send(line(&JobEvent::End {
        job: Box::new(views::job(&job)),
    }))
    .await?;
    Ok(())
}

/// Sends stored output after `last`, page by page.
async fn send_stored<F, Fut>(
    app: &AppState,
    id: &JobId,
    last: &mut u64,
    send: &F,
) -> Result<(), String>
where
    F: Fn(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        let (job, after) = (id.clone(), *last);
        let chunks = app
            .store
            .read(move |t| t.read_timed_output(&job, after, PAGE))
            .await
            .map_err(|e| e.to_string())?;
        let full_page = chunks.len() == PAGE as usize;
        for timed in chunks {
            let chunk = timed.chunk;
            *last = chunk.seq;
            send(output_line(chunk.seq, chunk.stream, &chunk.data, timed.at)).await?;
        }
        if !full_page {
            return Ok(());
        }
    }
}

/// Sends the live output until the job ends here. A gap in the numbers means this follower fell
/// behind and was skipped ahead (`live.rs`): what the store kept of the gap is sent first, and a
/// notice counts the rest.
async fn follow_live<F, Fut>(
    app: &AppState,
    id: &JobId,
    subscription: &mut Subscription,
    last: &mut u64,
    send: &F,
) -> Result<(), String>
where
    F: Fn(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    // Chunks before this one went by before this follower subscribed: never missed.
    let missable_after = subscription.first_seq.saturating_sub(1);
    while let Some(event) = subscription.recv().await {
        let LiveEvent::Output {
            seq,
            stream,
            data,
            at,
        } = event
        else {
            return Ok(());
        };
        if seq > *last + 1 {
            send_stored(app, id, last, send).await?;
            let missed = seq.saturating_sub(1 + (*last).max(missable_after));
            if missed > 0 {
                send(line(&JobEvent::Skipped { chunks: missed })).await?;
            }
        }
        if seq > *last {
            *last = seq;
            send(output_line(seq, stream, &data, Some(at))).await?;
        }
    }
    Ok(())
}
