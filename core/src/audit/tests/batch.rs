//! Batch and blocking modes in memory: cutting, throttle, retries, drain.

use super::*;

fn small(max_batch: usize) -> AuditConfig {
    AuditConfig {
        max_batch_size: max_batch,
        max_spill_bytes: 0,
        ..no_throttle()
    }
}

#[test]
fn a_batch_is_cut_at_max_size() {
    let mut h = Harness::new(small(3));
    h.push_all(0, 1..=2);
    assert!(sends(&h.drain()).is_empty(), "2 of 3: not yet");
    assert_eq!(h.b.buffered(), 2);
    assert_eq!(h.push(1, 3), PushOutcome::Queued);
    let out = h.drain();
    let (id, got) = one_send(&out);
    assert_eq!(got, id_range(1..=3));
    assert!(matches!(out[0], AuditOutput::Send { events: 3, .. }));
    assert_eq!((h.b.buffered(), h.b.in_flight()), (0, 3));

    // One batch in flight at a time: three more wait for its result.
    h.push_all(2, 4..=6);
    assert!(sends(&h.drain()).is_empty());
    h.sent(3, id, Ok(()));
    let out = h.drain();
    assert_eq!(
        out[0],
        AuditOutput::Delivered {
            batch: id,
            events: 3
        }
    );
    assert_eq!(one_send(&out).1, id_range(4..=6));
    assert_eq!(h.b.stats().delivered, 3);
}

#[test]
fn a_batch_is_cut_when_the_oldest_event_waited_max_wait() {
    let mut h = Harness::new(small(400));
    h.push(0, 1);
    h.push(secs(10), 2);
    assert!(h.drain().is_empty());
    assert_eq!(h.b.timer(), Some((h.at(secs(30)), Timer::BatchWait)));
    h.timeout(secs(30) - 1);
    assert!(h.drain().is_empty(), "early wake-up is harmless");
    h.timeout(secs(30));
    let (id, got) = one_send(&h.drain());
    assert_eq!(got, id_range(1..=2));
    assert!(matches!(h.b.timer(), Some((_, Timer::SendTimeout))));
    h.sent(secs(31), id, Ok(()));
    h.drain();
    assert_eq!(h.b.timer(), None, "nothing buffered, nothing to wake for");
}

#[test]
fn the_throttle_spaces_batches() {
    let mut h = Harness::new(AuditConfig {
        max_batch_size: 1,
        throttle_qps: 2.0,
        throttle_burst: 2,
        max_spill_bytes: 0,
        ..AuditConfig::default()
    });
    h.push_all(0, 1..=4);
    // Burst of 2: batches 1 and 2 go at once (one after the other).
    let (a, _) = one_send(&h.drain());
    h.sent(0, a, Ok(()));
    let (b, got) = one_send(&h.drain());
    assert_eq!(got, id_range(2..=2));
    h.sent(0, b, Ok(()));
    assert!(sends(&h.drain()).is_empty(), "bucket empty");
    assert_eq!(h.b.timer(), Some((h.at(500), Timer::Throttle)));
    h.timeout(499);
    assert!(sends(&h.drain()).is_empty());
    h.timeout(500);
    let (c, got) = one_send(&h.drain());
    assert_eq!(got, id_range(3..=3));
    h.sent(600, c, Ok(()));
    h.drain();
    assert_eq!(h.b.timer(), Some((h.at(1000), Timer::Throttle)));
}

fn failed(outputs: &[AuditOutput]) -> (DeliveryError, Option<Instant>) {
    outputs
        .iter()
        .find_map(|o| match o {
            AuditOutput::Failed {
                error, retry_at, ..
            } => Some((error.clone(), *retry_at)),
            _ => None,
        })
        .expect("a Failed output")
}

fn unavailable() -> DeliveryError {
    DeliveryError::Status {
        code: 503,
        message: "unavailable".into(),
    }
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap_without_limit() {
    let mut h = Harness::new(small(1));
    h.push(0, 1);
    let (mut id, _) = one_send(&h.drain());
    let mut now_s = 0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        h.sent(
            secs(now_s),
            id,
            Err(DeliveryError::Transport("refused".into())),
        );
        let (_, retry_at) = failed(&h.drain());
        let at = retry_at.expect("retried");
        let delay = (at - h.at(secs(now_s))).as_secs();
        delays.push(delay);
        assert_eq!(h.b.timer(), Some((at, Timer::Backoff)));
        now_s += delay;
        h.timeout(secs(now_s));
        id = one_send(&h.drain()).0;
    }
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(h.b.stats().failed_sends, 8);
    assert_eq!(h.b.config().backoff(40), Duration::from_secs(300));
}

