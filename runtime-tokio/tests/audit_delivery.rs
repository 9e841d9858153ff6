//! The audit sink against a test webhook: order and exactly-once delivery in
//! batch and blocking modes, an outage, spill to disk, restart, rejection.

mod audit_support;

use audit_support::{bounded, ev, fast_config, ids, scratch, Answer, Receiver};
use kubecast_core::audit::{AuditConfig, DeliveryError, EventList, Mode};
use kubecast_tokio::audit::{DEAD_LETTER_FILE, SPILL_FILE};
use kubecast_tokio::{AuditSink, RecordError, Recorded, WebhookConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn webhook(r: &Receiver) -> WebhookConfig {
    WebhookConfig::from_url(&r.url()).unwrap()
}

#[tokio::test]
async fn batch_mode_delivers_in_order_exactly_once() {
    bounded(async {
        let r = Receiver::start().await;
        let dir = scratch("batch");
        let config = AuditConfig {
            max_batch_size: 7,
            ..fast_config()
        };
        let (audit, task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        for n in 1..=50 {
            assert_eq!(audit.record(ev(n)).await, Ok(Recorded::Queued));
        }
        assert_eq!(r.wait_for(50, WAIT).await, ids(1..=50));
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.stats.delivered, 50);
        assert_eq!(report.drain.persisted, 0);
        assert_eq!(task.await.unwrap(), report);
        let log = r.log();
        assert!(log.iter().all(|x| x.status == 200), "{log:?}");
        assert!(log.len() >= 8, "50 events in batches of at most 7");
        for x in &log {
            assert_eq!(x.content_type.as_deref(), Some("application/json"));
            let list = x.list.as_ref().unwrap();
            assert_eq!(
                (list.kind.as_str(), list.items.len() <= 7),
                ("EventList", true)
            );
        }
        assert_eq!(r.accepted_ids(), ids(1..=50), "nothing arrived twice");
        // Nothing spilled, nothing dead-lettered.
        assert!(!dir.path().join(SPILL_FILE).exists());
        assert!(!dir.path().join(DEAD_LETTER_FILE).exists());
    })
    .await;
}

#[tokio::test]
async fn blocking_mode_waits_for_each_event() {
    bounded(async {
        let r = Receiver::start().await;
        let dir = scratch("blocking");
        let config = AuditConfig {
            mode: Mode::Blocking,
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        for n in 1..=10 {
            assert_eq!(audit.record(ev(n)).await, Ok(Recorded::Delivered));
            // Delivered before `record` returned.
            assert_eq!(r.accepted_ids().len(), n as usize);
        }
        assert_eq!(r.accepted_ids(), ids(1..=10));
        assert!(r
            .log()
            .iter()
            .all(|x| x.list.as_ref().unwrap().items.len() == 1));
        // A failed blocking send: the caller hears it, the event is dead-lettered.
        r.answer(Answer::Status(503));
        match audit.record(ev(11)).await {
            Err(RecordError::Failed(DeliveryError::Status { code: 503, .. })) => {}
            other => panic!("expected a 503 failure, got {other:?}"),
        }
        r.answer(Answer::Ok);
        assert_eq!(audit.record(ev(12)).await, Ok(Recorded::Delivered));
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.stats.delivered, 11);
        assert_eq!(report.stats.dead_lettered, 1);
        let dead = dead_letters(dir.path());
        assert_eq!(dead, vec![vec![audit_support::id(11)]]);
    })
    .await;
}

#[tokio::test]
async fn outage_is_retried_with_backoff_until_everything_arrives() {
    bounded(async {
        let mut r = Receiver::start().await;
        let dir = scratch("outage");
        let config = AuditConfig {
            max_batch_size: 5,
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        for n in 1..=5 {
            audit.record(ev(n)).await.unwrap();
        }
        assert_eq!(r.wait_for(5, WAIT).await, ids(1..=5));
        // 500s for a second and a half…
        r.answer(Answer::Status(500));
        for n in 6..=15 {
            audit.record(ev(n)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let failed = r.log().iter().filter(|x| x.status == 500).count();
        assert!(failed >= 2, "retried during the outage ({failed} tries)");
        // …then the webhook is gone for another second and a half.
        r.down();
        for n in 16..=25 {
            audit.record(ev(n)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(r.accepted_ids(), ids(1..=5));
        r.answer(Answer::Ok);
        r.up().await;
        assert_eq!(r.wait_for(25, WAIT).await, ids(1..=25));
        let report = audit.shutdown().await.unwrap();
        assert_eq!(r.accepted_ids(), ids(1..=25), "each event once, in order");
        assert!(report.stats.failed_sends >= 3);
        assert_eq!(report.stats.delivered, 25);
    })
    .await;
}

#[tokio::test]
async fn full_buffer_spills_to_disk_and_delivers_in_order() {
    bounded(async {
        let mut r = Receiver::start().await;
        r.down();
        let dir = scratch("spill");
        let config = AuditConfig {
            buffer_size: 4,
            max_batch_size: 3,
            spill_read_chunk: 256,
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        let mut spilled = 0;
        for n in 1..=40 {
            match audit.record(ev(n)).await.unwrap() {
                Recorded::Spilled => spilled += 1,
                Recorded::Queued => {}
                Recorded::Delivered => panic!("batch mode"),
            }
        }
        assert!(spilled >= 30, "{spilled} spilled");
        let spill = dir.path().join(SPILL_FILE);
        let len = std::fs::metadata(&spill).unwrap().len();
        assert!(len > 30 * 25, "spill file holds the events ({len} bytes)");
        r.up().await;
        assert_eq!(r.wait_for(40, WAIT).await, ids(1..=40));
        // Fully delivered: the file is reclaimed.
        let deadline = tokio::time::Instant::now() + WAIT;
        while std::fs::metadata(&spill).unwrap().len() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "spill file not truncated"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = audit.shutdown().await.unwrap();
        assert_eq!(r.accepted_ids(), ids(1..=40));
        assert_eq!(report.stats.delivered, 40);
        assert!(report.stats.spilled >= 30);
    })
    .await;
}

#[tokio::test]
async fn spilled_events_arrive_after_a_restart() {
    bounded(async {
        let mut r = Receiver::start().await;
        r.down();
        let dir = scratch("restart");
        let config = AuditConfig {
            max_batch_size: 4,
            drain_timeout: Duration::from_secs(1),
            ..fast_config()
        };
        let (audit, task) = AuditSink::start(config.clone(), webhook(&r), dir.path()).unwrap();
        for n in 1..=20 {
            audit.record(ev(n)).await.unwrap();
        }
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.drain.persisted, 20, "{report:?}");
        assert_eq!(report.drain.delivered, 0);
        task.await.unwrap();
        assert_eq!(
            audit.record(ev(99)).await,
            Err(RecordError::Closed),
            "the old sink has stopped"
        );
        assert!(
            std::fs::metadata(dir.path().join(SPILL_FILE))
                .unwrap()
                .len()
                > 0
        );

        // A new run on the same directory, webhook back.
        r.up().await;
        let (audit, _task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        for n in 21..=25 {
            audit.record(ev(n)).await.unwrap();
        }
        assert_eq!(r.wait_for(25, WAIT).await, ids(1..=25));
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.stats.replayed, 20);
        assert_eq!(
            r.accepted_ids(),
            ids(1..=25),
            "replayed once, before the new ones"
        );

        // A third run finds nothing left to replay.
        let (audit, _task) = AuditSink::start(fast_config(), webhook(&r), dir.path()).unwrap();
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.stats.replayed, 0);
        assert_eq!(r.accepted_ids().len(), 25);
    })
    .await;
}

#[tokio::test]
async fn rejected_batch_goes_to_the_dead_letter_file() {
    bounded(async {
        let r = Receiver::start().await;
        let dir = scratch("reject");
        let (audit, _task) = AuditSink::start(fast_config(), webhook(&r), dir.path()).unwrap();
        r.script(&[Answer::Status(400)]);
        for n in 1..=3 {
            audit.record(ev(n)).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while dead_letters(dir.path()).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no dead letter");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dead_letters(dir.path()), vec![ids(1..=3)]);
        for n in 4..=6 {
            audit.record(ev(n)).await.unwrap();
        }
        assert_eq!(r.wait_for(3, WAIT).await, ids(4..=6));
        let report = audit.shutdown().await.unwrap();
        assert_eq!(report.stats.dead_lettered, 3);
        assert_eq!(report.stats.delivered, 3);
        assert_eq!(
            r.log().iter().filter(|x| x.status == 400).count(),
            1,
            "not retried"
        );
    })
    .await;
}

/// The dead-letter file: one `EventList` per line, as `auditID`s.
fn dead_letters(dir: &std::path::Path) -> Vec<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(dir.join(DEAD_LETTER_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let list: EventList = serde_json::from_str(line).unwrap();
            list.items.into_iter().map(|e| e.audit_id).collect()
        })
        .collect()
}

#[tokio::test]
async fn full_spill_applies_back_pressure_until_the_webhook_is_back() {
    bounded(async {
        let mut r = Receiver::start().await;
        r.down();
        let dir = scratch("block");
        let config = AuditConfig {
            buffer_size: 2,
            max_batch_size: 2,
            max_event_bytes: 1024,
            max_spill_bytes: 2048, // about four of these events
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook(&r), dir.path()).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let writer = {
            let (audit, done) = (audit.clone(), done.clone());
            tokio::spawn(async move {
                for n in 1..=20 {
                    audit.record(ev(n)).await.unwrap();
                    done.store(n, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stuck = done.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..20).contains(&stuck), "held back after {stuck} events");
        r.up().await;
        writer.await.unwrap();
        assert_eq!(r.wait_for(20, WAIT).await, ids(1..=20));
        let report = audit.shutdown().await.unwrap();
        assert!(report.stats.waited >= 1, "{report:?}");
        assert_eq!(r.accepted_ids(), ids(1..=20));
    })
    .await;
}
