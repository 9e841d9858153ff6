//! When the recorder misbehaves while a recorded session runs: a recorder
//! that never acks is detected within the ack window (fail-closed ends the
//! session, fail-open keeps forwarding); a recorder killed mid-upload is an
//! interrupted upload and leaves an `_incomplete` cast; a recorder that
//! acks slowly holds the upstream back at the unacked cap.

mod recorder_support;
mod upload_support;

use kubecast_core::recording::Policy;
use kubecast_core::upload::{AttemptError, FailureReason, UploadConfig};
use kubecast_tokio::{DriveErrorKind, DriveOptions, UploadEvent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
async fn a_recorder_that_never_acks_ends_a_fail_closed_session() {
    let fake = FakeV2::start(false).await;
    let opened = Instant::now();
    let handle = handle(recording(short_window(fake.url()), Policy::FailClosed));
    let mut h = start(handle, DriveOptions::default(), PIPE);
    open_session(&mut h).await;

    // The window runs out with no ack: the session ends. The client gets
    // the core's last words and end of file; nothing more is forwarded.
    let rest = read_to_eof(&mut h.client).await;
    let waited = opened.elapsed();
    assert!(waited >= WINDOW && waited < WINDOW * 6, "{waited:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("recording was lost"), "{text:?}");
    assert!(
        text.contains("no ack frame within the ack window"),
        "{text:?}"
    );
    // The upstream's connection is closed too: it reads end of file, and
    // what it writes now goes nowhere.
    assert!(read_to_eof(&mut h.upstream).await.is_empty());
    let late = from_upstream(1, b"LATE-OUTPUT\r\n");
    let _ = h.upstream.write_all(&late).await;

    let (result, handle, got) = tokio::time::timeout(STEP, h.driven).await.unwrap().unwrap();
    let error = result.expect_err("fail-closed ends the session");
    let DriveErrorKind::RecordingFailed(failure) = &error.kind else {
        panic!("{error}");
    };
    assert!(
        failure
            .attempts
            .iter()
            .any(|a| matches!(a.error, AttemptError::AckWindowExpired(w) if w == WINDOW)),
        "{failure}"
    );
    assert_eq!(error.summary.upload_failure.as_ref(), Some(&**failure));
    assert!(matches!(got.upload.last(), Some(UploadEvent::Failed(_))));
    assert!(handle.failure().is_some());
    // The cast says why the session ended; the recorder got what was sent.
    let received = String::from_utf8_lossy(&fake.received.lock().unwrap()).into_owned();
    assert!(received.contains("before"), "{received}");
    assert!(!received.contains("LATE-OUTPUT"), "{received}");
}

#[tokio::test]
async fn a_recorder_that_never_acks_is_reported_and_a_fail_open_session_goes_on() {
    let fake = FakeV2::start(false).await;
    let handle = handle(recording(short_window(fake.url()), Policy::FailOpen));
    let mut h = start(handle, DriveOptions::default(), PIPE);
    let opened = Instant::now();
    open_session(&mut h).await;
    tokio::time::sleep(WINDOW * 2).await;

    // Still forwarding, both ways, to the end.
    let down = from_upstream(1, b"LATE-OUTPUT\r\n");
    h.upstream.write_all(&down).await.unwrap();
    assert_eq!(read_n(&mut h.client, down.len()).await, down);
    let up = from_client(0, b"exit\n");
    h.client.write_all(&up).await.unwrap();
    assert_eq!(read_n(&mut h.upstream, up.len()).await, up);
    let down = from_upstream(3, SUCCESS);
    h.upstream.write_all(&down).await.unwrap();
    h.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.client).await, down);
    h.client.shutdown().await.unwrap();
    read_to_eof(&mut h.upstream).await;

    let (result, _, got) = tokio::time::timeout(STEP, h.driven).await.unwrap().unwrap();
    let summary = result.expect("fail-open: a clean end");
    let failure = summary.upload_failure.expect("the loss is reported");
    assert!(
        failure
            .attempts
            .iter()
            .any(|a| matches!(a.error, AttemptError::AckWindowExpired(_))),
        "{failure}"
    );
    let failed_at = got
        .upload
        .iter()
        .position(|e| matches!(e, UploadEvent::Failed(_)))
        .expect("a Failed event");
    assert!(failed_at > 0);
    assert!(opened.elapsed() >= WINDOW);
    assert!(summary.recording.is_some(), "the session itself finished");
}

#[tokio::test]
async fn a_recorder_killed_mid_upload_interrupts_it_and_keeps_an_incomplete_cast() {
    let dir_scratch = Scratch::new("upload-killed");
    let dir = dir_scratch.0.join("casts");
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Server::start_in(Scratch::new("upload-killed-a"), dir.clone(), &[]);
    let handle = handle(recording(
        upload_config(&[format!("http://{}", server.addr)]),
        Policy::FailOpen,
    ));
    let mut h = start(handle, DriveOptions::default(), PIPE);
    open_session(&mut h).await;
    // The recorder acks what it wrote (within ~50 ms): wait until its
    // temporary file holds the output.
    eventually("the recorder to write the output", || {
        let partial = server.hidden().into_iter().next()?;
        let bytes = std::fs::read(dir.join(partial)).ok()?;
        String::from_utf8_lossy(&bytes)
            .contains("before")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Fail-open: the session goes on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = from_upstream(1, b"after the recorder died\r\n");
    h.upstream.write_all(&down).await.unwrap();
    assert_eq!(read_n(&mut h.client, down.len()).await, down);
    let down = from_upstream(3, SUCCESS);
    h.upstream.write_all(&down).await.unwrap();
    h.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.client).await, down);
    h.client.shutdown().await.unwrap();
    read_to_eof(&mut h.upstream).await;
    let (result, _, _) = tokio::time::timeout(STEP, h.driven).await.unwrap().unwrap();
    let summary = result.expect("fail-open: a clean end");
    let failure = summary.upload_failure.expect("the loss is reported");
    assert!(
        matches!(failure.reason, FailureReason::Interrupted { .. }),
        "{failure}"
    );
    assert!(
        failure.acked > 0 && failure.acked <= failure.sent,
        "{failure:?}"
    );

    // SIGKILL left the temporary file; a restarted recorder recovers it
    // under an `_incomplete` name, holding at least what was acknowledged.
    assert_eq!(server.files(), Vec::<String>::new());
    assert_eq!(server.hidden().len(), 1, "{:?}", server.hidden());
    drop(server);
    let restarted = Server::start_in(Scratch::new("upload-killed-b"), dir.clone(), &[]);
    let name = eventually("the recovered recording", || {
        restarted.files().into_iter().next()
    })
    .await;
    assert!(name.ends_with("_incomplete.cast"), "{name}");
    let kept = restarted.read(&name);
    assert!(
        kept.len() as u64 >= failure.acked,
        "{} < {failure:?}",
        kept.len()
    );
    assert!(String::from_utf8_lossy(&kept).contains("before"));
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
