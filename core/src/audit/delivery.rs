//! The webhook's answers, and shutdown: delivered, failed (retry, dead
//! letter) and the drain that ends in `Drained`.

use super::batcher::{AuditBatcher, BatchState, Entry, Pending};
use super::output::{AuditOutput, BatchId, DeliveryError};
use bytes::Bytes;
use std::time::Instant;

impl AuditBatcher {
    // ---- webhook input ----

    /// The result of the `Send` of `batch`.
    pub fn handle_sent(&mut self, now: Instant, batch: BatchId, result: Result<(), DeliveryError>) {
        if self.drained {
            return;
        }
        if let Some(p) = self.blocking.remove(&batch) {
            match result {
                Ok(()) => self.delivered(batch, 1),
                Err(error) => self.blocking_failed(batch, p, error),
            }
        } else if matches!(
            self.batch.as_ref().map(|b| b.state),
            Some(BatchState::Sending { id, .. }) if id == batch
        ) {
            match result {
                Ok(()) => {
                    if let Some(done) = self.batch.take() {
                        self.delivered(batch, done.entries.len());
                        self.mark_delivered(now, &done.entries);
                    }
                }
                Err(error) => self.batch_failed(now, batch, error),
            }
        }
        self.pump(now);
    }

    pub(super) fn delivered(&mut self, batch: BatchId, events: usize) {
        self.stats.delivered += events as u64;
        if self.draining.is_some() {
            self.drain.delivered += events as u64;
        }
        self.outputs
            .push_back(AuditOutput::Delivered { batch, events });
    }

    pub(super) fn blocking_failed(&mut self, batch: BatchId, p: Pending, error: DeliveryError) {
        self.stats.failed_sends += 1;
        self.outputs.push_back(AuditOutput::Failed {
            batch,
            events: 1,
            error: error.clone(),
            retry_at: None,
        });
        self.dead_letter(1, p.body, error);
    }

    pub(super) fn dead_letter(&mut self, events: usize, body: Bytes, error: DeliveryError) {
        if events == 0 {
            return;
        }
        self.stats.dead_lettered += events as u64;
        if self.draining.is_some() {
            self.drain.dead_lettered += events as u64;
        }
        self.outputs.push_back(AuditOutput::DeadLetter {
            events,
            body,
            error,
        });
    }

    pub(super) fn batch_failed(&mut self, now: Instant, id: BatchId, error: DeliveryError) {
        self.stats.failed_sends += 1;
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        let events = batch.entries.len();
        if self.draining.is_some() {
            self.outputs.push_back(AuditOutput::Failed {
                batch: id,
                events,
                error: error.clone(),
                retry_at: None,
            });
            self.finish_drain(now, Some(error));
        } else if error.is_retryable() {
            batch.failures += 1;
            let at = super::disk::later(now, self.config.backoff(batch.failures));
            batch.state = BatchState::Backoff { at };
            self.outputs.push_back(AuditOutput::Failed {
                batch: id,
                events,
                error,
                retry_at: Some(at),
            });
        } else {
            self.outputs.push_back(AuditOutput::Failed {
                batch: id,
                events,
                error: error.clone(),
                retry_at: None,
            });
            if let Some(done) = self.batch.take() {
                self.dead_letter(events, done.body, error);
                self.mark_delivered(now, &done.entries);
            }
        }
    }

    // ---- shutdown ----

    /// Drain: send everything left, then persist what could not be sent
    /// (see "Shutdown" above); ends with [`AuditOutput::Drained`].
    pub fn shutdown(&mut self, now: Instant) {
        if self.draining.is_some() || self.drained {
            return;
        }
        self.draining = Some(super::disk::later(now, self.config.drain_timeout));
        self.pump(now);
    }

    /// Ends the drain: what was not delivered is spilled (or dead-lettered).
    pub(super) fn finish_drain(&mut self, _now: Instant, error: Option<DeliveryError>) {
        let mut left: Vec<Entry> = self.batch.take().map(|b| b.entries).unwrap_or_default();
        left.extend(self.queue.drain(..));
        let blocking = std::mem::take(&mut self.blocking);
        for (id, p) in blocking {
            self.blocking_failed(id, p, DeliveryError::Timeout);
        }
        let sync = self.persist(left, error.unwrap_or(DeliveryError::Timeout));
        self.drain.persisted = self.disk.unread_events();
        if sync || self.drain.persisted > 0 {
            self.outputs.push_back(AuditOutput::SyncSpill);
        }
        self.drained = true;
        self.outputs.push_back(AuditOutput::Drained(self.drain));
    }
}
