//! The audit machine as specifications: a fake clock (a base instant plus
//! offsets), a simulated spill file, inputs in, outputs checked.

mod batch;
mod replay;
mod rules;
mod sim;
mod wire;

use super::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Any instant will do as the start: only differences matter.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

/// A small event; `n` goes into its audit ID.
fn ev(n: u32) -> Event {
    Event {
        level: Level::Metadata,
        audit_id: format!("id-{n}"),
        stage: Stage::ResponseComplete,
        request_uri: "/api/v1/namespaces/default/pods/web/exec?command=sh".into(),
        verb: "create".into(),
        user: UserInfo {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        },
        impersonated_user: None,
        source_ips: vec!["10.0.0.1".into()],
        user_agent: "kubectl/v1.33.0".into(),
        object_ref: None,
        response_status: Some(ResponseStatus::code(101)),
        request_object: None,
        response_object: None,
        request_received_timestamp: MicroTime::from_unix_micros(1_700_000_000_000_000),
        stage_timestamp: MicroTime::from_unix_micros(1_700_000_000_500_000),
        annotations: Default::default(),
    }
}

/// The audit IDs in an `EventList` body, in order.
fn ids(body: &[u8]) -> Vec<String> {
    let list: EventList = serde_json::from_slice(body).expect("an EventList");
    assert_eq!(list.kind, "EventList");
    assert_eq!(list.api_version, "audit.k8s.io/v1");
    list.items.into_iter().map(|e| e.audit_id).collect()
}

fn id_range(r: std::ops::RangeInclusive<u32>) -> Vec<String> {
    r.map(|n| format!("id-{n}")).collect()
}

/// A batcher, a clock, and a spill file served the way an adapter would.
struct Harness {
    b: AuditBatcher,
    t0: Instant,
    now: Instant,
    /// The spill file.
    file: Vec<u8>,
    /// Bytes served per `ReadSpill` at most (to vary chunking).
    read_size: usize,
    syncs: usize,
}

impl Harness {
    fn new(config: AuditConfig) -> Self {
        Harness::with_file(config, Vec::new())
    }

    /// A batcher starting over `file` (left by an earlier run). Nothing is
    /// drained yet: the scan runs on the first `drain`.
    fn with_file(config: AuditConfig, file: Vec<u8>) -> Self {
        let t0 = base_instant();
        Harness {
            b: AuditBatcher::new(t0, config).unwrap(),
            t0,
            now: t0,
            file,
            read_size: usize::MAX,
            syncs: 0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn set(&mut self, ms: u64) -> Instant {
        self.now = self.at(ms);
        self.now
    }

    /// Drains every output, performing the spill file's ones (append,
    /// truncate, read → `handle_spill_bytes`) like an adapter; returns all.
    fn drain(&mut self) -> Vec<AuditOutput> {
        let mut all = Vec::new();
        let mut reads = VecDeque::new();
        loop {
            while let Some(o) = self.b.poll_output() {
                match &o {
                    AuditOutput::Spill { bytes, .. } => self.file.extend_from_slice(bytes),
                    AuditOutput::TruncateSpill { len } => self.file.truncate(*len as usize),
                    AuditOutput::ReadSpill { offset, max } => reads.push_back((*offset, *max)),
                    AuditOutput::SyncSpill => self.syncs += 1,
                    _ => {}
                }
                all.push(o);
            }
            let Some((offset, max)) = reads.pop_front() else {
                return all;
            };
            let start = (offset as usize).min(self.file.len());
            let end = start + max.min(self.read_size).min(self.file.len() - start);
            let chunk = self.file[start..end].to_vec();
            let now = self.now;
            self.b.handle_spill_bytes(now, &chunk);
        }
    }

    fn push(&mut self, ms: u64, n: u32) -> PushOutcome {
        let now = self.set(ms);
        self.b.push(now, &ev(n))
    }

    fn push_all(&mut self, ms: u64, r: std::ops::RangeInclusive<u32>) {
        for n in r {
            assert!(self.push(ms, n).accepted(), "event {n} accepted");
        }
    }

    fn sent(&mut self, ms: u64, batch: BatchId, result: Result<(), DeliveryError>) {
        let now = self.set(ms);
        self.b.handle_sent(now, batch, result);
    }

    fn timeout(&mut self, ms: u64) {
        let now = self.set(ms);
        self.b.handle_timeout(now);
    }

    fn shutdown(&mut self, ms: u64) {
        let now = self.set(ms);
        self.b.shutdown(now);
    }

    /// Delivers every `Send` as it appears until the machine goes quiet;
    /// returns the audit IDs delivered, in order.
    fn deliver_all(&mut self, ms: u64) -> Vec<String> {
        let mut got = Vec::new();
        let mut outputs = self.drain();
        while let Some((batch, body)) = sends(&outputs).into_iter().next() {
            got.extend(ids(&body));
            self.sent(ms, batch, Ok(()));
            outputs = self.drain();
        }
        got
    }
}

/// The `Send`s among `outputs`.
fn sends(outputs: &[AuditOutput]) -> Vec<(BatchId, Bytes)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AuditOutput::Send { batch, body, .. } => Some((*batch, body.clone())),
            _ => None,
        })
        .collect()
}

fn one_send(outputs: &[AuditOutput]) -> (BatchId, Vec<String>) {
    let s = sends(outputs);
    assert_eq!(s.len(), 1, "exactly one Send in {outputs:?}");
    (s[0].0, ids(&s[0].1))
}

/// Parses a whole spill file: `(seq, audit ID or None for a mark)` and errors.
fn parse_file(file: &[u8]) -> (Vec<(u64, Option<String>)>, Vec<SpillError>) {
    let mut r = spill::SpillReader::new(0, 1 << 20);
    r.push(file);
    let (mut recs, mut errs) = (Vec::new(), Vec::new());
    while let Some(x) = r.next_record() {
        match x {
            Ok(rec) => recs.push((
                rec.seq,
                match rec.kind {
                    spill::RecordKind::Event(json) => {
                        Some(serde_json::from_slice::<Event>(&json).unwrap().audit_id)
                    }
                    spill::RecordKind::Delivered => None,
                },
            )),
            Err(e) => errs.push(e),
        }
    }
    errs.extend(r.finish());
    (recs, errs)
}

fn no_throttle() -> AuditConfig {
    AuditConfig {
        throttle_qps: 0.0,
        ..AuditConfig::default()
    }
}

fn secs(s: u64) -> u64 {
    s * 1000
}
