//! The sink's task: one loop over the handles' commands, the webhook
//! sends' results and the batcher's timer. After every input it performs
//! the batcher's outputs in order (file I/O awaited, sends spawned).
//!
//! ```text
//! loop {
//!     the batcher's deadline is due (clock read before awaiting) => handle_timeout; settle
//!     wait for: a send result | a command | the deadline
//!     send result  => handle_sent; settle
//!     Record       => push (or queue behind earlier waiters); settle
//!     Shutdown     => shutdown; settle … until Drained
//! }
//! ```

use super::client::Poster;
use super::files::{AppendFile, DEAD_LETTER_FILE, SPILL_FILE};
use super::{Command, RecordError, Recorded, ShutdownReport, WebhookConfig};
use kubecast_core::audit::{
    AuditBatcher, AuditOutput, BatchId, DeliveryError, Event, PushOutcome, Refusal,
};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

type Reply = oneshot::Sender<Result<Recorded, RecordError>>;

/// Pushes told `Wait`, kept in arrival order; while this many wait, no
/// more commands are taken (the channel then fills and holds the callers).
const MAX_WAITING: usize = 1024;

pub(super) struct Driver {
    batcher: AuditBatcher,
    poster: Poster,
    spill: AppendFile,
    dead: AppendFile,
    commands: mpsc::Receiver<Command>,
    /// Sends in flight: at most one batch, or the core's blocking cap.
    sends: JoinSet<(BatchId, Result<(), DeliveryError>)>,
    /// Blocking mode: requests waiting for their send's result.
    blocking: HashMap<BatchId, Reply>,
    /// Pushes waiting for `Unblocked`, oldest first.
    waiting: VecDeque<(Box<Event>, Reply)>,
    unblocked: bool,
    shutdown_replies: Vec<oneshot::Sender<ShutdownReport>>,
    report: Option<ShutdownReport>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    pub(super) fn new(
        batcher: AuditBatcher,
        webhook: WebhookConfig,
        dir: &Path,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        Driver {
            batcher,
            poster: Poster::new(webhook),
            spill: AppendFile::new(dir, SPILL_FILE),
            dead: AppendFile::new(dir, DEAD_LETTER_FILE),
            commands,
            sends: JoinSet::new(),
            blocking: HashMap::new(),
            waiting: VecDeque::new(),
            unblocked: false,
            shutdown_replies: Vec::new(),
            report: None,
        }
    }

    pub(super) async fn run(mut self) -> ShutdownReport {
        self.settle().await; // the start-up scan of the spill file
        let mut closed = false;
        let sleep = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        while self.report.is_none() {
            let deadline = self.batcher.poll_timeout();
            if deadline.is_some_and(|at| at <= now()) {
                self.batcher.handle_timeout(now());
                self.settle().await;
                continue;
            }
            if deadline != armed {
                if let Some(at) = deadline {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                armed = deadline;
            }
            let take_commands = !closed && self.waiting.len() < MAX_WAITING;
            tokio::select! {
                Some(done) = self.sends.join_next(), if !self.sends.is_empty() => {
                    if let Ok((batch, result)) = done {
                        self.batcher.handle_sent(now(), batch, result);
                    }
                }
                command = self.commands.recv(), if take_commands => match command {
                    Some(Command::Record { event, reply }) => self.record(event, reply),
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown_replies.push(reply);
                        self.shutdown();
                    }
                    None => {
                        closed = true;
                        self.shutdown();
                    }
                },
                () = &mut sleep, if armed.is_some() => {
                    self.batcher.handle_timeout(now());
                }
            }
            self.settle().await;
        }
        self.finish()
    }

    fn record(&mut self, event: Box<Event>, reply: Reply) {
        if reply.is_closed() {
            return; // the caller gave up
        }
        if !self.waiting.is_empty() {
            self.waiting.push_back((event, reply));
            return;
        }
        if let Some((event, reply)) = self.push(event, reply) {
            self.waiting.push_back((event, reply));
        }
    }

    /// Pushes one event; gives it back when the core says `Wait`.
    fn push(&mut self, event: Box<Event>, reply: Reply) -> Option<(Box<Event>, Reply)> {
        let answer = match self.batcher.push(now(), &event) {
            PushOutcome::Queued => Ok(Recorded::Queued),
            PushOutcome::Spilled => Ok(Recorded::Spilled),
            PushOutcome::Sent(batch) => {
                self.blocking.insert(batch, reply);
                return None;
            }
            PushOutcome::Wait => return Some((event, reply)),
            PushOutcome::Refused(why) => Err(RecordError::Refused(why)),
        };
        let _ = reply.send(answer);
        None
    }

