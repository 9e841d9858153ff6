//! Where a driven session's outputs go.

use bytes::Bytes;
use kubecast_core::session::SessionEvent;
use std::future::{ready, Future};
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a sink could not take an output. The driver applies
/// [`crate::OnSinkError`] to it: keep forwarding (the recording is lost from
/// here on, and the summary says so) or end the session.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed (the disk, a socket to the recorder).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The sink did not accept the output within
    /// [`crate::DriveOptions::sink_timeout`].
    #[error("the recording sink did not accept output within {0:?}")]
    TimedOut(Duration),
    /// The receiving end is gone (e.g. a [`ChannelSink`]'s receiver was dropped).
    #[error("the recording sink is closed")]
    Closed,
    /// Anything else, as text (e.g. a recorder's `{"error": …}` frame).
    #[error("{0}")]
    Other(String),
}

/// The consumer of a session's outputs: the cast (to a file or a recorder),
/// the optional raw capture, and the events (logs, metrics, audit).
///
/// Every method returns a future the driver awaits **before** it forwards
/// the bytes that produced the output, so a sink that is slow to accept
/// (a recorder whose acks lag) holds the session back instead of being
/// buffered without bound, and a sink that fails can end the session before
/// anything unrecorded reaches the other side. Calls arrive in output order.
///
/// Only [`SessionSink::cast`] is required; the others default to accepting
/// and dropping. The futures must be `Send` so a driven session can be
/// spawned on a multi-threaded runtime.
pub trait SessionSink {
    /// Something happened in the session (never terminal bytes, only facts
    /// and counts).
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = event;
        ready(Ok(()))
    }

    /// The next bytes of the asciicast, in order.
    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The next bytes of the raw capture (only when the session was built
    /// with [`kubecast_core::session::SessionConfig::capture`]).
    fn capture(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = bytes;
        ready(Ok(()))
    }

    /// The session is over: nothing more will be written. Called exactly
    /// once by [`crate::drive`], whatever the outcome (also after a sink
    /// error), so the sink can complete or mark what it has.
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        ready(Ok(()))
    }
}

/// One output handed to a [`ChannelSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkItem {
    Event(SessionEvent),
    Cast(Bytes),
    Capture(Bytes),
    /// The last item: [`SessionSink::finish`] was called.
    Finished,
}

/// A sink that sends every output into a bounded channel. The bound is the
/// back-pressure: when the receiver falls `capacity` items behind, the
/// session stops forwarding until it catches up. A dropped receiver is
/// [`SinkError::Closed`].
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<SinkItem>,
}

impl ChannelSink {
    /// A sink and the receiver of its items; `capacity` is at least 1.
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<SinkItem>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelSink { tx }, rx)
    }

    async fn send(&self, item: SinkItem) -> Result<(), SinkError> {
        self.tx.send(item).await.map_err(|_| SinkError::Closed)
    }
}

impl SessionSink for ChannelSink {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Event(event))
    }

    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Cast(bytes))
    }

    fn capture(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Capture(bytes))
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Finished)
    }
}
