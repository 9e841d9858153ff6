//! The spill file's bookkeeping for [`AuditBatcher`]: the start-up scan and
//! replay, switching to disk when memory is full, reading back, delivered
//! marks, truncation, batched syncs, and persisting at drain.
//!
//! The file is in one of three states: empty (memory-only operation),
//! active (it holds every undelivered event in push order; memory holds a
//! window over its head), or being scanned at start. Offsets are the
//! core's: the adapter only appends, reads where it is told, and truncates.

use super::batcher::{list_body, AuditBatcher, Entry};
use super::output::{AuditOutput, DeliveryError, PushOutcome};
use super::spill::{self, RecordKind, SpillError, SpillReader};
use super::AuditConfig;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct Disk {
    state: State,
    max_payload: usize,
    /// Event records written since the last `SyncSpill`: sync by then.
    pub(super) sync_at: Option<Instant>,
    unsynced: bool,
}

#[derive(Debug)]
enum State {
    /// Spilling is off (configured so, or the file failed).
    Off,
    /// Reading the file a previous run left, to find its end and marks.
    Scanning(Scan),
    /// The file is empty.
    Idle,
    Active(Active),
}

#[derive(Debug)]
struct Scan {
    reader: SpillReader,
    max_seq: u64,
    max_mark: u64,
    /// Sequence numbers of events no mark covers yet.
    unmarked: VecDeque<u64>,
    /// Events pushed during the scan, sent after the replayed ones.
    held: Vec<Bytes>,
}

#[derive(Debug)]
struct Active {
    /// The file's length.
    end: u64,
    /// Bytes up to here were read back (or are in memory already).
    read: u64,
    reader: SpillReader,
    read_pending: bool,
    /// Undelivered events on disk, not in memory.
    unread: u64,
    /// Replay: events up to this sequence number were delivered earlier.
    skip_through: u64,
    /// Replay: damage before this offset was reported by the scan.
    quiet_until: u64,
    /// Replay: events below this sequence number come from an earlier run.
    replay_below: u64,
}

impl Active {
    fn caught_up(&self) -> bool {
        self.read == self.end && !self.read_pending && self.reader.buffered() == 0
    }

    fn skip_to_end(&mut self, max_payload: usize) {
        self.read = self.end;
        self.reader = SpillReader::new(self.end, max_payload);
    }
}

impl Disk {
    pub(super) fn new(enabled: bool, max_payload: usize) -> Self {
        Disk {
            state: if enabled { State::Idle } else { State::Off },
            max_payload,
            sync_at: None,
            unsynced: false,
        }
    }

    pub(super) fn recovering(&self) -> bool {
        matches!(self.state, State::Scanning(_))
    }

    pub(super) fn active(&self) -> bool {
        matches!(self.state, State::Active(_))
    }

    pub(super) fn read_pending(&self) -> bool {
        matches!(&self.state, State::Active(a) if a.read_pending)
    }

    /// Events pushed during the scan.
    pub(super) fn held(&self) -> usize {
        match &self.state {
            State::Scanning(s) => s.held.len(),
            _ => 0,
        }
    }

    pub(super) fn hold(&mut self, json: Bytes, cap: usize) -> Result<(), Bytes> {
        match &mut self.state {
            State::Scanning(s) if s.held.len() < cap => {
                s.held.push(json);
                Ok(())
            }
            _ => Err(json),
        }
    }

    pub(super) fn unread_events(&self) -> u64 {
        match &self.state {
            State::Active(a) => a.unread,
            _ => 0,
        }
    }

