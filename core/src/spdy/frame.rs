//! SPDY/3.1 frame headers, the incremental frame parser, and the decoding of
//! control-frame payloads.
//!
//! Every frame starts with 8 bytes (SPDY/3.1 draft, section 2.2):
//!
//! ```text
//! control: |1| version (15) | type (16) |  flags (8) | length (24) |
//! data:    |0|      stream id (31)      |  flags (8) | length (24) |
//! ```
//!
//! [`FrameParser`] is fed arbitrary chunks of one direction's byte stream. It
//! buffers a control frame whole (bounded by `Limits::max_spdy_control_frame`)
//! and hands out a data frame's payload as ranges of the caller's input as
//! they arrive, so payload is never copied. The same parser serves the
//! decoder ([`super::SpdyDecoder`]) and the owned [`super::FrameReader`].

use std::ops::Range;

use super::headers::{HeaderInflater, NvBlock};
use super::SpdyError;

/// The only SPDY version kubectl and the kubelet speak.
pub const SPDY_VERSION: u16 = 3;
/// Length of every frame header.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a 24-bit length field can describe.
pub const MAX_FRAME_LENGTH: usize = 0x00FF_FFFF;
/// Stream ids are 31 bits; the top bit of the word is reserved.
pub const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;

/// `FLAG_FIN`: the sender's last frame on the stream (data, SYN_STREAM,
/// SYN_REPLY, HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// `FLAG_SETTINGS_CLEAR_SETTINGS` on SETTINGS.
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

/// Control frame type numbers (SPDY/3.1 draft, section 2.6).
pub mod frame_type {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// The name of a control frame type, for messages.
pub fn frame_type_name(frame_type: u16) -> &'static str {
    match frame_type {
        frame_type::SYN_STREAM => "SYN_STREAM",
        frame_type::SYN_REPLY => "SYN_REPLY",
        frame_type::RST_STREAM => "RST_STREAM",
        frame_type::SETTINGS => "SETTINGS",
        frame_type::PING => "PING",
        frame_type::GOAWAY => "GOAWAY",
        frame_type::HEADERS => "HEADERS",
        frame_type::WINDOW_UPDATE => "WINDOW_UPDATE",
        _ => "unknown control",
    }
}

/// A decoded control frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlHeader {
    pub frame_type: u16,
    pub flags: u8,
    pub length: usize,
}

/// A decoded data frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataHeader {
    pub stream_id: u32,
    pub flags: u8,
    pub length: usize,
}

impl DataHeader {
    pub fn fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at.saturating_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Frame header words, read from exactly 8 bytes.
enum Header {
    Control(ControlHeader),
    Data(DataHeader),
}

fn decode_header(head: &[u8; FRAME_HEADER_LEN], max_control: usize) -> Result<Header, SpdyError> {
    let word0 = be32(head, 0);
    let word1 = be32(head, 4);
    let flags = (word1 >> 24) as u8;
    let length = (word1 & 0x00FF_FFFF) as usize;
    if word0 & 0x8000_0000 == 0 {
        return Ok(Header::Data(DataHeader {
            stream_id: word0 & STREAM_ID_MASK,
            flags,
            length,
        }));
    }
    let version = ((word0 >> 16) & 0x7FFF) as u16;
    if version != SPDY_VERSION {
        return Err(SpdyError::BadVersion(version));
    }
    let frame_type = (word0 & 0xFFFF) as u16;
    if length > max_control {
        return Err(SpdyError::FrameTooLarge {
            length,
            limit: max_control,
        });
    }
    // Fixed sizes and minimums from the SPDY/3.1 draft, section 2.6.
    let ok = match frame_type {
        frame_type::SYN_STREAM => length >= 10,
        frame_type::SYN_REPLY | frame_type::HEADERS | frame_type::SETTINGS => length >= 4,
        frame_type::RST_STREAM | frame_type::GOAWAY | frame_type::WINDOW_UPDATE => length == 8,
        frame_type::PING => length == 4,
        _ => true,
    };
    if !ok {
        return Err(SpdyError::BadControlLength { frame_type, length });
    }
    Ok(Header::Control(ControlHeader {
        frame_type,
        flags,
        length,
    }))
}

/// Where a complete control frame's payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Whole inside the input just passed in, at this range.
    Input(Range<usize>),
    /// Assembled across calls: see [`FrameParser::buffered`].
    Buffered,
}

