//! The asciicast v2 writer.
//!
//! A cast is a JSON header line followed by one JSON array per event:
//!
//! ```text
//! {"version": 2, "width": 80, "height": 24, "timestamp": 1700000000, …}
//! [0.012345, "o", "$ "]
//! [1.500000, "r", "120x40"]
//! [2.000001, "m", "exit 0"]
//! ```
//!
//! Times are seconds since the session started, with microsecond precision,
//! and never decrease. Event payloads are valid JSON strings even when the
//! terminal bytes are not UTF-8 (see [`escape`]). The writer appends to a
//! caller-owned `Vec<u8>`, so the session decides when bytes leave.
//!
//! asciicast v2 has no exit-status event (v3's `"x"`), and the header is
//! written before the exit is known, so the exit status is recorded as a
//! final marker event `[t, "m", "exit N"]`: asciinema 2.x and
//! asciinema-player 3.x both load files with markers. Invalid UTF-8 that had
//! to be replaced is reported the same way, by a marker
//! `"kubecast: N invalid UTF-8 sequences replaced with U+FFFD"`.

pub mod escape;
mod header;

pub use header::{CastHeader, KubernetesInfo};

use crate::exec::DataStream;
use crate::TerminalSize;
use escape::{escape_str, Utf8Carry};
use std::time::Duration;

/// Writes asciicast v2 events for one session.
#[derive(Debug, Default)]
pub struct CastWriter {
    header_written: bool,
    open: Option<OpenLine>,
    last_micros: u64,
    stdout: Utf8Carry,
    stderr: Utf8Carry,
    stdin: Utf8Carry,
    replaced: u64,
}

/// Input bytes after which a data event is closed even if its frame goes on,
/// so a huge frame still streams as lines of bounded size.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The data event currently being written.
#[derive(Debug, Clone, Copy)]
struct OpenLine {
    stream: DataStream,
    /// Input bytes in it so far.
    raw: usize,
}

impl CastWriter {
    pub fn new() -> Self {
        CastWriter::default()
    }

    /// Whether the header line has been written.
    pub fn header_written(&self) -> bool {
        self.header_written
    }

    /// How many invalid UTF-8 sequences were replaced so far.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Writes the header line. Only the first call writes anything.
    pub fn header(&mut self, header: &CastHeader, out: &mut Vec<u8>) {
        if self.header_written {
            return;
        }
        self.header_written = true;
        header.write(out);
    }

    /// Terminal bytes from `stream`: stdout and stderr become `"o"` events,
    /// stdin `"i"`.
    ///
    /// One event per frame (SPDY) or message (WebSocket): bytes arriving in
    /// pieces are appended to the open event until `frame_end`, so the cast
    /// does not depend on how reads cut the stream. An event is also closed
    /// after [`MAX_EVENT_BYTES`] of input, when another event must be written,
    /// or by [`CastWriter::finish`]. An event that would only hold the start of
    /// a character is not written; the character comes out with the next
    /// bytes of the same stream.
    pub fn data(
        &mut self,
        at: Duration,
        stream: DataStream,
        mut bytes: &[u8],
        frame_end: bool,
        out: &mut Vec<u8>,
    ) {
        if self.open.is_some_and(|o| o.stream != stream) {
            self.close_line(out);
        }
        loop {
            let used = self.open.map_or(0, |o| o.raw);
            let room = MAX_EVENT_BYTES - used;
            let (piece, rest, ends) = if bytes.len() >= room {
                let (piece, rest) = bytes.split_at(room);
                (piece, rest, true)
            } else {
                (bytes, &[][..], frame_end)
            };
            self.append(at, stream, piece, out);
            if ends {
                self.close_line(out);
            }
            if rest.is_empty() {
                return;
            }
            bytes = rest;
        }
    }

    /// The frame that carried `stream`'s data ended: close its event.
    pub fn data_end(&mut self, stream: DataStream, out: &mut Vec<u8>) {
        if self.open.is_some_and(|o| o.stream == stream) {
            self.close_line(out);
        }
    }

