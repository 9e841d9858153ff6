//! v2: `HEAD /v2/record` probe and `POST /v2/record` over HTTP/2; the
//! response body is newline-delimited JSON ack frames.

use super::failover::ProtocolError;
use super::sanitize;
use serde::Deserialize;

/// Path of the v2 probe and upload.
pub const V2_PATH: &str = "/v2/record";

/// One frame of the v2 response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    /// `{"ack":N}` — N cast bytes received so far (`{}` is an ack of 0).
    Ack(u64),
    /// `{"error":"…"}` — the recorder gives up; the last frame.
    Error(String),
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(default)]
    ack: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

/// Splits the response body into frames, whatever the read boundaries.
/// Holds at most `max_line` bytes of an incomplete line.
#[derive(Debug)]
pub(super) struct FrameReader {
    line: Vec<u8>,
    max_line: usize,
    failed: bool,
}

impl FrameReader {
    pub(super) fn new(max_line: usize) -> Self {
        FrameReader {
            line: Vec::new(),
            max_line,
            failed: false,
        }
    }

    /// Feeds response body bytes; appends the frames completed by them to
    /// `out`. After the first error nothing more is parsed (the error is the
    /// last entry).
    pub(super) fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Result<Frame, ProtocolError>>) {
        while !self.failed && !bytes.is_empty() {
            let (part, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (
                    bytes.get(..i).unwrap_or_default(),
                    bytes.get(i + 1..).unwrap_or_default(),
                    true,
                ),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.line.len() + part.len() > self.max_line {
                self.failed = true;
                out.push(Err(ProtocolError::FrameTooLong(self.max_line)));
                return;
            }
            self.line.extend_from_slice(part);
            if complete {
                let line = std::mem::take(&mut self.line);
                self.parse_line(&line, out);
            }
        }
    }

    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Result<Frame, ProtocolError>>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return; // Blank lines between frames are harmless.
        }
        if line.trim_ascii_start().first() != Some(&b'{') {
            self.failed = true;
            out.push(Err(ProtocolError::BadFrame("not a JSON object".into())));
            return;
        }
        match serde_json::from_slice::<RawFrame>(line) {
            Ok(frame) => {
                let error = frame.error.map(|e| Frame::Error(sanitize(&e)));
                if frame.ack.is_some() || error.is_none() {
                    out.push(Ok(Frame::Ack(frame.ack.unwrap_or(0))));
                }
                if let Some(error) = error {
                    out.push(Ok(error));
                }
            }
            Err(e) => {
                self.failed = true;
                out.push(Err(ProtocolError::BadFrame(e.to_string())));
            }
        }
    }
}
