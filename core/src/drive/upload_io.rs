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

    /// The chunks that fit in `capacity` bytes of window, in order (the
    /// last one split if needed).
    pub fn take(&mut self, mut capacity: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
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
            out.push(chunk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_queue_splits_at_the_window_and_ends_once_empty() {
        let mut q = SendQueue::default();
        q.push(AttemptCommand::Send(Bytes::from_static(b"abcdef")));
        q.push(AttemptCommand::Send(Bytes::from_static(b"gh")));
        q.push(AttemptCommand::EndStream);
        assert_eq!(q.wanted(), 8);
        assert!(!q.take_end(), "bytes are still waiting");
        assert_eq!(q.take(4), vec![Bytes::from_static(b"abcd")]);
        assert_eq!(
            q.take(10),
            vec![Bytes::from_static(b"ef"), Bytes::from_static(b"gh")]
        );
        assert_eq!(q.wanted(), 0);
        assert!(q.take_end());
        assert!(!q.take_end(), "only once");
    }
}
