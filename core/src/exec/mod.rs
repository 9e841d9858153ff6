//! The protocol-neutral model of an exec/attach session.
//!
//! The SPDY and WebSocket decoders both translate their frames into
//! [`ExecEvent`]s, so everything above them (the cast writer, audit, policy)
//! never needs to know which protocol kubectl chose.
//!
//! Events borrow their payload from the caller's input buffer (or, where the
//! wire encoding forces a transformation — WebSocket masking, base64 — from a
//! small scratch buffer inside the decoder). A consumer that needs to keep
//! bytes copies them; one that only writes them on (the cast writer) never
//! pays for a copy it does not need.

mod connection;
mod decoder;
mod farewell;
mod resize;
mod status;

pub use connection::{ConnectionDecoder, ConnectionError, ConnectionEvent, PassThrough};
pub use decoder::{DecodeError, ExecDecoder};
pub use farewell::farewell;
pub use resize::{ResizeError, ResizeParser};
pub use status::{ExitStatus, StatusParser};

/// Which peer sent the bytes being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client (`kubectl`), talking to the API server.
    Client,
    /// The upstream (API server / kubelet), talking to the client.
    Upstream,
}

impl Side {
    /// The other peer.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

/// The role of one stream (SPDY) or channel (WebSocket) in remotecommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// Errors and, from v4 on, the final `metav1.Status` with the exit code.
    Error,
    /// The user's input, client to upstream.
    Stdin,
    /// The process's output, upstream to client.
    Stdout,
    /// The process's error output (absent when a tty is allocated).
    Stderr,
    /// Terminal size changes, client to upstream, JSON.
    Resize,
}

impl StreamKind {
    /// The name used by SPDY's `streamtype` header.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Error => "error",
            StreamKind::Stdin => "stdin",
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::Resize => "resize",
        }
    }

    /// Parses a SPDY `streamtype` header value.
    pub fn from_stream_type(value: &[u8]) -> Option<StreamKind> {
        match value {
            b"error" => Some(StreamKind::Error),
            b"stdin" => Some(StreamKind::Stdin),
            b"stdout" => Some(StreamKind::Stdout),
            b"stderr" => Some(StreamKind::Stderr),
            b"resize" => Some(StreamKind::Resize),
            _ => None,
        }
    }

    /// The WebSocket channel number (0–4) of this stream.
    pub fn channel(self) -> u8 {
        match self {
            StreamKind::Stdin => 0,
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
            StreamKind::Error => 3,
            StreamKind::Resize => 4,
        }
    }

    /// The stream behind a WebSocket channel number, if it is one of 0–4.
    pub fn from_channel(channel: u8) -> Option<StreamKind> {
        match channel {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::Error),
            4 => Some(StreamKind::Resize),
            _ => None,
        }
    }
}

/// The three streams that carry terminal bytes (as opposed to JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataStream {
    Stdin,
    Stdout,
    Stderr,
}

impl From<DataStream> for StreamKind {
    fn from(s: DataStream) -> StreamKind {
        match s {
            DataStream::Stdin => StreamKind::Stdin,
            DataStream::Stdout => StreamKind::Stdout,
            DataStream::Stderr => StreamKind::Stderr,
        }
    }
}

/// A terminal size, as carried on the resize stream (`{"Width":…,"Height":…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// How far one side's byte stream is from its next frame boundary — where
/// bytes of our own (a farewell message) may be written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRemaining {
    /// Between frames (and, over WebSocket, between messages).
    AtBoundary,
    /// Exactly this many more bytes end the current frame.
    Exactly(u64),
    /// Inside a frame header, or between the fragments of a WebSocket
    /// message: at least this many more bytes before a boundary.
    AtLeast(u64),
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// A clean half-close by the sender: SPDY FIN, or the WebSocket v5 close
    /// signal `[255, channel]`.
    Fin,
    /// SPDY `RST_STREAM` with its status code (5 = CANCEL is the normal end of
    /// an exec session).
    Reset(u32),
}

