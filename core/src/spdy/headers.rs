//! Name/value header blocks and their zlib compression.
//!
//! SYN_STREAM, SYN_REPLY and HEADERS carry a name/value block (SPDY/3.1
//! draft, section 2.6.10), compressed with zlib primed with the SPDY/3
//! dictionary. Uncompressed, the block is:
//!
//! ```text
//! | number of pairs (32) |
//! | name length (32) | name | value length (32) | value |   × pairs
//! ```
//!
//! Names are non-empty and unique within a block (lowercase on the wire);
//! a name with several values carries them NUL-separated in one value.
//!
//! Each direction of a connection is **one** zlib stream: the sender
//! sync-flushes after every block and never resets, so the receiver must
//! inflate every block of that direction, in order, with one context.
//! [`HeaderInflater`] is that receiving context; [`HeaderDeflater`] the
//! sending one.

use std::collections::HashSet;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::{SPDY3_DICTIONARY, SPDY3_DICTIONARY_ID};
use super::SpdyError;

/// Growth step of the inflate buffer: blocks are small, bombs are not.
const INFLATE_STEP: usize = 4096;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    match bytes.get(at..at.checked_add(4)?) {
        Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
        _ => None,
    }
}

/// A validated, inflated name/value block, borrowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NvBlock<'a> {
    /// The pairs, after the count word.
    pairs: &'a [u8],
}

impl<'a> NvBlock<'a> {
    /// Checks the whole block: count, every length, non-empty unique names,
    /// nothing after the last pair.
    pub fn parse(block: &'a [u8]) -> Result<NvBlock<'a>, SpdyError> {
        let count = be32(block, 0).ok_or(SpdyError::MalformedHeaderBlock(
            "shorter than its pair count",
        ))?;
        let pairs = block.get(4..).unwrap_or_default();
        let mut names = HashSet::new();
        let mut rest = pairs;
        // Every pair takes at least 8 bytes, so `rest` runs out long before
        // a hostile count could make this loop long.
        for _ in 0..count {
            let Pair {
                name, rest: after, ..
            } = split_pair(rest)?;
            if name.is_empty() {
                return Err(SpdyError::MalformedHeaderBlock("empty header name"));
            }
            if !names.insert(name) {
                return Err(SpdyError::MalformedHeaderBlock("duplicate header name"));
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(SpdyError::MalformedHeaderBlock(
                "bytes after the last name/value pair",
            ));
        }
        Ok(NvBlock { pairs })
    }

    /// The pairs: name and raw (NUL-joined) value.
    pub fn iter(&self) -> NvIter<'a> {
        NvIter { rest: self.pairs }
    }

    /// The raw value of the first pair whose name matches, ignoring ASCII
    /// case.
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// One pair split off the front of the pairs, and what follows it.
struct Pair<'a> {
    name: &'a [u8],
    value: &'a [u8],
    rest: &'a [u8],
}

fn split_pair(bytes: &[u8]) -> Result<Pair<'_>, SpdyError> {
    let (name, rest) = split_string(bytes)?;
    let (value, rest) = split_string(rest)?;
    Ok(Pair { name, value, rest })
}

fn split_string(bytes: &[u8]) -> Result<(&[u8], &[u8]), SpdyError> {
    let len = be32(bytes, 0).ok_or(SpdyError::MalformedHeaderBlock(
        "truncated name/value length",
    ))? as usize;
    let rest = bytes.get(4..).unwrap_or_default();
    rest.split_at_checked(len)
        .ok_or(SpdyError::MalformedHeaderBlock(
            "name/value longer than the block",
        ))
}

/// Iterator over a validated block's pairs.
#[derive(Debug, Clone)]
pub(crate) struct NvIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NvIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated by `NvBlock::parse`; a failure here cannot
        // happen and simply ends the iteration.
        let pair = split_pair(self.rest).ok()?;
        self.rest = pair.rest;
        Some((pair.name, pair.value))
    }
}

