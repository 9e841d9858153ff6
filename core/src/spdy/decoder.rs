//! [`SpdyDecoder`]: both directions of a remotecommand SPDY connection,
//! turned into [`ExecEvent`]s.

use std::collections::BTreeMap;

use super::frame::{decode_control, Control, DataHeader, FrameParser, Payload, Step, FLAG_FIN};
use super::headers::HeaderInflater;
use super::SpdyError;
use crate::exec::{ResizeParser, StatusParser};
use crate::handshake::RemoteCommandVersion;
use crate::{CloseCause, DataStream, ExecEvent, Limits, Side, StreamEnd, StreamKind};

/// Decodes the two byte streams of one SPDY/3.1 remotecommand connection.
///
/// Feed each side's bytes in the order they were read, in any chunking;
/// every complete frame in the input is processed before `decode` returns,
/// and a frame split anywhere (even inside its 8-byte header) is resumed on
/// the next call. The result, coalesced with [`crate::exec::push_coalesced`],
/// does not depend on the chunking.
///
/// What is kept per direction: a frame parser and the direction's zlib
/// inflate context, carried across all of its SYN_STREAM, SYN_REPLY and
/// HEADERS frames (each is inflated in order, even when uninteresting).
/// Shared by both: the stream table (stream id → role, from the
/// `streamtype` header of each SYN_STREAM), the resize and error-stream
/// parsers, and the first error, which is sticky.
///
/// Data is routed by stream id *and* direction: stdin and resize bytes
/// count only from the client, stdout, stderr and the error stream only
/// from the upstream. Bytes a peer sends the wrong way are never read by
/// the other peer (spdystream buffers them unread), so they are not
/// recorded either — a client cannot forge "output". Data on streams never
/// opened, or opened with an unknown `streamtype`, is skipped.
#[derive(Debug)]
pub struct SpdyDecoder {
    client: Direction,
    upstream: Direction,
    /// Inflated header blocks land here (reused across frames).
    scratch: Vec<u8>,
    max_header_block: usize,
    session: Session,
    error: Option<SpdyError>,
}

#[derive(Debug)]
struct Direction {
    parser: FrameParser,
    inflater: HeaderInflater,
    eof: bool,
}

/// The state both directions share.
#[derive(Debug)]
struct Session {
    max_streams: usize,
    /// Every stream ever opened; `None` for an unknown `streamtype`.
    streams: BTreeMap<u32, Option<StreamKind>>,
    status: StatusParser,
    resize: ResizeParser,
}

type Sink<'s> = dyn FnMut(ExecEvent<'_>) + 's;

impl SpdyDecoder {
    /// A decoder for a connection that negotiated `version`.
    pub fn new(version: RemoteCommandVersion, limits: &Limits) -> Self {
        let direction = || Direction {
            parser: FrameParser::new(limits.max_spdy_control_frame),
            inflater: HeaderInflater::default(),
            eof: false,
        };
        SpdyDecoder {
            client: direction(),
            upstream: direction(),
            scratch: Vec::new(),
            max_header_block: limits.max_header_block,
            session: Session {
                max_streams: limits.max_streams,
                streams: BTreeMap::new(),
                status: StatusParser::new(version.status_json(), limits.max_json_channel),
                resize: ResizeParser::new(limits.max_json_channel),
            },
            error: None,
        }
    }

    /// Decodes bytes sent by `side`, calling `sink` for every event. After
    /// an error every further call returns the same error.
    pub fn decode<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        input: &[u8],
        mut sink: F,
    ) -> Result<(), SpdyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.decode_frames(side, input, &mut sink);
        self.stick(result)
    }

    /// `side` reached end of file. A v1–v3 error text still pending from
    /// the upstream is reported as [`ExecEvent::Exit`]. An end at a frame
    /// boundary is clean; an end inside a frame is
    /// [`SpdyError::Truncated`].
    pub fn finish<F: FnMut(ExecEvent<'_>)>(
        &mut self,
        side: Side,
        mut sink: F,
    ) -> Result<(), SpdyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if side == Side::Upstream {
            self.session.flush_status(&mut sink);
        }
        let direction = self.direction(side);
        direction.eof = true;
        let partial = direction.parser.partial_len();
        let result = match partial {
            0 => Ok(()),
            partial => Err(SpdyError::Truncated { partial }),
        };
        self.stick(result)
    }

    /// Bytes already fed from `side` that belong to a frame not yet
    /// complete (0 at a frame boundary). Bytes injected towards `side`'s
    /// peer must wait until this frame is complete.
    pub fn partial_frame_len(&self, side: Side) -> usize {
        match side {
            Side::Client => self.client.parser.partial_len(),
            Side::Upstream => self.upstream.parser.partial_len(),
        }
    }

    /// How far `side`'s stream is from the end of its current frame.
    pub fn frame_remaining(&self, side: Side) -> crate::exec::FrameRemaining {
        match side {
            Side::Client => self.client.parser.remaining(),
            Side::Upstream => self.upstream.parser.remaining(),
        }
    }

    /// The SPDY stream id of the stream opened with role `kind` (the first,
    /// should there be several): where the core writes when it injects
    /// frames, e.g. a Status on the error stream.
    pub fn stream_id(&self, kind: StreamKind) -> Option<u32> {
        self.session
            .streams
            .iter()
            .find(|(_, k)| **k == Some(kind))
            .map(|(id, _)| *id)
    }

    fn direction(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        }
    }

    fn stick(&mut self, result: Result<(), SpdyError>) -> Result<(), SpdyError> {
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    fn decode_frames(
        &mut self,
        side: Side,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), SpdyError> {
        let direction = match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        };
        if direction.eof && !input.is_empty() {
            return Err(SpdyError::DataAfterEof);
        }
        let mut pos = 0;
        while let Some(step) = direction.parser.next(input, &mut pos)? {
            match step {
                Step::Data { header, range, end } => {
                    let bytes = input.get(range).unwrap_or_default();
                    self.session.on_data(side, header, bytes, end, sink)?;
                }
                Step::Control { header, payload } => {
                    let payload = match payload {
                        Payload::Input(range) => input.get(range).unwrap_or_default(),
                        Payload::Buffered => direction.parser.buffered(),
                    };
                    let control = decode_control(
                        header,
                        payload,
                        &mut direction.inflater,
                        &mut self.scratch,
                        self.max_header_block,
                    )?;
                    self.session.on_control(side, control, sink)?;
                }
            }
        }
        Ok(())
    }
}

