//! WebSocket (RFC 6455) and the Kubernetes channel protocols on top of it.
//!
//! Layers, bottom up:
//!
//! - [`frame`]: the frame header (§5.2), masking (§5.3), and a
//!   [`frame::FrameStream`] that walks one direction's bytes in any chunking
//!   and enforces the framing rules (§5.4 fragmentation, §5.5 control
//!   frames, our size bounds).
//! - [`base64`]: the streaming codec of the `base64.channel.k8s.io` family.
//! - [`WsDecoder`]: both directions of an exec/attach connection turned into
//!   [`crate::ExecEvent`]s — channel byte (or digit), stdin/stdout/stderr
//!   streamed as they arrive, resize and error channels parsed, the v5 close
//!   signal, close frames.
//! - [`MessageReader`]: whole, owned messages, for code that *is* an
//!   endpoint (the test upstream).
//! - encoders ([`encode_frame`], [`encode_channel_message`], …): the bytes an
//!   endpoint writes, for the test upstream and for messages the core injects.
//!
//! See `docs/protocols.md` ("WebSocket") for the wire formats and the
//! choices made where the specifications and the implementations differ.

pub mod base64;
mod decoder;
mod encode;
pub mod frame;
mod reader;

pub use decoder::WsDecoder;
pub use encode::{
    encode_channel_message, encode_close, encode_close_signal, encode_frame, encode_frame_header,
    encode_ping, encode_pong, CLOSE_SIGNAL_CHANNEL,
};
pub use frame::Opcode;
pub use reader::{decode_channel_message, Message, MessageKind, MessageReader};

use crate::exec::ResizeError;
use base64::Base64Error;

/// Why one direction's WebSocket bytes cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1–3 set, but no extension was negotiated (Kubernetes negotiates
    /// none, in particular no permessage-deflate).
    #[error("reserved bits {bits:#05b} set in a frame header (no extension was negotiated)")]
    ReservedBits { bits: u8 },
    /// Opcodes 0x3–0x7 and 0xB–0xF are reserved (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A close/ping/pong frame without FIN (§5.5).
    #[error("control frame with opcode {0:#x} is fragmented")]
    FragmentedControl(u8),
    /// A control frame longer than `Limits::max_ws_control_payload` (§5.5: 125).
    #[error("control frame with opcode {opcode:#x} announces {len} bytes, more than {max}")]
    ControlTooLong { opcode: u8, len: u64, max: usize },
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("64-bit frame length {0:#x} has its most significant bit set")]
    LengthOverflow(u64),
    /// A continuation frame with no fragmented message in progress (§5.4).
    #[error("continuation frame without a message to continue")]
    ContinuationWithoutStart,
    /// A text/binary frame while a fragmented message is unfinished (§5.4).
    #[error("new data message started inside a fragmented message")]
    NewMessageInFragmented,
    /// A data message (all fragments together) above `Limits::max_ws_message`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: u64, max: u64 },
    /// A base64 protocol's payload is not valid base64.
    #[error("bad base64 payload: {0}")]
    Base64(#[from] Base64Error),
    /// A base64 protocol's message does not start with an ASCII digit.
    #[error("base64 channel protocols need an ASCII digit as channel, got {0:#04x}")]
    BadChannelDigit(u8),
    /// A v5 close signal (channel 255) whose payload is not exactly one byte.
    #[error("v5 close signal must carry exactly one channel byte, got {len}")]
    BadCloseSignal { len: u64 },
    /// A close frame whose body is a single byte (§5.5.1: 0, or 2 or more).
    #[error("close frame body of one byte (a status code needs two)")]
    CloseBodyTooShort,
    /// A text/binary/continuation frame after this side's close frame (§5.5.1).
    #[error("data frame after the close frame")]
    DataAfterClose,
    /// End of input inside a frame: `have` bytes of it had arrived.
    #[error("connection ended inside a frame ({have} bytes of it received)")]
    TruncatedFrame { have: usize },
    /// End of input between the fragments of a message.
    #[error("connection ended inside a fragmented message")]
    TruncatedMessage,
    /// The resize channel carried something that is not a terminal size.
    #[error("resize channel: {0}")]
    Resize(#[from] ResizeError),
}
