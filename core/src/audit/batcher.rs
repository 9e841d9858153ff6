//! The [`AuditBatcher`] machine: inputs, getters and the pump that cuts
//! batches. The spill file's bookkeeping is in `disk.rs`.

use super::config::{AuditConfig, ConfigError, Mode, Overflow};
use super::disk::Disk;
use super::event::{Event, LIST_HEAD, LIST_TAIL};
use super::output::{
    AuditOutput, AuditStats, BatchId, DeliveryError, DrainReport, PushOutcome, Refusal, Timer,
};
use super::throttle::Throttle;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// The audit webhook's batching, retry and spill machine. Create it with
/// [`AuditBatcher::new`]; with spilling on it first reads the spill file a
/// previous run left (`ReadSpill` outputs).
///
/// # The contract
///
/// - **getters** (`&self`): [`AuditBatcher::poll_timeout`] — when
///   [`AuditBatcher::handle_timeout`] must next be called — and
///   [`AuditBatcher::timer`], which says why ([`Timer`]);
///   [`AuditBatcher::buffered`], [`AuditBatcher::in_flight`],
///   [`AuditBatcher::on_disk`], [`AuditBatcher::stats`],
///   [`AuditBatcher::is_recovering`], [`AuditBatcher::is_drained`].
/// - **event input** (`now` first): [`AuditBatcher::push`] answers at once
///   with a [`PushOutcome`]: accepted (queued, spilled, or sent in blocking
///   mode), `Wait` (back-pressure) or `Refused` (fail-closed).
/// - **webhook input** (`now` first, infallible):
///   [`AuditBatcher::handle_sent`] — the result of a `Send`. Results for a
///   send that is no longer current (it timed out, or the batcher drained)
///   are ignored.
/// - **spill inputs** (`now` first, infallible):
///   [`AuditBatcher::handle_spill_bytes`] — the bytes a `ReadSpill` asked
///   for (empty = end of file), in any chunks;
///   [`AuditBatcher::handle_spill_error`] — the spill file failed.
/// - **time**: [`AuditBatcher::handle_timeout`]; spurious or early calls are
///   harmless. **Shutdown**: [`AuditBatcher::shutdown`] drains.
/// - **outputs**: [`AuditBatcher::poll_output`], drained after *every*
///   input until `None` ([`AuditOutput`]). The adapter performs them in
///   order: POST a `Send`, append a `Spill`, fsync on `SyncSpill`, read on
///   `ReadSpill`, truncate on `TruncateSpill`, write a `DeadLetter` body to
///   the dead-letter file.
///
/// # Batch mode
///
/// Events are held in memory (up to [`AuditConfig::buffer_size`]) and cut
/// into a batch of at most [`AuditConfig::max_batch_size`] when that many
/// are waiting, or when the oldest has waited
/// [`AuditConfig::max_batch_wait`]. **One batch is in flight at a time**, so
/// the webhook sees events in the order they were pushed. Each send takes a
/// token of the throttle ([`AuditConfig::throttle_qps`] /
/// [`AuditConfig::throttle_burst`], off when the QPS is 0). A send that
/// fails with a transient error (see [`DeliveryError::is_retryable`]) or
/// gets no answer in [`AuditConfig::send_timeout`] is retried after
/// `initial_backoff × 2^(n-1)` (10 s, 20 s, 40 s, …) capped at
/// [`AuditConfig::max_backoff`] (5 min), **without a limit on the number of
/// retries**: an unreachable webhook holds the batch until it recovers or
/// the process drains, while newer events queue and spill. A batch the
/// webhook rejects for good (4xx other than 408/429) is handed over as a
/// `DeadLetter` and the next one goes on.
///
/// # Spill
///
/// When the memory buffer is full, the batcher switches to disk: it
/// appends every event not yet delivered — the batch in flight, the
/// buffer, then the new event — to the spill file, and from then on appends
/// every new event there too, reading them back in order as memory frees
/// up. While the file is in use it holds all undelivered events in push
/// order, and delivered batches are recorded with a mark; once everything
/// on it is delivered it is truncated to zero and memory-only operation
/// resumes. The file is bounded by [`AuditConfig::max_spill_bytes`]; past
/// that [`AuditConfig::overflow`] decides between `Wait` and `Refused`.
/// Appends are synced in batches ([`AuditConfig::spill_sync_interval`]).
/// At start the file is scanned, then its undelivered events are replayed
/// before anything pushed since. The framing is in [`super::spill`].
///
/// # Ordering and duplicates
///
/// Within a run, and across restarts through the spill file, events reach
/// the webhook in push order (dead-lettered batches excepted). Delivery is
/// at least once: a send that timed out may have arrived, and after a crash
/// the events since the last synced mark are sent again.
///
/// # Blocking mode
///
/// Every event is sent at once as its own `EventList`; up to
/// [`AuditConfig::buffer_size`] sends may be in flight (then `Wait` or
/// `Refused`). Each gets [`AuditConfig::send_timeout`]; a failure or
/// timeout is reported (`Failed`, counted) and the event handed over as a
/// `DeadLetter`. No retries, no spill.
///
/// # Shutdown
///
/// [`AuditBatcher::shutdown`] sends everything left — without waiting for
/// `max_batch_wait`, the throttle or a backoff — until all is delivered, a
/// send fails, or [`AuditConfig::drain_timeout`] passes. What is left is
/// then spilled (even past the bound: the bound holds back new events, not
/// the last ones), synced, and reported in [`AuditOutput::Drained`]; with
/// spilling off it becomes a `DeadLetter`.
#[derive(Debug)]
pub struct AuditBatcher {
    pub(super) config: AuditConfig,
    /// Memory buffer: events not yet in a batch, in push order.
    pub(super) queue: VecDeque<Entry>,
    /// Batch mode: the one batch sent or waiting for its retry.
    pub(super) batch: Option<InFlight>,
    /// Blocking mode: sends in flight.
    pub(super) blocking: BTreeMap<BatchId, Pending>,
    pub(super) disk: Disk,
    pub(super) throttle: Throttle,
    pub(super) next_seq: u64,
    next_batch: u64,
    /// A push answered `Wait` and has not been told `Unblocked` yet: the
    /// smallest such event's JSON length (room for it unblocks).
    waiting: Option<usize>,
    /// Draining: the deadline.
    pub(super) draining: Option<Instant>,
    pub(super) drained: bool,
    pub(super) drain: DrainReport,
    pub(super) outputs: VecDeque<AuditOutput>,
    pub(super) stats: AuditStats,
}