/// One step of parsing: a complete control frame, or a piece of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Control {
        header: ControlHeader,
        payload: Payload,
    },
    /// A piece of a data frame's payload (`range` of the input, possibly
    /// empty); `end` marks the frame's last piece.
    Data {
        header: DataHeader,
        range: Range<usize>,
        end: bool,
    },
}

#[derive(Debug)]
enum State {
    Header,
    Control(ControlHeader),
    Data {
        header: DataHeader,
        remaining: usize,
    },
}

/// The incremental frame parser of one direction.
#[derive(Debug)]
pub(crate) struct FrameParser {
    max_control: usize,
    head: [u8; FRAME_HEADER_LEN],
    head_len: usize,
    state: State,
    control: Vec<u8>,
}

impl FrameParser {
    pub fn new(max_control: usize) -> Self {
        FrameParser {
            max_control,
            head: [0; FRAME_HEADER_LEN],
            head_len: 0,
            state: State::Header,
            control: Vec::new(),
        }
    }

    /// The payload of the control frame last returned as
    /// [`Payload::Buffered`]; valid until the next call to [`Self::next`].
    pub fn buffered(&self) -> &[u8] {
        &self.control
    }

    /// Bytes consumed that belong to a frame not yet complete.
    pub fn partial_len(&self) -> usize {
        match &self.state {
            State::Header => self.head_len,
            State::Control(_) => FRAME_HEADER_LEN + self.control.len(),
            State::Data { header, remaining } => {
                FRAME_HEADER_LEN + header.length.saturating_sub(*remaining)
            }
        }
    }

    /// How far the stream is from the end of the current frame.
    pub fn remaining(&self) -> crate::exec::FrameRemaining {
        use crate::exec::FrameRemaining;
        match &self.state {
            State::Header if self.head_len == 0 => FrameRemaining::AtBoundary,
            State::Header => FrameRemaining::AtLeast((FRAME_HEADER_LEN - self.head_len) as u64),
            State::Control(header) => {
                FrameRemaining::Exactly(header.length.saturating_sub(self.control.len()) as u64)
            }
            State::Data { remaining, .. } => FrameRemaining::Exactly(*remaining as u64),
        }
    }

    /// Parses on from `input[*pos..]`, advancing `pos`. Returns `None` once
    /// the input is used up without completing another step.
    pub fn next(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Step>, SpdyError> {
        loop {
            let rest = input.get(*pos..).unwrap_or_default();
            match &mut self.state {
                State::Header => {
                    let want = FRAME_HEADER_LEN.saturating_sub(self.head_len);
                    let take = want.min(rest.len());
                    if let (Some(dst), Some(src)) = (
                        self.head.get_mut(self.head_len..self.head_len + take),
                        rest.get(..take),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    self.head_len += take;
                    *pos += take;
                    if self.head_len < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    self.head_len = 0;
                    match decode_header(&self.head, self.max_control)? {
                        Header::Control(header) => {
                            let after = input.get(*pos..).unwrap_or_default();
                            if after.len() >= header.length {
                                let range = *pos..*pos + header.length;
                                *pos += header.length;
                                return Ok(Some(Step::Control {
                                    header,
                                    payload: Payload::Input(range),
                                }));
                            }
                            self.control.clear();
                            self.state = State::Control(header);
                        }
                        Header::Data(header) => {
                            if header.length == 0 {
                                return Ok(Some(Step::Data {
                                    header,
                                    range: *pos..*pos,
                                    end: true,
                                }));
                            }
                            self.state = State::Data {
                                header,
                                remaining: header.length,
                            };
                        }
                    }
                }
                State::Control(header) => {
                    let header = *header;
                    let want = header.length.saturating_sub(self.control.len());
                    let take = want.min(rest.len());
                    self.control
                        .extend_from_slice(rest.get(..take).unwrap_or_default());
                    *pos += take;
                    if take < want {
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(Step::Control {
                        header,
                        payload: Payload::Buffered,
                    }));
                }
                State::Data { header, remaining } => {
                    let header = *header;
                    let take = (*remaining).min(rest.len());
                    if take == 0 {
                        return Ok(None);
                    }
                    *remaining -= take;
                    let end = *remaining == 0;
                    let range = *pos..*pos + take;
                    *pos += take;
                    if end {
                        self.state = State::Header;
                    }
                    return Ok(Some(Step::Data { header, range, end }));
                }
            }
        }
    }
}

/// A control frame with its payload decoded and validated. Header blocks
/// are already inflated (and so the direction's zlib context advanced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control<'a> {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: NvBlock<'a>,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: NvBlock<'a>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// `count` entries of 8 bytes: flags (8), id (24), value (32).
        entries: &'a [u8],
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: NvBlock<'a>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A type SPDY/3.1 does not define (e.g. SPDY/3's CREDENTIAL): ignored,
    /// as the draft asks (section 2.2.1).
    Unknown {
        frame_type: u16,
        flags: u8,
        payload: &'a [u8],
    },
}

