//! The message/channel layer: both directions of a WebSocket exec/attach
//! connection turned into [`ExecEvent`]s.

use super::base64::Base64Decoder;
use super::frame::{unmask_into, FrameEvent, FrameHeader, FrameStream, Opcode};
use super::WsError;
use crate::exec::{ResizeParser, StatusParser};
use crate::handshake::WsProtocol;
use crate::{CloseCause, DataStream, ExecEvent, Limits, Side, StreamEnd, StreamKind};

/// Most bytes unmasked or base64-decoded per `Data` event: bounds the
/// scratch buffers whatever the size of the caller's reads.
const SCRATCH_CHUNK: usize = 16 * 1024;

/// The v5 close-signal channel.
const CLOSE_CHANNEL: u8 = 255;

/// Decodes both directions of a WebSocket exec/attach connection that
/// negotiated one of the Kubernetes channel protocols.
///
/// - **inputs**: [`WsDecoder::decode`] with the bytes one side sent, in the
///   order they were read, in any chunking; [`WsDecoder::finish`] when that
///   side reached end of file.
/// - **outputs**: events passed to the `sink` closure. `Data` borrows from
///   the input, or from a scratch buffer when the bytes had to be unmasked or
///   base64-decoded; it is streamed, never buffered per message.
/// - **getters**: [`WsDecoder::partial_frame_len`] (where the last frame
///   boundary is), [`WsDecoder::ignored_messages`], …
/// - **errors**: typed [`WsError`]s, sticky: after the first one every call
///   returns it again.
///
/// Per message: the first payload byte is the channel (ASCII digit for the
/// base64 protocols) — in the *first fragment only* (RFC 6455 message
/// semantics). Channels a side never sends on in remotecommand (stdout from
/// the client, stdin from the upstream, …), channels 5–254, channel 255
/// outside v5, and empty messages are skipped and counted, as the Kubernetes
/// servers skip them.
#[derive(Debug)]
pub struct WsDecoder {
    client: Direction,
    upstream: Direction,
    channels: Channels,
    error: Option<WsError>,
}

/// State shared by the two directions: which channels are open and the
/// JSON side channels.
#[derive(Debug)]
struct Channels {
    protocol: WsProtocol,
    opened: [bool; 5],
    resize: ResizeParser,
    status: StatusParser,
    ignored: u64,
}

/// Where the bytes of the current data message go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The message started but its channel byte has not arrived yet.
    NeedChannel,
    Data(DataStream),
    Resize,
    Error,
    /// v5 channel 255: the first payload byte and the payload length so far.
    CloseSignal {
        channel: Option<u8>,
        len: u64,
    },
    Ignore,
}

/// The data message in progress in one direction.
#[derive(Debug, Default)]
struct MessageState {
    target: Option<Target>,
    base64: Base64Decoder,
    decoded: Vec<u8>,
}

/// One direction's framing and message state.
#[derive(Debug)]
struct Direction {
    side: Side,
    frames: FrameStream,
    /// The opcode of the control frame being read, if the current frame is one.
    control: Option<Opcode>,
    close_body: Vec<u8>,
    /// A close frame from this side has been reported.
    closed: bool,
    unmasked: Vec<u8>,
    message: MessageState,
}

impl WsDecoder {
    /// A decoder for the channel protocol the upstream chose.
    pub fn new(protocol: WsProtocol, limits: &Limits) -> Self {
        let direction = |side| Direction {
            side,
            frames: FrameStream::new(limits),
            control: None,
            close_body: Vec::new(),
            closed: false,
            unmasked: Vec::new(),
            message: MessageState::default(),
        };
        WsDecoder {
            client: direction(Side::Client),
            upstream: direction(Side::Upstream),
            channels: Channels {
                protocol,
                opened: [false; 5],
                resize: ResizeParser::new(limits.max_json_channel),
                status: StatusParser::new(protocol.status_json(), limits.max_json_channel),
                ignored: 0,
            },
            error: None,
        }
    }

    /// The channel protocol being decoded.
    pub fn protocol(&self) -> WsProtocol {
        self.channels.protocol
    }