/// One event held in memory.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) json: Bytes,
    /// When a batch must be cut for it.
    pub(super) due: Instant,
    /// Its record is in the spill file.
    pub(super) on_disk: bool,
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) entries: Vec<Entry>,
    pub(super) body: Bytes,
    /// Failed sends of this batch so far.
    pub(super) failures: u32,
    pub(super) state: BatchState,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum BatchState {
    Sending { id: BatchId, until: Instant },
    Backoff { at: Instant },
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) until: Instant,
    pub(super) body: Bytes,
}

impl AuditBatcher {
    /// Validates `config`. In batch mode with spilling on, the batcher
    /// starts by scanning the spill file (a `ReadSpill` at offset 0);
    /// events pushed meanwhile are held and sent after the replayed ones.
    pub fn new(now: Instant, config: AuditConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let spill = config.mode == Mode::Batch && config.max_spill_bytes > 0;
        let mut b = AuditBatcher {
            disk: Disk::new(spill, config.max_event_bytes),
            throttle: Throttle {
                qps: config.throttle_qps,
                burst: f64::from(config.throttle_burst),
                tokens: f64::from(config.throttle_burst),
                last: None,
            },
            config,
            queue: VecDeque::new(),
            batch: None,
            blocking: BTreeMap::new(),
            next_seq: 1,
            next_batch: 1,
            waiting: None,
            draining: None,
            drained: false,
            drain: DrainReport::default(),
            outputs: VecDeque::new(),
            stats: AuditStats::default(),
        };
        b.start_recovery(now);
        Ok(b)
    }

