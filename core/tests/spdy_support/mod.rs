//! Shared helpers for the SPDY tests: transcripts of both directions of a
//! connection, built with our own `FrameWriter` (one zlib context per
//! direction, as spdystream keeps them), and a driver that feeds them to a
//! `SpdyDecoder` in any chunking.
#![allow(dead_code)]

use kubecast_core::exec::{push_coalesced, OwnedExecEvent};
use kubecast_core::handshake::RemoteCommandVersion;
use kubecast_core::spdy::{FrameWriter, SpdyDecoder, SpdyError};
use kubecast_core::{Limits, Side};

/// The byte streams of one connection, in the order the proxy saw them:
/// each segment is what one side sent before the other side spoke.
#[derive(Debug, Default)]
pub struct Transcript {
    pub segments: Vec<(Side, Vec<u8>)>,
    client: FrameWriter,
    upstream: FrameWriter,
}

impl Transcript {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends frames written by `side`'s writer to the transcript.
    pub fn send(&mut self, side: Side, f: impl FnOnce(&mut FrameWriter, &mut Vec<u8>)) {
        let writer = match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        };
        let mut bytes = Vec::new();
        f(writer, &mut bytes);
        match self.segments.last_mut() {
            Some((last, buf)) if *last == side => buf.extend_from_slice(&bytes),
            _ => self.segments.push((side, bytes)),
        }
    }

    /// Client SYN_STREAM with `streamtype`, as client-go creates streams.
    pub fn open(&mut self, id: u32, stream_type: &str) {
        self.send(Side::Client, |w, out| {
            w.syn_stream(out, id, 0, 0, &[("streamtype", stream_type)], false)
                .unwrap()
        });
    }

    /// Upstream SYN_REPLY with zero headers, as spdystream replies.
    pub fn reply(&mut self, id: u32) {
        self.send(Side::Upstream, |w, out| {
            w.syn_reply(out, id, &[], false).unwrap()
        });
    }

    pub fn data(&mut self, side: Side, id: u32, bytes: &[u8], fin: bool) {
        self.send(side, |w, out| w.data(out, id, bytes, fin));
    }

    /// All segments as (side, bytes) pairs.
    pub fn chunks(&self) -> Vec<(Side, &[u8])> {
        self.segments
            .iter()
            .map(|(s, b)| (*s, b.as_slice()))
            .collect()
    }
}

/// Feeds `chunks` in order, then ends both sides; coalesced events and the
/// first error.
pub fn decode(
    version: RemoteCommandVersion,
    limits: &Limits,
    chunks: &[(Side, &[u8])],
) -> (Vec<OwnedExecEvent>, Result<(), SpdyError>) {
    let mut decoder = SpdyDecoder::new(version, limits);
    let mut events = Vec::new();
    for (side, bytes) in chunks {
        if let Err(e) = decoder.decode(*side, bytes, |e| push_coalesced(&mut events, &e)) {
            return (events, Err(e));
        }
    }
    for side in [Side::Client, Side::Upstream] {
        if let Err(e) = decoder.finish(side, |e| push_coalesced(&mut events, &e)) {
            return (events, Err(e));
        }
    }
    (events, Ok(()))
}

/// The same chunks, cut one byte at a time.
pub fn bytewise<'a>(chunks: &[(Side, &'a [u8])]) -> Vec<(Side, &'a [u8])> {
    chunks
        .iter()
        .flat_map(|(side, bytes)| bytes.chunks(1).map(move |b| (*side, b)))
        .collect()
}
