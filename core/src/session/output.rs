//! What a [`super::Session`] hands back to its driver.

use crate::exec::PassThrough;
use crate::handshake::{Negotiated, Resource};
use crate::{CloseCause, ExitStatus, Side, StreamEnd, StreamKind, TerminalSize};
use bytes::Bytes;

/// One output of a session, from [`super::Session::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Something happened (for logs, metrics and audit).
    Event(SessionEvent),
    /// The next bytes of the recording, in order.
    Cast(Bytes),
    /// The session is over ([`super::Session::end_with_message`]): write
    /// `bytes` to the client — frames that tell kubectl why, possibly empty —
    /// and close both connections. When this output follows
    /// `handle_upstream_bytes`, forward only the first `forward` bytes of
    /// that read before `bytes` (the rest would split the message); after any
    /// other input `forward` is 0. Forward nothing else from either side.
    Inject { forward: usize, bytes: Bytes },
    /// The next bytes of the raw capture (only with
    /// [`super::SessionConfig::capture`]): every byte both sides sent, in the
    /// capture format, for byte-exact forensics next to the cast.
    Capture(Bytes),
}

/// What happened in a session. Terminal bytes are never carried here — they
/// go into the cast — only their counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The upgrade request head was parsed.
    Request {
        resource: Resource,
        namespace: Option<String>,
        pod: Option<String>,
        container: Option<String>,
        command: Vec<String>,
        tty: bool,
    },
    /// The upstream switched protocols: recording starts.
    Upgraded(Negotiated),
    /// The connection is not recorded (port-forward, other upgrade, refused).
    PassThrough(PassThrough),
    StreamOpened {
        stream: StreamKind,
        by: Side,
    },
    Resize(TerminalSize),
    Exit(ExitStatus),
    StreamClosed {
        stream: StreamKind,
        by: Side,
        how: StreamEnd,
    },
    ConnectionClosed {
        by: Side,
        cause: CloseCause,
    },
    /// The streams could not be decoded: the recording stops here (the
    /// bytes keep flowing; what to do about it is the policy's call).
    DecodeFailed {
        message: String,
    },
    /// After the exit status, the client ended its stream inside a frame.
    /// Real kubectl does this over SPDY: it exits as soon as it has the
    /// exit status, sometimes between the separate writes of one control
    /// frame. Nothing it was still sending could reach the process, so
    /// this is not a decode failure: the cast ends with the exit as usual.
    ClientCutAfterExit {
        message: String,
    },
    /// The cast is complete; nothing more will be written.
    RecordingFinished(RecordingStats),
}

/// Totals of a finished recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingStats {
    pub stdin_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub cast_bytes: u64,
    /// Invalid UTF-8 sequences replaced by U+FFFD in the cast.
    pub replaced: u64,
    pub exit: Option<ExitStatus>,
}

/// Why a session asked to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A tty session is waiting for the client's first resize before it
    /// writes the cast header.
    FirstResize,
    /// The session is ending and waits for the upstream's current frame to
    /// end so its farewell can be written; past this it closes without one.
    Farewell,
}
