//! The audit webhook sink: drives a core [`AuditBatcher`] on tokio.
//!
//! [`AuditSink::start`] spawns one task that owns the batcher and does what
//! its outputs say: POSTs `Send` bodies to the webhook ([`WebhookConfig`],
//! read from kube-apiserver's `--audit-webhook-config-file` format), appends
//! `Spill` records to the spill file, fsyncs on `SyncSpill`, serves
//! `ReadSpill` / `TruncateSpill`, appends `DeadLetter` bodies to the
//! dead-letter file, and logs failures (`tracing`). The core decides; this
//! task only moves bytes and sleeps.
//!
//! Requests talk to the task through an [`AuditHandle`] (a bounded
//! channel). [`AuditHandle::record`] applies the core's [`PushOutcome`]:
//! accepted → returns at once (batch mode); `Wait` → waits for room, in
//! arrival order; blocking mode → waits for the webhook's answer. Every wait
//! is bounded (see [`AuditHandle::record`]). [`AuditHandle::shutdown`]
//! drains and returns the [`ShutdownReport`]; dropping every handle drains
//! too (the `JoinHandle` then yields the report).
//!
//! [`AuditBatcher`]: kubecast_core::audit::AuditBatcher
//! [`PushOutcome`]: kubecast_core::audit::PushOutcome

mod client;
mod driver;
mod files;
mod tls;
mod webhook;

pub use files::{DEAD_LETTER_FILE, SPILL_FILE};
pub use webhook::{WebhookConfig, WebhookConfigError};

use kubecast_core::audit::{
    AuditBatcher, AuditConfig, AuditStats, ConfigError, DeliveryError, DrainReport, Event, Refusal,
};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Records waiting in the handle → task channel.
const COMMANDS: usize = 1024;
/// Extra time a caller gives the task beyond the core's own deadlines.
const GRACE: Duration = Duration::from_secs(5);

/// Starts the audit pipeline; see the module docs.
#[derive(Debug)]
pub struct AuditSink;

impl AuditSink {
    /// Validates `config`, creates `spill_dir` (it holds [`SPILL_FILE`] and
    /// [`DEAD_LETTER_FILE`]; one process per directory) and spawns the
    /// task. With spilling on (batch mode), the task first replays what a
    /// previous run left in the spill file; events recorded meanwhile are
    /// sent after those. Must be called inside a tokio runtime.
    pub fn start(
        config: AuditConfig,
        webhook: WebhookConfig,
        spill_dir: impl Into<PathBuf>,
    ) -> Result<(AuditHandle, JoinHandle<ShutdownReport>), AuditStartError> {
        let spill_dir = spill_dir.into();
        std::fs::create_dir_all(&spill_dir).map_err(|e| AuditStartError::SpillDir {
            dir: spill_dir.clone(),
            error: e.to_string(),
        })?;
        let now = tokio::time::Instant::now().into_std();
        let batcher = AuditBatcher::new(now, config.clone())?;
        let (tx, rx) = mpsc::channel(COMMANDS);
        let task = tokio::spawn(driver::Driver::new(batcher, webhook, &spill_dir, rx).run());
        let handle = AuditHandle {
            tx,
            record_wait: config.send_timeout + GRACE,
            drain_wait: config.drain_timeout + config.send_timeout + GRACE,
        };
        Ok((handle, task))
    }
}

/// Why [`AuditSink::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("audit spill directory {}: {error}", dir.display())]
    SpillDir { dir: PathBuf, error: String },
}

/// What happened to a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// Batch mode: in memory, sent in a later batch.
    Queued,
    /// Batch mode: on the spill file, sent after everything older.
    Spilled,
    /// Blocking mode: the webhook accepted it.
    Delivered,
}

/// Why an event was not recorded. The request should be refused (or, for
/// `Failed` in blocking mode, at least counted: the event went to the
/// dead-letter file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The core refused it (fail-closed overflow, too large, shut down).
    #[error("audit event refused: {0}")]
    Refused(Refusal),
    /// Blocking mode: the send failed; the event is in the dead-letter file.
    #[error("audit event not delivered: {0}")]
    Failed(DeliveryError),
    /// No answer within the bound (waiting for room, or a blocking send
    /// that neither succeeded nor failed in time). The event was not
    /// accepted if it was still waiting for room.
    #[error("audit event not accepted within {0:?}")]
    Timeout(Duration),
    /// The sink's task has ended.
    #[error("the audit sink has stopped")]
    Closed,
}

/// What [`AuditHandle::shutdown`] (or the task's `JoinHandle`) reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShutdownReport {
    pub drain: DrainReport,
    /// The batcher's counters over the whole run.
    pub stats: AuditStats,
}

/// Why [`AuditHandle::shutdown`] has no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    #[error("the audit sink did not finish draining within {0:?}")]
    Timeout(Duration),
    #[error("the audit sink had already stopped")]
    Closed,
}

pub(crate) enum Command {
    Record {
        event: Box<Event>,
        reply: oneshot::Sender<Result<Recorded, RecordError>>,
    },
    Shutdown {
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// Talks to the sink's task. Cheap to clone; one per request handler.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Command>,
    record_wait: Duration,
    drain_wait: Duration,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Record { event, .. } => write!(f, "Record({})", event.audit_id),
            Command::Shutdown { .. } => f.write_str("Shutdown"),
        }
    }
}

impl AuditHandle {
    /// Hands `event` to the batcher. Batch mode: returns once it is queued
    /// or spilled — at once, unless buffer and spill are full
    /// (`Overflow::Block`): then it waits for room, behind earlier waiters.
    /// Blocking mode: returns the webhook's answer. Either wait is bounded
    /// by the core's `send_timeout` plus 5 s ([`RecordError::Timeout`]);
    /// an event still waiting for room then is withdrawn.
    pub async fn record(&self, event: Event) -> Result<Recorded, RecordError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Record {
            event: Box::new(event),
            reply,
        };
        let wait = self.record_wait;
        let answer = async {
            self.tx
                .send(command)
                .await
                .map_err(|_| RecordError::Closed)?;
            rx.await.map_err(|_| RecordError::Closed)?
        };
        tokio::time::timeout(wait, answer)
            .await
            .unwrap_or(Err(RecordError::Timeout(wait)))
    }

    /// Drains: sends what is left (bounded by the core's `drain_timeout`),
    /// persists the rest to the spill file, and reports. Later `record`s
    /// are refused. Bounded by `drain_timeout + send_timeout + 5 s`.
    pub async fn shutdown(&self) -> Result<ShutdownReport, ShutdownError> {
        let (reply, rx) = oneshot::channel();
        let wait = self.drain_wait;
        let answer = async {
            self.tx
                .send(Command::Shutdown { reply })
                .await
                .map_err(|_| ShutdownError::Closed)?;
            rx.await.map_err(|_| ShutdownError::Closed)
        };
        tokio::time::timeout(wait, answer)
            .await
            .unwrap_or(Err(ShutdownError::Timeout(wait)))
    }
}
