//! The vocabulary between a recorded session's machine and the adapter's
//! upload transport: the work it executes ([`UploadWork`],
//! [`AttemptCommand`]), what it reports back ([`Net`]), and the queue that
//! hands cast bytes to an HTTP/2 stream within its flow-control window
//! ([`SendQueue`]). The transport decides nothing; every step comes from
//! the core's [`UploadOutput`]s and every result goes back as an
//! `Upload::handle_*` input.

use super::sink::UploadEvent;
use crate::upload::{AttemptId, Protocol, RecorderAddr, RequestHead, Upload, UploadOutput};
use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::time::Instant;

/// Network work for the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadWork {
    /// Open a connection for `attempt` (TCP, TLS for `https://` with ALPN
    /// `h2, http/1.1` for v2 or `http/1.1` for v1) and run it: it reports
    /// [`Net::Connected`] or [`Net::ConnectFailed`], then obeys commands.
    Connect {
        attempt: AttemptId,
        recorder: RecorderAddr,
        protocol: Protocol,
    },
    /// The next step for an open attempt.
    Command {
        attempt: AttemptId,
        command: AttemptCommand,
    },
    /// Drop everything held for `attempt` (the task, the connection).
    Close { attempt: AttemptId },
}

/// What the core asked an attempt to do (everything after `Connect`); see
/// [`UploadOutput`] for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptCommand {
    Probe(RequestHead),
    StartV2(RequestHead),
    StartV1(Bytes),
    Send(Bytes),
    EndStream,
}

/// An upload output, sorted: work for the transport, or a fact for the
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sorted {
    Work(UploadWork),
    Fact(UploadEvent),
}

impl Sorted {
    pub fn from_output(output: UploadOutput) -> Sorted {
        let (attempt, command) = match output {
            UploadOutput::Connect {
                attempt,
                recorder,
                protocol,
            } => {
                return Sorted::Work(UploadWork::Connect {
                    attempt,
                    recorder,
                    protocol,
                })
            }
            UploadOutput::Close { attempt } => return Sorted::Work(UploadWork::Close { attempt }),
            UploadOutput::Started {
                attempt,
                recorder,
                protocol,
            } => {
                return Sorted::Fact(UploadEvent::Started {
                    attempt,
                    recorder,
                    protocol,
                })
            }
            UploadOutput::AttemptFailed(record) => {
                return Sorted::Fact(UploadEvent::AttemptFailed(record))
            }
            UploadOutput::Completed { bytes } => {
                return Sorted::Fact(UploadEvent::Completed { bytes })
            }
            UploadOutput::Failed(failure) => return Sorted::Fact(UploadEvent::Failed(failure)),
            UploadOutput::Probe { attempt, request } => (attempt, AttemptCommand::Probe(request)),
            UploadOutput::StartV2 { attempt, request } => {
                (attempt, AttemptCommand::StartV2(request))
            }
            UploadOutput::StartV1 { attempt, head } => (attempt, AttemptCommand::StartV1(head)),
            UploadOutput::Send { attempt, bytes } => (attempt, AttemptCommand::Send(bytes)),
            UploadOutput::EndStream { attempt } => (attempt, AttemptCommand::EndStream),
        };
        Sorted::Work(UploadWork::Command { attempt, command })
    }
}

/// What happened on an attempt's connection. Everything but
/// [`Net::Written`] becomes an `Upload::handle_*` input; `Written` only
/// releases the driver's write gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    Connected,
    ConnectFailed(String),
    ProbeResponse {
        status: u16,
        http2: bool,
    },
    V2Head(u16),
    V2Body(Bytes),
    V1Bytes(Bytes),
    ResponseEnd,
    StreamError(String),
    /// `n` bytes of `Send`s were handed to the socket / the h2 stream.
    Written(usize),
}

impl Net {
    /// Feeds the event to the upload (`Written` needs no input).
    pub fn apply(self, now: Instant, id: AttemptId, upload: &mut Upload) {
        match self {
            Net::Connected => upload.handle_connected(now, id),
            Net::ConnectFailed(message) => upload.handle_connect_failed(now, id, &message),
            Net::ProbeResponse { status, http2 } => {
                upload.handle_probe_response(now, id, status, http2)
            }
            Net::V2Head(status) => upload.handle_v2_response_head(now, id, status),
            Net::V2Body(bytes) => upload.handle_v2_body(now, id, &bytes),
            Net::V1Bytes(bytes) => upload.handle_v1_bytes(now, id, &bytes),
            Net::ResponseEnd => upload.handle_response_end(now, id),
            Net::StreamError(message) => upload.handle_stream_error(now, id, &message),
            Net::Written(_) => {}
        }
    }
}

/// v2: cast bytes waiting for HTTP/2 send window, and whether the stream
/// is to be ended once they are out.
#[derive(Debug, Default)]
pub struct SendQueue {
    pending: VecDeque<Bytes>,
    end: bool,
    ended: bool,
}

impl SendQueue {
    /// A command for the request body: `Send` queues, `EndStream` marks
    /// the end. Others are not body commands (ignored).
    pub fn push(&mut self, command: AttemptCommand) {
        match command {
            AttemptCommand::Send(bytes) => self.pending.push_back(bytes),
            AttemptCommand::EndStream => self.end = true,
            _ => {}
        }
    }

    /// Bytes waiting for window (reserve this much capacity).
    pub fn wanted(&self) -> usize {
        self.pending.iter().map(Bytes::len).sum()
    }