    // ---- getters ----

    /// When [`AuditBatcher::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer().map(|(at, _)| at)
    }

    /// The next deadline and why it exists.
    pub fn timer(&self) -> Option<(Instant, Timer)> {
        if self.drained {
            return None;
        }
        let mut next: Option<(Instant, Timer)> = None;
        let mut consider = |at: Instant, why: Timer| {
            if next.is_none_or(|(n, _)| at < n) {
                next = Some((at, why));
            }
        };
        if let Some(at) = self.draining {
            consider(at, Timer::Drain);
        }
        if let Some(at) = self.disk.sync_at {
            consider(at, Timer::SpillSync);
        }
        if let Some(p) = self.blocking.values().map(|p| p.until).min() {
            consider(p, Timer::SendTimeout);
        }
        match self.batch.as_ref().map(|b| b.state) {
            Some(BatchState::Sending { until, .. }) => consider(until, Timer::SendTimeout),
            Some(BatchState::Backoff { at }) => {
                let ready = self.throttle.ready_at(at);
                if ready > at {
                    consider(ready, Timer::Throttle);
                } else {
                    consider(at, Timer::Backoff);
                }
            }
            None if self.draining.is_none() && !self.disk.recovering() => {
                if let Some(front) = self.queue.front() {
                    let cut = if self.queue.len() >= self.config.max_batch_size {
                        None
                    } else {
                        Some(front.due)
                    };
                    match cut {
                        Some(due) => {
                            let ready = self.throttle.ready_at(due);
                            if ready > due {
                                consider(ready, Timer::Throttle);
                            } else {
                                consider(due, Timer::BatchWait);
                            }
                        }
                        // A full batch waits only for the throttle: its
                        // token time is after the last input's `now`.
                        None => {
                            if let Some(last) = self.throttle.last {
                                consider(self.throttle.ready_at(last), Timer::Throttle);
                            }
                        }
                    }
                }
            }
            None => {}
        }
        next
    }

    /// Events in memory, not yet in a batch (during recovery: pushed and
    /// held until the spill file is replayed).
    pub fn buffered(&self) -> usize {
        self.queue.len() + self.disk.held()
    }

    /// Events sent and not yet answered (or waiting for their retry).
    pub fn in_flight(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.entries.len()) + self.blocking.len()
    }

    /// Undelivered events that are only on disk, not in memory.
    pub fn on_disk(&self) -> u64 {
        self.disk.unread_events()
    }

    pub fn stats(&self) -> AuditStats {
        self.stats
    }

    /// Still scanning the spill file left by an earlier run.
    pub fn is_recovering(&self) -> bool {
        self.disk.recovering()
    }

    /// Shutdown finished: `Drained` was emitted.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    // ---- outputs ----

    /// The next output; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<AuditOutput> {
        self.outputs.pop_front()
    }

    // ---- event input ----

    /// One audit event. The event is serialized now; the caller keeps it
    /// (to push again after `Wait`).
    pub fn push(&mut self, now: Instant, event: &Event) -> PushOutcome {
        if self.drained {
            self.stats.refused += 1;
            return PushOutcome::Refused(Refusal::ShutDown);
        }
        let json = match self.encode(event) {
            Ok(json) => json,
            Err(refusal) => {
                self.stats.refused += 1;
                return PushOutcome::Refused(refusal);
            }
        };
        let len = json.len();
        let outcome = match self.config.mode {
            Mode::Blocking => self.push_blocking(now, json),
            Mode::Batch => self.push_batch(now, json),
        };
        if outcome == PushOutcome::Wait {
            self.waiting = Some(self.waiting.map_or(len, |w| w.min(len)));
        }
        if outcome.accepted() {
            self.stats.accepted += 1;
        }
        self.pump(now);
        outcome
    }

    fn encode(&mut self, event: &Event) -> Result<Bytes, Refusal> {
        let max = self.config.max_event_bytes;
        let json = serde_json::to_vec(event).map_err(|_| Refusal::TooLarge { bytes: 0 })?;
        if json.len() <= max {
            return Ok(Bytes::from(json));
        }
        let mut cut = event.clone();
        if cut.request_object.take().is_some() | cut.response_object.take().is_some() {
            cut.annotations
                .insert("audit.k8s.io/truncated".into(), "true".into());
            let json = serde_json::to_vec(&cut).map_err(|_| Refusal::TooLarge { bytes: 0 })?;
            if json.len() <= max {
                self.stats.truncated += 1;
                return Ok(Bytes::from(json));
            }
            return Err(Refusal::TooLarge { bytes: json.len() });
        }
        Err(Refusal::TooLarge { bytes: json.len() })
    }

    fn push_blocking(&mut self, now: Instant, json: Bytes) -> PushOutcome {
        if self.blocking.len() >= self.config.buffer_size {
            return self.overflow();
        }
        let id = self.batch_id();
        let body = list_body(std::slice::from_ref(&json));
        let until = super::disk::later(now, self.config.send_timeout);
        self.blocking.insert(
            id,
            Pending {
                until,
                body: body.clone(),
            },
        );
        self.outputs.push_back(AuditOutput::Send {
            batch: id,
            body,
            events: 1,
        });
        PushOutcome::Sent(id)
    }

    fn push_batch(&mut self, now: Instant, json: Bytes) -> PushOutcome {
        if self.disk.recovering() {
            return match self.disk.hold(json, self.config.buffer_size) {
                Ok(()) => PushOutcome::Queued,
                Err(_) => self.overflow(),
            };
        }
        if self.disk.active() {
            return match self.append_new(now, json) {
                Some(outcome) => outcome,
                None => self.overflow(),
            };
        }
        if self.queue.len() < self.config.buffer_size {
            let seq = self.take_seq();
            self.queue.push_back(Entry {
                seq,
                json,
                due: super::disk::later(now, self.config.max_batch_wait),
                on_disk: false,
            });
            return PushOutcome::Queued;
        }
        match self.enter_disk_mode(now, json) {
            Some(outcome) => outcome,
            None => self.overflow(),
        }
    }

    /// Buffer (and spill) full: `Wait` or `Refused` per the config.
    pub(super) fn overflow(&mut self) -> PushOutcome {
        match self.config.overflow {
            Overflow::Block => {
                self.stats.waited += 1;
                PushOutcome::Wait
            }
            Overflow::FailClosed => {
                self.stats.refused += 1;
                PushOutcome::Refused(Refusal::Full)
            }
        }
    }

    // ---- time ----

    /// A deadline from [`AuditBatcher::poll_timeout`] may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.drained {
            return;
        }
        if self.draining.is_some_and(|at| now >= at) {
            self.finish_drain(now, Some(DeliveryError::Timeout));
            return;
        }
        if self.disk.sync_at.is_some_and(|at| now >= at) {
            self.sync_due();
        }
        let expired: Vec<BatchId> = self
            .blocking
            .iter()
            .filter(|(_, p)| now >= p.until)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.blocking.remove(&id) {
                self.blocking_failed(id, p, DeliveryError::Timeout);
            }
        }
        if let Some(BatchState::Sending { id, until }) = self.batch.as_ref().map(|b| b.state) {
            if now >= until {
                self.batch_failed(now, id, DeliveryError::Timeout);
            }
        }
        self.pump(now);
    }

    // ---- the pump ----

    /// Runs after every input: refills memory from disk, cuts and sends a
    /// batch when one is due, and notices the end of a drain.
    pub(super) fn pump(&mut self, now: Instant) {
        if self.drained {
            return;
        }
        self.load(now);
        if self.config.mode == Mode::Batch && !self.disk.recovering() {
            self.send_next(now);
        }
        self.disk_idle(now);
        self.schedule_sync(now);
        if self.waiting.is_some_and(|len| self.has_room(len)) {
            self.waiting = None;
            self.outputs.push_back(AuditOutput::Unblocked);
        }
        let idle = self.batch.is_none()
            && self.blocking.is_empty()
            && self.queue.is_empty()
            && !self.disk.recovering()
            && self.disk.unread_events() == 0;
        if self.draining.is_some() && idle {
            self.finish_drain(now, None);
        }
    }

    fn send_next(&mut self, now: Instant) {
        let draining = self.draining.is_some();
        match self.batch.as_ref().map(|b| b.state) {
            Some(BatchState::Sending { .. }) => {}
            Some(BatchState::Backoff { at }) => {
                if draining || (now >= at && self.throttle.ready_at(now) <= now) {
                    self.resend(now);
                }
            }
            None => {
                let Some(front) = self.queue.front() else {
                    return;
                };
                let full = self.queue.len() >= self.config.max_batch_size;
                if !full && self.disk.read_pending() {
                    return; // not a partial batch while more is read back
                }
                // Draining sends at once: no max wait, no throttle.
                if !draining && (!(full || now >= front.due) || self.throttle.ready_at(now) > now) {
                    return;
                }
                self.cut(now);
            }
        }
    }

    fn cut(&mut self, now: Instant) {
        let n = self.queue.len().min(self.config.max_batch_size);
        let entries: Vec<Entry> = self.queue.drain(..n).collect();
        let jsons: Vec<Bytes> = entries.iter().map(|e| e.json.clone()).collect();
        let body = list_body(&jsons);
        let id = self.batch_id();
        self.throttle.take(now);
        let until = super::disk::later(now, self.config.send_timeout);
        self.outputs.push_back(AuditOutput::Send {
            batch: id,
            body: body.clone(),
            events: entries.len(),
        });
        self.batch = Some(InFlight {
            entries,
            body,
            failures: 0,
            state: BatchState::Sending { id, until },
        });
    }

    fn resend(&mut self, now: Instant) {
        let id = self.batch_id();
        let until = super::disk::later(now, self.config.send_timeout);
        if self.draining.is_none() {
            self.throttle.take(now);
        }
        if let Some(b) = self.batch.as_mut() {
            b.state = BatchState::Sending { id, until };
            self.outputs.push_back(AuditOutput::Send {
                batch: id,
                body: b.body.clone(),
                events: b.entries.len(),
            });
        }
    }

    /// Whether a push of a `len`-byte event would now be accepted.
    fn has_room(&self, len: usize) -> bool {
        match self.config.mode {
            Mode::Blocking => self.blocking.len() < self.config.buffer_size,
            Mode::Batch if self.disk.recovering() => self.disk.held() < self.config.buffer_size,
            Mode::Batch if self.disk.active() => self.disk.has_room(&self.config, len),
            Mode::Batch => self.queue.len() < self.config.buffer_size,
        }
    }

    pub(super) fn batch_id(&mut self) -> BatchId {
        let id = BatchId(self.next_batch);
        self.next_batch += 1;
        id
    }

    pub(super) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// An `EventList` body around already serialized events.
pub(super) fn list_body(events: &[Bytes]) -> Bytes {
    let len: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = BytesMut::with_capacity(LIST_HEAD.len() + len + LIST_TAIL.len());
    out.put_slice(LIST_HEAD);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(e);
    }
    out.put_slice(LIST_TAIL);
    out.freeze()
}
