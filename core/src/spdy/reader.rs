//! [`FrameReader`]: whole, owned frames from one direction's byte stream.

use super::frame::{
    decode_control, settings_entries, Control, FrameParser, Payload, Step, FLAG_FIN,
    FLAG_SETTINGS_CLEAR, FLAG_UNIDIRECTIONAL,
};
use super::headers::{HeaderInflater, NvBlock};
use super::SpdyError;
use crate::Limits;

/// A decoded name/value header block: names in wire order, each with its
/// values (a NUL-joined wire value split apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, Vec<String>)>,
}

impl Headers {
    /// Headers from `(name, value)` pairs; a repeated name adds a value.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut headers = Headers::default();
        for (name, value) in pairs {
            match headers.pairs.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push((*value).to_string()),
                None => headers
                    .pairs
                    .push(((*name).to_string(), vec![(*value).to_string()])),
            }
        }
        headers
    }

    fn from_block(block: &NvBlock<'_>) -> Self {
        let pairs = block
            .iter()
            .map(|(name, value)| {
                let values = value
                    .split(|b| *b == 0)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                (String::from_utf8_lossy(name).into_owned(), values)
            })
            .collect();
        Headers { pairs }
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// All values of `name` (ASCII case-insensitive).
    pub fn get_all(&self, name: &str) -> &[String] {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    /// Names and their values, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// No headers at all (spdystream's SYN_REPLY).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// One `(name, value)` per value, for [`super::FrameWriter`].
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .flat_map(|(n, vs)| vs.iter().map(move |v| (n.as_str(), v.as_str())))
            .collect()
    }
}

/// One SETTINGS entry (SPDY/3.1 draft, section 2.6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `FLAG_SETTINGS_PERSIST_VALUE` (1) / `FLAG_SETTINGS_PERSISTED` (2).
    pub flags: u8,
    /// 24-bit id, e.g. 4 = MAX_CONCURRENT_STREAMS, 7 = INITIAL_WINDOW_SIZE.
    pub id: u32,
    pub value: u32,
}

/// A whole SPDY/3.1 frame, owned. Stream ids are 31 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        settings: Vec<Setting>,
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
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// A control frame type SPDY/3.1 does not define.
    Unknown {
        frame_type: u16,
        flags: u8,
        payload: Vec<u8>,
    },
}

impl Frame {
    /// The stream the frame belongs to (`None` for connection frames).
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            Frame::SynStream { stream_id, .. }
            | Frame::SynReply { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. }
            | Frame::Data { stream_id, .. } => Some(*stream_id),
            _ => None,
        }
    }

    fn from_control(control: Control<'_>) -> Frame {
        let fin = |flags: u8| flags & FLAG_FIN != 0;
        match control {
            Control::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                flags,
                headers,
            } => Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                fin: fin(flags),
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: Headers::from_block(&headers),
            },
            Control::SynReply {
                stream_id,
                flags,
                headers,
            } => Frame::SynReply {
                stream_id,
                fin: fin(flags),
                headers: Headers::from_block(&headers),
            },
            Control::Headers {
                stream_id,
                flags,
                headers,
            } => Frame::Headers {
                stream_id,
                fin: fin(flags),
                headers: Headers::from_block(&headers),
            },
            Control::RstStream { stream_id, status } => Frame::RstStream { stream_id, status },
            Control::Settings { flags, entries } => Frame::Settings {
                clear: flags & FLAG_SETTINGS_CLEAR != 0,
                settings: settings_entries(entries)
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect(),
            },
            Control::Ping { id } => Frame::Ping { id },
            Control::GoAway {
                last_good_stream,
                status,
            } => Frame::GoAway {
                last_good_stream,
                status,
            },
            Control::WindowUpdate { stream_id, delta } => Frame::WindowUpdate { stream_id, delta },
            Control::Unknown {
                frame_type,
                flags,
                payload,
            } => Frame::Unknown {
                frame_type,
                flags,
                payload: payload.to_vec(),
            },
        }
    }
}

/// Reads whole frames from one direction of a SPDY connection: push bytes
/// as they arrive, take frames out. It has its own zlib context, so give it
/// every byte of its direction.
///
/// Unlike [`super::SpdyDecoder`] it collects a data frame's payload before
/// returning it (up to 16 MiB, the 24-bit length): meant for test peers and
/// tools, not for the proxy's path. Control frames obey the same
/// [`Limits`] as the decoder. Errors are sticky.
#[derive(Debug)]
pub struct FrameReader {
    parser: FrameParser,
    inflater: HeaderInflater,
    max_header_block: usize,
    buf: Vec<u8>,
    pos: usize,
    data: Vec<u8>,
    scratch: Vec<u8>,
    error: Option<SpdyError>,
}

impl FrameReader {
    /// A reader for the start of a direction's byte stream.
    pub fn new(limits: &Limits) -> Self {
        FrameReader {
            parser: FrameParser::new(limits.max_spdy_control_frame),
            inflater: HeaderInflater::default(),
            max_header_block: limits.max_header_block,
            buf: Vec::new(),
            pos: 0,
            data: Vec::new(),
            scratch: Vec::new(),
            error: None,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.read_frame();
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    /// Whether the stream may end here: no frame is half received.
    pub fn at_frame_boundary(&self) -> bool {
        self.parser.partial_len() == 0 && self.pos == self.buf.len()
    }

    fn read_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        while let Some(step) = self.parser.next(&self.buf, &mut self.pos)? {
            match step {
                Step::Data { header, range, end } => {
                    self.data
                        .extend_from_slice(self.buf.get(range).unwrap_or_default());
                    if end {
                        return Ok(Some(Frame::Data {
                            stream_id: header.stream_id,
                            fin: header.fin(),
                            data: std::mem::take(&mut self.data),
                        }));
                    }
                }
                Step::Control { header, payload } => {
                    let payload = match payload {
                        Payload::Input(range) => self.buf.get(range).unwrap_or_default(),
                        Payload::Buffered => self.parser.buffered(),
                    };
                    let control = decode_control(
                        header,
                        payload,
                        &mut self.inflater,
                        &mut self.scratch,
                        self.max_header_block,
                    )?;
                    return Ok(Some(Frame::from_control(control)));
                }
            }
        }
        Ok(None)
    }
}
