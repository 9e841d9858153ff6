//! Helpers shared by the WebSocket decoder tests.
#![allow(dead_code)]

use kubecast_core::exec::{push_coalesced, OwnedExecEvent};
use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{encode_channel_message, encode_frame, Opcode, WsDecoder, WsError};
use kubecast_core::{Limits, Side};

/// RFC 6455 §5.7's masking key, used for every client frame in these tests.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client (kubectl → server) channel message: one masked frame.
pub fn from_client(protocol: WsProtocol, channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, protocol, channel, payload, Some(KEY));
    out
}

/// An upstream (server → kubectl) channel message: one unmasked frame.
pub fn from_upstream(protocol: WsProtocol, channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, protocol, channel, payload, None);
    out
}

/// One frame, masked with [`KEY`] when `masked`.
pub fn frame(opcode: Opcode, fin: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, fin, masked.then_some(KEY), payload);
    out
}

/// A decoder plus the coalesced events it produced.
#[derive(Debug)]
pub struct Run {
    pub decoder: WsDecoder,
    pub events: Vec<OwnedExecEvent>,
}

impl Run {
    pub fn new(protocol: WsProtocol) -> Self {
        Self::with_limits(protocol, &Limits::default())
    }

    pub fn with_limits(protocol: WsProtocol, limits: &Limits) -> Self {
        Run {
            decoder: WsDecoder::new(protocol, limits),
            events: Vec::new(),
        }
    }

    pub fn feed(&mut self, side: Side, bytes: &[u8]) -> Result<(), WsError> {
        let events = &mut self.events;
        self.decoder
            .decode(side, bytes, |e| push_coalesced(events, &e))
    }

    /// Feeds `bytes` one byte at a time.
    pub fn feed_bytewise(&mut self, side: Side, bytes: &[u8]) -> Result<(), WsError> {
        for b in bytes {
            self.feed(side, std::slice::from_ref(b))?;
        }
        Ok(())
    }

    pub fn finish(&mut self, side: Side) -> Result<(), WsError> {
        let events = &mut self.events;
        self.decoder.finish(side, |e| push_coalesced(events, &e))
    }

    /// Takes the events so far.
    pub fn take(&mut self) -> Vec<OwnedExecEvent> {
        std::mem::take(&mut self.events)
    }
}

/// Decodes `steps` whole and one byte at a time; asserts both give the same
/// events and returns them with the first error, if any.
pub fn decode_both_ways(
    protocol: WsProtocol,
    steps: &[(Side, Vec<u8>)],
) -> (Vec<OwnedExecEvent>, Result<(), WsError>) {
    let mut whole = Run::new(protocol);
    let mut bytewise = Run::new(protocol);
    let mut r1 = Ok(());
    let mut r2 = Ok(());
    for (side, bytes) in steps {
        if r1.is_ok() {
            r1 = whole.feed(*side, bytes);
        }
        if r2.is_ok() {
            r2 = bytewise.feed_bytewise(*side, bytes);
        }
    }
    assert_eq!(whole.events, bytewise.events, "chunking changed the events");
    assert_eq!(r1, r2, "chunking changed the outcome");
    (whole.events, r1)
}

pub fn opened(stream: kubecast_core::StreamKind, by: Side) -> OwnedExecEvent {
    OwnedExecEvent::StreamOpened { stream, by }
}

pub fn data(stream: kubecast_core::DataStream, bytes: &[u8]) -> OwnedExecEvent {
    OwnedExecEvent::Data {
        stream,
        bytes: bytes.to_vec(),
    }
}