/// Encodes `headers` as an uncompressed name/value block. Names are
/// lowercased; repeated names are merged into one pair with NUL-joined
/// values, in order of first appearance.
pub(crate) fn encode_nv_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut merged: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(0);
                joined.extend_from_slice(value.as_bytes());
            }
            None => merged.push((name, value.as_bytes().to_vec())),
        }
    }
    let mut block = Vec::new();
    push_len(&mut block, merged.len());
    for (name, value) in &merged {
        push_len(&mut block, name.len());
        block.extend_from_slice(name.as_bytes());
        push_len(&mut block, value.len());
        block.extend_from_slice(value);
    }
    block
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

/// The receiving zlib context of one direction.
#[derive(Debug)]
pub(crate) struct HeaderInflater {
    // Boxed: zlib state is large and lives as long as the connection.
    z: Box<Decompress>,
}

impl Default for HeaderInflater {
    fn default() -> Self {
        HeaderInflater {
            z: Box::new(Decompress::new(true)),
        }
    }
}

impl HeaderInflater {
    /// Inflates one header block into `out` (cleared first). More than
    /// `max` inflated bytes is [`SpdyError::HeaderBlockTooLarge`]: the
    /// output grows in steps and is checked after each, so a zlib bomb
    /// costs at most `max` plus one step.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), SpdyError> {
        out.clear();
        let mut input = compressed;
        loop {
            if out.len() > max {
                return Err(SpdyError::HeaderBlockTooLarge { limit: max });
            }
            if out.capacity() == out.len() {
                let room = max.saturating_add(1).saturating_sub(out.len());
                out.reserve_exact(room.clamp(1, INFLATE_STEP));
            }
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let result = self.z.decompress_vec(input, out, FlushDecompress::None);
            let consumed = usize::try_from(self.z.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = self.z.total_out() - out_before;
            input = input.get(consumed..).unwrap_or_default();
            let status = match result {
                Ok(status) => status,
                Err(e) => match e.needs_dictionary() {
                    Some(SPDY3_DICTIONARY_ID) => {
                        self.z
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|e| SpdyError::Zlib(e.to_string()))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(SpdyError::Zlib(format!(
                            "header block wants dictionary {other:#010x}, not the SPDY/3 one"
                        )))
                    }
                    None => return Err(SpdyError::Zlib(e.to_string())),
                },
            };
            if out.len() > max {
                return Err(SpdyError::HeaderBlockTooLarge { limit: max });
            }
            let output_left = out.len() < out.capacity();
            if input.is_empty() && output_left {
                // zlib stops early only for lack of input or of output:
                // with room left, everything this block holds is out.
                return Ok(());
            }
            if consumed == 0 && produced == 0 && output_left {
                return Err(SpdyError::Zlib(match status {
                    Status::StreamEnd => "header bytes after the end of the zlib stream".into(),
                    _ => "zlib made no progress on the header block".into(),
                }));
            }
        }
    }
}

/// The sending zlib context of one direction.
#[derive(Debug)]
pub(crate) struct HeaderDeflater {
    z: Box<Compress>,
    primed: bool,
}

impl Default for HeaderDeflater {
    fn default() -> Self {
        HeaderDeflater {
            // spdystream compresses with zlib.BestCompression.
            z: Box::new(Compress::new(Compression::best(), true)),
            primed: false,
        }
    }
}

