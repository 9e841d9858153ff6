//! Terminal bytes → the inside of a JSON string, fast and UTF-8 safe.
//!
//! This sits on the hot path (every byte of stdout goes through it), so it
//! validates with simdutf8 and scans 64 bytes per step. Terminal output is
//! escape-dense (a colour sequence and a CRLF on every line), so the cost is
//! in the escapes as much as in the scan: every step's bytes are copied whole
//! and the output cut back to the first escape (no variable-length copies),
//! and since escapes come in clusters (`\x1b[0m\r\n\x1b[31m` is four escapes
//! in twelve bytes) the eight bytes from the first escape on, and then
//! sixteen at a time while escapes go on, are written in one pass without a
//! branch per byte, each byte's output taken from a table.
//!
//! A character split across frames must come out whole, so each stream keeps
//! the incomplete tail of its last chunk (at most 3 bytes) in a [`Utf8Carry`]
//! and completes it with the next chunk. Only truly invalid bytes become
//! U+FFFD — one per maximal invalid subsequence, as asciinema's own recorder
//! (Python's incremental `errors="replace"` decoder) does.

const REPLACEMENT: &str = "\u{fffd}";

/// The JSON escape of one byte, padded to eight bytes, and its length (0 for
/// bytes written as they are).
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

/// What every byte becomes in a JSON string, packed in a word: the bytes to
/// write in the low bytes, and how many in the top byte (1 for a byte written
/// as it is, 2 or 6 for an escape). One load per byte, no branch.
static EXPANSIONS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut rest: &mut [u64] = &mut table;
    let mut b = 0u8;
    while let Some((slot, tail)) = rest.split_first_mut() {
        *slot = match escape_of(b) {
            (0, _) => b as u64 | 1 << 56,
            (len, text) => u64::from_le_bytes(text) | (len as u64) << 56,
        };
        rest = tail;
        b = b.wrapping_add(1);
    }
    table
};

/// Bytes in two SSE2 registers.
const BLOCK: usize = 32;

/// Bytes classified per step of the scan: four SSE2 registers, so that a
/// plain step (the usual case: terminal lines are longer) pays its loop and
/// capacity checks once per 64 bytes.
const WIDE: usize = 2 * BLOCK;

/// Bytes written in one pass from the first escape of a step on. Escapes
/// come in clusters (`\x1b[0m\r\n\x1b[31m` has escapes at 0, 4, 5 and 6).
const WINDOW: usize = 8;

/// Bytes written in one pass after a window while the first eight of them
/// hold an escape: escape-dense output (`ls --color`, progress bars) is
/// written this way instead of a scan step per escape.
const RUN: usize = 16;

/// Zero exactly for the bytes JSON requires escaped inside a string
/// (controls, `"` and `\\`): the minimum of `b - 0x1f` (saturating),
/// `b ^ '"'` and `b ^ '\\'`. The compiler turns it into three SSE2 operations
/// per 16 bytes (no `unsafe`).
fn key(b: u8) -> u8 {
    b.saturating_sub(0x1f).min(b ^ b'"').min(b ^ b'\\')
}

/// Whether any of `keys` is zero: the minimum across the 16-byte lanes and
/// one compare, which the compiler turns into a single `pmovmskb` test.
fn any_zero(keys: &[u8; WIDE]) -> bool {
    let mut low = [u8::MAX; 16];
    for lane in keys.chunks_exact(16) {
        for (m, &k) in low.iter_mut().zip(lane) {
            *m = (*m).min(k);
        }
    }
    // Not `contains(&0)`: on bytes that calls `memchr`.
    !low.iter().all(|&m| m > 0)
}

/// The index of the first zero of `keys` (`WIDE` if none).
///
/// Safe Rust 1.85 has no `movemask`, so the flags are gathered into a bit
/// mask by a multiply per eight flags (each a 0 or 1 byte): branch-free, where
/// looking for the first non-zero word mispredicts.
fn first_zero(keys: &[u8; WIDE]) -> usize {
    let mut flags = [0u8; WIDE];
    for (flag, &k) in flags.iter_mut().zip(keys) {
        *flag = u8::from(k == 0);
    }
    let mut mask = 0u64;
    for (q, word) in flags.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        mask |= (word.wrapping_mul(GATHER) >> 56) << (8 * q);
    }
    (mask.trailing_zeros() as usize).min(WIDE)
}

