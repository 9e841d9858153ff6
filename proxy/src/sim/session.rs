//! What the WebSocket and SPDY session handlers share.

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::container::{self, Input, Process, TermSize};
use super::http::ExecRequest;
use super::LINGER_TIMEOUT;

/// Most bytes of resize JSON held while waiting for the rest of a value.
const MAX_RESIZE_BUFFER: usize = 64 * 1024;

/// The resize stream/channel: a stream of JSON objects
/// (`{"Width":80,"Height":24}`, keys matched case-insensitively as Go's
/// decoder does), which may arrive in any pieces.
#[derive(Debug, Default)]
pub(crate) struct ResizeStream {
    buf: Vec<u8>,
}

impl ResizeStream {
    /// Adds bytes; returns every size completed by them.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(value)) => {
                    consumed = stream.byte_offset();
                    if let Some(size) = size_of(&value) {
                        sizes.push(size);
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Not JSON: the kubelet logs and drops the stream; we drop
                    // what we have.
                    consumed = self.buf.len();
                    break;
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_RESIZE_BUFFER {
            self.buf.clear();
        }
        sizes
    }
}

fn size_of(value: &Value) -> Option<TermSize> {
    let object = value.as_object()?;
    let field = |name: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
    };
    Some(TermSize {
        cols: field("width")?,
        rows: field("height")?,
    })
}

/// Starts the exec's process the way a runtime would once the streams are
/// set up: with the first terminal size the client sent (tty), stdin closed
/// at once when the client sends none, then the input that arrived before
/// it started, in order. The caller routes later input to
/// `process.input`.
pub(crate) fn start_process(exec: &ExecRequest, early: &mut Vec<Input>) -> Process {
    let tty = exec.tty.then(|| take_first_size(early));
    let process = container::spawn(exec.command.clone(), tty);
    if !exec.stdin {
        let _ = process.input.send(Input::StdinEof);
    }
    for input in early.drain(..) {
        let _ = process.input.send(input);
    }
    process
}

/// Removes the first resize from input that arrived before the process
/// started: the terminal's initial size.
pub(crate) fn take_first_size(early: &mut Vec<Input>) -> Option<TermSize> {
    let at = early.iter().position(|i| matches!(i, Input::Resize(_)))?;
    match early.remove(at) {
        Input::Resize(size) => Some(size),
        _ => None,
    }
}

/// Writes and clears `out`.
pub(crate) async fn flush<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = io.write_all(out).await;
    out.clear();
    result?;
    io.flush().await
}

/// After the last byte: half-closes, then reads (and drops) whatever the
/// client still sends until it closes or [`LINGER_TIMEOUT`] passes, so the
/// client never sees a reset before it has read the end of the session.
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_json_may_arrive_in_pieces_with_any_key_case() {
        let mut stream = ResizeStream::default();
        assert_eq!(stream.push(b"{\"Width\":80,"), vec![]);
        assert_eq!(
            stream.push(b"\"Height\":24}\n{\"width\":100,\"HEIGHT\":30}{\"Wid"),
            vec![
                TermSize { cols: 80, rows: 24 },
                TermSize {
                    cols: 100,
                    rows: 30
                }
            ]
        );
        assert_eq!(
            stream.push(b"th\":1,\"Height\":2}"),
            vec![TermSize { cols: 1, rows: 2 }]
        );
    }
}
