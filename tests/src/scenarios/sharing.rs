//! Uploads of several sessions to one recorder share HTTP/2 connections
//! (`kubecast_async`'s pool), for any [`Runtime`]: one connection for
//! sessions recorded together, and a fresh one for the failover of an
//! upload that failed or was given up, never the connection that failed it.

use super::fronts::{Front, Spoil};
use super::recorder::{started_with, Harness};
use super::script::*;
use super::{wait_log, RecorderPeer, Runtime};
use kubecast_core::drive::{UploadEvent, UploadTls};
use kubecast_core::recording::Policy;
use kubecast_core::upload::{
    AttemptError, AttemptRecord, Budget, FailureReason, Protocol, Stage, Then, UploadConfig,
};
use std::time::Duration;

/// Sessions recorded together through a [`Front`] to `recorder`, opened
/// first, then each finished: all complete over v2, with no failed
/// attempt.
fn record_together<R: Runtime>(front: &Front, n: usize) {
    let recordings = (0..n)
        .map(|_| recording(upload_config(&[front.url()]), Policy::FailClosed))
        .collect();
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
    }
    for h in &mut sessions {
        h.finish_session(b"together\r\n");
    }
    for h in sessions {
        let (recorded, got) = h.join();
        let summary = recorded.result.expect("driven").expect("a clean end");
        let expected = replayed_cast(&got.capture);
        assert_eq!(summary.upload_completed, Some(expected.len() as u64));
        assert!(started_with(&got.upload, Protocol::V2), "{:?}", got.upload);
        assert!(
            !got.upload
                .iter()
                .any(|e| matches!(e, UploadEvent::AttemptFailed(_))),
            "{:?}",
            got.upload
        );
    }
}

/// Sessions uploading to one recorder together share one HTTP/2
/// connection (one stream each): its buffers and socket cost more than an
/// idle session itself.
pub fn uploads_to_one_recorder_share_a_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let front = Front::start(recorder.addr());
    record_together::<R>(&front, 3);
    wait_log(recorder, "v2 complete", 3);
    assert_eq!(front.accepted(), 1, "one connection for all three uploads");
}

/// A shared connection that breaks fails every upload on it; the next
/// uploads get a fresh connection, never the broken one.
pub fn a_broken_shared_connection_is_not_reused<R: Runtime>(recorder: &dyn RecorderPeer) {
    let front = Front::start(recorder.addr());
    let recordings = (0..2)
        .map(|_| recording(upload_config(&[front.url()]), Policy::FailOpen))
        .collect();
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
    }
    assert_eq!(front.accepted(), 1);
    front.cut();
    for h in &mut sessions {
        h.wait_upload_failed();
        h.finish_session(b"after the cut\r\n");
    }
    for h in sessions {
        let (recorded, _) = h.join();
        let (_, failure) = recorded.lost_upload();
        assert!(
            matches!(failure.reason, FailureReason::Interrupted { .. }),
            "{failure}"
        );
    }
    record_together::<R>(&front, 2);
    wait_log(recorder, "v2 complete", 2);
    assert_eq!(front.accepted(), 2, "one new connection for the next two");
}

/// An upload that fails on a shared connection which itself stays alive
/// (the recorder's side refuses its request stream while another upload
/// goes on over the same connection) fails over to a fresh connection:
/// the connection that just failed an attempt takes no new ones.
pub fn a_failed_upload_fails_over_to_a_fresh_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let refused = fail_over_beside_a_live_upload::<R>(recorder, Spoil::Refuse, |_| {});
    assert!(
        matches!(&refused.error, AttemptError::Stream(m) if m.contains("refused")),
        "{refused}"
    );
}

/// The same when the core gives the attempt up (its recorder does not
/// answer within the attempt budget) while its connection lives on: the
/// failover gets a fresh connection, not the one that left it waiting.
pub fn a_given_up_upload_fails_over_to_a_fresh_connection<R: Runtime>(recorder: &dyn RecorderPeer) {
    let budget = Duration::from_secs(1);
    let stalled = fail_over_beside_a_live_upload::<R>(recorder, Spoil::Stall, |config| {
        config.attempt_budget = budget;
    });
    assert_eq!(
        stalled.error,
        AttemptError::TimedOut {
            budget: Budget::Attempt,
            limit: budget
        },
        "{stalled}"
    );
}

/// Two sessions recorded together through a front that spoils the first
/// upload (`how`) to a recorder listed twice: both complete over v2, one
/// after a failover at the start of its upload, on a new connection
/// although the other upload keeps the first one alive. Returns the failed
/// attempt.
fn fail_over_beside_a_live_upload<R: Runtime>(
    recorder: &dyn RecorderPeer,
    how: Spoil,
    configure: impl Fn(&mut UploadConfig),
) -> AttemptRecord {
    let front = Front::spoiling_the_first_upload(recorder.addr(), how);
    // The same recorder twice: the failover goes to the same address, so
    // only the pool decides whether it gets a new connection.
    let recorders = [front.url(), front.url()];
    let recordings = (0..2)
        .map(|_| {
            let mut config = upload_config(&recorders);
            configure(&mut config);
            recording(config, Policy::FailClosed)
        })
        .collect();
    // Both open: one at once, the other after the spoiled attempt and a
    // failover while the first one holds the connection open.
    let mut sessions = Harness::start_together::<R>(recordings, &UploadTls::default());
    for h in &mut sessions {
        h.open_session();
        h.finish_session(b"after the failover\r\n");
    }
    let mut failed = Vec::new();
    for h in sessions {
        let (recorded, got) = h.join();
        let summary = recorded.result.expect("driven").expect("a clean end");
        assert_eq!(
            summary.upload_completed,
            Some(replayed_cast(&got.capture).len() as u64)
        );
        assert!(started_with(&got.upload, Protocol::V2), "{:?}", got.upload);
        failed.extend(got.upload.into_iter().filter_map(|e| match e {
            UploadEvent::AttemptFailed(record) => Some(record),
            _ => None,
        }));
    }
    let [spoiled] = failed.as_slice() else {
        panic!("expected one failed attempt: {failed:?}");
    };
    assert_eq!(
        (spoiled.protocol, spoiled.stage, spoiled.then),
        (Protocol::V2, Stage::Start, Then::NextRecorder),
        "{spoiled}"
    );
    wait_log(recorder, "v2 complete", 2);
    assert_eq!(
        front.accepted(),
        2,
        "the failover must dial a new connection, not reuse the one that failed it"
    );
    spoiled.clone()
}
