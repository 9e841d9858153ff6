//! RFC 6455 §5.2 framing: an incremental frame-header parser and a frame
//! stream that walks any chunking of one direction's bytes frame by frame,
//! enforcing the frame- and message-level rules of §5.4–§5.5.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |   (16 bits if len == 126,     |
//! |N|V|V|V|       |S|             |    64 bits if len == 127)     |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |   ... extended length ...     | Masking key (4 bytes, if MASK) |
//! +-------------------------------+-------------------------------+
//! |                     Payload data ...                          |
//! ```
//!
//! Both the streaming [`super::WsDecoder`] and the owned
//! [`super::MessageReader`] sit on [`FrameStream`], so the rules live in one
//! place. The stream hands payload out as it arrives, still masked, together
//! with its offset in the frame; [`unmask_into`] removes the mask.

use super::WsError;
use crate::Limits;

/// Longest possible frame header: 2 fixed bytes, 8 bytes of extended
/// length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2, §11.8). Reserved opcodes are rejected
/// by the parser, so every parsed frame has one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `0x0`: a later fragment of a data message.
    Continuation,
    /// `0x1`: first frame of a text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: close (control).
    Close,
    /// `0x9`: ping (control).
    Ping,
    /// `0xA`: pong (control).
    Pong,
}

impl Opcode {
    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit value, `None` for the reserved ones.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented, allowed
    /// between the fragments of a data message (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of its message.
    pub fin: bool,
    pub opcode: Opcode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes the header itself took on the wire (2–14).
    pub header_len: usize,
}

