//! `kubecast-tokio` details of a misbehaving recorder, with a fake v2
//! recorder whose acks the test controls and in-memory pipes: a recorder
//! that acks slowly holds the upstream back at the unacked cap, and a
//! fail-closed farewell waits for the frame under way. (The ack window
//! expiring and the recorder dying mid-upload are shared scenarios, run on
//! every runtime: `upload_recorder.rs`, `runtime_smol.rs`,
//! `runtime_async_std.rs`.)

mod recorder_support;
mod upload_support;

use kubecast_core::recording::Policy;
use kubecast_core::upload::UploadConfig;
use kubecast_tokio::{DriveErrorKind, DriveOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upload_support::*;

const PIPE: usize = 64 * 1024;
const WINDOW: Duration = Duration::from_millis(500);

fn short_window(url: String) -> UploadConfig {
    let mut config = upload_config(&[url]);
    config.ack_window = WINDOW;
    config
}

/// Request, 101 and a first output, all forwarded.
async fn open_session(h: &mut Harness) -> Vec<u8> {
    h.client.write_all(REQUEST).await.unwrap();
    assert_eq!(read_n(&mut h.upstream, REQUEST.len()).await, REQUEST);
    let mut down = SWITCHED.to_vec();
    down.extend(from_upstream(1, b"before\r\n"));
    h.upstream.write_all(&down).await.unwrap();
    assert_eq!(read_n(&mut h.client, down.len()).await, down);
    down
}

#[tokio::test]
async fn unacknowledged_cast_holds_the_upstream_at_the_cap() {
    const CAP: usize = 16 * 1024;
    const SMALL: usize = 4 * 1024;
    const TOTAL: usize = 1024 * 1024;
    let fake = FakeV2::start(false).await;
    let mut config = upload_config(&[fake.url()]);
    config.max_unacked = CAP;
    config.ack_window = Duration::from_secs(10);
    let handle = handle(recording(config, Policy::FailClosed));
    let options = DriveOptions {
        buffer_size: SMALL,
        ..DriveOptions::default()
    };
    let mut h = start(handle, options, SMALL);
    h.client.write_all(REQUEST).await.unwrap();
    read_n(&mut h.upstream, REQUEST.len()).await;

    // The upstream writes 1 MiB of output in 1 KiB frames as fast as it
    // can; the client reads everything.
    let written = Arc::new(AtomicU64::new(0));
    let (mut upstream, mut client) = (h.upstream, h.client);
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        upstream.write_all(SWITCHED).await.unwrap();
        let frame = from_upstream(1, &[b'x'; 1024]);
        let mut sent = 0;
        while sent < TOTAL {
            upstream.write_all(&frame).await.unwrap();
            sent += 1024;
            counter.fetch_add(frame.len() as u64, Ordering::SeqCst);
        }
        upstream
            .write_all(&from_upstream(3, SUCCESS))
            .await
            .unwrap();
        upstream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        client.shutdown().await.unwrap();
        got
    });

    // No acks: the recorder gets about the cap, the upstream stalls.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stalled = written.load(Ordering::SeqCst) as usize;
    let at_recorder = fake.received_len();
    eprintln!("stalled after {stalled} bytes written, {at_recorder} cast bytes at the recorder");
    assert!(
        (CAP..CAP + 3 * SMALL).contains(&at_recorder),
        "{at_recorder}"
    );
    // What the upstream could write: the cap's worth of output, one read
    // over it, the driver's buffer and the pipe.
    assert!(stalled < CAP + 4 * SMALL, "{stalled}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        written.load(Ordering::SeqCst) as usize,
        stalled,
        "still held"
    );

    // Acks release it: everything arrives.
    fake.acking.store(true, Ordering::SeqCst);
    let got = tokio::time::timeout(STEP, reader).await.unwrap().unwrap();
    assert!(got.len() > TOTAL, "{}", got.len());
    tokio::time::timeout(STEP, writer).await.unwrap().unwrap();
    let (result, _, _) = tokio::time::timeout(STEP, h.driven).await.unwrap().unwrap();
    let summary = result.expect("a clean end");
    let total = fake.received_len() as u64;
    assert_eq!(summary.upload_completed, Some(total));
    assert!(total > TOTAL as u64);
}

#[tokio::test]
async fn a_fail_closed_farewell_waits_for_the_frame_under_way() {
    let fake = FakeV2::start(false).await;
    let handle = handle(recording(short_window(fake.url()), Policy::FailClosed));
    let mut h = start(handle, DriveOptions::default(), PIPE);
    open_session(&mut h).await;
    // A frame is under way when the window runs out ...
    let frame = from_upstream(1, &[b'y'; 100]);
    let (head, tail) = frame.split_at(40);
    h.upstream.write_all(head).await.unwrap();
    assert_eq!(read_n(&mut h.client, head.len()).await, head);
    tokio::time::sleep(WINDOW * 2).await;
    // ... so the session reads on to its end, forwards exactly that, then
    // writes its last words; the next frame of the same read is dropped.
    let mut rest = tail.to_vec();
    rest.extend(from_upstream(1, b"LATE-OUTPUT\r\n"));
    h.upstream.write_all(&rest).await.unwrap();
    let got = read_to_eof(&mut h.client).await;
    assert!(got.starts_with(tail), "{got:?}");
    let text = String::from_utf8_lossy(&got[tail.len()..]).into_owned();
    assert!(text.contains("recording was lost"), "{text:?}");
    assert!(!text.contains("LATE-OUTPUT"), "{text:?}");
    let (result, _, _) = tokio::time::timeout(STEP, h.driven).await.unwrap().unwrap();
    let error = result.expect_err("fail-closed ends the session");
    assert!(
        matches!(error.kind, DriveErrorKind::RecordingFailed(_)),
        "{error}"
    );
}