/// Whether any of the eight bytes of `window` needs escaping, in a word
/// (exact for "any": a borrow can only mark bytes above a real match).
fn any_special(window: &[u8; 8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let word = u64::from_le_bytes(*window);
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGHS != 0
}

/// Moves bit 0 of each byte of a word to bit 56 + its index.
const GATHER: u64 = 0x0102_0408_1020_4080;

/// Scratch space for [`expand_window`]: an eight-byte store fits at any
/// `u8` position, so the stores need no bounds checks.
type Stage = [u8; 256 + 8];

/// Writes the output of `window` without a branch per byte: each byte's
/// [`EXPANSIONS`] word is stored whole at the current position of `stage`
/// and the position moved on by its length; then the stage is copied out
/// whole and the output cut back to what was written.
fn expand_window<const N: usize>(window: &[u8; N], stage: &mut Stage, out: &mut Vec<u8>) {
    // At most 6 × 16 = 96 bytes: the `u8` position never wraps.
    const { assert!(N <= 16) };
    let mut end = 0u8;
    for &b in window {
        let word = EXPANSIONS.get(usize::from(b)).copied().unwrap_or(0);
        let at = usize::from(end);
        if let Some(slot) = stage.get_mut(at..at + 8) {
            slot.copy_from_slice(&word.to_le_bytes());
        }
        end = end.wrapping_add((word >> 56) as u8);
    }
    let start = out.len();
    out.extend_from_slice(stage.get(..6 * N).unwrap_or_default());
    out.truncate(start + usize::from(end));
}

/// Escapes `bytes` from the start while a whole step is left; returns the
/// position reached. What is left is less than a step, or less than a window
/// from an escape on.
fn escape_blocks(bytes: &[u8], out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    let mut stage: Stage = [0; 256 + 8];
    while let Some(wide) = bytes.get(at..).and_then(<[u8]>::first_chunk::<WIDE>) {
        let keys = wide.map(key);
        // Copied whole before it is known where the first escape is; the
        // output is cut back to it if there is one.
        let start = out.len();
        out.extend_from_slice(wide);
        if !any_zero(&keys) {
            at += WIDE;
            continue;
        }
        let plain = first_zero(&keys);
        out.truncate(start + plain);
        at += plain;
        let Some(window) = bytes.get(at..).and_then(<[u8]>::first_chunk::<WINDOW>) else {
            break;
        };
        expand_window(window, &mut stage, out);
        at += WINDOW;
        while let Some(run) = bytes.get(at..).and_then(<[u8]>::first_chunk::<RUN>) {
            if !run.first_chunk::<8>().is_some_and(any_special) {
                break;
            }
            expand_window(run, &mut stage, out);
            at += RUN;
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
    out.reserve(bytes.len() + bytes.len() / 8 + WIDE);
    let done = escape_blocks(bytes, out);
    let rest = bytes.get(done..).unwrap_or_default();
    if rest.is_empty() {
        return;
    }
    // Less than a step is left: pad it with spaces (written as they are) to
    // run the same code, then cut the padding off the output. In the padded
    // copy every escape is within the first step, so its window fits, and the
    // scan only stops once less than a step is left, past the end of `rest`.
    let mut padded = [b' '; 2 * WIDE];
    for (slot, &b) in padded.iter_mut().zip(rest) {
        *slot = b;
    }
    let scanned = escape_blocks(&padded, out);
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
    fn the_key_is_zero_exactly_for_the_bytes_with_an_escape() {
        for b in 0..=u8::MAX {
            assert_eq!(key(b) == 0, escape_of(b).0 != 0, "byte {b:#x}");
        }
    }

    #[test]
    fn the_expansions_are_the_bytes_or_their_escapes() {
        for b in 0..=u8::MAX {
            let word = EXPANSIONS[usize::from(b)].to_le_bytes();
            let len = usize::from(word[7]);
            let mut out = Vec::new();
            if b < 0x80 {
                escape_str(&char::from(b).to_string(), &mut out);
            } else {
                out.push(b);
            }
            assert_eq!(&word[..len], &out[..], "byte {b:#x}");
        }
    }

    #[test]
    fn the_step_scan_finds_the_first_special_byte() {
        for at in 0..WIDE {
            for special in [0u8, 0x1b, 0x1f, b'"', b'\\'] {
                let mut step = [b'a'; WIDE];
                step[at] = special;
                if at + 1 < WIDE {
                    step[at + 1] = 0x1b;
                }
                let keys = step.map(key);
                assert!(any_zero(&keys), "at {at}");
                assert_eq!(first_zero(&keys), at, "at {at}");
            }
        }
        for plain in [b' ', b'!', b'#', b'[', b']', b'a', 0x7f, 0x80, 0xdc, 0xff] {
            let keys = [plain; WIDE].map(key);
            assert!(!any_zero(&keys));
            assert_eq!(first_zero(&keys), WIDE);
        }
    }

    #[test]
    fn every_byte_at_every_step_and_window_offset_is_escaped_like_the_reference() {
        // A special byte at every offset of two steps and a window, followed
        // at every distance by another special or a multi-byte character, so
        // that clusters and characters straddle step and window ends.
        let specials = ['\u{1b}', '\n', '"', '\\', '\u{0}', '\u{1f}'];
        let others = ['\u{1b}', '\r', 'é', '€', '😀', '\u{7f}'];
        for at in 0..2 * WIDE + WINDOW + 3 {
            for (i, &first) in specials.iter().enumerate() {
                for gap in 1..WINDOW + 2 * RUN + 3 {
                    let second = others[(at + gap + i) % others.len()];
                    let mut text = "x".repeat(at);
                    text.push(first);
                    text.push_str(&"y".repeat(gap - 1));
                    text.push(second);
                    text.push_str(&"z".repeat((at * 7 + gap) % (WIDE + 5)));
                    let mut out = Vec::new();
                    escape_str(&text, &mut out);
                    assert_eq!(out, reference(&text), "{first:?} at {at}, then {second:?}");
                }
            }
        }
    }

    #[test]
    fn a_run_of_escapes_longer_than_a_window_is_escaped_like_the_reference() {
        for len in 0..3 * WIDE {
            for lead in 0..WIDE + 1 {
                let text: String = "a"
                    .repeat(lead)
                    .chars()
                    .chain((0..len).map(|i| char::from((i % 32) as u8)))
                    .collect();
                let mut out = Vec::new();
                escape_str(&text, &mut out);
                assert_eq!(out, reference(&text), "{len} escapes after {lead}");
            }
        }
    }

    /// What [`Utf8Carry`] must write for `bytes` however they are cut: the
    /// escape of the lossy decoding (one U+FFFD per maximal invalid
    /// subsequence, as std and Python decode), and how many were replaced.
    fn lossy_reference(bytes: &[u8]) -> (Vec<u8>, u64) {
        let replaced = bytes
            .utf8_chunks()
            .filter(|c| !c.invalid().is_empty())
            .count() as u64;
        (reference(&String::from_utf8_lossy(bytes)), replaced)
    }

    fn carry_escape(pieces: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut carry = Utf8Carry::default();
        let mut out = Vec::new();
        let mut replaced = 0;
        for piece in pieces {
            replaced += carry.escape(piece, &mut out);
        }
        replaced += carry.flush(&mut out);
        (out, replaced)
    }

    #[test]
    fn characters_and_invalid_bytes_across_steps_and_cuts_are_kept_or_replaced() {
        // Multi-byte characters, truncated ones and stray continuation bytes
        // at every offset around the step and window ends, cut at every
        // place around them.
        let inserts: [&[u8]; 7] = [
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\x80\xbf",
            b"\xc3\x1b\xff",
        ];
        for at in WIDE - 6..WIDE + WINDOW + RUN + 6 {
            for insert in inserts {
                let mut bytes = b"\x1b[0m".repeat(1 + at / 5);
                bytes.truncate(at);
                bytes.extend_from_slice(insert);
                bytes.extend_from_slice(b"\r\n\x1b[31mok\xc3\xa9 done\r\n");
                let whole = lossy_reference(&bytes);
                assert_eq!(carry_escape(&[&bytes]), whole, "at {at}");
                for cut in at.saturating_sub(2)..(at + insert.len() + 2).min(bytes.len()) {
                    let (a, b) = bytes.split_at(cut);
                    assert_eq!(carry_escape(&[a, b]), whole, "at {at}, cut at {cut}");
                }
            }
        }
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

    /// Bytes weighted towards escapes, multi-byte characters and invalid
    /// sequences.
    fn bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            4 => any::<u8>().prop_map(|b| vec![b]),
            4 => (0u8..0x20).prop_map(|b| vec![b]),
            2 => Just(b"\x1b[0m\r\n".to_vec()),
            2 => Just("é€😀".as_bytes().to_vec()),
            2 => Just(vec![0xe2, 0x82]),
            1 => Just(vec![0xf0, 0x9f, 0x98]),
            1 => Just(vec![0xed, 0xa0, 0x80]),
            8 => Just(b"plain text".to_vec()),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_cut_anywhere_are_escaped_like_the_lossy_reference(
            bytes in bytes(),
            cuts in proptest::collection::vec(0usize..400, 0..4),
        ) {
            let pieces = super::super::tests::cut_at(&bytes, cuts);
            proptest::prop_assert_eq!(carry_escape(&pieces), lossy_reference(&bytes));
        }

        #[test]
        fn any_text_is_escaped_like_the_reference(text in text()) {
            let mut out = Vec::new();
            escape_str(&text, &mut out);
            proptest::prop_assert_eq!(out, reference(&text));
        }
    }
}
