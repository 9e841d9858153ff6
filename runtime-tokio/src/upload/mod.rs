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

pub use kubecast_core::drive::UploadTls;

use attempt::{AbortOnDrop, Reporter};
use kubecast_async::UploadTransport;
use kubecast_core::drive::{AttemptCommand, Net, UploadWork};
use kubecast_core::upload::AttemptId;
use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Duration;
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
    commands: mpsc::UnboundedSender<AttemptCommand>,
    _task: AbortOnDrop,
}

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
}

impl UploadTransport for Transport {
    /// Carries out one piece of the core's upload work.
    fn execute(&mut self, work: UploadWork) {
        match work {
            UploadWork::Connect {
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
                    _task: AbortOnDrop(task),
                };
                self.attempts.insert(attempt, handle);
            }
            UploadWork::Close { attempt } => {
                self.attempts.remove(&attempt);
            }
            UploadWork::Command { attempt, command } => {
                if let Some(a) = self.attempts.get(&attempt) {
                    // A task that already ended reports its end itself.
                    let _ = a.commands.send(command);
                }
            }
        }
    }

    /// The next network event, if one is waiting.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<(AttemptId, Net)> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(event),
            // We hold a sender, so the channel never closes.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}