#[test]
fn a_retry_succeeds_and_a_late_result_for_the_old_send_is_ignored() {
    let mut h = Harness::new(small(2));
    h.push_all(0, 1..=2);
    let (first, body) = one_send(&h.drain());
    h.sent(1000, first, Err(unavailable()));
    assert_eq!(failed(&h.drain()).1, Some(h.at(11_000)));
    h.push(2000, 3);
    h.timeout(11_000);
    let (second, again) = one_send(&h.drain());
    assert_ne!(first, second, "a retry is a new send");
    assert_eq!(again, body, "same events, same order");
    h.sent(11_500, first, Ok(()));
    assert!(h.drain().is_empty(), "stale result ignored");
    h.sent(11_600, second, Ok(()));
    let out = h.drain();
    assert_eq!(
        out[0],
        AuditOutput::Delivered {
            batch: second,
            events: 2
        }
    );
}

#[test]
fn a_send_without_answer_times_out_and_is_retried() {
    let mut h = Harness::new(small(1));
    h.push(0, 1);
    one_send(&h.drain());
    assert_eq!(h.b.timer(), Some((h.at(secs(30)), Timer::SendTimeout)));
    h.timeout(secs(30));
    let (error, retry_at) = failed(&h.drain());
    assert_eq!(error, DeliveryError::Timeout);
    assert_eq!(retry_at, Some(h.at(secs(40))));
}

#[test]
fn a_rejected_batch_is_dead_lettered_and_the_next_goes_on() {
    let mut h = Harness::new(small(1));
    h.push_all(0, 1..=2);
    let (id, _) = one_send(&h.drain());
    let bad = DeliveryError::Status {
        code: 400,
        message: "bad request".into(),
    };
    h.sent(1, id, Err(bad.clone()));
    let out = h.drain();
    assert_eq!(failed(&out), (bad.clone(), None));
    let dead = out.iter().find_map(|o| match o {
        AuditOutput::DeadLetter {
            events,
            body,
            error,
        } => Some((*events, ids(body), error.clone())),
        _ => None,
    });
    assert_eq!(dead, Some((1, id_range(1..=1), bad)));
    assert_eq!(one_send(&out).1, id_range(2..=2));
    assert_eq!(h.b.stats().dead_lettered, 1);
}

#[test]
fn retryable_errors_are_the_transient_ones() {
    let status = |code| DeliveryError::Status {
        code,
        message: String::new(),
    };
    for code in [408, 429, 500, 502, 503, 504] {
        assert!(status(code).is_retryable(), "{code}");
    }
    for code in [400, 401, 403, 404, 413, 422] {
        assert!(!status(code).is_retryable(), "{code}");
    }
    assert!(DeliveryError::Timeout.is_retryable());
}

fn blocking() -> AuditConfig {
    AuditConfig {
        mode: Mode::Blocking,
        buffer_size: 2,
        send_timeout: Duration::from_secs(5),
        ..AuditConfig::default()
    }
}

#[test]
fn blocking_mode_sends_each_event_at_once() {
    let mut h = Harness::new(blocking());
    let PushOutcome::Sent(a) = h.push(0, 1) else {
        panic!("sent")
    };
    let PushOutcome::Sent(b) = h.push(0, 2) else {
        panic!("sent")
    };
    let out = h.drain();
    assert_eq!(
        sends(&out).len(),
        2,
        "no ReadSpill: blocking mode does not spill"
    );
    assert_eq!(ids(&sends(&out)[1].1), id_range(2..=2));
    assert_eq!(h.b.in_flight(), 2);
    assert_eq!(
        h.push(0, 3),
        PushOutcome::Wait,
        "at most buffer_size in flight"
    );
    h.sent(10, b, Ok(()));
    let out = h.drain();
    assert_eq!(
        out,
        [
            AuditOutput::Delivered {
                batch: b,
                events: 1
            },
            AuditOutput::Unblocked
        ]
    );
    h.sent(20, a, Err(unavailable()));
    let out = h.drain();
    assert_eq!(
        failed(&out),
        (unavailable(), None),
        "no retry in blocking mode"
    );
    assert!(matches!(out[1], AuditOutput::DeadLetter { events: 1, .. }));
    assert_eq!(h.b.stats().failed_sends, 1);
}

