//! The recorder upload's I/O: executes the core's
//! [`UploadOutput`]s and turns what happens on the wire into
//! `Upload::handle_*` inputs. It decides nothing — the core does.
//!
//! Each attempt (`Connect` … `Close`) is one spawned task that owns its
//! connection: TCP, TLS for `https://` ([`UploadTls`]), then HTTP/2 via
//! `h2` (v2) or raw HTTP/1.1 bytes (v1). The driver talks to it through an
//! unbounded command queue (the core bounds what goes in: the write gate
//! below and `max_unacked`) and hears back on one bounded event channel
//! shared by all attempts, so a chatty recorder waits for the driver
//! instead of filling memory. `Close` aborts the task, which drops the
//! connection. Stale attempts are the core's concern; events are routed by
//! [`AttemptId`] and the core ignores those it no longer wants.

mod attempt;
mod tls;

pub use tls::UploadTls;

use crate::sink::UploadEvent;
use attempt::{AbortOnDrop, Command, Net, Reporter};
use kubecast_core::upload::{AttemptId, Upload, UploadOutput};
use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events buffered between the attempt tasks and the driver.
const EVENTS: usize = 64;

/// The attempts in flight and the channel they report on.
#[derive(Debug)]
pub(crate) struct Transport {
    tls: UploadTls,
    connect_timeout: Duration,
    attempts: HashMap<AttemptId, AttemptHandle>,
    tx: mpsc::Sender<(AttemptId, Net)>,
    rx: mpsc::Receiver<(AttemptId, Net)>,
}

#[derive(Debug)]
struct AttemptHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// `Send` bytes queued but not yet written.
    unwritten: usize,
    _task: AbortOnDrop,
}

/// A network event, ready to be fed to the core.
#[derive(Debug)]
pub(crate) struct NetEvent(AttemptId, Net);

impl Transport {
    /// `connect_timeout` bounds a dial even when the core is not driven
    /// (its attempt budget normally ends a slow dial first).
    pub(crate) fn new(tls: UploadTls, connect_timeout: Duration) -> Transport {
        let (tx, rx) = mpsc::channel(EVENTS);
        Transport {
            tls,
            connect_timeout,
            attempts: HashMap::new(),
            tx,
            rx,
        }
    }

    /// Cast bytes handed to an attempt and not yet written to its
    /// connection. While this is not 0 the driver holds the sides whose
    /// bytes become cast: the core's v1 back-pressure ("finish writing a
    /// `Send` before reading more") and h2 flow control for v2.
    pub(crate) fn unwritten(&self) -> usize {
        self.attempts.values().map(|a| a.unwritten).sum()
    }

    /// Carries out one output; the facts (`Started`, `AttemptFailed`,
    /// `Completed`, `Failed`) come back as an [`UploadEvent`] for the log.
    pub(crate) fn execute(&mut self, output: UploadOutput) -> Option<UploadEvent> {
        let command = match output {
            UploadOutput::Connect {
                attempt,
                recorder,
                protocol,
            } => {
                let (commands, rx) = mpsc::unbounded_channel();
                let report = Reporter {
                    attempt,
                    tx: self.tx.clone(),
                };
                let task = tokio::spawn(attempt::run(
                    recorder,
                    protocol,
                    self.tls.clone(),
                    self.connect_timeout,
                    rx,
                    report,
                ));
                let handle = AttemptHandle {
                    commands,
                    unwritten: 0,
                    _task: AbortOnDrop(task),
                };
                self.attempts.insert(attempt, handle);
                return None;
            }
            UploadOutput::Close { attempt } => {
                self.attempts.remove(&attempt);
                return None;
            }
            UploadOutput::Probe { attempt, request } => (attempt, Command::Probe(request)),
            UploadOutput::StartV2 { attempt, request } => (attempt, Command::StartV2(request)),
            UploadOutput::StartV1 { attempt, head } => (attempt, Command::StartV1(head)),
            UploadOutput::Send { attempt, bytes } => {
                if let Some(a) = self.attempts.get_mut(&attempt) {
                    a.unwritten += bytes.len();
                }
                (attempt, Command::Send(bytes))
            }
            UploadOutput::EndStream { attempt } => (attempt, Command::EndStream),
            UploadOutput::Started {
                attempt,
                recorder,
                protocol,
            } => {
                return Some(UploadEvent::Started {
                    attempt,
                    recorder,
                    protocol,
                })
            }
            UploadOutput::AttemptFailed(record) => return Some(UploadEvent::AttemptFailed(record)),
            UploadOutput::Completed { bytes } => return Some(UploadEvent::Completed { bytes }),
            UploadOutput::Failed(failure) => return Some(UploadEvent::Failed(failure)),
        };
        let (attempt, command) = command;
        if let Some(a) = self.attempts.get(&attempt) {
            // A task that already ended reports its end itself.
            let _ = a.commands.send(command);
        }
        None
    }

    /// The next network event, if one is waiting.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<NetEvent> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((attempt, Net::Written(n)))) => {
                if let Some(a) = self.attempts.get_mut(&attempt) {
                    a.unwritten = a.unwritten.saturating_sub(n);
                }
                Poll::Ready(NetEvent(attempt, Net::Written(n)))
            }
            Poll::Ready(Some((attempt, net))) => Poll::Ready(NetEvent(attempt, net)),
            // We hold a sender, so the channel never closes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// The next network event.
    pub(crate) async fn next_event(&mut self) -> NetEvent {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }
}

impl NetEvent {
    /// Feeds the event to the core's upload (`Written` needs no input).
    pub(crate) fn apply(self, now: Instant, upload: &mut Upload) {
        let NetEvent(id, net) = self;
        match net {
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
