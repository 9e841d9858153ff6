//! How an [`super::AuditBatcher`] is tuned. Names and defaults follow
//! kube-apiserver's `--audit-webhook-*` flags where one exists.

use std::time::Duration;

/// How events reach the webhook (`--audit-webhook-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Buffered, sent in batches, one batch in flight at a time, retried.
    #[default]
    Batch,
    /// Each event is sent on its own at once; the request waits for it.
    Blocking,
}

/// What happens when the memory buffer is full and the spill file has
/// reached [`AuditConfig::max_spill_bytes`] (or spilling is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// Back-pressure: `push` answers [`super::PushOutcome::Wait`]; the
    /// request waits until [`super::AuditOutput::Unblocked`].
    #[default]
    Block,
    /// `push` answers [`super::PushOutcome::Refused`]; the proxy refuses
    /// the request rather than serve it unaudited.
    FailClosed,
}

/// The batcher's tunables.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub mode: Mode,
    /// Batch mode: events held in memory, not yet cut into a batch
    /// (`--audit-webhook-batch-buffer-size`, default 10000). Blocking mode:
    /// the most sends in flight at once.
    pub buffer_size: usize,
    /// Most events in one batch (`--audit-webhook-batch-max-size`, 400).
    pub max_batch_size: usize,
    /// A batch is cut when the oldest buffered event has waited this long
    /// (`--audit-webhook-batch-max-wait`, 30 s).
    pub max_batch_wait: Duration,
    /// Batches sent per second, on average
    /// (`--audit-webhook-batch-throttle-qps`, 10); `0` disables throttling.
    pub throttle_qps: f64,
    /// Batches that may be sent at once after a quiet spell
    /// (`--audit-webhook-batch-throttle-burst`, 15).
    pub throttle_burst: u32,
    /// First delay before a failed batch is retried
    /// (`--audit-webhook-initial-backoff`, 10 s); doubled on every further
    /// failure of the same batch, up to [`AuditConfig::max_backoff`].
    pub initial_backoff: Duration,
    /// Longest delay between retries (5 min). Retries of transient failures
    /// are not limited in number: the batch is kept (in memory, or on disk
    /// once the buffer fills) until it is delivered or the process drains.
    pub max_backoff: Duration,
    /// How long one send may take before it counts as failed (30 s); in
    /// blocking mode, how long a request waits for its event.
    pub send_timeout: Duration,
    /// How long [`super::AuditBatcher::shutdown`] keeps delivering before it
    /// persists what is left (10 s).
    pub drain_timeout: Duration,
    /// The spill file's size bound (256 MiB); `0` turns spilling off.
    pub max_spill_bytes: u64,
    /// Buffer full and spill file at its bound: block or fail closed.
    pub overflow: Overflow,
    /// Spilled records are fsync'd at most this long after being written
    /// (1 s), and always at drain: one `SyncSpill` covers many appends.
    pub spill_sync_interval: Duration,
    /// Most bytes asked for in one `ReadSpill` (1 MiB).
    pub spill_read_chunk: usize,
    /// The largest serialized event (1 MiB, kube-apiserver's default
    /// `--audit-webhook-truncate-max-event-size` is 100 KiB but truncation
    /// is off by default). A larger event first loses its request and
    /// response objects (annotated `audit.k8s.io/truncated`, as
    /// kube-apiserver's truncating backend does); if still too large it is
    /// refused. Also the bound on a record's payload read from disk.
    pub max_event_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            mode: Mode::Batch,
            buffer_size: 10_000,
            max_batch_size: 400,
            max_batch_wait: Duration::from_secs(30),
            throttle_qps: 10.0,
            throttle_burst: 15,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            send_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_spill_bytes: 256 * 1024 * 1024,
            overflow: Overflow::Block,
            spill_sync_interval: Duration::from_secs(1),
            spill_read_chunk: 1024 * 1024,
            max_event_bytes: 1024 * 1024,
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("audit webhook: {0} must not be zero")]
    Zero(&'static str),
    #[error("audit webhook: the throttle QPS must be a finite number ≥ 0")]
    BadQps,
    #[error("audit webhook: the max backoff is shorter than the initial backoff")]
    BackoffCap,
    #[error("audit webhook: the spill bound must hold the largest event ({0} bytes), or be 0")]
    SpillTooSmall(u64),
}

impl AuditConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (v, name) in [
            (self.buffer_size, "the buffer size"),
            (self.max_batch_size, "the max batch size"),
            (self.spill_read_chunk, "the spill read chunk"),
            (self.max_event_bytes, "the max event size"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        for (v, name) in [
            (self.initial_backoff, "the initial backoff"),
            (self.send_timeout, "the send timeout"),
        ] {
            if v.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if !self.throttle_qps.is_finite() || self.throttle_qps < 0.0 {
            return Err(ConfigError::BadQps);
        }
        if self.throttle_qps > 0.0 && self.throttle_burst == 0 {
            return Err(ConfigError::Zero("the throttle burst"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(ConfigError::BackoffCap);
        }
        let largest = super::spill::event_record_len(self.max_event_bytes);
        if self.max_spill_bytes > 0 && self.max_spill_bytes < largest {
            return Err(ConfigError::SpillTooSmall(largest));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1-based) of one batch:
    /// `initial_backoff × 2^(retry-1)`, capped at `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(0);
        if factor == 0 {
            return self.max_backoff;
        }
        self.initial_backoff
            .checked_mul(factor)
            .map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }
}
