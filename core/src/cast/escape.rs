//! Terminal bytes → the inside of a JSON string, fast and UTF-8 safe.
//!
//! This sits on the hot path (every byte of stdout goes through it), so it
//! validates with `std::str::from_utf8` (vectorised in std) and escapes with a
//! lookup table, copying runs of plain bytes in one `extend_from_slice`.
//!
//! A character split across frames must come out whole, so each stream keeps
//! the incomplete tail of its last chunk (at most 3 bytes) in a [`Utf8Carry`]
//! and completes it with the next chunk. Only truly invalid bytes become
//! U+FFFD — one per maximal invalid subsequence, as asciinema's own recorder
//! (Python's incremental `errors="replace"` decoder) does.

/// How a byte is written inside a JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Copied as is.
    Plain,
    /// Written as a two-character escape (`\"`, `\\`, `\n`, …).
    Short(u8),
    /// Written as `\u00XX`.
    Unicode,
}

// Evaluated at compile time: an out-of-range index would fail the build.
#[allow(clippy::indexing_slicing)]
const fn build_table() -> [Class; 256] {
    let mut table = [Class::Plain; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = Class::Unicode;
        b += 1;
    }
    table[0x7f] = Class::Unicode;
    table[b'"' as usize] = Class::Short(b'"');
    table[b'\\' as usize] = Class::Short(b'\\');
    table[b'\n' as usize] = Class::Short(b'n');
    table[b'\r' as usize] = Class::Short(b'r');
    table[b'\t' as usize] = Class::Short(b't');
    table[0x08] = Class::Short(b'b');
    table[0x0c] = Class::Short(b'f');
    table
}

static TABLE: [Class; 256] = build_table();
const HEX: &[u8; 16] = b"0123456789abcdef";
const REPLACEMENT: &str = "\u{fffd}";

/// Appends valid UTF-8 `text` to `out`, escaped for a JSON string.
pub fn escape_str(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // A u8 always indexes a 256-entry table.
        #[allow(clippy::indexing_slicing)]
        let class = TABLE[b as usize];
        if class == Class::Plain {
            continue;
        }
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        match class {
            Class::Short(c) => out.extend_from_slice(&[b'\\', c]),
            _ => {
                // Nibbles always index the 16 hex digits.
                #[allow(clippy::indexing_slicing)]
                let digits = [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]];
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', digits[0], digits[1]]);
            }
        }
        run_start = i + 1;
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
            match std::str::from_utf8(input) {
                Ok(text) => {
                    escape_str(text, out);
                    return replaced;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    escape_str(std::str::from_utf8(valid).unwrap_or_default(), out);
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
        let err = match std::str::from_utf8(window) {
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
            escape_str(std::str::from_utf8(valid).unwrap_or_default(), out);
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
