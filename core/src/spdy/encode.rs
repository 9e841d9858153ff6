//! [`FrameWriter`]: SPDY/3.1 frames, as spdystream writes them.

use super::frame::{
    frame_type, FLAG_FIN, FLAG_SETTINGS_CLEAR, FLAG_UNIDIRECTIONAL, MAX_FRAME_LENGTH, SPDY_VERSION,
    STREAM_ID_MASK,
};
use super::headers::{encode_nv_block, HeaderDeflater};
use super::reader::{Frame, Setting};
use super::SpdyError;

/// Writes SPDY/3.1 frames for one direction of a connection.
///
/// Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) go through the writer's
/// own zlib context, primed with the SPDY/3 dictionary and sync-flushed
/// after each block, so one writer must produce *all* header frames of its
/// direction, in the order they are sent. Frames without headers need no
/// state; they are also available as free functions ([`write_data`], …) for
/// callers that never send headers (the core injecting a Status).
///
/// Every method appends to `out`. Header names are lowercased, and values of
/// a repeated name are joined with NUL into one pair, as SPDY/3 requires.
#[derive(Debug, Default)]
pub struct FrameWriter {
    deflater: HeaderDeflater,
    block: Vec<u8>,
}

/// Appends a control frame header and `payload`.
fn control(out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME_LENGTH {
        return Err(SpdyError::FrameTooLarge {
            length: payload.len(),
            limit: MAX_FRAME_LENGTH,
        });
    }
    out.extend_from_slice(&(0x8000 | SPDY_VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    push_flags_length(out, flags, payload.len());
    out.extend_from_slice(payload);
    Ok(())
}

fn push_flags_length(out: &mut Vec<u8>, flags: u8, length: usize) {
    let length = u32::try_from(length.min(MAX_FRAME_LENGTH)).unwrap_or(0);
    out.extend_from_slice(&((u32::from(flags) << 24) | length).to_be_bytes());
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn two_words(a: u32, b: u32) -> [u8; 8] {
    let [a0, a1, a2, a3] = a.to_be_bytes();
    let [b0, b1, b2, b3] = b.to_be_bytes();
    [a0, a1, a2, a3, b0, b1, b2, b3]
}

/// Appends DATA frames carrying `bytes` on `stream_id`: one frame, or
/// several if `bytes` exceeds the 24-bit length (FIN only on the last).
/// Empty `bytes` gives one empty frame — with `fin`, the usual half-close.
pub fn write_data(out: &mut Vec<u8>, stream_id: u32, bytes: &[u8], fin: bool) {
    let mut chunks = bytes.chunks(MAX_FRAME_LENGTH).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
        push_flags_length(out, fin_flag(fin), 0);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
        push_flags_length(out, fin_flag(fin && last), chunk.len());
        out.extend_from_slice(chunk);
    }
}

/// Appends RST_STREAM (see [`super::rst_status`]).
pub fn write_rst_stream(out: &mut Vec<u8>, stream_id: u32, status: u32) {
    let payload = two_words(stream_id & STREAM_ID_MASK, status);
    let _ = control(out, frame_type::RST_STREAM, 0, &payload);
}

/// Appends PING.
pub fn write_ping(out: &mut Vec<u8>, id: u32) {
    let _ = control(out, frame_type::PING, 0, &id.to_be_bytes());
}

/// Appends GOAWAY (see [`super::goaway_status`]).
pub fn write_goaway(out: &mut Vec<u8>, last_good_stream: u32, status: u32) {
    let payload = two_words(last_good_stream & STREAM_ID_MASK, status);
    let _ = control(out, frame_type::GOAWAY, 0, &payload);
}

/// Appends WINDOW_UPDATE.
pub fn write_window_update(out: &mut Vec<u8>, stream_id: u32, delta: u32) {
    let payload = two_words(stream_id & STREAM_ID_MASK, delta & STREAM_ID_MASK);
    let _ = control(out, frame_type::WINDOW_UPDATE, 0, &payload);
}

/// Appends SETTINGS with `settings` (ids are 24 bits).
pub fn write_settings(
    out: &mut Vec<u8>,
    clear: bool,
    settings: &[Setting],
) -> Result<(), SpdyError> {
    let count = u32::try_from(settings.len()).unwrap_or(u32::MAX);
    let mut payload = Vec::with_capacity(4 + 8 * settings.len());
    payload.extend_from_slice(&count.to_be_bytes());
    for s in settings {
        let word = (u32::from(s.flags) << 24) | (s.id & 0x00FF_FFFF);
        payload.extend_from_slice(&two_words(word, s.value));
    }
    let flags = if clear { FLAG_SETTINGS_CLEAR } else { 0 };
    control(out, frame_type::SETTINGS, flags, &payload)
}

/// Appends a control frame of any type with a raw payload (for types this
/// crate does not model, and for tests).
pub fn write_raw_control(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u8,
    payload: &[u8],
) -> Result<(), SpdyError> {
    control(out, kind, flags, payload)
}

impl FrameWriter {
    /// A writer with a fresh zlib context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compresses `headers` into `self.block`, after `prefix`.
    fn header_frame(
        &mut self,
        out: &mut Vec<u8>,
        kind: u16,
        flags: u8,
        prefix: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), SpdyError> {
        let plain = encode_nv_block(headers);
        self.block.clear();
        self.block.extend_from_slice(prefix);
        self.deflater.compress(&plain, &mut self.block)?;
        control(out, kind, flags, &self.block)
    }

    /// Appends SYN_STREAM. `priority` is 3 bits (0 highest); the slot is 0.
    pub fn syn_stream(
        &mut self,
        out: &mut Vec<u8>,
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        headers: &[(&str, &str)],
        fin: bool,
    ) -> Result<(), SpdyError> {
        let ids = (stream_id, associated_id);
        self.syn_stream_with(out, ids, priority, 0, fin_flag(fin), headers)
    }

    fn syn_stream_with(
        &mut self,
        out: &mut Vec<u8>,
        (stream_id, associated_id): (u32, u32),
        priority: u8,
        slot: u8,
        flags: u8,
        headers: &[(&str, &str)],
    ) -> Result<(), SpdyError> {
        let [s0, s1, s2, s3, a0, a1, a2, a3] =
            two_words(stream_id & STREAM_ID_MASK, associated_id & STREAM_ID_MASK);
        let prefix = [s0, s1, s2, s3, a0, a1, a2, a3, (priority & 0x07) << 5, slot];
        self.header_frame(out, frame_type::SYN_STREAM, flags, &prefix, headers)
    }

    /// Appends SYN_REPLY (spdystream replies with zero headers).
    pub fn syn_reply(
        &mut self,
        out: &mut Vec<u8>,
        stream_id: u32,
        headers: &[(&str, &str)],
        fin: bool,
    ) -> Result<(), SpdyError> {
        let prefix = (stream_id & STREAM_ID_MASK).to_be_bytes();
        self.header_frame(out, frame_type::SYN_REPLY, fin_flag(fin), &prefix, headers)
    }

    /// Appends HEADERS.
    pub fn headers(
        &mut self,
        out: &mut Vec<u8>,
        stream_id: u32,
        headers: &[(&str, &str)],
        fin: bool,
    ) -> Result<(), SpdyError> {
        let prefix = (stream_id & STREAM_ID_MASK).to_be_bytes();
        self.header_frame(out, frame_type::HEADERS, fin_flag(fin), &prefix, headers)
    }

    /// Appends DATA frame(s); see [`write_data`].
    pub fn data(&self, out: &mut Vec<u8>, stream_id: u32, bytes: &[u8], fin: bool) {
        write_data(out, stream_id, bytes, fin);
    }

    /// Appends RST_STREAM; see [`write_rst_stream`].
    pub fn rst_stream(&self, out: &mut Vec<u8>, stream_id: u32, status: u32) {
        write_rst_stream(out, stream_id, status);
    }

    /// Appends SETTINGS; see [`write_settings`].
    pub fn settings(
        &self,
        out: &mut Vec<u8>,
        clear: bool,
        settings: &[Setting],
    ) -> Result<(), SpdyError> {
        write_settings(out, clear, settings)
    }

    /// Appends PING.
    pub fn ping(&self, out: &mut Vec<u8>, id: u32) {
        write_ping(out, id);
    }

    /// Appends GOAWAY.
    pub fn goaway(&self, out: &mut Vec<u8>, last_good_stream: u32, status: u32) {
        write_goaway(out, last_good_stream, status);
    }

    /// Appends WINDOW_UPDATE.
    pub fn window_update(&self, out: &mut Vec<u8>, stream_id: u32, delta: u32) {
        write_window_update(out, stream_id, delta);
    }

    /// Appends any [`Frame`] (the inverse of [`super::FrameReader`]).
    pub fn frame(&mut self, out: &mut Vec<u8>, frame: &Frame) -> Result<(), SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let mut flags = fin_flag(*fin);
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                let ids = (*stream_id, *associated_id);
                self.syn_stream_with(out, ids, *priority, *slot, flags, &headers.pairs())
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => self.syn_reply(out, *stream_id, &headers.pairs(), *fin),
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => self.headers(out, *stream_id, &headers.pairs(), *fin),
            Frame::RstStream { stream_id, status } => {
                write_rst_stream(out, *stream_id, *status);
                Ok(())
            }
            Frame::Settings { clear, settings } => write_settings(out, *clear, settings),
            Frame::Ping { id } => {
                write_ping(out, *id);
                Ok(())
            }
            Frame::GoAway {
                last_good_stream,
                status,
            } => {
                write_goaway(out, *last_good_stream, *status);
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => {
                write_window_update(out, *stream_id, *delta);
                Ok(())
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                write_data(out, *stream_id, data, *fin);
                Ok(())
            }
            Frame::Unknown {
                frame_type,
                flags,
                payload,
            } => write_raw_control(out, *frame_type, *flags, payload),
        }
    }
}