    pub(super) fn has_room(&self, config: &AuditConfig, len: usize) -> bool {
        match &self.state {
            State::Active(a) => a.end + spill::event_record_len(len) <= config.max_spill_bytes,
            _ => true,
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(super) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl AuditBatcher {
    /// At creation: scan the file a previous run may have left.
    pub(super) fn start_recovery(&mut self, _now: Instant) {
        if matches!(self.disk.state, State::Idle) {
            self.disk.state = State::Scanning(Scan {
                reader: SpillReader::new(0, self.disk.max_payload),
                max_seq: 0,
                max_mark: 0,
                unmarked: VecDeque::new(),
                held: Vec::new(),
            });
            self.outputs.push_back(AuditOutput::ReadSpill {
                offset: 0,
                max: self.config.spill_read_chunk,
            });
        }
    }

    /// Bytes of the spill file, read as a `ReadSpill` asked; an empty slice
    /// means the file ended. Bytes nobody asked for are ignored.
    pub fn handle_spill_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_drained() {
            return;
        }
        let chunk = self.config.spill_read_chunk;
        match &mut self.disk.state {
            State::Scanning(_) if bytes.is_empty() => self.finish_scan(now),
            State::Scanning(scan) => {
                scan.reader.push(bytes);
                let offset = scan.reader.end();
                let mut damage = Vec::new();
                while let Some(record) = scan.reader.next_record() {
                    match record {
                        Ok(r) => match r.kind {
                            RecordKind::Event(_) => {
                                scan.max_seq = scan.max_seq.max(r.seq);
                                scan.unmarked.push_back(r.seq);
                            }
                            RecordKind::Delivered => {
                                scan.max_mark = scan.max_mark.max(r.seq);
                                while scan.unmarked.front().is_some_and(|s| *s <= r.seq) {
                                    scan.unmarked.pop_front();
                                }
                            }
                        },
                        Err(e) => damage.push(e),
                    }
                }
                for e in damage {
                    self.report(e);
                }
                self.outputs
                    .push_back(AuditOutput::ReadSpill { offset, max: chunk });
            }
            State::Active(a) if a.read_pending => {
                a.read_pending = false;
                let want = a.end.saturating_sub(a.read);
                if bytes.is_empty() {
                    let error = SpillError::Short {
                        have: a.read,
                        expected: a.end,
                    };
                    self.handle_spill_error(now, &error.to_string());
                    return;
                }
                let take = usize::try_from(want).unwrap_or(usize::MAX).min(bytes.len());
                a.reader.push(bytes.get(..take).unwrap_or_default());
                a.read += take as u64;
            }
            _ => return,
        }
        self.pump(now);
    }

    fn finish_scan(&mut self, now: Instant) {
        let State::Scanning(mut scan) = std::mem::replace(&mut self.disk.state, State::Idle) else {
            return;
        };
        let valid_end = scan.reader.offset();
        let file_len = scan.reader.end();
        let damaged = scan.reader.finish();
        let torn = damaged.is_some();
        if let Some(e) = damaged {
            self.report(e);
        }
        self.next_seq = scan.max_seq.max(scan.max_mark).saturating_add(1);
        let undelivered = scan.unmarked.len() as u64;
        if undelivered == 0 {
            if file_len > 0 {
                self.outputs
                    .push_back(AuditOutput::TruncateSpill { len: 0 });
            }
            for json in scan.held {
                let seq = self.take_seq();
                self.queue.push_back(Entry {
                    seq,
                    json,
                    due: later(now, self.config.max_batch_wait),
                    on_disk: false,
                });
            }
            return;
        }
        if torn {
            self.outputs
                .push_back(AuditOutput::TruncateSpill { len: valid_end });
        }
        self.disk.state = State::Active(Active {
            end: valid_end,
            read: 0,
            reader: SpillReader::new(0, self.disk.max_payload),
            read_pending: false,
            unread: undelivered,
            skip_through: scan.max_mark,
            quiet_until: valid_end,
            replay_below: self.next_seq,
        });
        for json in scan.held {
            // Accepted already: appended even past the bound.
            self.append(now, json, true);
        }
    }

    /// The spill file failed (write, sync, read or truncate error): spilling
    /// stops for good; events only on disk are reported at risk.
    pub fn handle_spill_error(&mut self, now: Instant, message: &str) {
        if self.is_drained() {
            return;
        }
        let old = std::mem::replace(&mut self.disk.state, State::Off);
        let events_at_risk = match old {
            State::Active(a) => a.unread,
            State::Scanning(s) => {
                self.next_seq = s.max_seq.max(s.max_mark).saturating_add(1);
                for json in s.held {
                    let seq = self.take_seq();
                    self.queue.push_back(Entry {
                        seq,
                        json,
                        due: later(now, self.config.max_batch_wait),
                        on_disk: false,
                    });
                }
                s.unmarked.len() as u64
            }
            State::Off | State::Idle => 0,
        };
        self.disk.sync_at = None;
        self.disk.unsynced = false;
        for e in self.queue.iter_mut() {
            e.on_disk = false;
        }
        if let Some(b) = self.batch.as_mut() {
            for e in b.entries.iter_mut() {
                e.on_disk = false;
            }
        }
        self.outputs.push_back(AuditOutput::SpillLost {
            events_at_risk,
            error: crate::upload::sanitize(message),
        });
        self.pump(now);
    }

    fn report(&mut self, error: SpillError) {
        self.stats.spill_damage += 1;
        self.outputs.push_back(AuditOutput::SpillDamaged(error));
    }

    /// Disk mode: move events from the file into memory while there is
    /// room, and ask for more bytes when the parsed ones run out.
    pub(super) fn load(&mut self, now: Instant) {
        let cap = self.config.buffer_size;
        let chunk = self.config.spill_read_chunk as u64;
        let State::Active(a) = &mut self.disk.state else {
            return;
        };
        let mut damage = Vec::new();
        while self.queue.len() < cap {
            match a.reader.next_record() {
                Some(Ok(r)) => {
                    if let RecordKind::Event(json) = r.kind {
                        if r.seq > a.skip_through {
                            a.unread = a.unread.saturating_sub(1);
                            if r.seq < a.replay_below {
                                self.stats.replayed += 1;
                            }
                            self.queue.push_back(Entry {
                                seq: r.seq,
                                json,
                                due: now,
                                on_disk: true,
                            });
                        }
                    }
                }
                Some(Err(e)) => {
                    if damage_offset(&e) >= a.quiet_until {
                        damage.push(e);
                    }
                }
                None => break,
            }
        }
        if self.queue.len() < cap && !a.read_pending {
            if a.read < a.end {
                let max = chunk.min(a.end - a.read);
                a.read_pending = true;
                self.outputs.push_back(AuditOutput::ReadSpill {
                    offset: a.read,
                    max: usize::try_from(max).unwrap_or(usize::MAX),
                });
            } else {
                // Everything was read: a partial record left is damage, and
                // whatever was not loaded is gone.
                if let Some(e) = a.reader.finish() {
                    damage.push(e);
                }
                a.unread = 0;
            }
        }
        for e in damage {
            self.report(e);
        }
    }

    /// In disk mode: append a new event. `None` when the file is at its
    /// bound.
    pub(super) fn append_new(&mut self, now: Instant, json: Bytes) -> Option<PushOutcome> {
        let State::Active(a) = &self.disk.state else {
            return None;
        };
        if a.end + spill::event_record_len(json.len()) > self.config.max_spill_bytes {
            return None;
        }
        self.append(now, json, false);
        Some(PushOutcome::Spilled)
    }

    fn append(&mut self, now: Instant, json: Bytes, force: bool) {
        let seq = self.take_seq();
        let room = self.queue.len() < self.config.buffer_size && !force;
        let max_payload = self.disk.max_payload;
        let State::Active(a) = &mut self.disk.state else {
            return;
        };
        let bytes = spill::encode_event(seq, &json);
        let caught_up = a.caught_up();
        a.end += bytes.len() as u64;
        if caught_up && room {
            // Nothing is waiting on disk before it: keep it in memory too.
            a.skip_to_end(max_payload);
            self.queue.push_back(Entry {
                seq,
                json,
                due: later(now, self.config.max_batch_wait),
                on_disk: true,
            });
        } else {
            a.unread += 1;
        }
        self.stats.spilled += 1;
        self.disk.unsynced = true;
        self.outputs
            .push_back(AuditOutput::Spill { bytes, events: 1 });
    }

    /// Memory is full: write every undelivered event (the batch in flight,
    /// the buffer) and then the new one to the empty file. `None` when that
    /// would pass the bound.
    pub(super) fn enter_disk_mode(&mut self, now: Instant, json: Bytes) -> Option<PushOutcome> {
        if !matches!(self.disk.state, State::Idle) {
            return None;
        }
        let in_flight = self.batch.as_ref().map_or(&[][..], |b| &b.entries[..]);
        let old: u64 = in_flight
            .iter()
            .chain(self.queue.iter())
            .map(|e| spill::event_record_len(e.json.len()))
            .sum();
        let new_len = spill::event_record_len(json.len());
        if old + new_len > self.config.max_spill_bytes {
            return None;
        }
        let mut out = BytesMut::with_capacity(usize::try_from(old).unwrap_or(0));
        let mut events = 0;
        let batch = self.batch.as_mut().map(|b| &mut b.entries[..]);
        for e in batch.into_iter().flatten().chain(self.queue.iter_mut()) {
            out.extend_from_slice(&spill::encode_event(e.seq, &e.json));
            e.on_disk = true;
            events += 1;
        }
        self.stats.spilled += events as u64;
        if events > 0 {
            self.outputs.push_back(AuditOutput::Spill {
                bytes: out.freeze(),
                events,
            });
        }
        self.disk.state = State::Active(Active {
            end: old,
            read: old,
            reader: SpillReader::new(old, self.disk.max_payload),
            read_pending: false,
            unread: 0,
            skip_through: 0,
            quiet_until: 0,
            replay_below: 0,
        });
        self.append(now, json, true);
        Some(PushOutcome::Spilled)
    }

    /// A batch is done with (delivered or dead-lettered): record it on disk.
    pub(super) fn mark_delivered(&mut self, _now: Instant, entries: &[Entry]) {
        let max_payload = self.disk.max_payload;
        let Some(last) = entries.last().filter(|e| e.on_disk) else {
            return;
        };
        let State::Active(a) = &mut self.disk.state else {
            return;
        };
        let caught_up = a.caught_up();
        if caught_up && self.queue.is_empty() && self.batch.is_none() {
            return; // the file is about to be truncated
        }
        let bytes = spill::encode_mark(last.seq);
        a.end += bytes.len() as u64;
        if caught_up {
            a.skip_to_end(max_payload);
        }
        self.outputs
            .push_back(AuditOutput::Spill { bytes, events: 0 });
    }

    /// Everything on disk delivered: truncate the file, back to memory.
    pub(super) fn disk_idle(&mut self, _now: Instant) {
        if let State::Active(a) = &self.disk.state {
            if a.caught_up() && self.queue.is_empty() && self.batch.is_none() {
                self.disk.state = State::Idle;
                self.outputs
                    .push_back(AuditOutput::TruncateSpill { len: 0 });
            }
        }
    }

    pub(super) fn schedule_sync(&mut self, now: Instant) {
        if self.disk.unsynced && self.disk.sync_at.is_none() {
            let interval = self.config.spill_sync_interval;
            if interval.is_zero() {
                self.disk.unsynced = false;
                self.outputs.push_back(AuditOutput::SyncSpill);
            } else {
                self.disk.sync_at = Some(later(now, interval));
            }
        }
    }

    /// The sync timer fired.
    pub(super) fn sync_due(&mut self) {
        self.disk.sync_at = None;
        self.disk.unsynced = false;
        self.outputs.push_back(AuditOutput::SyncSpill);
    }

    /// Drain's end: put undelivered events where the next run finds them
    /// (or hand them over as a dead letter when that is impossible).
    /// Returns whether a sync is due.
    pub(super) fn persist(&mut self, left: Vec<Entry>, error: DeliveryError) -> bool {
        let (on_disk, rest): (Vec<Entry>, Vec<Entry>) = left.into_iter().partition(|e| e.on_disk);
        let mut sync = self.disk.unsynced;
        self.disk.sync_at = None;
        self.disk.unsynced = false;
        match &mut self.disk.state {
            State::Active(a) => a.unread += on_disk.len() as u64,
            State::Idle if !rest.is_empty() => {
                self.disk.state = State::Active(Active {
                    end: 0,
                    read: 0,
                    reader: SpillReader::new(0, self.disk.max_payload),
                    read_pending: false,
                    unread: 0,
                    skip_through: 0,
                    quiet_until: 0,
                    replay_below: 0,
                });
            }
            _ => {}
        }
        if let State::Active(a) = &mut self.disk.state {
            if !rest.is_empty() {
                let mut out = BytesMut::new();
                for e in &rest {
                    out.extend_from_slice(&spill::encode_event(e.seq, &e.json));
                }
                a.end += out.len() as u64;
                a.unread += rest.len() as u64;
                self.stats.spilled += rest.len() as u64;
                self.outputs.push_back(AuditOutput::Spill {
                    bytes: out.freeze(),
                    events: rest.len(),
                });
                sync = true;
            }
            return sync;
        }
        // Spilling off, or the file's end unknown mid-scan.
        let mut jsons: Vec<Bytes> = rest.into_iter().map(|e| e.json).collect();
        if let State::Scanning(s) = &mut self.disk.state {
            jsons.append(&mut s.held);
        }
        if !jsons.is_empty() {
            self.dead_letter(jsons.len(), list_body(&jsons), error);
        }
        sync
    }
}

fn damage_offset(e: &SpillError) -> u64 {
    match e {
        SpillError::Corrupt { offset, .. }
        | SpillError::Checksum { offset, .. }
        | SpillError::NotJson { offset, .. }
        | SpillError::Truncated { offset, .. } => *offset,
        SpillError::Short { have, .. } => *have,
    }
}
