//! One decoder for either protocol, chosen by the handshake.

use super::{ExecEvent, Side};
use crate::handshake::Negotiated;
use crate::spdy::{SpdyDecoder, SpdyError};
use crate::ws::{WsDecoder, WsError};
use crate::Limits;

/// A decode failure: which side sent the offending bytes, and what was wrong.
/// Decoders are sticky: after an error every further call returns it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("SPDY stream from the {side:?} side: {source}")]
    Spdy { side: Side, source: SpdyError },
    #[error("WebSocket stream from the {side:?} side: {source}")]
    WebSocket { side: Side, source: WsError },
}

impl DecodeError {
    /// The side whose bytes could not be decoded.
    pub fn side(&self) -> Side {
        match self {
            DecodeError::Spdy { side, .. } | DecodeError::WebSocket { side, .. } => *side,
        }
    }

    /// The side ended its stream inside a frame (or between a message's
    /// fragments): nothing it sent was malformed, it just stopped. Only
    /// [`ExecDecoder::finish`] reports this.
    pub fn is_cut(&self) -> bool {
        matches!(
            self,
            DecodeError::Spdy {
                source: SpdyError::Truncated { .. },
                ..
            } | DecodeError::WebSocket {
                source: WsError::TruncatedFrame { .. } | WsError::TruncatedMessage,
                ..
            }
        )
    }
}

/// Decodes both directions of an upgraded exec/attach connection into
/// [`ExecEvent`]s, whichever protocol was negotiated.
///
/// Feed each side's bytes in the order they were read; any chunking gives the
/// same (coalesced) events. Call [`ExecDecoder::finish`] when a side reaches
/// end of file.
#[derive(Debug)]
pub enum ExecDecoder {
    Spdy(SpdyDecoder),
    WebSocket(WsDecoder),
}

impl ExecDecoder {
    /// A decoder for the protocol and version the upstream chose.
    pub fn new(negotiated: Negotiated, limits: &Limits) -> Self {
        match negotiated {
            Negotiated::Spdy(version) => ExecDecoder::Spdy(SpdyDecoder::new(version, limits)),
            Negotiated::WebSocket(protocol) => {
                ExecDecoder::WebSocket(WsDecoder::new(protocol, limits))
            }
        }
    }

    /// Decodes bytes sent by `side`, calling `sink` for every event.
    pub fn decode<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        input: &[u8],
        sink: F,
    ) -> Result<(), DecodeError> {
        match self {
            ExecDecoder::Spdy(d) => d
                .decode(side, input, sink)
                .map_err(|source| DecodeError::Spdy { side, source }),
            ExecDecoder::WebSocket(d) => d
                .decode(side, input, sink)
                .map_err(|source| DecodeError::WebSocket { side, source }),
        }
    }

    /// `side` closed its connection. Reports what was pending (e.g. a
    /// v1–v3 error text); a clean end at a frame boundary is not an error,
    /// an end inside a frame is.
    pub fn finish<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        sink: F,
    ) -> Result<(), DecodeError> {
        match self {
            ExecDecoder::Spdy(d) => d
                .finish(side, sink)
                .map_err(|source| DecodeError::Spdy { side, source }),
            ExecDecoder::WebSocket(d) => d
                .finish(side, sink)
                .map_err(|source| DecodeError::WebSocket { side, source }),
        }
    }

    /// How far `side`'s stream is from a boundary where the core may write
    /// a frame of its own towards the peer.
    pub fn frame_remaining(&self, side: Side) -> super::FrameRemaining {
        match self {
            ExecDecoder::Spdy(d) => d.frame_remaining(side),
            ExecDecoder::WebSocket(d) => d.frame_remaining(side),
        }
    }

    /// How many of the bytes already fed from `side` belong to a frame that
    /// has not ended yet. Bytes the core injects towards the peer must not be
    /// written until those bytes' frame is complete, or they would land in
    /// the middle of it.
    pub fn partial_frame_len(&self, side: Side) -> usize {
        match self {
            ExecDecoder::Spdy(d) => d.partial_frame_len(side),
            ExecDecoder::WebSocket(d) => d.partial_frame_len(side),
        }
    }
}
