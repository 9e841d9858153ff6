//! The recorder upload's I/O, on any runtime: [`Uploads`] executes the
//! core's [`UploadWork`] and reports what happens on the wire as [`Net`]
//! events for `RecordingMachine::handle_net`. It decides nothing — the core
//! does.
//!
//! Each attempt (`Connect` … `Close`) is one future. A v1 attempt owns its
//! connection (the adapter's [`Dial`]: TCP, TLS for `https://`, then raw
//! HTTP/1.1 bytes). A v2 attempt is one stream on an HTTP/2 connection
//! (`h2`, through [`io::H2Io`], which shows the futures-io stream to h2
//! with tokio's I/O traits and keeps writes vectored) that the v2 attempts
//! of every session uploading to the same recorder share ([`pool`]): a
//! connection costs more memory than an idle session. The attempts are not
//! spawned: the driver polls them in place whenever it waits, and a shared
//! connection is driven by whichever of its attempts runs, so no executor
//! of its own is needed. Commands reach an attempt on an unbounded queue
//! (the core bounds what goes in: the write gate and `max_unacked`);
//! events come back on one bounded queue, so a chatty recorder waits for
//! the driver. `Close` drops the future and with it the v1 connection or
//! the v2 stream (the shared connection closes with its last stream).

mod attempt;
mod commands;
mod events;
mod io;
mod pool;

use crate::{Clock, UploadTransport};
use kubecast_core::drive::{Net, UploadWork};
use kubecast_core::upload::AttemptId;
use kubecast_core::upload::RecorderAddr;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Events buffered between the attempts and the driver.
const EVENTS: usize = 16;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How an adapter reaches a recorder: TCP (`TCP_NODELAY`), then TLS for
/// `https://` with the ALPN the protocol asks for (`h2, http/1.1` for v2,
/// `http/1.1` for v1).
pub trait Dial {
    /// The TLS configuration for `https://` recorders.
    /// Equal values are the same configuration: attempts share an HTTP/2
    /// connection only if their `Tls` are equal.
    type Tls: Clone + PartialEq + Send + Sync + 'static;
    /// The connection, as a futures-io byte stream.
    type Conn: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin + Send + 'static;
    /// Where a connection can be used: attempts share a connection only
    /// within one scope (tokio: one runtime, whose I/O driver serves the
    /// socket; async-io's reactor serves every executor, so `()`).
    type Scope: PartialEq + Send + Sync + 'static;
    /// The scope of the calling attempt.
    fn scope() -> Self::Scope;
    /// The connection and whether the server picked ALPN `h2`.
    fn dial(
        recorder: &RecorderAddr,
        v2: bool,
        tls: &Self::Tls,
    ) -> impl Future<Output = std::io::Result<(Self::Conn, bool)>> + Send;
}

/// The attempts in flight and the channel they report on, dialling with
/// `D` and timing with `K`.
pub struct Uploads<D: Dial, K> {
    tls: D::Tls,
    connect_timeout: Duration,
    attempts: HashMap<AttemptId, AttemptHandle>,
    events: events::Events<(AttemptId, Net)>,
    clock: PhantomData<fn() -> K>,
}

struct AttemptHandle {
    commands: commands::Sender,
    /// `None` once the attempt's future has finished.
    task: Option<Task>,
}

impl<D: Dial, K> fmt::Debug for Uploads<D, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uploads")
            .field("attempts", &self.attempts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<D: Dial, K: Clock> Uploads<D, K> {
    /// `connect_timeout` bounds a dial even when the core is not driven
    /// (its attempt budget normally ends a slow dial first).
    pub fn new(tls: D::Tls, connect_timeout: Duration) -> Self {
        Uploads {
            tls,
            connect_timeout,
            attempts: HashMap::new(),
            events: events::Events::new(EVENTS),
            clock: PhantomData,
        }
    }
}

impl<D: Dial + 'static, K: Clock + 'static> UploadTransport for Uploads<D, K> {
    /// Carries out one piece of the core's upload work.
    fn execute(&mut self, work: UploadWork) {
        match work {
            UploadWork::Connect {
                attempt,
                recorder,
                protocol,
            } => {
                let (commands, rx) = commands::queue();
                let report = attempt::Reporter {
                    attempt,
                    tx: self.events.sender(),
                };
                let task: Task = Box::pin(attempt::run::<D, K>(
                    recorder,
                    protocol,
                    self.tls.clone(),
                    self.connect_timeout,
                    rx,
                    report,
                ));
                let handle = AttemptHandle {
                    commands,
                    task: Some(task),
                };
                self.attempts.insert(attempt, handle);
            }
            UploadWork::Close { attempt } => {
                self.attempts.remove(&attempt);
            }
            UploadWork::Command { attempt, command } => {
                if let Some(a) = self.attempts.get(&attempt) {
                    // An attempt that already ended reported its end itself.
                    a.commands.send(command);
                }
            }
        }
    }

    /// Runs the attempts, then returns the next network event if one is
    /// waiting.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<(AttemptId, Net)> {
        for handle in self.attempts.values_mut() {
            if let Some(task) = &mut handle.task {
                if task.as_mut().poll(cx).is_ready() {
                    handle.task = None;
                }
            }
        }
        // Only the attempts send, and they run only here: what they sent
        // is in the queue now, and a full queue wakes a waiting attempt
        // (so this task) when an event is taken.
        match self.events.try_recv() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}