/// Decodes one complete control frame. `scratch` receives the inflated
/// header block (at most `max_header_block` bytes), which the result borrows.
pub(crate) fn decode_control<'a>(
    header: ControlHeader,
    payload: &'a [u8],
    inflater: &mut HeaderInflater,
    scratch: &'a mut Vec<u8>,
    max_header_block: usize,
) -> Result<Control<'a>, SpdyError> {
    let flags = header.flags;
    let id_at = |at: usize| be32(payload, at) & STREAM_ID_MASK;
    // Every header block is inflated, in order, even when nobody cares
    // about it: the zlib context is shared by the whole direction.
    let block_at = match header.frame_type {
        frame_type::SYN_STREAM => Some(10),
        frame_type::SYN_REPLY | frame_type::HEADERS => Some(4),
        _ => None,
    };
    let headers = match block_at {
        Some(at) => {
            let compressed = payload.get(at..).unwrap_or_default();
            inflater.inflate(compressed, max_header_block, scratch)?;
            let inflated: &'a [u8] = scratch.as_slice();
            NvBlock::parse(inflated)?
        }
        None => NvBlock::default(),
    };
    Ok(match header.frame_type {
        frame_type::SYN_STREAM => {
            let stream_id = id_at(0);
            if stream_id == 0 {
                return Err(SpdyError::ZeroStreamId);
            }
            Control::SynStream {
                stream_id,
                associated_id: id_at(4),
                priority: payload.get(8).copied().unwrap_or(0) >> 5,
                slot: payload.get(9).copied().unwrap_or(0),
                flags,
                headers,
            }
        }
        frame_type::SYN_REPLY => Control::SynReply {
            stream_id: id_at(0),
            flags,
            headers,
        },
        frame_type::HEADERS => Control::Headers {
            stream_id: id_at(0),
            flags,
            headers,
        },
        frame_type::RST_STREAM => Control::RstStream {
            stream_id: id_at(0),
            status: be32(payload, 4),
        },
        frame_type::SETTINGS => {
            let count = be32(payload, 0) as usize;
            let entries = payload.get(4..).unwrap_or_default();
            if count.checked_mul(8) != Some(entries.len()) {
                return Err(SpdyError::BadControlLength {
                    frame_type: header.frame_type,
                    length: header.length,
                });
            }
            Control::Settings { flags, entries }
        }
        frame_type::PING => Control::Ping {
            id: be32(payload, 0),
        },
        frame_type::GOAWAY => Control::GoAway {
            last_good_stream: id_at(0),
            status: be32(payload, 4),
        },
        frame_type::WINDOW_UPDATE => Control::WindowUpdate {
            stream_id: id_at(0),
            delta: be32(payload, 4) & STREAM_ID_MASK,
        },
        frame_type => Control::Unknown {
            frame_type,
            flags,
            payload,
        },
    })
}