impl HeaderDeflater {
    /// Compresses one uncompressed block, appending to `out`, and
    /// sync-flushes so the peer can inflate it without the next one.
    pub fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), SpdyError> {
        if !self.primed {
            // Before the first byte: zlib then writes the DICTID into the
            // stream header (RFC 1950, FDICT).
            self.z
                .set_dictionary(SPDY3_DICTIONARY)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            self.primed = true;
        }
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(block.len() / 2 + 256);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            let consumed = usize::try_from(self.z.total_in() - before).unwrap_or(usize::MAX);
            input = input.get(consumed..).unwrap_or_default();
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(blocks: &[Vec<u8>], max: usize) -> Result<Vec<Vec<u8>>, SpdyError> {
        let mut inflater = HeaderInflater::default();
        let mut out = Vec::new();
        let mut got = Vec::new();
        for b in blocks {
            inflater.inflate(b, max, &mut out)?;
            got.push(out.clone());
        }
        Ok(got)
    }

    #[test]
    fn blocks_round_trip_through_one_context_per_direction() {
        let mut d = HeaderDeflater::default();
        let plain: Vec<Vec<u8>> = ["error", "stdin", "stdout", "stderr", "resize"]
            .iter()
            .map(|t| encode_nv_block(&[("streamtype", t)]))
            .collect();
        let compressed: Vec<Vec<u8>> = plain
            .iter()
            .map(|p| {
                let mut out = Vec::new();
                d.compress(p, &mut out).unwrap();
                out
            })
            .collect();
        // RFC 1950: CMF 0x78, FLG with FDICT (0x20) set, then the DICTID.
        assert_eq!(compressed[0][0], 0x78);
        assert_ne!(compressed[0][1] & 0x20, 0);
        assert_eq!(&compressed[0][2..6], &SPDY3_DICTIONARY_ID.to_be_bytes());
        // Later blocks continue the stream: no new zlib header.
        assert_ne!(compressed[1][..2], compressed[0][..2]);
        assert_eq!(inflate_all(&compressed, 1024).unwrap(), plain);
        // Skipping a block breaks the shared context.
        let skipped = vec![compressed[0].clone(), compressed[2].clone()];
        assert!(inflate_all(&skipped, 1024)
            .map(|g| g != [plain[0].clone(), plain[2].clone()])
            .unwrap_or(true));
    }

    #[test]
    fn an_inflated_block_over_the_limit_is_refused() {
        let mut d = HeaderDeflater::default();
        let big = "a".repeat(100_000);
        let mut out = Vec::new();
        d.compress(&encode_nv_block(&[("x", &big)]), &mut out)
            .unwrap();
        assert!(out.len() < 1000, "compresses well: {}", out.len());
        assert_eq!(
            inflate_all(&[out], 10_000),
            Err(SpdyError::HeaderBlockTooLarge { limit: 10_000 })
        );
    }

    #[test]
    fn garbage_is_a_zlib_error() {
        assert!(matches!(
            inflate_all(&[b"not zlib at all".to_vec()], 1024),
            Err(SpdyError::Zlib(_))
        ));
    }

    #[test]
    fn nv_blocks_are_validated() {
        let ok = encode_nv_block(&[("streamtype", "stdin"), ("X-Multi", "a"), ("x-multi", "b")]);
        let block = NvBlock::parse(&ok).unwrap();
        assert_eq!(block.get(b"streamtype"), Some(&b"stdin"[..]));
        assert_eq!(block.get(b"x-multi"), Some(&b"a\0b"[..]));
        assert_eq!(block.iter().count(), 2);
        // Zero pairs: what spdystream's SYN_REPLY carries.
        assert_eq!(NvBlock::parse(&[0, 0, 0, 0]).unwrap().iter().count(), 0);

        let malformed: &[&[u8]] = &[
            b"",
            b"\0\0\0",
            b"\0\0\0\x01",
            b"\0\0\0\x01\0\0\0\x05ab",
            b"\0\0\0\x01\0\0\0\0\0\0\0\0",
            b"\0\0\0\x02\0\0\0\x01a\0\0\0\0\0\0\0\x01a\0\0\0\0",
            b"\0\0\0\0x",
            b"\xff\xff\xff\xff",
        ];
        for m in malformed {
            assert!(
                matches!(NvBlock::parse(m), Err(SpdyError::MalformedHeaderBlock(_))),
                "{m:?}"
            );
        }
    }
}
