//! Terminal bytes → the inside of a JSON string, fast and UTF-8 safe.
//!
//! This sits on the hot path (every byte of stdout goes through it), so it
//! validates with simdutf8 and escapes 32 bytes per step. Terminal output is
//! escape-dense (a colour sequence and a CRLF on every line), so the cost is
//! in the escapes more than in the scan: every block is copied whole and the
//! output cut back to the first escape (no variable-length copies), escapes
//! are copied as eight-byte table entries, and after an escape the next eight
//! bytes are checked on their own, since escapes come in clusters
//! (`\x1b[0m\r\n\x1b[31m`).
//!
//! A character split across frames must come out whole, so each stream keeps
//! the incomplete tail of its last chunk (at most 3 bytes) in a [`Utf8Carry`]
//! and completes it with the next chunk. Only truly invalid bytes become
//! U+FFFD — one per maximal invalid subsequence, as asciinema's own recorder
//! (Python's incremental `errors="replace"` decoder) does.

const REPLACEMENT: &str = "\u{fffd}";

/// Bytes JSON requires escaped inside a string: controls, `"` and `\\`.
fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The JSON escape of one byte, padded to eight bytes so that it is always
/// copied whole, and its length (0 for bytes written as they are).
type Escape = (u8, [u8; 8]);

const fn escape_of(b: u8) -> Escape {
    const fn hex(n: u8) -> u8 {
        if n < 10 {
            b'0' + n
        } else {
            b'a' + n - 10
        }
    }
    match b {
        b'"' => (2, *b"\\\"\0\0\0\0\0\0"),
        b'\\' => (2, *b"\\\\\0\0\0\0\0\0"),
        b'\n' => (2, *b"\\n\0\0\0\0\0\0"),
        b'\r' => (2, *b"\\r\0\0\0\0\0\0"),
        b'\t' => (2, *b"\\t\0\0\0\0\0\0"),
        0x08 => (2, *b"\\b\0\0\0\0\0\0"),
        0x0c => (2, *b"\\f\0\0\0\0\0\0"),
        0..0x20 => (
            6,
            [b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 0xf), 0, 0],
        ),
        _ => (0, [0; 8]),
    }
}

/// [`escape_of`] for every byte: a lookup, not a branch per kind of escape.
static ESCAPES: [Escape; 256] = {
    let mut table = [(0, [0; 8]); 256];
    let mut rest: &mut [Escape] = &mut table;
    let mut b = 0u8;
    while let Some((slot, tail)) = rest.split_first_mut() {
        *slot = escape_of(b);
        rest = tail;
        b = b.wrapping_add(1);
    }
    table
};

/// Bytes classified per step of the block scan.
const BLOCK: usize = 32;

