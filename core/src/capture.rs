//! The capture format: both directions of one upgraded connection, as raw
//! bytes with arrival times, in the order they were read.
//!
//! A capture holds everything needed to replay a session through the core
//! deterministically: the HTTP upgrade heads are simply the first bytes of
//! each direction. Layout (all integers big-endian):
//!
//! ```text
//! kubecast-capture/1\n                  magic line
//! {"timestamp":…,"user":…,…}\n           one JSON header line (CaptureHeader)
//! record*                                until end of file
//!
//! record = kind:u8  at_micros:u64  len:u32  bytes[len]
//! kind   = 'c' client→upstream bytes | 'u' upstream→client bytes
//!        | 'C' client EOF            | 'U' upstream EOF          (len = 0)
//! ```
//!
//! `at_micros` counts from the start of the capture and never decreases.

use crate::Side;
use serde::{Deserialize, Serialize};

/// The first line of every capture.
pub const MAGIC: &[u8] = b"kubecast-capture/1\n";
/// Largest record we read: one read of a socket is far smaller.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;
/// Largest header line.
const MAX_HEADER_LINE: usize = 64 * 1024;

/// Metadata about a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureHeader {
    /// Unix time (seconds) when the capture started, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Free text: what was captured and how to regenerate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The authenticated caller, when the capturing proxy knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The session's id (the recording's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The cluster's configured name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Bytes sent by this side.
    Data(Side),
    /// This side closed its half of the connection.
    Eof(Side),
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            RecordKind::Data(Side::Client) => b'c',
            RecordKind::Data(Side::Upstream) => b'u',
            RecordKind::Eof(Side::Client) => b'C',
            RecordKind::Eof(Side::Upstream) => b'U',
        }
    }

    fn from_tag(tag: u8) -> Option<RecordKind> {
        Some(match tag {
            b'c' => RecordKind::Data(Side::Client),
            b'u' => RecordKind::Data(Side::Upstream),
            b'C' => RecordKind::Eof(Side::Client),
            b'U' => RecordKind::Eof(Side::Upstream),
            _ => return None,
        })
    }
}

/// One record of a capture, borrowing its bytes from the capture buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Microseconds since the start of the capture.
    pub at_micros: u64,
    pub kind: RecordKind,
    /// The bytes read (empty for EOF records).
    pub bytes: &'a [u8],
}

/// Why a capture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("not a kubecast capture (bad magic line)")]
    BadMagic,
    #[error("bad capture header: {0}")]
    BadHeader(String),
    #[error("unknown record kind {0:#04x} at offset {1}")]
    BadKind(u8, usize),
    #[error("record at offset {0} is truncated")]
    Truncated(usize),
    #[error("record at offset {offset} is {len} bytes, more than {MAX_RECORD_LEN}")]
    TooLong { offset: usize, len: usize },
    #[error("record at offset {0} goes back in time")]
    TimeWentBack(usize),
    #[error("EOF record at offset {0} carries bytes")]
    EofWithBytes(usize),
}

/// Appends the magic line and header to `out`.
pub fn write_header(header: &CaptureHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    // Serialising a struct of strings and integers cannot fail.
    if let Ok(json) = serde_json::to_vec(header) {
        out.extend_from_slice(&json);
    }
    out.push(b'\n');
}

/// Appends one record to `out`. Records longer than [`MAX_RECORD_LEN`] are
/// split, so a reader never refuses what a writer wrote.
pub fn write_record(at_micros: u64, kind: RecordKind, bytes: &[u8], out: &mut Vec<u8>) {
    let mut chunks = bytes.chunks(MAX_RECORD_LEN);
    let mut push = |chunk: &[u8]| {
        out.push(kind.tag());
        out.extend_from_slice(&at_micros.to_be_bytes());
        // chunk.len() <= MAX_RECORD_LEN < u32::MAX
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    };
    match chunks.next() {
        None => push(&[]),
        Some(first) => {
            push(first);
            chunks.for_each(push);
        }
    }
}

/// Reads a capture held in memory.
#[derive(Debug, Clone)]
pub struct CaptureReader<'a> {
    input: &'a [u8],
    pos: usize,
    last_micros: u64,
    failed: bool,
}

