//! The on-disk spill queue's framing: append-only records, each
//! length-prefixed and checksummed, parsed back incrementally with typed
//! errors. The core decides and frames; the adapter only appends, syncs,
//! reads at an offset and truncates (see [`super::AuditOutput`]).
//!
//! # Record format
//!
//! All integers big-endian; CRC-32 is the IEEE polynomial (as in zlib, PNG,
//! Ethernet).
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `KCAQ` |
//! | 4 | 1 | kind: `1` event, `2` delivered-through mark |
//! | 5 | 4 | payload length (≤ the configured record bound; `0` for marks) |
//! | 9 | 8 | sequence number (event: its own; mark: every event up to and including it was delivered) |
//! | 17 | 4 | CRC-32 of the payload |
//! | 21 | 4 | CRC-32 of bytes 0–20 (the header) |
//! | 25 | n | payload: the event's JSON, exactly as sent in an `EventList` |
//!
//! The header has its own checksum so a corrupt length is never trusted:
//! the reader never waits for, or allocates, a payload it has not verified
//! the header of, and every length is bounded.
//!
//! # Damage
//!
//! - bytes that do not start a valid header (bad magic, header checksum,
//!   kind or length) are skipped up to the next valid header, reported once
//!   per damaged region as [`SpillError::Corrupt`];
//! - a valid header whose payload fails its checksum or is not JSON skips
//!   that record ([`SpillError::Checksum`], [`SpillError::NotJson`]): that
//!   one event is lost, and reported;
//! - a file that ends inside a record (a torn append after a crash) is
//!   [`SpillError::Truncated`]; the batcher then truncates the file there so
//!   new records do not land behind a torn one.
//!
//! Any chunking of the bytes yields the same records and the same errors.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"KCAQ";
/// The header's length.
pub const HEADER_LEN: usize = 25;

const KIND_EVENT: u8 = 1;
const KIND_MARK: u8 = 2;

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset of the record's first byte in the file.
    pub offset: u64,
    pub seq: u64,
    pub kind: RecordKind,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// An event's JSON.
    Event(Bytes),
    /// Every event with a sequence number up to and including the record's
    /// was delivered.
    Delivered,
}

/// Damage found in the spill file, with the offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpillError {
    #[error("{len} corrupt bytes at offset {offset} skipped")]
    Corrupt { offset: u64, len: u64 },
    #[error("record {seq} at offset {offset}: payload checksum mismatch, event lost")]
    Checksum { offset: u64, seq: u64 },
    #[error("record {seq} at offset {offset}: payload is not JSON, event lost")]
    NotJson { offset: u64, seq: u64 },
    #[error("the file ends inside a record at offset {offset} ({have} bytes; a torn write)")]
    Truncated { offset: u64, have: u64 },
    #[error("spill file ended at {have} bytes, {expected} were written")]
    Short { have: u64, expected: u64 },
}

/// Frames one event record.
pub fn encode_event(seq: u64, json: &[u8]) -> Bytes {
    encode(KIND_EVENT, seq, json)
}

/// Frames a delivered-through mark.
pub fn encode_mark(seq: u64) -> Bytes {
    encode(KIND_MARK, seq, &[])
}

fn encode(kind: u8, seq: u64, payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(&MAGIC);
    out.put_u8(kind);
    out.put_u32(len);
    out.put_u64(seq);
    out.put_u32(crc32(payload));
    let header_crc = crc32(&out);
    out.put_u32(header_crc);
    out.put_slice(payload);
    out.freeze()
}

/// The length of an event record with a `json_len`-byte payload.
pub fn event_record_len(json_len: usize) -> u64 {
    (HEADER_LEN + json_len) as u64
}

/// Parses records from the bytes of a spill file, fed in any chunks.
#[derive(Debug)]
pub struct SpillReader {
    buf: BytesMut,
    /// File offset of `buf[0]`.
    offset: u64,
    max_payload: usize,
    /// A damaged region being skipped: its start offset.
    skipping: Option<u64>,
}

