//! What an [`super::AuditBatcher`] hands back to its driver.

use super::spill::SpillError;
use bytes::Bytes;
use std::fmt;
use std::time::Instant;

/// Names one send of a batch (a retry is a new send with a new id), so a
/// late result for an abandoned send is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub(super) u64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch-{}", self.0)
    }
}

/// What [`super::AuditBatcher::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushOutcome {
    /// Batch mode: held in memory, sent in a later batch.
    Queued,
    /// Batch mode: appended to the spill file (`Spill` output), sent after
    /// everything older.
    Spilled,
    /// Blocking mode: sent now as this batch; the request waits for its
    /// `Delivered` or `Failed`.
    Sent(BatchId),
    /// Not accepted: buffer and spill are full ([`super::Overflow::Block`])
    /// or the batcher is still replaying the spill file with a full buffer.
    /// Push again after [`AuditOutput::Unblocked`].
    Wait,
    /// Not accepted, for good: the request should be refused.
    Refused(Refusal),
}

impl PushOutcome {
    /// The event is in the batcher's hands.
    pub fn accepted(self) -> bool {
        matches!(self, Self::Queued | Self::Spilled | Self::Sent(_))
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("the audit buffer and spill file are full (fail-closed)")]
    Full,
    #[error("the audit event is {bytes} bytes, over the limit even without its objects")]
    TooLarge { bytes: usize },
    #[error("the audit pipeline has shut down")]
    ShutDown,
}

/// Why a send failed, as the adapter reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The webhook answered with a non-2xx status.
    #[error("webhook answered {code}: {message}")]
    Status { code: u16, message: String },
    /// Connect, TLS, reset, write or read error.
    #[error("webhook unreachable: {0}")]
    Transport(String),
    /// No answer within [`super::AuditConfig::send_timeout`].
    #[error("webhook did not answer in time")]
    Timeout,
}

impl DeliveryError {
    /// Transport errors, timeouts, `408`, `429` and `5xx` are retried in
    /// batch mode (kube-apiserver retries the same kinds); any other status
    /// rejects the batch for good (a retry would be refused again).
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            DeliveryError::Transport(_) | DeliveryError::Timeout => true,
        }
    }
}

/// One output of the batcher, from [`super::AuditBatcher::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum AuditOutput {
    /// POST `body` (an `EventList`, `Content-Type: application/json`) to
    /// the webhook and report the result with `handle_sent(batch, …)`.
    Send {
        batch: BatchId,
        body: Bytes,
        events: usize,
    },
    /// The webhook accepted `batch`.
    Delivered { batch: BatchId, events: usize },
    /// A send of `batch` failed. `retry_at: Some` — it is retried then (in
    /// a new batch with the same events); `None` — this send is final: the
    /// events follow in a `DeadLetter` (rejected, or blocking mode) or are
    /// persisted to the spill (draining).
    Failed {
        batch: BatchId,
        events: usize,
        error: DeliveryError,
        retry_at: Option<Instant>,
    },
    /// These events will not be sent by this process: the webhook rejected
    /// them for good, a blocking send failed, or spilling is off at drain.
    /// Append `body` (an `EventList`) to the dead-letter file and log it —
    /// nothing is dropped silently.
    DeadLetter {
        events: usize,
        body: Bytes,
        error: DeliveryError,
    },
    /// Append these framed records to the spill file (write them before
    /// serving any later `ReadSpill`).
    Spill { bytes: Bytes, events: usize },
    /// fsync the spill file (one sync covers every earlier `Spill`).
    SyncSpill,
    /// Read up to `max` bytes of the spill file at `offset` and pass them
    /// to `handle_spill_bytes` (an empty slice: end of file).
    ReadSpill { offset: u64, max: usize },
    /// Truncate the spill file to `len` bytes (`0`: everything on it was
    /// delivered; otherwise a torn record is cut off).
    TruncateSpill { len: u64 },
    /// Damage found while reading the spill file back; for logs (counted in
    /// [`AuditStats::spill_damage`]).
    SpillDamaged(SpillError),
    /// The spill file failed (`handle_spill_error`): spilling is off from
    /// now on; `events_at_risk` events that were only on disk may be lost.
    SpillLost { events_at_risk: u64, error: String },
    /// A `push` answered `Wait` earlier; there is room now.
    Unblocked,
    /// Shutdown finished; the last output.
    Drained(DrainReport),
}

/// What [`super::AuditBatcher::shutdown`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DrainReport {
    /// Events delivered since shutdown began.
    pub delivered: u64,
    /// Events left in the spill file for the next start.
    pub persisted: u64,
    /// Events handed over in a `DeadLetter` since shutdown began.
    pub dead_lettered: u64,
}

/// Why the batcher asked to be woken ([`super::AuditBatcher::timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The oldest buffered event will have waited
    /// [`super::AuditConfig::max_batch_wait`]: cut a batch.
    BatchWait,
    /// A batch is ready but the throttle has no token until then.
    Throttle,
    /// A failed batch is retried then.
    Backoff,
    /// The send in flight (or, in blocking mode, the oldest one) counts as
    /// failed unless its result arrives by then.
    SendTimeout,
    /// Spilled records written since the last sync are fsync'd then.
    SpillSync,
    /// Draining stops then and persists what is left.
    Drain,
}

/// Counters since the batcher was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AuditStats {
    /// Events accepted by `push`.
    pub accepted: u64,
    /// Events the webhook accepted.
    pub delivered: u64,
    /// Failed sends (each retry that fails counts again).
    pub failed_sends: u64,
    /// Events handed over in `DeadLetter` outputs.
    pub dead_lettered: u64,
    /// Event records written to the spill file.
    pub spilled: u64,
    /// Events recovered from a spill file left by an earlier run.
    pub replayed: u64,
    /// Damage reports while reading the spill file.
    pub spill_damage: u64,
    /// Pushes answered `Wait`.
    pub waited: u64,
    /// Pushes answered `Refused`.
    pub refused: u64,
    /// Events whose request/response objects were cut to fit.
    pub truncated: u64,
}
