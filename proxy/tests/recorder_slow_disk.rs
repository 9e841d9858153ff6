//! `kubecast recorder` on a slow disk: the upload keeps being read while an
//! fsync runs (`--test-sync-delay-ms`, a test-only flag, makes every fsync of
//! a recording sleep first).
//!
//! Regression: the ingest loop used to await each fsync before reading on, so
//! an uploader sending one tiny DATA frame per keystroke meanwhile exhausted
//! h2's small-DATA-frame budget and the recorder closed the connection with
//! `GOAWAY(ENHANCE_YOUR_CALM, too_many_data_frames)` (docs/benchmarks.md).

mod recorder_support;

use bytes::Bytes;
use recorder_support::*;
use std::time::Duration;

/// Tiny frames, far more than h2's budget for unread small DATA frames
/// (25 600 / (256 − 30) ≈ 113 of them).
const KEYSTROKES: usize = 3000;

#[tokio::test]
async fn v2_keystroke_frames_during_slow_fsyncs_complete_the_upload() {
    let server = Server::start("slow-disk-keys", &["--test-sync-delay-ms", "300"]);
    let mut h2 = H2::h2c(server.addr).await;
    let (tx, res) = h2.post(None).await;
    assert_eq!(res.status(), 200);
    let mut frames = Frames::new(res.into_body());

    let mut data = cast("default", "web-0", "alice", 0);
    tx.send(Bytes::from(data.clone())).await.unwrap();
    for i in 0..KEYSTROKES {
        let event = format!(
            "[{}.25, \"o\", \"{}\"]\n",
            i,
            (b'a' + (i % 26) as u8) as char
        );
        data.extend_from_slice(event.as_bytes());
        tx.send(Bytes::from(event)).await.unwrap();
        // Typing in bursts, so the frames keep arriving across several syncs.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);

    let rest = frames.rest().await;
    let acks: Vec<u64> = rest
        .iter()
        .map(|f| {
            f["ack"]
                .as_u64()
                .unwrap_or_else(|| panic!("not an ack (the upload failed?): {f}"))
        })
        .collect();
    assert!(
        acks.windows(2).all(|w| w[0] <= w[1]),
        "acks not monotone: {acks:?}"
    );
    assert_eq!(acks.last(), Some(&(data.len() as u64)), "{acks:?}");

    let name = format!("{}.cast", stem("default", "web-0", "alice"));
    eventually("the complete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(server.read(&name), data);
    let line = &server.wait_log("v2 complete", 1).await[0];
    assert!(line.contains(&format!("bytes={}", data.len())), "{line}");
    assert!(
        !server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("connection from")),
        "the connection failed: {:?}",
        server.log.lock().unwrap()
    );
}

#[tokio::test]
async fn v2_bulk_upload_on_a_slow_disk_is_stored_exactly() {
    // More than the writer's queue (4 MiB) while every fsync is slow: the
    // queue's cap holds the uploader back through flow control, and nothing
    // is lost or reordered.
    let server = Server::start("slow-disk-bulk", &["--test-sync-delay-ms", "100"]);
    let mut h2 = H2::h2c(server.addr).await;
    let (tx, res) = h2.post(None).await;
    assert_eq!(res.status(), 200);
    let mut frames = Frames::new(res.into_body());

    let mut data = cast("default", "web-0", "bob", 0);
    let mut i = 0usize;
    while data.len() < 12 << 20 {
        data.extend_from_slice(
            format!("[{i}.5, \"o\", \"{}\\r\\n\"]\n", "x".repeat(i % 900)).as_bytes(),
        );
        i += 1;
    }
    let sender = tokio::spawn({
        let data = data.clone();
        async move {
            for piece in data.chunks(64 * 1024 + 13) {
                tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
            }
        }
    });
    let rest = frames.rest().await;
    sender.await.unwrap();
    let acks: Vec<u64> = rest
        .iter()
        .map(|f| {
            f["ack"]
                .as_u64()
                .unwrap_or_else(|| panic!("not an ack: {f}"))
        })
        .collect();
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "{acks:?}");
    assert_eq!(acks.last(), Some(&(data.len() as u64)));

    let name = format!("{}.cast", stem("default", "web-0", "bob"));
    eventually("the complete file", || {
        server.files().contains(&name).then_some(())
    })
    .await;
    assert!(server.read(&name) == data, "the stored cast differs");
}
