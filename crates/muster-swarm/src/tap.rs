//! A pass-through around a control-channel socket that notices the server's close frame.
//!
//! `muster_worker::channel::run` maps a close frame to what the worker does next but does not
//! hand the raw code to its caller, and it returns only after the socket is done. The tap sees
//! the frame as it is read, so the benchmark gets both the close code and the instant the worker
//! learned it was cut off — without touching the worker's protocol code.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::Message;

use crate::clock::now_us;
use crate::events::{Event, Sink as Events};

pub struct Tap<S> {
    inner: S,
    name: Arc<str>,
    events: Events,
}

impl<S> Tap<S> {
    pub fn new(inner: S, name: Arc<str>, events: Events) -> Self {
        Self {
            inner,
            name,
            events,
        }
    }
}

impl<S, E> Stream for Tap<S>
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    type Item = Result<Message, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(Message::Close(frame)))) = &polled {
            let (code, reason) = match frame {
                Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                None => (1005, String::new()),
            };
            self.events.emit(Event::CloseFrame {
                w: self.name.to_string(),
                t: now_us(),
                code,
                reason,
            });
        }
        polled
    }
}

impl<S> Sink<Message> for Tap<S>
where
    S: Sink<Message> + Unpin,
{
    type Error = S::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