/// Iterates the `(flags, id, value)` entries of a validated SETTINGS body.
pub(crate) fn settings_entries(entries: &[u8]) -> impl Iterator<Item = (u8, u32, u32)> + '_ {
    entries.chunks_exact(8).map(|e| {
        let word = be32(e, 0);
        ((word >> 24) as u8, word & 0x00FF_FFFF, be32(e, 4))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(parser: &mut FrameParser, input: &[u8]) -> Vec<Step> {
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some(step) = parser.next(input, &mut pos).unwrap() {
            out.push(step);
        }
        assert_eq!(pos, input.len());
        out
    }

    // A PING (draft 2.6.5): control bit, version 3, type 6, flags 0, length 4, id 1.
    const PING: [u8; 12] = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
    // A data frame (draft 2.2.2) on stream 3, FIN, 2 bytes "hi".
    const DATA: [u8; 10] = [0, 0, 0, 3, 0x01, 0, 0, 2, b'h', b'i'];

    #[test]
    fn a_complete_control_frame_is_borrowed_from_the_input() {
        let mut p = FrameParser::new(1024);
        let got = steps(&mut p, &PING);
        assert_eq!(
            got,
            vec![Step::Control {
                header: ControlHeader {
                    frame_type: frame_type::PING,
                    flags: 0,
                    length: 4
                },
                payload: Payload::Input(8..12)
            }]
        );
        assert_eq!(p.partial_len(), 0);
    }

    #[test]
    fn a_split_control_frame_is_buffered_and_counted_as_partial() {
        for cut in 1..PING.len() {
            let mut p = FrameParser::new(1024);
            assert!(steps(&mut p, &PING[..cut]).is_empty());
            assert_eq!(p.partial_len(), cut);
            let got = steps(&mut p, &PING[cut..]);
            assert_eq!(got.len(), 1);
            assert!(matches!(&got[0], Step::Control { .. }));
            if cut < 8 {
                // The header completed in the second chunk with the payload.
                assert!(matches!(
                    &got[0],
                    Step::Control {
                        payload: Payload::Input(_),
                        ..
                    }
                ));
            } else {
                assert!(matches!(
                    &got[0],
                    Step::Control {
                        payload: Payload::Buffered,
                        ..
                    }
                ));
                assert_eq!(p.buffered(), &PING[8..]);
            }
            assert_eq!(p.partial_len(), 0);
        }
    }

    #[test]
    fn data_is_streamed_in_pieces() {
        let mut p = FrameParser::new(1024);
        assert!(steps(&mut p, &DATA[..8]).is_empty());
        assert_eq!(p.partial_len(), 8);
        let got = steps(&mut p, &DATA[8..9]);
        assert!(matches!(&got[..], [Step::Data { range, end: false, .. }] if *range == (0..1)));
        assert_eq!(p.partial_len(), 9);
        let got = steps(&mut p, &DATA[9..]);
        assert!(matches!(&got[..], [Step::Data { range, end: true, header }]
            if *range == (0..1) && header.stream_id == 3 && header.fin()));
        assert_eq!(p.partial_len(), 0);
    }

    #[test]
    fn the_reserved_bit_of_a_data_frame_stream_id_is_masked() {
        // Stream ids are 31 bits; data frames always have bit 31 clear, so
        // the mask matters for ids carried in control payloads, but an id
        // of 0x7fffffff must survive intact.
        let frame = [0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
        let mut p = FrameParser::new(1024);
        let got = steps(&mut p, &frame);
        assert!(
            matches!(&got[..], [Step::Data { header, end: true, .. }] if header.stream_id == 0x7FFF_FFFF)
        );
    }

    #[test]
    fn header_checks() {
        let mut p = FrameParser::new(16);
        let mut pos = 0;
        // Version 2 control frame.
        let v2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4];
        assert_eq!(p.next(&v2, &mut pos), Err(SpdyError::BadVersion(2)));
        // A SETTINGS frame longer than the limit.
        let big = [0x80, 0x03, 0x00, 0x04, 0, 0, 0, 17];
        let mut p = FrameParser::new(16);
        pos = 0;
        assert_eq!(
            p.next(&big, &mut pos),
            Err(SpdyError::FrameTooLarge {
                length: 17,
                limit: 16
            })
        );
        // RST_STREAM must be 8 bytes long.
        let rst = [0x80, 0x03, 0x00, 0x03, 0, 0, 0, 7];
        let mut p = FrameParser::new(16);
        pos = 0;
        assert_eq!(
            p.next(&rst, &mut pos),
            Err(SpdyError::BadControlLength {
                frame_type: 3,
                length: 7
            })
        );
    }
}