    /// Decodes bytes sent by `side`, calling `sink` for every event.
    pub fn decode<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        input: &[u8],
        mut sink: F,
    ) -> Result<(), WsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let dir = match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        };
        let result = dir.decode(input, &mut self.channels, &mut sink);
        self.sticky(result)
    }

    /// `side` reached end of file. kubectl ends a session by closing TCP
    /// without a close frame, so an end at a frame boundary is clean; an
    /// end inside a frame or between the fragments of a message is an error.
    /// At the upstream's end a pending error channel (v1-style plain text)
    /// is reported as [`ExecEvent::Exit`].
    pub fn finish<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        mut sink: F,
    ) -> Result<(), WsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if side == Side::Upstream {
            if let Some(status) = self.channels.status.finish() {
                sink(ExecEvent::Exit(status));
            }
        }
        let dir = self.direction(side);
        let partial = dir.frames.partial_frame_len();
        let result = if partial > 0 {
            Err(WsError::TruncatedFrame { have: partial })
        } else if dir.frames.in_message() {
            Err(WsError::TruncatedMessage)
        } else {
            Ok(())
        };
        self.sticky(result)
    }

    /// Bytes already fed from `side` that belong to a frame not yet
    /// complete (0 at a frame boundary).
    pub fn partial_frame_len(&self, side: Side) -> usize {
        self.direction(side).frames.partial_frame_len()
    }

    /// How far `side`'s stream is from a message boundary.
    pub fn frame_remaining(&self, side: Side) -> crate::exec::FrameRemaining {
        self.direction(side).frames.remaining()
    }

    /// Whether `side` is between the fragments of a data message. Bytes
    /// injected towards its peer must wait for the message to end: a new
    /// data message inside a fragmented one breaks RFC 6455 §5.4.
    pub fn message_in_progress(&self, side: Side) -> bool {
        self.direction(side).frames.in_message()
    }

    /// Whether `side` has sent a close frame.
    pub fn close_seen(&self, side: Side) -> bool {
        self.direction(side).frames.close_seen()
    }

    /// Messages skipped: empty ones, channels 5–254, channel 255 outside v5,
    /// a channel the sending side never writes in remotecommand, and close
    /// signals for a channel that is not 0–4.
    pub fn ignored_messages(&self) -> u64 {
        self.channels.ignored
    }

    fn direction(&self, side: Side) -> &Direction {
        match side {
            Side::Client => &self.client,
            Side::Upstream => &self.upstream,
        }
    }

    fn sticky(&mut self, result: Result<(), WsError>) -> Result<(), WsError> {
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }
}

impl Direction {
    fn decode<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        mut input: &[u8],
        ch: &mut Channels,
        sink: &mut F,
    ) -> Result<(), WsError> {
        while let Some(event) = self.frames.next(&mut input)? {
            match event {
                FrameEvent::Header(header) => self.on_header(&header),
                FrameEvent::Payload {
                    bytes,
                    mask,
                    offset,
                } => self.on_payload(bytes, mask, offset, ch, sink)?,
                FrameEvent::End(header) => self.on_end(&header, ch, sink)?,
            }
        }
        Ok(())
    }

    fn on_header(&mut self, header: &FrameHeader) {
        if header.opcode.is_control() {
            self.control = Some(header.opcode);
            self.close_body.clear();
            return;
        }
        self.control = None;
        if header.opcode != Opcode::Continuation {
            self.message.target = Some(Target::NeedChannel);
        }
    }

    fn on_payload<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        bytes: &[u8],
        mask: Option<[u8; 4]>,
        offset: u64,
        ch: &mut Channels,
        sink: &mut F,
    ) -> Result<(), WsError> {
        match (self.control, mask) {
            // The frame layer bounded this by the control-frame limit.
            (Some(Opcode::Close), Some(key)) => {
                unmask_into(&mut self.close_body, bytes, key, offset)
            }
            (Some(Opcode::Close), None) => self.close_body.extend_from_slice(bytes),
            (Some(_), _) => {}
            (None, None) => self.message.on_bytes(bytes, self.side, ch, sink)?,
            (None, Some(key)) => {
                let mut offset = offset;
                for piece in bytes.chunks(SCRATCH_CHUNK) {
                    self.unmasked.clear();
                    unmask_into(&mut self.unmasked, piece, key, offset);
                    offset += piece.len() as u64;
                    self.message.on_bytes(&self.unmasked, self.side, ch, sink)?;
                }
            }
        }
        Ok(())
    }

    fn on_end<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        header: &FrameHeader,
        ch: &mut Channels,
        sink: &mut F,
    ) -> Result<(), WsError> {
        match header.opcode {
            Opcode::Close => {
                let cause = close_cause(&self.close_body)?;
                if !self.closed {
                    self.closed = true;
                    if self.side == Side::Upstream {
                        if let Some(status) = ch.status.finish() {
                            sink(ExecEvent::Exit(status));
                        }
                    }
                    sink(ExecEvent::ConnectionClosed {
                        by: self.side,
                        cause,
                    });
                }
            }
            Opcode::Ping | Opcode::Pong => {}
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                if header.fin {
                    self.message.end(self.side, ch, sink)?;
                }
            }
        }
        self.control = None;
        Ok(())
    }
}

