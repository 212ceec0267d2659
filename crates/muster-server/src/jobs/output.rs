//! What workers send about their jobs, handed over by their sessions: output frames (numbered,
//! stored up to the per-job cap, passed to live followers) and results (the job's end).

use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::sync::Arc;

use muster_core::job::JobId;
use muster_proto::control::{WorkerMessage, frame};

use super::live::{self, Pace};
use super::{Jobs, LiveEvent};
use crate::control::registry::Session;
use crate::control::session::Inbound;

impl Jobs {
    async fn on_output(&self, session: &Session, frame_bytes: Bytes) {
        let Some((stream, raw_id, payload)) = frame::decode(&frame_bytes) else {
            tracing::debug!(worker = %session.name, "ignoring a malformed output frame");
            return;
        };
        let id = JobId::from_bytes(raw_id);
        if !session.holds(&id) {
            return;
        }
        let data = frame_bytes.slice_ref(payload);
        let Some(chunk) = self.state().record_output(&id, &data, self.output_cap) else {
            return;
        };
        let at = self.clock.now();
        // Past the cap the live stream is the only copy: it waits for followers still reading.
        let pace = if chunk.keep.len() < data.len() {
            Pace::Wait
        } else {
            Pace::Offer
        };
        if !chunk.keep.is_empty() {
            let (job_id, seq, keep) = (id.clone(), chunk.seq, chunk.keep);
            // Awaiting the write is the backpressure: a worker cannot outrun the disk.
            if let Err(e) = self
                .store
                .write(move |tx| tx.append_output(&job_id, seq, stream, &keep, at))
                .await
            {
                tracing::warn!(job = %id, error = %e, "cannot store job output");
            }
        }
        let event = LiveEvent::Output {
            seq: chunk.seq,
            stream,
            data,
            at,
        };
        let followers = self.state().followers(&id);
        live::deliver(followers, event, pace).await;
    }

    async fn on_message(&self, session: &Arc<Session>, message: WorkerMessage) {
        // A saved ticket is the session's business (`control::lifecycle`), never the jobs'.
        let (id, exit) = match message {
            WorkerMessage::JobFinished { id, exit } => (id, exit),
            WorkerMessage::Resume { running, ended } => {
                return self.on_resume(session, running, ended).await;
            }
            WorkerMessage::TicketSaved { .. } => return,
        };
        let Ok(id) = JobId::parse(&id) else { return };
        if !session.release(&id) {
            return;
        }
        let ending = self.ending(&id, exit);
        self.finish(&id, ending).await;
    }
}

impl Inbound for Jobs {
    fn message<'a>(
        &'a self,
        session: &'a Arc<Session>,
        message: WorkerMessage,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.on_message(session, message))
    }

    fn output<'a>(&'a self, session: &'a Arc<Session>, frame: Bytes) -> BoxFuture<'a, ()> {
        Box::pin(self.on_output(session, frame))
    }
}