    /// `Unblocked`: push the waiters in order until the core says `Wait`.
    fn retry_waiting(&mut self) {
        while let Some((event, reply)) = self.waiting.pop_front() {
            if reply.is_closed() {
                continue;
            }
            if let Some(back) = self.push(event, reply) {
                self.waiting.push_front(back);
                break;
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(RecordError::Refused(Refusal::ShutDown)));
        }
        self.batcher.shutdown(now());
    }

    /// Performs the batcher's outputs until it has none and nobody waits
    /// for a retry that could make progress.
    async fn settle(&mut self) {
        loop {
            while let Some(output) = self.batcher.poll_output() {
                self.perform(output).await;
            }
            if std::mem::take(&mut self.unblocked) && !self.waiting.is_empty() {
                self.retry_waiting();
                continue;
            }
            break;
        }
    }

    async fn perform(&mut self, output: AuditOutput) {
        match output {
            AuditOutput::Send { batch, body, .. } => {
                let poster = self.poster.clone();
                let limit = self.batcher.config().send_timeout;
                self.sends.spawn(async move {
                    let result = tokio::time::timeout(limit, poster.post(body))
                        .await
                        .unwrap_or(Err(DeliveryError::Timeout));
                    (batch, result)
                });
            }
            AuditOutput::Delivered { batch, events } => {
                tracing::debug!(%batch, events, "audit batch delivered");
                if let Some(reply) = self.blocking.remove(&batch) {
                    let _ = reply.send(Ok(Recorded::Delivered));
                }
            }
            AuditOutput::Failed {
                batch,
                events,
                error,
                retry_at,
            } => {
                let retry_in = retry_at.map(|at| at.saturating_duration_since(now()));
                tracing::warn!(%batch, events, %error, ?retry_in, "audit webhook send failed");
                if let Some(reply) = self.blocking.remove(&batch) {
                    let _ = reply.send(Err(RecordError::Failed(error)));
                }
            }
            AuditOutput::DeadLetter {
                events,
                body,
                error,
            } => {
                let path = self.dead.path().display().to_string();
                match self.dead.append_line(&body).await {
                    Ok(()) => tracing::error!(
                        events, %error, file = %path,
                        "audit events dead-lettered (not delivered to the webhook)"
                    ),
                    Err(e) => tracing::error!(
                        events, %error, file = %path, write_error = %e,
                        body = %String::from_utf8_lossy(&body),
                        "audit events dead-lettered; the dead-letter file failed, events logged here"
                    ),
                }
            }
            AuditOutput::Spill { bytes, .. } => {
                let result = self.spill.append(bytes).await;
                self.spill_result(result, "append");
            }
            AuditOutput::SyncSpill => {
                let result = self.spill.sync().await;
                self.spill_result(result, "fsync");
            }
            AuditOutput::ReadSpill { offset, max } => match self.spill.read_at(offset, max).await {
                Ok(bytes) => self.batcher.handle_spill_bytes(now(), &bytes),
                Err(e) => self.spill_result(Err(e), "read"),
            },
            AuditOutput::TruncateSpill { len } => {
                let result = self.spill.truncate(len).await;
                self.spill_result(result, "truncate");
            }
            AuditOutput::SpillDamaged(e) => {
                tracing::warn!(error = %e, file = %self.spill.path().display(), "audit spill file damaged");
            }
            AuditOutput::SpillLost {
                events_at_risk,
                error,
            } => tracing::error!(
                events_at_risk, %error, file = %self.spill.path().display(),
                "audit spill file failed; spilling is off"
            ),
            AuditOutput::Unblocked => self.unblocked = true,
            AuditOutput::Drained(drain) => {
                tracing::info!(
                    delivered = drain.delivered,
                    persisted = drain.persisted,
                    dead_lettered = drain.dead_lettered,
                    "audit sink drained"
                );
                self.report = Some(ShutdownReport {
                    drain,
                    stats: self.batcher.stats(),
                });
            }
        }
    }

    fn spill_result(&mut self, result: std::io::Result<()>, op: &str) {
        if let Err(e) = result {
            let message = format!("{op} {}: {e}", self.spill.path().display());
            self.batcher.handle_spill_error(now(), &message);
        }
    }

    /// After `Drained`: answer everyone still waiting and end.
    fn finish(mut self) -> ShutdownReport {
        let report = self.report.unwrap_or_default();
        for reply in self.shutdown_replies.drain(..) {
            let _ = reply.send(report);
        }
        for (_, reply) in self.blocking.drain() {
            let _ = reply.send(Err(RecordError::Refused(Refusal::ShutDown)));
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Record { reply, .. } => {
                    let _ = reply.send(Err(RecordError::Refused(Refusal::ShutDown)));
                }
                Command::Shutdown { reply } => {
                    let _ = reply.send(report);
                }
            }
        }
        self.sends.abort_all();
        report
    }
}