impl SpillReader {
    /// A reader starting at file `offset`; payloads over `max_payload`
    /// bytes are treated as corrupt.
    pub fn new(offset: u64, max_payload: usize) -> Self {
        SpillReader {
            buf: BytesMut::new(),
            offset,
            max_payload,
            skipping: None,
        }
    }

    /// The next bytes of the file.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// File offset just past the bytes fed so far.
    pub fn end(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// File offset of the first byte not yet consumed as a record or damage.
    pub fn offset(&self) -> u64 {
        self.skipping.unwrap_or(self.offset)
    }

    /// Bytes held, not yet parsed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next record or damage report; `None` when more bytes are needed.
    pub fn next_record(&mut self) -> Option<Result<Record, SpillError>> {
        loop {
            if self.skipping.is_some() {
                match find_magic(&self.buf) {
                    Some(at) => self.advance(at),
                    None => {
                        // Keep a possible partial magic at the end.
                        let keep = self.buf.len().min(MAGIC.len() - 1);
                        self.advance(self.buf.len() - keep);
                        return None;
                    }
                }
            }
            let header = self.buf.get(..HEADER_LEN)?;
            let Some((kind, len, seq, payload_crc)) = self.parse_header(header) else {
                // Not a record here: skip a byte and look for the next magic.
                self.skipping.get_or_insert(self.offset);
                self.advance(1);
                continue;
            };
            if let Some(start) = self.skipping.take() {
                return Some(Err(SpillError::Corrupt {
                    offset: start,
                    len: self.offset - start,
                }));
            }
            if self.buf.len() < HEADER_LEN + len {
                return None;
            }
            let offset = self.offset;
            self.advance(HEADER_LEN);
            let payload = self.buf.split_to(len).freeze();
            self.offset += len as u64;
            if crc32(&payload) != payload_crc {
                return Some(Err(SpillError::Checksum { offset, seq }));
            }
            let kind = if kind == KIND_MARK {
                RecordKind::Delivered
            } else if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
                return Some(Err(SpillError::NotJson { offset, seq }));
            } else {
                RecordKind::Event(payload)
            };
            return Some(Ok(Record { offset, seq, kind }));
        }
    }

    /// The file ended: what is left is damage. Call after
    /// [`SpillReader::next_record`] returned `None`.
    pub fn finish(&mut self) -> Option<SpillError> {
        let end = self.end();
        let error = match self.skipping.take() {
            Some(start) => Some(SpillError::Corrupt {
                offset: start,
                len: end - start,
            }),
            None if !self.buf.is_empty() => Some(SpillError::Truncated {
                offset: self.offset,
                have: self.buf.len() as u64,
            }),
            None => None,
        };
        self.buf.clear();
        self.offset = end;
        error
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    /// `(kind, payload length, seq, payload crc)` of a valid header.
    fn parse_header(&self, mut h: &[u8]) -> Option<(u8, usize, u64, u32)> {
        let full = h;
        let mut magic = [0u8; 4];
        h.copy_to_slice(&mut magic);
        let kind = h.get_u8();
        let len = h.get_u32();
        let seq = h.get_u64();
        let payload_crc = h.get_u32();
        let header_crc = h.get_u32();
        let len = usize::try_from(len).ok()?;
        let valid = magic == MAGIC
            && crc32(full.get(..HEADER_LEN - 4)?) == header_crc
            && match kind {
                KIND_EVENT => len <= self.max_payload,
                KIND_MARK => len == 0,
                _ => false,
            };
        valid.then_some((kind, len, seq, payload_crc))
    }
}

fn find_magic(buf: &[u8]) -> Option<usize> {
    buf.windows(MAGIC.len()).position(|w| w == MAGIC)
}

// Const evaluation: an out-of-range index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        let idx = usize::from((c as u8) ^ b);
        CRC_TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8)
    })
}
