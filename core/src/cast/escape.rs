//! Terminal bytes → the inside of a JSON string, fast and UTF-8 safe.
//!
//! This sits on the hot path (every byte of stdout goes through it), so it
//! validates with `std::str::from_utf8` (vectorised in std), finds the bytes
//! to escape eight at a time (SWAR), and copies the runs of plain bytes
//! between them with one `extend_from_slice` each.
//!
//! A character split across frames must come out whole, so each stream keeps
//! the incomplete tail of its last chunk (at most 3 bytes) in a [`Utf8Carry`]
//! and completes it with the next chunk. Only truly invalid bytes become
//! U+FFFD — one per maximal invalid subsequence, as asciinema's own recorder
//! (Python's incremental `errors="replace"` decoder) does.

const HEX: &[u8; 16] = b"0123456789abcdef";
const REPLACEMENT: &str = "\u{fffd}";

/// Bytes JSON requires escaped inside a string: controls, `"` and `\\`.
fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` that needs escaping is set in the
/// result — exactly for the lowest such byte (borrows may also mark bytes
/// above it, which is why only the lowest is used).
fn special_mask(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGHS
}

/// The index of the first byte at or after `from` that needs escaping.
/// Scans eight bytes at a time: terminal output is mostly plain text.
fn next_special(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let mask = special_mask(word);
        if mask != 0 {
            return Some(offset + (mask.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is_special(b))
        .map(|k| offset + k)
}

/// Appends the JSON escape of one special byte.
fn write_escape(b: u8, out: &mut Vec<u8>) {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x08 => b'b',
        0x0c => b'f',
        _ => {
            let hex = |n: u8| HEX.get(usize::from(n & 0xf)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b)]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

/// Appends valid UTF-8 `text` to `out`, escaped for a JSON string: runs of
/// plain bytes are copied whole, `"`, `\\` and controls are escaped (with
/// the short forms where JSON has them). Everything else, DEL and all
/// non-ASCII characters included, is written as is, as asciinema does.
pub fn escape_str(text: &str, out: &mut Vec<u8>) {
    escape_valid(text.as_bytes(), out);
}

/// [`escape_str`] for bytes already known to be valid UTF-8.
fn escape_valid(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + bytes.len() / 8);
    let mut run_start = 0;
    while let Some(pos) = next_special(bytes, run_start) {
        out.extend_from_slice(bytes.get(run_start..pos).unwrap_or_default());
        if let Some(&b) = bytes.get(pos) {
            write_escape(b, out);
        }
        run_start = pos + 1;
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

/// The incomplete UTF-8 sequence at the end of one stream's last chunk.
#[derive(Debug, Default, Clone)]
pub struct Utf8Carry {
    bytes: [u8; 4],
    len: u8,
}

impl Utf8Carry {
    /// Whether bytes are held back.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn held(&self) -> &[u8] {
        self.bytes.get(..self.len as usize).unwrap_or_default()
    }

    /// Escapes `input` (continuing this stream) into `out`; returns how many
    /// invalid sequences were replaced by U+FFFD. A trailing incomplete
    /// character is held back for the next call.
    pub fn escape(&mut self, input: &[u8], out: &mut Vec<u8>) -> u64 {
        let (mut replaced, mut input) = (0, input);
        if !self.is_empty() {
            let (r, rest) = self.complete_held(input, out);
            replaced += r;
            match rest {
                Some(rest) => input = rest,
                None => return replaced,
            }
        }
        loop {
            match validate(input) {
                Ok(text) => {
                    escape_str(text, out);
                    return replaced;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    escape_valid(valid, out);
                    match e.error_len() {
                        None => {
                            // An incomplete character at the end: hold it.
                            self.hold(rest);
                            return replaced;
                        }
                        Some(bad) => {
                            out.extend_from_slice(REPLACEMENT.as_bytes());
                            replaced += 1;
                            input = rest.get(bad..).unwrap_or_default();
                        }
                    }
                }
            }
        }
    }

    /// Completes the held character with the first bytes of `input`.
    /// Returns the replacements written and the rest of `input` to escape
    /// (`None` when all of it was taken and is still held).
    fn complete_held<'i>(&mut self, input: &'i [u8], out: &mut Vec<u8>) -> (u64, Option<&'i [u8]>) {
        let held = self.len as usize;
        let take = input.len().min(4);
        let mut joined = [0u8; 8];
        for (slot, &b) in joined
            .iter_mut()
            .zip(self.held().iter().chain(input.iter().take(take)))
        {
            *slot = b;
        }
        let window = joined.get(..held + take).unwrap_or_default();
        self.len = 0;
        let err = match validate(window) {
            Ok(text) => {
                escape_str(text, out);
                return (0, Some(input.get(take..).unwrap_or_default()));
            }
            Err(e) => e,
        };
        if err.valid_up_to() >= held {
            // The held character completed (perhaps followed by more).
            let used = err.valid_up_to();
            let valid = window.get(..used).unwrap_or_default();
            escape_valid(valid, out);
            return (0, Some(input.get(used - held..).unwrap_or_default()));
        }
        match err.error_len() {
            None => {
                // Still incomplete: all of the (short) input joins the held bytes.
                self.hold(window);
                (0, None)
            }
            Some(bad) => {
                // The held bytes start an invalid sequence: replace it and go
                // on after it.
                out.extend_from_slice(REPLACEMENT.as_bytes());
                let skip = (err.valid_up_to() + bad).saturating_sub(held);
                (1, Some(input.get(skip..).unwrap_or_default()))
            }
        }
    }

    fn hold(&mut self, tail: &[u8]) {
        // An incomplete UTF-8 character is at most 3 bytes.
        let n = tail.len().min(self.bytes.len());
        for (slot, &b) in self.bytes.iter_mut().zip(tail.iter().take(n)) {
            *slot = b;
        }
        self.len = n as u8;
    }

    /// The stream ended: a held incomplete character is invalid. Returns the
    /// number of replacements written (0 or 1).
    pub fn flush(&mut self, out: &mut Vec<u8>) -> u64 {
        if self.is_empty() {
            return 0;
        }
        self.len = 0;
        out.extend_from_slice(REPLACEMENT.as_bytes());
        1
    }
}

/// UTF-8 validation with std's error details, vectorised: on typical
/// terminal output (a fifth of the bytes in multi-byte characters) std's
/// validator was two thirds of the cast writer's time.
fn validate(bytes: &[u8]) -> Result<&str, simdutf8::compat::Utf8Error> {
    simdutf8::compat::from_utf8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_escaped_as_serde_json_would_read_it_back() {
        let text: String = (0u8..0x80).map(char::from).chain("é€😀".chars()).collect();
        for start in 0..16 {
            let piece = &text[start..];
            let mut out = b"\"".to_vec();
            escape_str(piece, &mut out);
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, piece);
        }
    }

    #[test]
    fn the_word_scan_finds_the_first_special_byte() {
        for len in 0..20 {
            for at in 0..len {
                for special in [0u8, 0x1b, 0x1f, b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    if at + 1 < len {
                        bytes[at + 1] = 0x1b;
                    }
                    assert_eq!(next_special(&bytes, 0), Some(at), "len {len} at {at}");
                }
            }
            assert_eq!(next_special(&vec![0x7f; len], 0), None);
            assert_eq!(next_special(&vec![0xff; len], 0), None);
        }
    }
}
