//! Whole, owned messages, for code that is a WebSocket endpoint (the test
//! upstream reading kubectl's frames). Same frame layer and rules as
//! [`super::WsDecoder`]; payloads are unmasked and fragments reassembled.

use super::base64::Base64Decoder;
use super::frame::{unmask_into, FrameEvent, FrameStream, Opcode};
use super::WsError;
use crate::handshake::WsProtocol;
use crate::Limits;

/// What kind of message a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

/// One complete message: a data message with all its fragments joined, or a
/// control frame. The payload is unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub payload: Vec<u8>,
}

impl Message {
    /// For a close message: the status code, if the body carries one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.kind, self.payload.first_chunk::<2>()) {
            (MessageKind::Close, Some(code)) => Some(u16::from_be_bytes(*code)),
            _ => None,
        }
    }

    /// For a close message: the reason after the status code (lossy UTF-8).
    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }
}

/// Reassembles the messages of one direction from bytes pushed in any
/// chunking.
///
/// ```
/// use kubecast_core::ws::{encode_frame, MessageKind, MessageReader, Opcode};
/// let mut wire = Vec::new();
/// encode_frame(&mut wire, Opcode::Binary, true, Some([1, 2, 3, 4]), b"\x00hi");
/// let mut reader = MessageReader::new(&kubecast_core::Limits::default());
/// reader.push(&wire);
/// let message = reader.next_message().unwrap().unwrap();
/// assert_eq!((message.kind, &message.payload[..]), (MessageKind::Binary, &b"\x00hi"[..]));
/// assert_eq!(reader.next_message(), Ok(None));
/// ```
#[derive(Debug)]
pub struct MessageReader {
    frames: FrameStream,
    /// Bytes pushed; those before `pos` have been walked by `frames`.
    pending: Vec<u8>,
    pos: usize,
    /// The data message being reassembled.
    data: Option<(MessageKind, Vec<u8>)>,
    /// The control frame being read.
    control: Option<(MessageKind, Vec<u8>)>,
    error: Option<WsError>,
}

impl MessageReader {
    pub fn new(limits: &Limits) -> Self {
        MessageReader {
            frames: FrameStream::new(limits),
            pending: Vec::new(),
            pos: 0,
            data: None,
            control: None,
            error: None,
        }
    }

    /// Adds bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    /// Errors are sticky.
    pub fn next_message(&mut self) -> Result<Option<Message>, WsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.walk();
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    /// Bytes held for a frame or message that is not complete yet.
    pub fn buffered(&self) -> usize {
        self.pending.len() - self.pos
            + self.data.as_ref().map_or(0, |(_, p)| p.len())
            + self.control.as_ref().map_or(0, |(_, p)| p.len())
    }

    /// Whether nothing partial is held: the peer may end here cleanly.
    pub fn at_boundary(&self) -> bool {
        self.frames.partial_frame_len() == 0
            && !self.frames.in_message()
            && self.pending.len() == self.pos
    }

    fn walk(&mut self) -> Result<Option<Message>, WsError> {
        let mut input: &[u8] = self.pending.get(self.pos..).unwrap_or_default();
        let mut found = None;
        while found.is_none() {
            let Some(event) = self.frames.next(&mut input)? else {
                break;
            };
            match event {
                FrameEvent::Header(header) => {
                    let kind = match header.opcode {
                        Opcode::Continuation => continue,
                        Opcode::Text => MessageKind::Text,
                        Opcode::Binary => MessageKind::Binary,
                        Opcode::Close => MessageKind::Close,
                        Opcode::Ping => MessageKind::Ping,
                        Opcode::Pong => MessageKind::Pong,
                    };
                    let capacity = usize::try_from(header.len).unwrap_or(0).min(64 * 1024);
                    if header.opcode.is_control() {
                        self.control = Some((kind, Vec::with_capacity(capacity)));
                    } else {
                        self.data = Some((kind, Vec::with_capacity(capacity)));
                    }
                }
                FrameEvent::Payload {
                    bytes,
                    mask,
                    offset,
                } => {
                    let target = match (&mut self.control, &mut self.data) {
                        (Some((_, payload)), _) | (None, Some((_, payload))) => payload,
                        (None, None) => continue,
                    };
                    match mask {
                        Some(key) => unmask_into(target, bytes, key, offset),
                        None => target.extend_from_slice(bytes),
                    }
                }
                FrameEvent::End(header) => {
                    if header.opcode.is_control() {
                        found = self.control.take();
                    } else if header.fin {
                        found = self.data.take();
                    }
                }
            }
        }
        self.pos = self.pending.len() - input.len();
        if self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos > self.pending.len() / 2 {
            self.pending.drain(..self.pos);
            self.pos = 0;
        }
        Ok(found.map(|(kind, payload)| Message { kind, payload }))
    }
}

/// Splits a channel-protocol data message into its channel and payload,
/// base64-decoding when `protocol` says so. `Ok(None)` for an empty
/// message (which carries no channel).
pub fn decode_channel_message(
    protocol: WsProtocol,
    message: &[u8],
) -> Result<Option<(u8, Vec<u8>)>, WsError> {
    let Some((&first, rest)) = message.split_first() else {
        return Ok(None);
    };
    if !protocol.base64() {
        return Ok(Some((first, rest.to_vec())));
    }
    if !first.is_ascii_digit() {
        return Err(WsError::BadChannelDigit(first));
    }
    let mut decoder = Base64Decoder::new();
    let mut payload = Vec::with_capacity(rest.len() / 4 * 3);
    decoder.decode(rest, &mut payload)?;
    decoder.finish()?;
    Ok(Some((first - b'0', payload)))
}
