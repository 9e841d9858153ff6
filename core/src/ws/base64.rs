//! Standard, padded base64 (RFC 4648 §4), as the `base64.channel.k8s.io`
//! protocols carry it: hand-written, streaming, allocation-free apart from
//! the caller's output buffer.
//!
//! The decoder accepts its input in any chunking — a 4-character group may
//! straddle frames or reads — and carries the partial group over. Like Go's
//! `base64.StdEncoding` (which the Kubernetes servers use), it skips `\r`
//! and `\n`, requires padding, ignores non-zero trailing bits, and rejects
//! anything after the padding.

/// Why base64 input is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    #[error("byte {0:#04x} is not in the base64 alphabet")]
    InvalidByte(u8),
    #[error("misplaced '=' padding")]
    BadPadding,
    #[error("data after the '=' padding")]
    DataAfterPadding,
    #[error("base64 ends inside a 4-character group ({0} characters left over)")]
    Incomplete(u8),
}

const INVALID: u8 = 0xFF;

// Indexing in a const initialiser is checked at compile time.
#[allow(clippy::indexing_slicing)]
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(byte: u8) -> u8 {
    DECODE.get(usize::from(byte)).copied().unwrap_or(INVALID)
}

/// A streaming base64 decoder for one message (or any one base64 text).
#[derive(Debug, Clone, Default)]
pub struct Base64Decoder {
    /// Sextets of the current, incomplete group.
    group: [u8; 4],
    /// How many sextets of `group` are filled.
    have: u8,
    /// `=` seen in the current group.
    pad: u8,
    /// A padded group ended the data: nothing but line breaks may follow.
    done: bool,
}

impl Base64Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, appending the bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Base64Error> {
        out.reserve(input.len() / 4 * 3 + 3);
        let mut rest = input;
        loop {
            if self.have == 0 && self.pad == 0 && !self.done {
                rest = decode_groups(rest, out);
            }
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            rest = tail;
            self.push_byte(byte, out)?;
        }
    }

    fn push_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), Base64Error> {
        if byte == b'\r' || byte == b'\n' {
            return Ok(());
        }
        if self.done {
            return Err(Base64Error::DataAfterPadding);
        }
        if byte == b'=' {
            if self.have < 2 {
                return Err(Base64Error::BadPadding);
            }
            self.pad += 1;
        } else {
            let v = sextet(byte);
            if v == INVALID {
                return Err(Base64Error::InvalidByte(byte));
            }
            if self.pad > 0 {
                return Err(Base64Error::DataAfterPadding);
            }
            if let Some(slot) = self.group.get_mut(usize::from(self.have)) {
                *slot = v;
            }
            self.have += 1;
        }
        if self.have + self.pad == 4 {
            let [a, b, c, d] = self.group;
            let bytes = [a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d];
            out.extend_from_slice(bytes.get(..usize::from(self.have - 1)).unwrap_or_default());
            self.done = self.pad > 0;
            self.have = 0;
            self.pad = 0;
        }
        Ok(())
    }

    /// The text ended: an incomplete group is an error. Resets the decoder
    /// for the next text.
    pub fn finish(&mut self) -> Result<(), Base64Error> {
        let left = self.have + self.pad;
        *self = Self::default();
        if left != 0 {
            return Err(Base64Error::Incomplete(left));
        }
        Ok(())
    }

    /// Characters of an incomplete group held over.
    pub fn pending(&self) -> usize {
        usize::from(self.have + self.pad)
    }
}

/// The fast path: decodes whole groups of four alphabet characters from
/// the front of `input`; returns the rest, starting at the first group that
/// holds anything else (padding, line breaks, invalid bytes, or too few).
fn decode_groups<'a>(input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
    let mut used = 0;
    for chunk in input.chunks_exact(4) {
        let &[a, b, c, d] = chunk else { break };
        let (a, b, c, d) = (sextet(a), sextet(b), sextet(c), sextet(d));
        if (a | b | c | d) & 0xC0 != 0 {
            break;
        }
        out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
        used += 4;
    }
    input.get(used..).unwrap_or_default()
}

/// Appends the padded standard base64 encoding of `input` to `out`.
pub fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    let sym = |v: u8| ALPHABET.get(usize::from(v & 0x3F)).copied().unwrap_or(b'A');
    out.reserve(input.len().div_ceil(3) * 4);
    let mut chunks = input.chunks_exact(3);
    for chunk in &mut chunks {
        let &[a, b, c] = chunk else { break };
        out.extend_from_slice(&[
            sym(a >> 2),
            sym(a << 4 | b >> 4),
            sym(b << 2 | c >> 6),
            sym(c),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[sym(a >> 2), sym(a << 4), b'=', b'=']),
        [a, b] => out.extend_from_slice(&[sym(a >> 2), sym(a << 4 | b >> 4), sym(b << 2), b'=']),
        _ => {}
    }
}

/// Length of the encoding of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<u8>, Base64Error> {
        let mut d = Base64Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.decode(c, &mut out)?;
        }
        d.finish()?;
        Ok(out)
    }

    // RFC 4648 §10 test vectors.
    const VECTORS: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"f", b"Zg=="),
        (b"fo", b"Zm8="),
        (b"foo", b"Zm9v"),
        (b"foob", b"Zm9vYg=="),
        (b"fooba", b"Zm9vYmE="),
        (b"foobar", b"Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors_encode_and_decode_in_any_split() {
        for (plain, coded) in VECTORS {
            let mut out = Vec::new();
            encode_into(plain, &mut out);
            assert_eq!(&out, coded);
            assert_eq!(encoded_len(plain.len()), coded.len());
            for cut in 0..=coded.len() {
                assert_eq!(
                    decode_all(&[&coded[..cut], &coded[cut..]]).as_deref(),
                    Ok(*plain),
                    "{coded:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn kubernetes_wsstream_doc_examples() {
        // wsstream/conn.go: "\n" on stdout is sent as "1Cg==" (channel '1').
        assert_eq!(decode_all(&[b"Cg=="]), Ok(b"\n".to_vec()));
    }

    #[test]
    fn all_byte_values_round_trip_one_char_at_a_time() {
        let plain: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        let mut coded = Vec::new();
        encode_into(&plain, &mut coded);
        let chunks: Vec<&[u8]> = coded.chunks(1).collect();
        assert_eq!(decode_all(&chunks), Ok(plain));
    }

    #[test]
    fn line_breaks_are_skipped_like_go() {
        assert_eq!(decode_all(&[b"Zm9v\r\nYmFy\n"]), Ok(b"foobar".to_vec()));
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(decode_all(&[b"Zm9*"]), Err(Base64Error::InvalidByte(b'*')));
        assert_eq!(decode_all(&[b"Z==="]), Err(Base64Error::BadPadding));
        assert_eq!(
            decode_all(&[b"Zg==Zg=="]),
            Err(Base64Error::DataAfterPadding)
        );
        assert_eq!(decode_all(&[b"Zg=a"]), Err(Base64Error::DataAfterPadding));
        assert_eq!(decode_all(&[b"Zm9vY"]), Err(Base64Error::Incomplete(1)));
        assert_eq!(decode_all(&[b"Zm8"]), Err(Base64Error::Incomplete(3)));
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut d = Base64Decoder::new();
        let mut out = Vec::new();
        d.decode(b"Zg==", &mut out).unwrap();
        d.finish().unwrap();
        d.decode(b"Zg==", &mut out).unwrap();
        d.finish().unwrap();
        assert_eq!(out, b"ff");
    }
}