    /// `true` once: the queue is empty and the end was asked for — send an
    /// empty DATA frame with `END_STREAM` now.
    pub fn take_end(&mut self) -> bool {
        let now = self.end && !self.ended && self.pending.is_empty();
        self.ended |= now;
        now
    }

    /// The bytes that fit in `capacity` bytes of window, in order (the
    /// last chunk split if needed), as the DATA frames to send: runs of
    /// small chunks are merged into one frame (the private `Frames`), large
    /// chunks go as they are.
    pub fn take(&mut self, mut capacity: usize) -> Vec<Bytes> {
        let mut frames = Frames::default();
        while capacity > 0 {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let chunk = if front.len() <= capacity {
                self.pending.pop_front().unwrap_or_default()
            } else {
                let head = front.slice(..capacity);
                front.advance(capacity);
                head
            };
            capacity -= chunk.len();
            frames.push(chunk);
        }
        frames.finish()
    }
}

/// Chunks under this size are merged with their small neighbours.
const SMALL_CHUNK: usize = 4 * 1024;
/// A merged frame grows to at most this size.
const MERGED_FRAME: usize = 16 * 1024;

/// Builds the DATA frames of one [`SendQueue::take`]. A keystroke session
/// makes one tiny cast chunk per echo; while the window is closed (a slow
/// recorder) hundreds of them queue up, and sending each as its own frame
/// costs both ends a frame apiece and trips receivers' small-frame flood
/// guards (h2's answers GOAWAY `too_many_data_frames`). So a run of small
/// chunks is copied into one frame; a large chunk is never copied.
#[derive(Default)]
struct Frames {
    out: Vec<Bytes>,
    /// The run of small chunks not yet emitted, and its length.
    run: Vec<Bytes>,
    run_len: usize,
}

impl Frames {
    fn push(&mut self, chunk: Bytes) {
        if chunk.len() >= SMALL_CHUNK {
            self.end_run();
            self.out.push(chunk);
            return;
        }
        if self.run_len + chunk.len() > MERGED_FRAME {
            self.end_run();
        }
        self.run_len += chunk.len();
        self.run.push(chunk);
    }

    fn end_run(&mut self) {
        let run = std::mem::take(&mut self.run);
        let len = std::mem::replace(&mut self.run_len, 0);
        match <[Bytes; 1]>::try_from(run) {
            // One chunk alone is sent as it is.
            Ok([one]) => self.out.push(one),
            Err(run) if run.is_empty() => {}
            Err(run) => {
                let mut merged = Vec::with_capacity(len);
                for chunk in &run {
                    merged.extend_from_slice(chunk);
                }
                self.out.push(Bytes::from(merged));
            }
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.end_run();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(q: &mut SendQueue, bytes: &[u8]) {
        q.push(AttemptCommand::Send(Bytes::copy_from_slice(bytes)));
    }

    #[test]
    fn queued_small_chunks_go_as_one_frame_large_ones_as_they_are() {
        let mut q = SendQueue::default();
        // 500 keystroke echoes queued while the window was closed.
        let echoes: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("[{i}, \"o\", \"x\"]\n").into_bytes())
            .collect();
        for e in &echoes {
            send(&mut q, e);
        }
        let big = Bytes::from(vec![b'b'; 40 * 1024]);
        q.push(AttemptCommand::Send(big.clone()));
        send(&mut q, b"tail");
        let frames = q.take(usize::MAX);
        let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let expected: Vec<u8> = echoes
            .concat()
            .into_iter()
            .chain(big.iter().copied())
            .chain(*b"tail")
            .collect();
        assert_eq!(all, expected, "every byte, in order");
        let echo_bytes = echoes.concat().len();
        assert_eq!(
            frames.len(),
            echo_bytes.div_ceil(MERGED_FRAME) + 2,
            "echoes merged into few frames, then the large chunk, then the tail"
        );
        assert!(frames
            .iter()
            .all(|f| f.len() <= MERGED_FRAME || f.len() == big.len()));
        assert_eq!(
            frames[frames.len() - 2].as_ptr(),
            big.as_ptr(),
            "a large chunk is not copied"
        );
    }

    #[test]
    fn a_lone_small_chunk_is_not_copied_and_the_window_still_splits() {
        let mut q = SendQueue::default();
        let one = Bytes::from_static(b"prompt$ ");
        q.push(AttemptCommand::Send(one.clone()));
        let frames = q.take(100);
        assert_eq!(frames, vec![one.clone()]);
        assert_eq!(frames[0].as_ptr(), one.as_ptr());
        send(&mut q, b"abcdef");
        send(&mut q, b"ghij");
        assert_eq!(q.take(8), vec![Bytes::from_static(b"abcdefgh")]);
        assert_eq!(q.take(8), vec![Bytes::from_static(b"ij")]);
    }

    #[test]
    fn the_send_queue_splits_at_the_window_and_ends_once_empty() {
        let mut q = SendQueue::default();
        q.push(AttemptCommand::Send(Bytes::from_static(b"abcdef")));
        q.push(AttemptCommand::Send(Bytes::from_static(b"gh")));
        q.push(AttemptCommand::EndStream);
        assert_eq!(q.wanted(), 8);
        assert!(!q.take_end(), "bytes are still waiting");
        assert_eq!(q.take(4), vec![Bytes::from_static(b"abcd")]);
        assert_eq!(q.take(10), vec![Bytes::from_static(b"efgh")]);
        assert_eq!(q.wanted(), 0);
        assert!(q.take_end());
        assert!(!q.take_end(), "only once");
    }
}