/// Total header length implied by the first two bytes.
fn header_len(second: u8) -> usize {
    let ext = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Checks what the first two bytes alone can tell (so a bad header fails as
/// soon as it is seen, not once its 14 bytes have trickled in).
fn check_start(first: u8, second: u8, max_control: usize) -> Result<Opcode, WsError> {
    let rsv = first & 0x70;
    if rsv != 0 {
        return Err(WsError::ReservedBits { bits: rsv >> 4 });
    }
    let bits = first & 0x0F;
    let opcode = Opcode::from_bits(bits).ok_or(WsError::ReservedOpcode(bits))?;
    if opcode.is_control() {
        if first & 0x80 == 0 {
            return Err(WsError::FragmentedControl(bits));
        }
        let len7 = u64::from(second & 0x7F);
        // 126/127 announce an extended length, which is already > 125.
        if len7 > max_control as u64 || len7 >= 126 {
            return Err(WsError::ControlTooLong {
                opcode: bits,
                len: len7,
                max: max_control,
            });
        }
    }
    Ok(opcode)
}

/// Parses a complete header (`bytes.len() == header_len(bytes[1])`).
fn parse_complete(bytes: &[u8], max_control: usize) -> Result<FrameHeader, WsError> {
    let (&first, rest) = bytes
        .split_first()
        .ok_or(WsError::TruncatedFrame { have: 0 })?;
    let (&second, rest) = rest
        .split_first()
        .ok_or(WsError::TruncatedFrame { have: 1 })?;
    let opcode = check_start(first, second, max_control)?;
    let (len, rest) = match second & 0x7F {
        126 => {
            let (ext, rest) = rest
                .split_first_chunk::<2>()
                .ok_or(WsError::TruncatedFrame { have: bytes.len() })?;
            (u64::from(u16::from_be_bytes(*ext)), rest)
        }
        127 => {
            let (ext, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(WsError::TruncatedFrame { have: bytes.len() })?;
            let len = u64::from_be_bytes(*ext);
            if len >> 63 != 0 {
                return Err(WsError::LengthOverflow(len));
            }
            (len, rest)
        }
        short => (u64::from(short), rest),
    };
    let mask = if second & 0x80 != 0 {
        let (key, _) = rest
            .split_first_chunk::<4>()
            .ok_or(WsError::TruncatedFrame { have: bytes.len() })?;
        Some(*key)
    } else {
        None
    };
    Ok(FrameHeader {
        fin: first & 0x80 != 0,
        opcode,
        mask,
        len,
        header_len: bytes.len(),
    })
}

/// Collects the 2–14 header bytes of one frame across any number of reads.
#[derive(Debug, Clone, Default)]
pub struct HeaderReader {
    buf: [u8; MAX_HEADER_LEN],
    have: usize,
}

impl HeaderReader {
    /// Header bytes held so far (0 at a frame boundary).
    pub fn buffered(&self) -> usize {
        self.have
    }

    /// Takes header bytes from the front of `input`. Returns how many bytes
    /// were used and, once the header is complete, the header. Never uses
    /// bytes beyond the header.
    pub fn feed(
        &mut self,
        input: &[u8],
        max_control: usize,
    ) -> Result<(usize, Option<FrameHeader>), WsError> {
        let mut used = 0;
        loop {
            let need = match self.buf.get(..self.have) {
                Some([first, second, ..]) => {
                    check_start(*first, *second, max_control)?;
                    header_len(*second)
                }
                _ => 2,
            };
            if self.have == need {
                let header = parse_complete(self.buf.get(..need).unwrap_or_default(), max_control)?;
                self.have = 0;
                return Ok((used, Some(header)));
            }
            let want = need - self.have;
            let take = input.get(used..).unwrap_or_default();
            let take = take.get(..want).unwrap_or(take);
            if take.is_empty() {
                return Ok((used, None));
            }
            let dst = self
                .buf
                .get_mut(self.have..self.have + take.len())
                .ok_or(WsError::TruncatedFrame { have: self.have })?;
            dst.copy_from_slice(take);
            self.have += take.len();
            used += take.len();
        }
    }
}

/// XORs `bytes` (which start `offset` bytes into a frame's payload) with the
/// masking `key` (§5.3) and appends the result to `out`.
pub fn unmask_into(out: &mut Vec<u8>, bytes: &[u8], key: [u8; 4], offset: u64) {
    let mut key = key;
    key.rotate_left((offset % 4) as usize);
    let mut key8 = [0u8; 8];
    for (d, k) in key8.iter_mut().zip(key.iter().cycle()) {
        *d = *k;
    }
    let k64 = u64::from_ne_bytes(key8);
    out.reserve(bytes.len());
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(chunk) {
            out.extend_from_slice(&(u64::from_ne_bytes(word) ^ k64).to_ne_bytes());
        }
    }
    // The remainder starts at a multiple of 8, so the key phase is unchanged.
    for (b, k) in chunks.remainder().iter().zip(key.iter().cycle()) {
        out.push(b ^ k);
    }
}

/// What [`FrameStream::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A frame header, already checked against the frame and message rules.
    Header(FrameHeader),
    /// Payload bytes of the current frame as they are on the wire (still
    /// masked when the header has a key), starting `offset` bytes into it.
    /// Never empty.
    Payload {
        bytes: &'a [u8],
        mask: Option<[u8; 4]>,
        offset: u64,
    },
    /// The current frame's payload is complete (also sent for empty frames).
    End(FrameHeader),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Payload { header: FrameHeader, offset: u64 },
}

/// One direction's frames, in any chunking.
///
/// Rules enforced (each a typed [`WsError`]): reserved bits and opcodes;
/// control frames must have FIN and at most `max_ws_control_payload` bytes;
/// a continuation needs a message in progress and a new text/binary frame
/// must not start inside one; a data message (all fragments) is at most
/// `max_ws_message` bytes; a 64-bit length must have its top bit clear;
/// no data frame after this direction's close frame. Masking is *not*
/// enforced either way: we observe, the endpoints police each other.
#[derive(Debug, Clone)]
pub struct FrameStream {
    header: HeaderReader,
    state: State,
    /// Bytes of the current, incomplete frame consumed so far.
    frame_consumed: u64,
    /// A fragmented data message is in progress (its last frame had no FIN).
    in_message: bool,
    /// Payload bytes of the current data message, all fragments so far.
    message_len: u64,
    close_seen: bool,
    max_message: u64,
    max_control: usize,
}

impl FrameStream {
    pub fn new(limits: &Limits) -> Self {
        FrameStream {
            header: HeaderReader::default(),
            state: State::Header,
            frame_consumed: 0,
            in_message: false,
            message_len: 0,
            close_seen: false,
            max_message: limits.max_ws_message,
            max_control: limits.max_ws_control_payload,
        }
    }

    /// Bytes consumed that belong to a frame not yet complete.
    pub fn partial_frame_len(&self) -> usize {
        usize::try_from(self.frame_consumed).unwrap_or(usize::MAX)
    }

    /// Whether a data message has begun and its final frame has not ended.
    pub fn in_message(&self) -> bool {
        self.in_message
            || matches!(self.state, State::Payload { header, .. } if !header.opcode.is_control())
    }

    /// How far the stream is from a point where a whole new message may be
    /// written: the end of the current frame, and of its message.
    pub fn remaining(&self) -> crate::exec::FrameRemaining {
        use crate::exec::FrameRemaining;
        match self.state {
            State::Payload { header, offset } => {
                FrameRemaining::Exactly(header.len.saturating_sub(offset))
            }
            // Inside a header, or between fragments: another frame must come.
            State::Header if self.header.buffered() > 0 || self.in_message => {
                FrameRemaining::AtLeast(1)
            }
            State::Header => FrameRemaining::AtBoundary,
        }
    }

    /// Whether a close frame has been seen in this direction.
    pub fn close_seen(&self) -> bool {
        self.close_seen
    }

    fn admit(&mut self, header: &FrameHeader) -> Result<(), WsError> {
        match header.opcode {
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                if self.close_seen {
                    return Err(WsError::DataAfterClose);
                }
                if header.opcode == Opcode::Continuation {
                    if !self.in_message {
                        return Err(WsError::ContinuationWithoutStart);
                    }
                } else if self.in_message {
                    return Err(WsError::NewMessageInFragmented);
                } else {
                    self.message_len = 0;
                }
                let total = self.message_len.saturating_add(header.len);
                if total > self.max_message {
                    return Err(WsError::MessageTooLarge {
                        len: total,
                        max: self.max_message,
                    });
                }
                self.message_len = total;
                self.in_message = !header.fin;
            }
            Opcode::Close => self.close_seen = true,
            Opcode::Ping | Opcode::Pong => {}
        }
        Ok(())
    }

    /// Takes the next piece from the front of `input` (advancing it).
    /// `Ok(None)`: `input` is used up.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<FrameEvent<'a>>, WsError> {
        match self.state {
            State::Header => {
                if input.is_empty() {
                    return Ok(None);
                }
                let (used, header) = self.header.feed(input, self.max_control)?;
                *input = input.get(used..).unwrap_or_default();
                self.frame_consumed += used as u64;
                match header {
                    None => Ok(None),
                    Some(header) => {
                        self.admit(&header)?;
                        self.state = State::Payload { header, offset: 0 };
                        Ok(Some(FrameEvent::Header(header)))
                    }
                }
            }
            State::Payload { header, offset } => {
                let remaining = header.len - offset;
                if remaining == 0 {
                    self.state = State::Header;
                    self.frame_consumed = 0;
                    return Ok(Some(FrameEvent::End(header)));
                }
                if input.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (bytes, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
                *input = rest;
                self.frame_consumed += n as u64;
                self.state = State::Payload {
                    header,
                    offset: offset + n as u64,
                };
                Ok(Some(FrameEvent::Payload {
                    bytes,
                    mask: header.mask,
                    offset,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Result<FrameHeader, WsError> {
        let mut r = HeaderReader::default();
        let (used, h) = r.feed(bytes, 125)?;
        assert_eq!(used, bytes.len());
        Ok(h.expect("complete"))
    }

    #[test]
    fn rfc6455_5_7_headers() {
        // §5.7: single-frame unmasked text "Hello".
        let h = header(&[0x81, 0x05]).unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.len),
            (true, Opcode::Text, None, 5)
        );
        // §5.7: single-frame masked text "Hello".
        let h = header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]).unwrap();
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        // §5.7: 256 bytes binary in a single unmasked frame (16-bit length).
        assert_eq!(header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().len, 256);
        // §5.7: 64 KiB binary in a single unmasked frame (64-bit length).
        let h = header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
        assert_eq!(h.len, 65536);
        assert_eq!(h.header_len, 10);
    }

    #[test]
    fn header_split_at_every_byte() {
        let bytes = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        let mut r = HeaderReader::default();
        for (i, b) in bytes.iter().enumerate() {
            let (used, h) = r.feed(std::slice::from_ref(b), 125).unwrap();
            assert_eq!(used, 1);
            assert_eq!(h.is_some(), i == bytes.len() - 1);
        }
    }

    #[test]
    fn header_does_not_consume_payload() {
        let mut r = HeaderReader::default();
        let (used, h) = r.feed(&[0x81, 0x05, b'H', b'e'], 125).unwrap();
        assert_eq!(used, 2);
        assert!(h.is_some());
    }

    #[test]
    fn bad_headers_fail_on_their_first_two_bytes() {
        let mut r = HeaderReader::default();
        assert_eq!(
            r.feed(&[0xC1, 0x00], 125),
            Err(WsError::ReservedBits { bits: 4 })
        );
        let mut r = HeaderReader::default();
        assert_eq!(r.feed(&[0x83, 0x00], 125), Err(WsError::ReservedOpcode(3)));
        let mut r = HeaderReader::default();
        assert_eq!(
            r.feed(&[0x09, 0x00], 125),
            Err(WsError::FragmentedControl(9))
        );
        let mut r = HeaderReader::default();
        assert!(matches!(
            r.feed(&[0x89, 0x7E], 125),
            Err(WsError::ControlTooLong { .. })
        ));
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_is_rejected() {
        assert_eq!(
            header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(WsError::LengthOverflow(1 << 63))
        );
    }

    #[test]
    fn unmasking_matches_the_rfc_example_at_any_offset() {
        // §5.7: "Hello" masked with 37 fa 21 3d.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for cut in 0..=masked.len() {
            let mut out = Vec::new();
            unmask_into(&mut out, &masked[..cut], key, 0);
            unmask_into(&mut out, &masked[cut..], key, cut as u64);
            assert_eq!(out, b"Hello");
        }
        // Long input exercises the 8-byte path.
        let plain: Vec<u8> = (0..=255u8).collect();
        let mut masked = Vec::new();
        unmask_into(&mut masked, &plain, key, 3);
        let mut back = Vec::new();
        unmask_into(&mut back, &masked, key, 3);
        assert_eq!(back, plain);
    }
}
