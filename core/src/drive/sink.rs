//! Where a driven session's outputs go: the [`SessionSink`] interface both
//! runtime adapters call, the items it receives ([`SinkItem`],
//! [`UploadEvent`]) and its errors ([`SinkError`]).
//!
//! The trait names futures but the core never polls them: the adapters do,
//! on whatever executor they run on. A sink written once works with
//! `kubecast-tokio` and `kubecast-smol` alike.

use crate::session::SessionEvent;
use crate::upload::{AttemptId, AttemptRecord, Protocol, RecorderAddr, UploadFailure};
use bytes::Bytes;
use std::fmt;
use std::future::{ready, Future};
use std::time::Duration;

/// What a recorder upload reports for logs and audit while a recording is
/// driven (`drive_recording`): the core's [`crate::upload::UploadOutput`]s that are facts
/// rather than work for the adapter. Handed to [`SessionSink::upload`] in
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEvent {
    /// An attempt failed; the record says what the uploader does next.
    AttemptFailed(AttemptRecord),
    /// The upload is open: cast bytes flow to `recorder` from now on.
    Started {
        attempt: AttemptId,
        recorder: RecorderAddr,
        protocol: Protocol,
    },
    /// The recorder confirmed the whole recording.
    Completed { bytes: u64 },
    /// The upload failed for good (every attempt is in the failure).
    Failed(UploadFailure),
}

impl fmt::Display for UploadEvent {
    /// One log line's worth, e.g. `recording upload started: #1 http://… (v2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadEvent::AttemptFailed(record) => write!(
                f,
                "recording upload attempt failed: {record} (then {:?})",
                record.then
            ),
            UploadEvent::Started {
                attempt,
                recorder,
                protocol,
            } => write!(
                f,
                "recording upload started: {attempt} {recorder} ({protocol})"
            ),
            UploadEvent::Completed { bytes } => {
                write!(f, "recording upload complete: {bytes} bytes confirmed")
            }
            UploadEvent::Failed(failure) => write!(f, "recording upload failed: {failure}"),
        }
    }
}

/// Why a sink could not take an output. The driver applies
/// [`super::OnSinkError`] to it: keep forwarding (the recording is lost
/// from here on, and the summary says so) or end the session.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing failed (the disk, a socket to the recorder).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The sink did not accept the output within
    /// [`super::DriveOptions::sink_timeout`].
    #[error("the recording sink did not accept output within {0:?}")]
    TimedOut(Duration),
    /// The receiving end is gone (e.g. a channel sink's receiver was dropped).
    #[error("the recording sink is closed")]
    Closed,
    /// Anything else, as text (e.g. a recorder's `{"error": …}` frame).
    #[error("{0}")]
    Other(String),
}

/// One output of a driven session, as a channel sink hands it on (and as
/// the driver passes it to [`SessionSink`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkItem {
    Event(SessionEvent),
    Cast(Bytes),
    Capture(Bytes),
    Upload(UploadEvent),
    /// The last item: [`SessionSink::finish`] was called.
    Finished,
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
/// spawned on a multi-threaded executor.
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
    /// with [`crate::session::SessionConfig::capture`]).
    fn capture(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = bytes;
        ready(Ok(()))
    }

    /// A recorder upload's progress ([`UploadEvent`]: failed attempts, the
    /// start, the outcome), when the session is driven with
    /// `drive_recording`; the cast itself goes to the recorder then, not to
    /// [`SessionSink::cast`].
    fn upload(&mut self, event: UploadEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = event;
        ready(Ok(()))
    }

    /// The session is over: nothing more will be written. Called exactly
    /// once by the driver, whatever the outcome (also after a sink error),
    /// so the sink can complete or mark what it has.
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        ready(Ok(()))
    }
}

/// A sink that takes every output the same way, as one [`SinkItem`] (a
/// channel, a collecting test sink): implement [`ItemSink::send`] and the
/// [`SessionSink`] methods come with it, `finish` as
/// [`SinkItem::Finished`].
pub trait ItemSink {
    fn send(&mut self, item: SinkItem) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<T: ItemSink> SessionSink for T {
    fn event(&mut self, event: SessionEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Event(event))
    }

    fn cast(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Cast(bytes))
    }

    fn capture(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Capture(bytes))
    }

    fn upload(&mut self, event: UploadEvent) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Upload(event))
    }

    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.send(SinkItem::Finished)
    }
}