#[test]
fn blocking_mode_times_out_a_send() {
    let mut h = Harness::new(AuditConfig {
        overflow: Overflow::FailClosed,
        ..blocking()
    });
    let PushOutcome::Sent(a) = h.push(0, 1) else {
        panic!("sent")
    };
    h.push(1000, 2);
    h.push(1000, 3);
    assert_eq!(h.b.stats().refused, 1, "fail-closed when too many wait");
    h.drain();
    assert_eq!(h.b.timer(), Some((h.at(5000), Timer::SendTimeout)));
    h.timeout(5000);
    let out = h.drain();
    assert_eq!(failed(&out).0, DeliveryError::Timeout);
    h.sent(5001, a, Ok(()));
    assert!(h.drain().is_empty(), "late answer ignored");
    assert_eq!(h.b.timer(), Some((h.at(6000), Timer::SendTimeout)));
}

#[test]
fn shutdown_sends_everything_at_once_and_reports() {
    let mut h = Harness::new(small(2));
    h.push_all(0, 1..=3);
    let (id, _) = one_send(&h.drain());
    h.shutdown(100);
    assert!(sends(&h.drain()).is_empty(), "still one batch in flight");
    assert_eq!(h.b.timer(), Some((h.at(10_100), Timer::Drain)));
    h.sent(200, id, Ok(()));
    let out = h.drain();
    assert_eq!(
        one_send(&out).1,
        id_range(3..=3),
        "no max-wait while draining"
    );
    h.sent(300, sends(&out)[0].0, Ok(()));
    let out = h.drain();
    assert_eq!(
        out.last(),
        Some(&AuditOutput::Drained(DrainReport {
            delivered: 3,
            persisted: 0,
            dead_lettered: 0
        }))
    );
    assert!(h.b.is_drained());
    assert_eq!(h.push(400, 9), PushOutcome::Refused(Refusal::ShutDown));
}

#[test]
fn shutdown_dead_letters_what_it_cannot_send_without_a_spill() {
    let mut h = Harness::new(small(400));
    h.push_all(0, 1..=3);
    h.shutdown(0);
    let (id, _) = one_send(&h.drain());
    h.sent(10, id, Err(unavailable()));
    let out = h.drain();
    assert_eq!(
        failed(&out),
        (unavailable(), None),
        "no retry while draining"
    );
    let dead = out.iter().find_map(|o| match o {
        AuditOutput::DeadLetter { body, .. } => Some(ids(body)),
        _ => None,
    });
    assert_eq!(dead, Some(id_range(1..=3)));
    assert!(matches!(
        out.last(),
        Some(AuditOutput::Drained(DrainReport {
            dead_lettered: 3,
            ..
        }))
    ));
}

#[test]
fn a_backoff_does_not_delay_the_drain() {
    let mut h = Harness::new(small(400));
    h.push(0, 1);
    h.timeout(secs(30));
    let (id, _) = one_send(&h.drain());
    h.sent(secs(31), id, Err(unavailable()));
    h.drain();
    h.shutdown(secs(32));
    let (again, got) = one_send(&h.drain());
    assert_eq!(got, id_range(1..=1));
    h.sent(secs(33), again, Ok(()));
    assert!(matches!(h.drain().last(), Some(AuditOutput::Drained(_))));
}

#[test]
fn an_oversized_event_loses_its_objects_first() {
    let mut h = Harness::new(AuditConfig {
        max_event_bytes: 2000,
        ..small(1)
    });
    let mut big = ev(1);
    big.request_object = Some(serde_json::json!({"data": "x".repeat(5000)}));
    assert_eq!(h.b.push(h.t0, &big), PushOutcome::Queued);
    let (_, body) = sends(&h.drain()).remove(0);
    let list: EventList = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.items[0].request_object, None);
    assert_eq!(list.items[0].annotations["audit.k8s.io/truncated"], "true");
    let mut huge = ev(2);
    huge.request_uri = "/".repeat(5000);
    assert!(matches!(
        h.b.push(h.t0, &huge),
        PushOutcome::Refused(Refusal::TooLarge { .. })
    ));
    assert_eq!(h.b.stats().truncated, 1);
}

#[test]
fn a_bad_config_is_rejected() {
    let bad = |c: AuditConfig| AuditBatcher::new(base_instant(), c).unwrap_err();
    assert_eq!(
        bad(AuditConfig {
            max_batch_size: 0,
            ..AuditConfig::default()
        }),
        ConfigError::Zero("the max batch size")
    );
    assert_eq!(
        bad(AuditConfig {
            throttle_qps: f64::NAN,
            ..AuditConfig::default()
        }),
        ConfigError::BadQps
    );
    assert_eq!(
        bad(AuditConfig {
            max_backoff: Duration::from_secs(1),
            ..AuditConfig::default()
        }),
        ConfigError::BackoffCap
    );
    assert!(matches!(
        bad(AuditConfig {
            max_spill_bytes: 1000,
            ..AuditConfig::default()
        }),
        ConfigError::SpillTooSmall(_)
    ));
}