/// Why a whole connection ended, as announced on the wire. A TCP close
/// without any of these is reported by the caller, not the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// SPDY `GOAWAY` with its status (0 = OK).
    GoAway { last_good_stream: u32, status: u32 },
    /// A WebSocket close frame with its optional status code and reason.
    WebSocketClose { code: Option<u16>, reason: String },
}

/// One thing that happened in an exec/attach session.
///
/// Data events are *streamed*: a frame may be reported in several pieces as
/// its bytes arrive, so how a stream's bytes are cut into `Data` events
/// depends on how the input was chunked. Everything else — the concatenated
/// bytes of each stream, and the order of all other events relative to them —
/// does not. [`ExecEvent::to_owned`] plus coalescing gives a chunking-invariant
/// view for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent<'a> {
    /// A stream came into being: SPDY `SYN_STREAM` with its `streamtype`, or,
    /// over WebSocket (which has no stream setup), the first message seen on
    /// that channel.
    StreamOpened { stream: StreamKind, by: Side },
    /// Terminal bytes on stdin (from the client) or stdout/stderr (from the
    /// upstream).
    Data { stream: DataStream, bytes: &'a [u8] },
    /// The frame (SPDY) or message (WebSocket) that carried `stream`'s last
    /// `Data` pieces ended. Frame boundaries do not depend on how reads cut
    /// the bytes, so the cast writes one event per frame and stays the same
    /// for any chunking.
    DataEnd { stream: DataStream },
    /// The client's terminal changed size.
    Resize(TerminalSize),
    /// The upstream reported how the command ended (error stream/channel).
    Exit(ExitStatus),
    /// One side finished sending on a stream.
    StreamClosed {
        stream: StreamKind,
        by: Side,
        how: StreamEnd,
    },
    /// One side announced the end of the whole connection.
    ConnectionClosed { by: Side, cause: CloseCause },
}

/// An [`ExecEvent`] that owns its bytes, for tests, logs and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedExecEvent {
    StreamOpened {
        stream: StreamKind,
        by: Side,
    },
    Data {
        stream: DataStream,
        bytes: Vec<u8>,
    },
    DataEnd {
        stream: DataStream,
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
}

impl ExecEvent<'_> {
    /// Copies the payload out of the borrowed buffer.
    pub fn to_owned(&self) -> OwnedExecEvent {
        match self {
            ExecEvent::StreamOpened { stream, by } => OwnedExecEvent::StreamOpened {
                stream: *stream,
                by: *by,
            },
            ExecEvent::Data { stream, bytes } => OwnedExecEvent::Data {
                stream: *stream,
                bytes: bytes.to_vec(),
            },
            ExecEvent::DataEnd { stream } => OwnedExecEvent::DataEnd { stream: *stream },
            ExecEvent::Resize(size) => OwnedExecEvent::Resize(*size),
            ExecEvent::Exit(status) => OwnedExecEvent::Exit(status.clone()),
            ExecEvent::StreamClosed { stream, by, how } => OwnedExecEvent::StreamClosed {
                stream: *stream,
                by: *by,
                how: *how,
            },
            ExecEvent::ConnectionClosed { by, cause } => OwnedExecEvent::ConnectionClosed {
                by: *by,
                cause: cause.clone(),
            },
        }
    }
}

/// Appends `event` to `events`, merging it into the previous event when both
/// are data on the same stream, and dropping empty data and frame ends. The
/// result is each stream's content in order, whatever the chunking and
/// framing — the form tests compare.
pub fn push_coalesced(events: &mut Vec<OwnedExecEvent>, event: &ExecEvent<'_>) {
    if let ExecEvent::DataEnd { .. } = event {
        return;
    }
    if let ExecEvent::Data { stream, bytes } = event {
        if bytes.is_empty() {
            return;
        }
        if let Some(OwnedExecEvent::Data {
            stream: last,
            bytes: buf,
        }) = events.last_mut()
        {
            if last == stream {
                buf.extend_from_slice(bytes);
                return;
            }
        }
    }
    events.push(event.to_owned());
}