impl Session {
    fn kind(&self, stream_id: u32) -> Option<StreamKind> {
        self.streams.get(&stream_id).copied().flatten()
    }

    /// The terminal stream `side`'s data on `stream_id` belongs to. Data is
    /// only taken in the direction remotecommand writes it, so a client
    /// cannot forge "output" by writing on the stdout stream.
    fn data_stream(&self, stream_id: u32, side: Side) -> Option<DataStream> {
        match (self.kind(stream_id), side) {
            (Some(StreamKind::Stdin), Side::Client) => Some(DataStream::Stdin),
            (Some(StreamKind::Stdout), Side::Upstream) => Some(DataStream::Stdout),
            (Some(StreamKind::Stderr), Side::Upstream) => Some(DataStream::Stderr),
            _ => None,
        }
    }

    fn on_control(
        &mut self,
        side: Side,
        control: Control<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<(), SpdyError> {
        match control {
            Control::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if self.streams.contains_key(&stream_id) {
                    return Err(SpdyError::DuplicateStreamId(stream_id));
                }
                if self.streams.len() >= self.max_streams {
                    return Err(SpdyError::TooManyStreams {
                        limit: self.max_streams,
                    });
                }
                let kind = headers
                    .get(b"streamtype")
                    .and_then(StreamKind::from_stream_type);
                self.streams.insert(stream_id, kind);
                if let Some(stream) = kind {
                    sink(ExecEvent::StreamOpened { stream, by: side });
                }
                if flags & FLAG_FIN != 0 {
                    self.on_fin(side, stream_id, sink);
                }
            }
            Control::SynReply {
                stream_id, flags, ..
            }
            | Control::Headers {
                stream_id, flags, ..
            } => {
                if flags & FLAG_FIN != 0 {
                    self.on_fin(side, stream_id, sink);
                }
            }
            Control::RstStream { stream_id, status } => {
                if let Some(stream) = self.kind(stream_id) {
                    // A reset ends the stream both ways: what the error
                    // stream holds is all there will be.
                    if stream == StreamKind::Error {
                        self.flush_status(sink);
                    }
                    sink(ExecEvent::StreamClosed {
                        stream,
                        by: side,
                        how: StreamEnd::Reset(status),
                    });
                }
            }
            Control::GoAway {
                last_good_stream,
                status,
            } => sink(ExecEvent::ConnectionClosed {
                by: side,
                cause: CloseCause::GoAway {
                    last_good_stream,
                    status,
                },
            }),
            Control::Settings { .. }
            | Control::Ping { .. }
            | Control::WindowUpdate { .. }
            | Control::Unknown { .. } => {}
        }
        Ok(())
    }

    fn on_data(
        &mut self,
        side: Side,
        header: DataHeader,
        bytes: &[u8],
        end: bool,
        sink: &mut Sink<'_>,
    ) -> Result<(), SpdyError> {
        let data_stream = self.data_stream(header.stream_id, side);
        if let (Some(stream), false) = (data_stream, bytes.is_empty()) {
            sink(ExecEvent::Data { stream, bytes });
        } else if !bytes.is_empty() {
            match (self.kind(header.stream_id), side) {
                (Some(StreamKind::Resize), Side::Client) => self
                    .resize
                    .push(bytes, |size| sink(ExecEvent::Resize(size)))
                    .map_err(SpdyError::Resize)?,
                (Some(StreamKind::Error), Side::Upstream) => {
                    if let Some(status) = self.status.push(bytes) {
                        sink(ExecEvent::Exit(status));
                    }
                }
                _ => {}
            }
        }
        if end {
            if let Some(stream) = data_stream {
                sink(ExecEvent::DataEnd { stream });
            }
            if header.fin() {
                self.on_fin(side, header.stream_id, sink);
            }
        }
        Ok(())
    }

    /// `side` half-closed `stream_id`.
    fn on_fin(&mut self, side: Side, stream_id: u32, sink: &mut Sink<'_>) {
        if let Some(stream) = self.kind(stream_id) {
            if stream == StreamKind::Error && side == Side::Upstream {
                self.flush_status(sink);
            }
            sink(ExecEvent::StreamClosed {
                stream,
                by: side,
                how: StreamEnd::Fin,
            });
        }
    }

    /// The error stream ended: report what it held (v1–v3 text).
    fn flush_status(&mut self, sink: &mut Sink<'_>) {
        if let Some(status) = self.status.finish() {
            sink(ExecEvent::Exit(status));
        }
    }
}
