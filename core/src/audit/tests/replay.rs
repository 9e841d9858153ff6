//! Spill, replay and the record framing.

use super::*;
use proptest::prelude::*;

fn spilling(buffer: usize, max_batch: usize) -> AuditConfig {
    AuditConfig {
        buffer_size: buffer,
        max_batch_size: max_batch,
        ..no_throttle()
    }
}

/// Run 1 of a restart story: buffer 2, batches of 2; events 1..=n pushed,
/// the first batch in flight, the rest in memory and on disk. Returns the
/// harness (the process "crashes" when it is dropped).
fn run_with_backlog(n: u32) -> (Harness, BatchId) {
    let mut h = Harness::new(spilling(2, 2));
    assert!(matches!(
        h.drain()[..],
        [AuditOutput::ReadSpill { offset: 0, .. }]
    ));
    h.push_all(0, 1..=2);
    let (id, _) = one_send(&h.drain());
    h.push_all(1, 3..=n);
    h.drain();
    (h, id)
}

fn damage(outputs: &[AuditOutput]) -> Vec<SpillError> {
    outputs
        .iter()
        .filter_map(|o| match o {
            AuditOutput::SpillDamaged(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_buffer_spills_every_undelivered_event_in_order() {
    let mut h = Harness::new(spilling(3, 2));
    h.drain();
    h.push_all(0, 1..=2);
    let (first, _) = one_send(&h.drain());
    h.push_all(1, 3..=5);
    assert_eq!(h.push(2, 6), PushOutcome::Spilled, "memory full");
    let out = h.drain();
    assert!(
        matches!(out[0], AuditOutput::Spill { events: 5, .. }),
        "in flight + buffer"
    );
    assert!(
        matches!(out[1], AuditOutput::Spill { events: 1, .. }),
        "then the new one"
    );
    assert_eq!(h.push(3, 7), PushOutcome::Spilled);
    h.drain();
    let (recs, errs) = parse_file(&h.file);
    assert!(errs.is_empty());
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(h.b.on_disk(), 2);
    assert_eq!(h.b.timer(), Some((h.at(1002), Timer::SpillSync)));
    h.timeout(1002);
    assert_eq!(
        h.drain(),
        [AuditOutput::SyncSpill],
        "one sync for many appends"
    );

    h.sent(2000, first, Ok(()));
    let mut got = id_range(1..=2);
    got.extend(h.deliver_all(2000));
    assert_eq!(got, id_range(1..=7));
    assert!(h.file.is_empty(), "all delivered: truncated");
    assert_eq!(h.b.on_disk(), 0);
    // Back to memory.
    assert_eq!(h.push(3000, 8), PushOutcome::Queued);
}

/// A spill file holding three of our small events, then full.
fn three_records() -> AuditConfig {
    let json = serde_json::to_vec(&ev(1)).unwrap().len();
    AuditConfig {
        max_spill_bytes: 3 * spill::event_record_len(json),
        max_event_bytes: json + 10,
        ..spilling(2, 400)
    }
}

#[test]
fn past_the_spill_bound_push_waits_then_is_unblocked() {
    let mut h = Harness::new(three_records());
    h.drain();
    h.push_all(0, 1..=3);
    assert_eq!(h.push(0, 4), PushOutcome::Wait);
    assert_eq!(h.b.stats().waited, 1);
    assert!(!h.drain().contains(&AuditOutput::Unblocked), "no room yet");
    h.timeout(secs(30));
    let got = h.deliver_all(secs(30));
    assert_eq!(got, id_range(1..=3));
    let outputs = h.drain();
    assert!(outputs.is_empty());
    assert!(h.file.is_empty());
    assert_eq!(h.push(secs(31), 4), PushOutcome::Queued);
}

#[test]
fn the_unblocked_notice_follows_the_truncation() {
    let mut h = Harness::new(three_records());
    h.drain();
    h.push_all(0, 1..=3);
    assert_eq!(h.push(0, 4), PushOutcome::Wait);
    h.timeout(secs(30));
    let (a, _) = one_send(&h.drain());
    h.sent(secs(30), a, Ok(()));
    let out = h.drain();
    let (b, _) = one_send(&out);
    h.sent(secs(30), b, Ok(()));
    let out = h.drain();
    let truncate = out
        .iter()
        .position(|o| *o == AuditOutput::TruncateSpill { len: 0 });
    let unblocked = out.iter().position(|o| *o == AuditOutput::Unblocked);
    assert!(truncate.is_some() && truncate < unblocked, "{out:?}");
}

#[test]
fn fail_closed_refuses_past_the_bound_and_without_a_spill() {
    let json = serde_json::to_vec(&ev(1)).unwrap().len();
    let mut h = Harness::new(AuditConfig {
        overflow: Overflow::FailClosed,
        max_spill_bytes: spill::event_record_len(json),
        max_event_bytes: json,
        ..spilling(2, 400)
    });
    h.drain();
    h.push_all(0, 1..=2);
    assert_eq!(h.push(0, 3), PushOutcome::Refused(Refusal::Full));
    let mut h = Harness::new(AuditConfig {
        max_spill_bytes: 0,
        ..spilling(2, 400)
    });
    assert!(h.drain().is_empty(), "no spill: no scan");
    h.push_all(0, 1..=2);
    assert_eq!(h.push(0, 3), PushOutcome::Wait);
}

#[test]
fn a_restart_replays_the_spill_before_newer_events() {
    let (h, _) = run_with_backlog(6);
    let mut h2 = Harness::with_file(spilling(2, 2), h.file.clone());
    assert!(h2.b.is_recovering());
    // Pushed before the scan finished: held, sent after the replay.
    assert_eq!(h2.push(0, 7), PushOutcome::Queued);
    h2.push(0, 8);
    assert_eq!(
        h2.push(0, 9),
        PushOutcome::Wait,
        "held up to the buffer size"
    );
    let got = h2.deliver_all(10);
    assert_eq!(got, id_range(1..=8));
    assert!(h2.file.is_empty());
    assert_eq!(h2.b.stats().replayed, 6);
}

#[test]
fn delivered_batches_are_not_replayed() {
    let (mut h, first) = run_with_backlog(7);
    h.sent(10, first, Ok(()));
    let (second, got) = one_send(&h.drain());
    assert_eq!(got, id_range(3..=4));
    h.sent(20, second, Ok(()));
    let (_, got) = one_send(&h.drain());
    assert_eq!(got, id_range(5..=6));
    // Crash with 5, 6 in flight.
    let mut h2 = Harness::with_file(spilling(2, 2), h.file.clone());
    assert_eq!(
        h2.deliver_all(0),
        id_range(5..=7),
        "at least once: 5, 6 again"
    );
    assert_eq!(h2.b.stats().replayed, 3);
}

#[test]
fn a_torn_last_record_is_reported_cut_off_and_the_rest_replayed() {
    let (h, _) = run_with_backlog(6);
    let mut file = h.file.clone();
    file.truncate(file.len() - 7);
    let (recs, _) = parse_file(&file);
    let valid_end = recs.len() as u64 * (h.file.len() as u64 / 6);
    let mut h2 = Harness::with_file(spilling(2, 2), file);
    h2.push(0, 7);
    let out = h2.drain();
    assert_eq!(
        damage(&out),
        [SpillError::Truncated {
            offset: valid_end,
            have: h.file.len() as u64 / 6 - 7
        }]
    );
    assert!(out.contains(&AuditOutput::TruncateSpill { len: valid_end }));
    let mut got = Vec::new();
    for (id, body) in sends(&out) {
        got.extend(ids(&body));
        h2.sent(1, id, Ok(()));
    }
    got.extend(h2.deliver_all(1));
    let mut want = id_range(1..=5);
    want.push("id-7".into());
    assert_eq!(got, want);
    assert_eq!(h2.b.stats().spill_damage, 1);
}

#[test]
fn a_bad_checksum_loses_one_record_and_a_bad_header_is_skipped() {
    let (h, _) = run_with_backlog(6);
    let rec = h.file.len() / 6;
    let mut file = h.file.clone();
    file[2 * rec + 30] ^= 0x20; // payload of event 3
    file[4 * rec + 10] ^= 0x01; // header of event 5
    let mut h2 = Harness::with_file(spilling(2, 2), file);
    let out = h2.drain();
    assert_eq!(
        damage(&out),
        [
            SpillError::Checksum {
                offset: 2 * rec as u64,
                seq: 3
            },
            SpillError::Corrupt {
                offset: 4 * rec as u64,
                len: rec as u64
            }
        ]
    );
    let mut got = Vec::new();
    for (id, body) in sends(&out) {
        got.extend(ids(&body));
        h2.sent(1, id, Ok(()));
    }
    got.extend(h2.deliver_all(1));
    assert_eq!(got, ["id-1", "id-2", "id-4", "id-6"]);
}

#[test]
fn shutdown_spills_what_it_cannot_send_and_the_next_run_sends_it() {
    let mut h = Harness::new(spilling(100, 400));
    h.drain();
    h.push_all(0, 1..=3);
    h.shutdown(10);
    let (id, _) = one_send(&h.drain());
    h.sent(
        20,
        id,
        Err(DeliveryError::Transport("connection refused".into())),
    );
    let out = h.drain();
    let n = out.len();
    assert!(matches!(out[n - 3], AuditOutput::Spill { events: 3, .. }));
    assert_eq!(out[n - 2], AuditOutput::SyncSpill);
    assert_eq!(
        out[n - 1],
        AuditOutput::Drained(DrainReport {
            delivered: 0,
            persisted: 3,
            dead_lettered: 0
        })
    );
    let mut h2 = Harness::with_file(spilling(100, 400), h.file.clone());
    assert_eq!(h2.deliver_all(0), id_range(1..=3));
}

#[test]
fn the_drain_deadline_persists_the_unanswered_batch_too() {
    let (mut h, _) = run_with_backlog(6);
    h.shutdown(100);
    assert!(sends(&h.drain()).is_empty(), "the first batch is still out");
    h.timeout(10_100);
    let out = h.drain();
    assert_eq!(
        out.last(),
        Some(&AuditOutput::Drained(DrainReport {
            delivered: 0,
            persisted: 6,
            dead_lettered: 0
        }))
    );
    assert!(out.contains(&AuditOutput::SyncSpill));
    let mut h2 = Harness::with_file(spilling(2, 2), h.file.clone());
    assert_eq!(h2.deliver_all(0), id_range(1..=6));
}

#[test]
fn a_failing_spill_file_is_reported_and_spilling_stops() {
    let (mut h, first) = run_with_backlog(6);
    assert_eq!(h.b.on_disk(), 2);
    let now = h.set(5);
    h.b.handle_spill_error(now, "No space left on device\n");
    let out = h.drain();
    assert_eq!(
        out,
        [AuditOutput::SpillLost {
            events_at_risk: 2,
            error: "No space left on device\u{fffd}".into()
        }]
    );
    assert_eq!(h.push(6, 7), PushOutcome::Wait, "memory full, no spill");
    h.sent(7, first, Ok(()));
    let out = h.drain();
    assert!(out.contains(&AuditOutput::Unblocked));
    assert!(
        !out.iter().any(|o| matches!(o, AuditOutput::Spill { .. })),
        "no marks"
    );
}

#[test]
fn framing_round_trips_and_lengths_are_bounded() {
    let json = br#"{"a":1}"#;
    let rec = spill::encode_event(42, json);
    assert_eq!(&rec[..4], b"KCAQ");
    assert_eq!(rec.len() as u64, spill::event_record_len(json.len()));
    let mut r = spill::SpillReader::new(0, 1 << 20);
    r.push(&rec);
    r.push(&spill::encode_mark(42));
    let a = r.next_record().unwrap().unwrap();
    assert_eq!((a.offset, a.seq), (0, 42));
    assert_eq!(a.kind, spill::RecordKind::Event(Bytes::from_static(json)));
    let b = r.next_record().unwrap().unwrap();
    assert_eq!(
        (b.offset, b.kind),
        (rec.len() as u64, spill::RecordKind::Delivered)
    );
    assert_eq!(r.finish(), None);
    // A record over the reader's bound is not trusted.
    let mut small = spill::SpillReader::new(0, 4);
    small.push(&rec);
    assert_eq!(small.next_record(), None);
    assert_eq!(
        small.finish(),
        Some(SpillError::Corrupt {
            offset: 0,
            len: rec.len() as u64
        })
    );
    // zlib's check value.
    assert_eq!(spill::crc32(b"123456789"), 0xCBF4_3926);
}

/// All records and errors of `file` fed in `cuts`-sized pieces.
fn read_chunked(file: &[u8], cuts: &[usize]) -> Vec<Result<spill::Record, SpillError>> {
    let mut r = spill::SpillReader::new(0, 4096);
    let mut out = Vec::new();
    let mut rest = file;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&1)).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        r.push(piece);
        rest = tail;
        out.extend(std::iter::from_fn(|| r.next_record()));
    }
    out.extend(r.finish().map(Err));
    out
}

/// Events 1..=`events`, with a delivered mark after every third.
fn sample_file(events: u32) -> Vec<u8> {
    sample(events, 3)
}

fn sample(events: u32, mark_every: u32) -> Vec<u8> {
    let mut file = Vec::new();
    for n in 1..=events {
        file.extend_from_slice(&spill::encode_event(
            u64::from(n),
            &serde_json::to_vec(&ev(n)).unwrap(),
        ));
        if n % mark_every == 0 {
            file.extend_from_slice(&spill::encode_mark(u64::from(n)));
        }
    }
    file
}

proptest! {
    #[test]
    fn random_spill_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000),
                                      cuts in proptest::collection::vec(1usize..300, 1..8)) {
        let _ = read_chunked(&bytes, &cuts);
        let mut h = Harness::with_file(spilling(3, 2), bytes);
        h.read_size = cuts[0];
        let _ = h.deliver_all(0);
    }

    #[test]
    fn damaged_spill_bytes_never_panic(flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..6),
                                       cut in 0usize..4000) {
        let mut file = sample_file(8);
        for (at, x) in flips {
            let i = at % file.len();
            file[i] ^= x;
        }
        file.truncate(cut.max(1).min(file.len()));
        let whole = read_chunked(&file, &[usize::MAX]);
        let bytewise = read_chunked(&file, &[1]);
        prop_assert_eq!(whole, bytewise);
        let mut h = Harness::with_file(spilling(3, 2), file);
        let _ = h.deliver_all(0);
    }

    #[test]
    fn any_chunking_of_spill_bytes_gives_the_same_records(cuts in proptest::collection::vec(1usize..500, 1..10)) {
        let file = sample_file(10);
        prop_assert_eq!(read_chunked(&file, &cuts), read_chunked(&file, &[usize::MAX]));
    }

    #[test]
    fn any_read_size_gives_the_same_replay(read_size in 1usize..700, buffer in 1usize..6) {
        let mut h = Harness::with_file(spilling(buffer, 2), sample(12, 100));
        h.read_size = read_size;
        prop_assert_eq!(h.deliver_all(0), id_range(1..=12));
        prop_assert!(h.file.is_empty());
        let file = sample_file(10);
        let mut h = Harness::with_file(spilling(buffer, 2), file);
        h.read_size = read_size;
        prop_assert_eq!(h.deliver_all(0), id_range(10..=10));
        let mut file = sample_file(10);
        file.truncate(file.len() - 30); // marks through 9 stay; event 10 torn
        let mut h = Harness::with_file(spilling(buffer, 2), file);
        h.read_size = read_size;
        prop_assert_eq!(h.deliver_all(0), Vec::<String>::new());
        prop_assert!(h.file.is_empty());
    }
}