/// §5.5.1: an empty body, or a 2-byte status code and a UTF-8 reason.
fn close_cause(body: &[u8]) -> Result<CloseCause, WsError> {
    match body.split_first_chunk::<2>() {
        Some((code, reason)) => Ok(CloseCause::WebSocketClose {
            code: Some(u16::from_be_bytes(*code)),
            reason: String::from_utf8_lossy(reason).into_owned(),
        }),
        None if body.is_empty() => Ok(CloseCause::WebSocketClose {
            code: None,
            reason: String::new(),
        }),
        None => Err(WsError::CloseBodyTooShort),
    }
}

impl MessageState {
    /// Payload bytes (unmasked) of the current data message.
    fn on_bytes<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        mut bytes: &[u8],
        side: Side,
        ch: &mut Channels,
        sink: &mut F,
    ) -> Result<(), WsError> {
        if self.target == Some(Target::NeedChannel) {
            let Some((&first, rest)) = bytes.split_first() else {
                return Ok(());
            };
            bytes = rest;
            self.target = Some(ch.resolve(first, side, sink)?);
        }
        let base64 = ch.protocol.base64();
        match self.target {
            Some(Target::Data(stream)) => self.plain(base64, bytes, |b| {
                sink(ExecEvent::Data { stream, bytes: b });
                Ok(())
            }),
            Some(Target::Resize) => self.plain(base64, bytes, |b| {
                ch.resize
                    .push(b, |size| sink(ExecEvent::Resize(size)))
                    .map_err(WsError::from)
            }),
            Some(Target::Error) => self.plain(base64, bytes, |b| {
                if let Some(status) = ch.status.push(b) {
                    sink(ExecEvent::Exit(status));
                }
                Ok(())
            }),
            Some(Target::CloseSignal { channel, len }) => {
                self.target = Some(Target::CloseSignal {
                    channel: channel.or(bytes.first().copied()),
                    len: len + bytes.len() as u64,
                });
                Ok(())
            }
            Some(Target::NeedChannel | Target::Ignore) | None => Ok(()),
        }
    }

    /// Hands `bytes` to `f` as plain payload: as they are, or base64-decoded
    /// in bounded pieces. Empty pieces are not handed on.
    fn plain(
        &mut self,
        base64: bool,
        bytes: &[u8],
        mut f: impl FnMut(&[u8]) -> Result<(), WsError>,
    ) -> Result<(), WsError> {
        if !base64 {
            return if bytes.is_empty() { Ok(()) } else { f(bytes) };
        }
        for piece in bytes.chunks(SCRATCH_CHUNK) {
            self.decoded.clear();
            self.base64.decode(piece, &mut self.decoded)?;
            if !self.decoded.is_empty() {
                f(&self.decoded)?;
            }
        }
        Ok(())
    }

    /// The final frame of the message ended.
    fn end<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        ch: &mut Channels,
        sink: &mut F,
    ) -> Result<(), WsError> {
        let target = self.target.take();
        self.base64.finish()?;
        match target {
            // No channel byte at all: the Go servers skip empty messages.
            Some(Target::NeedChannel) => ch.ignored += 1,
            Some(Target::Data(stream)) => sink(ExecEvent::DataEnd { stream }),
            Some(Target::CloseSignal { channel, len }) => {
                if len != 1 {
                    return Err(WsError::BadCloseSignal { len });
                }
                match channel.and_then(StreamKind::from_channel) {
                    Some(stream) => sink(ExecEvent::StreamClosed {
                        stream,
                        by: side,
                        how: StreamEnd::Fin,
                    }),
                    None => ch.ignored += 1,
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Channels {
    /// Interprets a message's first byte; reports the channel's first use.
    fn resolve<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        first: u8,
        side: Side,
        sink: &mut F,
    ) -> Result<Target, WsError> {
        let channel = if self.protocol.base64() {
            if !first.is_ascii_digit() {
                return Err(WsError::BadChannelDigit(first));
            }
            first - b'0'
        } else {
            first
        };
        if channel == CLOSE_CHANNEL && self.protocol.close_signal() {
            return Ok(Target::CloseSignal {
                channel: None,
                len: 0,
            });
        }
        let target = match (side, StreamKind::from_channel(channel)) {
            (Side::Client, Some(StreamKind::Stdin)) => Target::Data(DataStream::Stdin),
            (Side::Client, Some(StreamKind::Resize)) => Target::Resize,
            (Side::Upstream, Some(StreamKind::Stdout)) => Target::Data(DataStream::Stdout),
            (Side::Upstream, Some(StreamKind::Stderr)) => Target::Data(DataStream::Stderr),
            (Side::Upstream, Some(StreamKind::Error)) => Target::Error,
            _ => {
                self.ignored += 1;
                return Ok(Target::Ignore);
            }
        };
        if let (Some(opened), Some(stream)) = (
            self.opened.get_mut(usize::from(channel)),
            StreamKind::from_channel(channel),
        ) {
            if !*opened {
                *opened = true;
                sink(ExecEvent::StreamOpened { stream, by: side });
            }
        }
        Ok(target)
    }
}