impl<'a> CaptureReader<'a> {
    /// Checks the magic line and parses the header; the records follow.
    pub fn new(input: &'a [u8]) -> Result<(CaptureHeader, CaptureReader<'a>), CaptureError> {
        let rest = input.strip_prefix(MAGIC).ok_or(CaptureError::BadMagic)?;
        let line_len = rest
            .iter()
            .take(MAX_HEADER_LINE)
            .position(|&b| b == b'\n')
            .ok_or_else(|| CaptureError::BadHeader("no header line".into()))?;
        let line = rest.get(..line_len).unwrap_or_default();
        let header: CaptureHeader =
            serde_json::from_slice(line).map_err(|e| CaptureError::BadHeader(e.to_string()))?;
        let reader = CaptureReader {
            input,
            pos: MAGIC.len() + line_len + 1,
            last_micros: 0,
            failed: false,
        };
        Ok((header, reader))
    }

    fn read_record(&mut self) -> Result<Record<'a>, CaptureError> {
        let offset = self.pos;
        let head = self
            .input
            .get(offset..offset + 13)
            .ok_or(CaptureError::Truncated(offset))?;
        let (tag, rest) = head.split_first().ok_or(CaptureError::Truncated(offset))?;
        let (micros, len) = rest.split_at(8);
        let kind = RecordKind::from_tag(*tag).ok_or(CaptureError::BadKind(*tag, offset))?;
        let at_micros = u64::from_be_bytes(micros.try_into().unwrap_or_default());
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        if len > MAX_RECORD_LEN {
            return Err(CaptureError::TooLong { offset, len });
        }
        if at_micros < self.last_micros {
            return Err(CaptureError::TimeWentBack(offset));
        }
        if matches!(kind, RecordKind::Eof(_)) && len != 0 {
            return Err(CaptureError::EofWithBytes(offset));
        }
        let bytes = self
            .input
            .get(offset + 13..offset + 13 + len)
            .ok_or(CaptureError::Truncated(offset))?;
        self.pos = offset + 13 + len;
        self.last_micros = at_micros;
        Ok(Record {
            at_micros,
            kind,
            bytes,
        })
    }
}

impl<'a> Iterator for CaptureReader<'a> {
    type Item = Result<Record<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.input.len() {
            return None;
        }
        let record = self.read_record();
        self.failed = record.is_err();
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        write_header(
            &CaptureHeader {
                timestamp: Some(1_700_000_000),
                note: Some("test".into()),
                ..Default::default()
            },
            &mut out,
        );
        write_record(
            0,
            RecordKind::Data(Side::Client),
            b"GET / HTTP/1.1\r\n\r\n",
            &mut out,
        );
        write_record(
            5,
            RecordKind::Data(Side::Upstream),
            b"HTTP/1.1 101",
            &mut out,
        );
        write_record(9, RecordKind::Eof(Side::Client), b"", &mut out);
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let (header, reader) = CaptureReader::new(&bytes).unwrap();
        assert_eq!(header.timestamp, Some(1_700_000_000));
        let records: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].kind, RecordKind::Data(Side::Upstream));
        assert_eq!(records[1].bytes, b"HTTP/1.1 101");
        assert_eq!(records[2].at_micros, 9);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        let body_start = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        let records_start = body_start
            + bytes[body_start..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap()
            + 1;
        for cut in 0..bytes.len() {
            let result = CaptureReader::new(&bytes[..cut])
                .and_then(|(_, r)| r.collect::<Result<Vec<_>, _>>());
            let record_boundaries = [
                records_start,
                records_start + 13 + 18,
                records_start + 2 * 13 + 18 + 12,
            ];
            if record_boundaries.contains(&cut) {
                assert!(result.is_ok(), "cut at record boundary {cut}");
            } else {
                assert!(result.is_err(), "cut at {cut} must fail");
            }
        }
    }

    #[test]
    fn time_must_not_go_back() {
        let mut bytes = Vec::new();
        write_header(&CaptureHeader::default(), &mut bytes);
        write_record(10, RecordKind::Data(Side::Client), b"a", &mut bytes);
        write_record(9, RecordKind::Data(Side::Client), b"b", &mut bytes);
        let (_, reader) = CaptureReader::new(&bytes).unwrap();
        let results: Vec<_> = reader.collect();
        assert!(matches!(results[1], Err(CaptureError::TimeWentBack(_))));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            CaptureReader::new(b"hello").err(),
            Some(CaptureError::BadMagic)
        );
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(b"{}\nZ");
        let (_, mut reader) = CaptureReader::new(&bytes).unwrap();
        assert!(matches!(
            reader.next(),
            Some(Err(CaptureError::Truncated(_)))
        ));
    }
}