    /// Escapes `piece` into the open event of `stream`, opening one if needed.
    fn append(&mut self, at: Duration, stream: DataStream, piece: &[u8], out: &mut Vec<u8>) {
        let carry = match stream {
            DataStream::Stdout => &mut self.stdout,
            DataStream::Stderr => &mut self.stderr,
            DataStream::Stdin => &mut self.stdin,
        };
        match &mut self.open {
            Some(open) => {
                open.raw += piece.len();
                self.replaced += carry.escape(piece, out);
            }
            None => {
                let rollback = out.len();
                let micros = self.last_micros.max(micros_of(at));
                let code = if stream == DataStream::Stdin {
                    "i"
                } else {
                    "o"
                };
                write_prefix(micros, code, out);
                let before = out.len();
                self.replaced += carry.escape(piece, out);
                if out.len() == before {
                    // Nothing to show yet (at most a partial character).
                    out.truncate(rollback);
                    return;
                }
                self.last_micros = micros;
                self.open = Some(OpenLine {
                    stream,
                    raw: piece.len(),
                });
            }
        }
    }

    /// Ends the open data event, if any.
    fn close_line(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            out.extend_from_slice(b"\"]\n");
        }
    }

    /// A terminal size change: `[t, "r", "COLSxROWS"]` (width first).
    pub fn resize(&mut self, at: Duration, size: TerminalSize, out: &mut Vec<u8>) {
        self.text_event(at, "r", &format!("{}x{}", size.width, size.height), out);
    }

    /// A marker event `[t, "m", label]`.
    pub fn marker(&mut self, at: Duration, label: &str, out: &mut Vec<u8>) {
        self.text_event(at, "m", label, out);
    }

    /// Ends the cast: flushes characters left incomplete on any stream (they
    /// are invalid now), then writes the replacement count marker if any
    /// bytes were replaced, then the exit marker when the status is known.
    pub fn finish(&mut self, at: Duration, exit: Option<&crate::ExitStatus>, out: &mut Vec<u8>) {
        self.close_line(out);
        for (code, stream) in [
            ("o", DataStream::Stdout),
            ("o", DataStream::Stderr),
            ("i", DataStream::Stdin),
        ] {
            let carry = match stream {
                DataStream::Stdout => &mut self.stdout,
                DataStream::Stderr => &mut self.stderr,
                DataStream::Stdin => &mut self.stdin,
            };
            if carry.is_empty() {
                continue;
            }
            let micros = self.last_micros.max(micros_of(at));
            write_prefix(micros, code, out);
            self.replaced += carry.flush(out);
            out.extend_from_slice(b"\"]\n");
            self.last_micros = micros;
        }
        if self.replaced > 0 {
            let label = format!(
                "kubecast: {} invalid UTF-8 sequences replaced with U+FFFD",
                self.replaced
            );
            self.marker(at, &label, out);
        }
        if let Some(status) = exit {
            self.marker(at, &format!("exit {}", status.code()), out);
        }
    }

    fn text_event(&mut self, at: Duration, code: &str, text: &str, out: &mut Vec<u8>) {
        self.close_line(out);
        let micros = self.last_micros.max(micros_of(at));
        write_prefix(micros, code, out);
        escape_str(text, out);
        out.extend_from_slice(b"\"]\n");
        self.last_micros = micros;
    }
}

fn micros_of(at: Duration) -> u64 {
    u64::try_from(at.as_micros()).unwrap_or(u64::MAX)
}

/// `[SECONDS.MICROS, "CODE", "` — the start of an event line.
fn write_prefix(micros: u64, code: &str, out: &mut Vec<u8>) {
    out.push(b'[');
    write_u64(micros / 1_000_000, out);
    out.push(b'.');
    let frac = micros % 1_000_000;
    let mut digits = [b'0'; 6];
    let mut rest = frac;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(b", \"");
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(b"\", \"");
}

fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

#[cfg(test)]
mod tests;
