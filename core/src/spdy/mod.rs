//! SPDY/3.1 as used by Kubernetes remotecommand (`kubectl exec`/`attach`
//! with `Upgrade: SPDY/3.1`), both directions.
//!
//! - [`SpdyDecoder`]: the passive decoder the proxy runs over both directions
//!   of a connection, producing [`crate::ExecEvent`]s. Payload is streamed
//!   as slices of the caller's input, never buffered.
//! - [`FrameReader`]: a simple reader of owned [`Frame`]s, for test peers
//!   and tools; it shares the frame parser and header decoding with the
//!   decoder.
//! - [`FrameWriter`]: builds frames, with its own zlib context for header
//!   blocks; used by the test upstream, the tests, and by the core to inject
//!   frames (e.g. a Status on the error stream).
//!
//! Layout of frames, header blocks and the stream roles: `docs/protocols.md`
//! (SPDY section), the [SPDY/3.1 draft] and moby/spdystream.
//!
//! [SPDY/3.1 draft]: https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/

mod decoder;
mod dictionary;
mod encode;
mod frame;
mod headers;
mod reader;

pub use decoder::SpdyDecoder;
pub use encode::{
    write_data, write_goaway, write_ping, write_raw_control, write_rst_stream, write_settings,
    write_window_update, FrameWriter,
};
pub use frame::{
    frame_type, frame_type_name, FLAG_FIN, FLAG_SETTINGS_CLEAR, FLAG_UNIDIRECTIONAL,
    FRAME_HEADER_LEN, MAX_FRAME_LENGTH, SPDY_VERSION, STREAM_ID_MASK,
};
pub use reader::{Frame, FrameReader, Headers, Setting};

use crate::exec::ResizeError;

/// RST_STREAM status codes (SPDY/3.1 draft, section 2.6.3).
pub mod rst_status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    /// The normal end of every remotecommand stream.
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes (SPDY/3.1 draft, section 2.6.6).
pub mod goaway_status {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// Why a SPDY byte stream could not be decoded (or a frame not encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    /// A control frame carried a version other than 3.
    #[error("control frame has SPDY version {0}, expected 3")]
    BadVersion(u16),
    /// A control frame longer than `Limits::max_spdy_control_frame` (or, when
    /// encoding, a frame longer than the 24-bit length field allows).
    #[error("frame of {length} bytes exceeds the limit of {limit}")]
    FrameTooLarge { length: usize, limit: usize },
    /// A control frame whose length does not fit its type (RST_STREAM,
    /// GOAWAY and WINDOW_UPDATE are 8 bytes, PING 4, SYN_STREAM at least 10,
    /// SETTINGS exactly 4 + 8 × count, …).
    #[error("{} frame (type {frame_type}) with invalid length {length}", frame_type_name(*frame_type))]
    BadControlLength { frame_type: u16, length: usize },
    /// zlib rejected a header block (corrupt data, wrong dictionary, a block
    /// after the end of the zlib stream).
    #[error("header block zlib error: {0}")]
    Zlib(String),
    /// An inflated header block beyond `Limits::max_header_block`: a zlib
    /// bomb, or simply too many headers.
    #[error("inflated header block exceeds {limit} bytes")]
    HeaderBlockTooLarge { limit: usize },
    /// The inflated name/value block is not well formed.
    #[error("malformed name/value header block: {0}")]
    MalformedHeaderBlock(&'static str),
    /// SYN_STREAM for stream 0.
    #[error("SYN_STREAM with stream id 0")]
    ZeroStreamId,
    /// More SYN_STREAMs than `Limits::max_streams`.
    #[error("more than {limit} streams on one connection")]
    TooManyStreams { limit: usize },
    /// A second SYN_STREAM for an id already in use.
    #[error("stream {0} opened twice")]
    DuplicateStreamId(u32),
    /// The resize stream does not carry terminal sizes.
    #[error("resize stream: {0}")]
    Resize(#[from] ResizeError),
    /// The connection ended inside a frame.
    #[error("connection ended inside a frame ({partial} bytes of it received)")]
    Truncated { partial: usize },
    /// Bytes fed for a side after [`SpdyDecoder::finish`] was called for it.
    #[error("bytes received after end of file")]
    DataAfterEof,
}
