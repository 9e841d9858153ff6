//! v1: `POST /record` over HTTP/1.1 — the request head, chunked body framing
//! and the interim/final responses.

use super::config::UploadConfig;
use super::failover::ProtocolError;
use super::sanitize;
use crate::upload::config::RecorderAddr;
use bytes::{BufMut, Bytes, BytesMut};

/// Path of the v1 upload.
pub const V1_PATH: &str = "/record";

/// The terminal chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The media type of the body: an asciicast stream.
pub const CAST_CONTENT_TYPE: &str = "application/x-asciicast";

/// Most headers parsed in one response head.
const MAX_HEADERS: usize = 64;

/// Most body bytes of an error response kept for the failure message.
const MAX_BODY_SNIPPET: usize = 256;

/// The exact request head of a v1 upload.
pub(super) fn request_head(
    config: &UploadConfig,
    recorder: &RecorderAddr,
    expect_continue: bool,
) -> Bytes {
    let mut head = String::with_capacity(256);
    head.push_str("POST ");
    head.push_str(V1_PATH);
    head.push_str(" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &str| {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    };
    line("Host", &recorder.authority());
    line("User-Agent", &config.user_agent);
    line("Content-Type", CAST_CONTENT_TYPE);
    line("Transfer-Encoding", "chunked");
    if expect_continue {
        line("Expect", "100-continue");
    }
    if let Some(token) = &config.token {
        line("Authorization", &format!("Bearer {token}"));
    }
    for (name, value) in &config.headers {
        line(name, value);
    }
    head.push_str("\r\n");
    Bytes::from(head)
}

/// One chunk of a chunked body: `{len:x}\r\n{data}\r\n`. The caller never
/// frames an empty chunk (that would end the body).
pub(super) fn chunk<'a>(parts: impl IntoIterator<Item = &'a Bytes>, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len + 20);
    out.put_slice(format!("{len:x}\r\n").as_bytes());
    for part in parts {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// A final (non-1xx) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FinalResponse {
    pub status: u16,
    /// Reason phrase and the first bytes of the body, for messages.
    pub message: String,
}

/// What the response stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ResponseEvent {
    /// `100 Continue`: send the body.
    Continue,
    /// The final response; everything after it is ignored.
    Final(FinalResponse),
}

/// Parses the recorder's HTTP/1.1 response stream: any number of interim
/// `1xx` heads, then one final head. Holds at most `max_head` bytes of an
/// incomplete head.
#[derive(Debug)]
pub(super) struct ResponseReader {
    buf: Vec<u8>,
    max_head: usize,
    done: bool,
}

impl ResponseReader {
    pub(super) fn new(max_head: usize) -> Self {
        ResponseReader {
            buf: Vec::new(),
            max_head,
            done: false,
        }
    }

    /// Appends response bytes (ignored after the final head).
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if !self.done {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete response head, if any.
    pub(super) fn next(&mut self) -> Result<Option<ResponseEvent>, ProtocolError> {
        loop {
            if self.done || self.buf.is_empty() {
                return Ok(None);
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response.parse(&self.buf);
            let (len, status, reason) = match parsed {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let reason = response.reason.unwrap_or("").to_string();
                    (len, status, reason)
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > self.max_head {
                        self.done = true;
                        return Err(ProtocolError::ResponseHeadTooLarge(self.max_head));
                    }
                    return Ok(None);
                }
                Err(httparse::Error::TooManyHeaders) => {
                    self.done = true;
                    return Err(ProtocolError::ResponseHeadTooLarge(self.max_head));
                }
                Err(e) => {
                    self.done = true;
                    return Err(ProtocolError::BadResponse(e.to_string()));
                }
            };
            if len > self.max_head {
                self.done = true;
                return Err(ProtocolError::ResponseHeadTooLarge(self.max_head));
            }
            let rest = self.buf.get(len..).unwrap_or_default();
            match status {
                100 => {
                    self.buf.drain(..len.min(self.buf.len()));
                    return Ok(Some(ResponseEvent::Continue));
                }
                101 => {
                    self.done = true;
                    return Err(ProtocolError::UnexpectedStatus(101));
                }
                102..=199 => {
                    // Processing, Early Hints, …: informational, skip.
                    self.buf.drain(..len.min(self.buf.len()));
                }
                _ => {
                    let body = rest.get(..MAX_BODY_SNIPPET).unwrap_or(rest);
                    let body = sanitize(String::from_utf8_lossy(body).trim());
                    let reason = sanitize(&reason);
                    let message = match (reason.is_empty(), body.is_empty()) {
                        (false, false) => format!("{reason}: {body}"),
                        (true, false) => body.to_string(),
                        (_, true) => reason,
                    };
                    self.done = true;
                    self.buf = Vec::new();
                    return Ok(Some(ResponseEvent::Final(FinalResponse {
                        status,
                        message,
                    })));
                }
            }
        }
    }
}