/// The index of the first byte of `block` that needs escaping.
///
/// Written so that the compiler vectorises the classification (16-byte
/// compares with plain SSE2, no `unsafe`): one flag byte per input byte, then
/// the flags as words. Only a block with an escape pays for locating it.
fn first_special(block: &[u8; BLOCK]) -> Option<usize> {
    let mut flags = [0u8; BLOCK];
    for (flag, &b) in flags.iter_mut().zip(block) {
        *flag = u8::from(is_special(b)).wrapping_neg();
    }
    let mut words = [0u64; BLOCK / 8];
    for (word, bytes) in words.iter_mut().zip(flags.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
    }
    if words.iter().fold(0, |any, w| any | w) == 0 {
        return None;
    }
    // One bit per flag byte (a multiply gathers a word's eight low bits into
    // its top byte), then the lowest one.
    let mut mask = 0u64;
    for (q, word) in words.iter().enumerate() {
        let bits = ((word & ONES).wrapping_mul(GATHER) >> 56) << (8 * q);
        mask |= bits;
    }
    Some(mask.trailing_zeros() as usize)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const GATHER: u64 = 0x0102_0408_1020_4080;

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

/// The `N` bytes of `bytes` at `at`, as an array: fixed-size copies compile
/// to a few register moves where a run of unknown length is a `memcpy` call.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Writes the escapes of the bytes from `*at` on that need one, stopping at
/// the first that does not.
fn write_escapes(bytes: &[u8], at: &mut usize, out: &mut Vec<u8>) {
    while let Some(&(len, text)) = bytes.get(*at).and_then(|&b| ESCAPES.get(usize::from(b))) {
        if len == 0 {
            return;
        }
        let end = out.len() + usize::from(len);
        out.extend_from_slice(&text);
        out.truncate(end);
        *at += 1;
    }
}

/// Escapes `bytes` from the start while a whole block is left and the
/// position is below `end`; returns the position reached (at or past `end`,
/// or where less than a block is left).
fn escape_blocks(bytes: &[u8], end: usize, out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    while at < end {
        let Some(block) = array_at::<BLOCK>(bytes, at) else {
            break;
        };
        // Copied whole before it is known where the first escape is; the
        // output is cut back to it if there is one.
        let start = out.len();
        out.extend_from_slice(block);
        let Some(plain) = first_special(block) else {
            at += BLOCK;
            continue;
        };
        out.truncate(start + plain);
        at += plain;
        write_escapes(bytes, &mut at, out);
        // Escapes come in clusters: look at the next eight bytes alone
        // before classifying whole blocks again.
        while let Some(word) = array_at::<8>(bytes, at) {
            let start = out.len();
            out.extend_from_slice(word);
            let mask = special_mask(u64::from_le_bytes(*word));
            if mask == 0 {
                at += 8;
                break;
            }
            let plain = (mask.trailing_zeros() / 8) as usize;
            out.truncate(start + plain);
            at += plain;
            write_escapes(bytes, &mut at, out);
        }
    }
    at
}

/// Appends valid UTF-8 `text` to `out`, escaped for a JSON string: `"`,
/// `\\` and controls are escaped (with the short forms where JSON has
/// them). Everything else, DEL and all non-ASCII characters included, is
/// written as is, as asciinema does.
pub fn escape_str(text: &str, out: &mut Vec<u8>) {
    escape_valid(text.as_bytes(), out);
}

/// [`escape_str`] for bytes already known to be valid UTF-8.
fn escape_valid(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + bytes.len() / 8 + BLOCK);
    let done = escape_blocks(bytes, bytes.len(), out);
    let rest = bytes.get(done..).unwrap_or_default();
    if rest.is_empty() {
        return;
    }
    // Less than a block is left: pad it with spaces (written as they are) to
    // run the same code, then cut the padding off the output.
    let mut padded = [b' '; 2 * BLOCK];
    for (slot, &b) in padded.iter_mut().zip(rest) {
        *slot = b;
    }
    let scanned = escape_blocks(&padded, rest.len(), out);
    let padding = scanned.saturating_sub(rest.len());
    out.truncate(out.len().saturating_sub(padding));
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

    /// serde_json writes the same escapes as asciinema's recorder (short
    /// forms, lowercase `\\u00XX`, DEL and non-ASCII as they are), so it is
    /// the reference.
    fn reference(text: &str) -> Vec<u8> {
        let quoted = serde_json::to_string(text).unwrap();
        quoted.as_bytes()[1..quoted.len() - 1].to_vec()
    }

    #[test]
    fn the_reference_has_the_escape_rules_of_the_cast_format() {
        assert_eq!(reference("\"\\\n\r\t\u{8}\u{c}"), br#"\"\\\n\r\t\b\f"#);
        assert_eq!(reference("\u{0}\u{1b}\u{1f}"), br"\u0000\u001b\u001f");
        assert_eq!(reference("\u{7f}é€😀/"), "\u{7f}é€😀/".as_bytes());
    }

    #[test]
    fn every_ascii_byte_at_every_block_offset_is_escaped_like_the_reference() {
        for b in 0u8..0x80 {
            for at in 0..2 * BLOCK + 3 {
                for len in [at + 1, at + 2, at + 9, 2 * BLOCK + 8] {
                    let mut text = "x".repeat(len);
                    text.replace_range(at..at + 1, &char::from(b).to_string());
                    let mut out = Vec::new();
                    escape_str(&text, &mut out);
                    assert_eq!(out, reference(&text), "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn escaping_appends_to_what_is_already_written() {
        let mut out = b"[0.1, \"o\", \"".to_vec();
        escape_str("a\u{1b}[0m\r\n", &mut out);
        assert_eq!(out, br#"[0.1, "o", "a\u001b[0m\r\n"#);
    }

    #[test]
    fn the_block_scan_finds_the_first_special_byte() {
        for at in 0..BLOCK {
            for special in [0u8, 0x1b, 0x1f, b'"', b'\\'] {
                let mut block = [b'a'; BLOCK];
                block[at] = special;
                if at + 1 < BLOCK {
                    block[at + 1] = 0x1b;
                }
                assert_eq!(first_special(&block), Some(at), "at {at}");
            }
        }
        for plain in [b' ', b'a', 0x7f, 0x80, 0xff] {
            assert_eq!(first_special(&[plain; BLOCK]), None);
        }
    }

    #[test]
    fn the_word_scan_finds_the_first_special_byte() {
        for at in 0..8 {
            for special in [0u8, 0x1b, 0x1f, b'"', b'\\'] {
                let mut word = [b'a'; 8];
                word[at] = special;
                if at + 1 < 8 {
                    word[at + 1] = 0x1b;
                }
                let mask = special_mask(u64::from_le_bytes(word));
                assert_eq!(mask.trailing_zeros() / 8, at as u32);
            }
        }
        assert_eq!(special_mask(u64::from_le_bytes([0x7f; 8])), 0);
        assert_eq!(special_mask(u64::from_le_bytes([0xff; 8])), 0);
    }

    /// Characters weighted towards the ones the escaping cares about.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let char = prop_oneof![
            4 => any::<char>(),
            4 => (0u8..0x20).prop_map(char::from),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\u{7f}'),
            1 => Just('é'),
            1 => Just('😀'),
            6 => Just('a'),
        ];
        proptest::collection::vec(char, 0..160).prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_like_the_reference(text in text()) {
            let mut out = Vec::new();
            escape_str(&text, &mut out);
            proptest::prop_assert_eq!(out, reference(&text));
        }
    }
}
