//! The resize stream/channel: a JSON stream of `{"Width":…,"Height":…}`.
//!
//! client-go writes each size with a `json.Encoder` (so a trailing `\n`),
//! kube-rs without one, and the Go servers read it as a JSON *stream* and
//! match keys case-insensitively. So: values may be split across frames or
//! messages, several may share one, and `width`/`WIDTH` are accepted.

use super::TerminalSize;
use serde_json::Value;

/// Why resize data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    #[error("resize stream is not a JSON stream: {0}")]
    NotJson(String),
    #[error("resize value has no usable Width/Height: {0}")]
    BadSize(String),
    #[error("resize stream holds more than {max} bytes of an incomplete value")]
    TooLong { max: usize },
}

/// Turns resize-stream bytes, in any chunking, into terminal sizes.
#[derive(Debug)]
pub struct ResizeParser {
    buf: Vec<u8>,
    max: usize,
}

impl ResizeParser {
    /// `max`: most bytes of one incomplete value held between calls.
    pub fn new(max: usize) -> Self {
        ResizeParser {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds resize bytes; calls `on_size` for every complete value.
    pub fn push(
        &mut self,
        bytes: &[u8],
        mut on_size: impl FnMut(TerminalSize),
    ) -> Result<(), ResizeError> {
        if self.buf.is_empty() {
            let used = parse_values(bytes, &mut on_size)?;
            self.keep(bytes.get(used..).unwrap_or_default())
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(bytes);
            let used = parse_values(&buf, &mut on_size)?;
            buf.drain(..used.min(buf.len()));
            self.buf = buf;
            self.check_len()
        }
    }

    fn keep(&mut self, rest: &[u8]) -> Result<(), ResizeError> {
        if rest.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(());
        }
        self.buf.extend_from_slice(rest);
        self.check_len()
    }

    fn check_len(&mut self) -> Result<(), ResizeError> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
        }
        if self.buf.len() > self.max {
            return Err(ResizeError::TooLong { max: self.max });
        }
        Ok(())
    }
}

/// Parses complete values from the front of `input`; returns bytes consumed.
fn parse_values(
    input: &[u8],
    on_size: &mut impl FnMut(TerminalSize),
) -> Result<usize, ResizeError> {
    let mut values = serde_json::Deserializer::from_slice(input).into_iter::<Value>();
    loop {
        let before = values.byte_offset();
        match values.next() {
            None => return Ok(values.byte_offset()),
            Some(Ok(value)) => on_size(size_of(&value)?),
            Some(Err(e)) if e.is_eof() => return Ok(before),
            Some(Err(e)) => return Err(ResizeError::NotJson(e.to_string())),
        }
    }
}

fn size_of(value: &Value) -> Result<TerminalSize, ResizeError> {
    let object = value
        .as_object()
        .ok_or_else(|| ResizeError::BadSize(value.to_string()))?;
    let field = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
    };
    match (field("width"), field("height")) {
        (Some(width), Some(height)) => Ok(TerminalSize { width, height }),
        _ => Err(ResizeError::BadSize(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(chunks: &[&[u8]]) -> Result<Vec<TerminalSize>, ResizeError> {
        let mut p = ResizeParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, |s| out.push(s))?;
        }
        Ok(out)
    }

    const S80X24: TerminalSize = TerminalSize {
        width: 80,
        height: 24,
    };

    #[test]
    fn client_go_and_kube_rs_forms() {
        // client-go: json.Encoder adds "\n"; kube-rs: serde_json without it.
        assert_eq!(
            sizes(&[b"{\"Width\":80,\"Height\":24}\n"]),
            Ok(vec![S80X24])
        );
        assert_eq!(sizes(&[b"{\"Width\":80,\"Height\":24}"]), Ok(vec![S80X24]));
    }

    #[test]
    fn keys_match_in_any_case() {
        assert_eq!(sizes(&[b"{\"width\":80,\"HEIGHT\":24}"]), Ok(vec![S80X24]));
    }

    #[test]
    fn values_may_be_split_and_packed() {
        let stream = b"{\"Width\":80,\"Height\":24}\n{\"Width\":120,\"Height\":40}\n";
        for cut in 0..=stream.len() {
            let got = sizes(&[&stream[..cut], &stream[cut..]]).unwrap();
            assert_eq!(
                got,
                vec![
                    S80X24,
                    TerminalSize {
                        width: 120,
                        height: 40
                    }
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(sizes(&[b"[1,2]"]), Err(ResizeError::BadSize(_))));
        assert!(matches!(
            sizes(&[b"{\"Width\":70000,\"Height\":1}"]),
            Err(ResizeError::BadSize(_))
        ));
        assert!(matches!(sizes(&[b"}{"]), Err(ResizeError::NotJson(_))));
    }

    #[test]
    fn an_endless_value_hits_the_bound() {
        let mut p = ResizeParser::new(16);
        let r = p.push(b"{\"Width\":                         ", |_| {});
        assert_eq!(r, Err(ResizeError::TooLong { max: 16 }));
    }
}
