//! `FileSink`: the cast in `DIR/STEM.cast`, written under a temporary name
//! and renamed when complete; never overwriting; incomplete recordings kept
//! under a name that says so; no file for an unrecorded connection.

use std::path::Path;

use bytes::Bytes;
use kubecast_core::handshake::WsProtocol;
use kubecast_core::session::{RecordingStats, Session, SessionConfig, SessionEvent, SessionMeta};
use kubecast_core::ws::encode_channel_message;
use kubecast_tests::kubectl::TempDir;
use kubecast_tokio::{drive, DriveOptions, FileSink, SessionSink};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

const WS_PLAIN_REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&container=main&stdout=true&stderr=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Drives a scripted session (`client_bytes` then `upstream_bytes`, both
/// sides closing) into a `FileSink` for `dir/stem`.
async fn record(dir: &Path, stem: &str, client_bytes: &[u8], upstream_bytes: &[u8]) -> FileSink {
    let (mut client, client_proxy) = duplex(64 * 1024);
    let (upstream_proxy, mut upstream) = duplex(64 * 1024);
    let mut sink = FileSink::new(dir, stem);
    let mut session = Session::new(SessionConfig::default(), SessionMeta::default());
    let script = async {
        client.write_all(client_bytes).await.unwrap();
        let mut request = vec![0; client_bytes.len()];
        upstream.read_exact(&mut request).await.unwrap();
        upstream.write_all(upstream_bytes).await.unwrap();
        upstream.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, upstream_bytes);
        client.shutdown().await.unwrap();
        drop((client, upstream));
    };
    let options = DriveOptions::default();
    let driven = drive(
        &mut session,
        client_proxy,
        upstream_proxy,
        &mut sink,
        &options,
    );
    let (result, ()) = tokio::join!(driven, script);
    result.expect("a clean end");
    sink
}

#[tokio::test]
async fn a_recording_is_renamed_when_complete_and_never_overwritten() {
    let tmp = TempDir::new("kubecast-tokio-file-sink").unwrap();
    let dir = tmp.path().join("recordings"); // created on first use
    let mut down = WS_101.to_vec();
    encode_channel_message(&mut down, WsProtocol::V5Channel, 1, b"hi\n", None);
    encode_channel_message(
        &mut down,
        WsProtocol::V5Channel,
        3,
        br#"{"metadata":{},"status":"Success"}"#,
        None,
    );

    let first = record(&dir, "default_demo_alice", WS_PLAIN_REQUEST, &down).await;
    assert_eq!(names(&dir), ["default_demo_alice.cast"]);
    assert_eq!(
        first.path(),
        Some(dir.join("default_demo_alice.cast").as_path())
    );
    let text = std::fs::read_to_string(dir.join("default_demo_alice.cast")).unwrap();
    assert_eq!(first.written(), text.len() as u64);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(r#"{"version":2,"#), "{text}");
    assert!(lines[1].ends_with(r#", "o", "hi\n"]"#), "{text}");
    assert!(lines[2].ends_with(r#", "m", "exit 0"]"#), "{text}");

    record(&dir, "default_demo_alice", WS_PLAIN_REQUEST, &down).await;
    assert_eq!(
        names(&dir),
        ["default_demo_alice.cast", "default_demo_alice_2.cast"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("default_demo_alice.cast")).unwrap(),
        text,
        "the first recording is untouched"
    );
}

#[tokio::test]
async fn an_unrecorded_connection_leaves_no_file() {
    let tmp = TempDir::new("kubecast-tokio-file-sink").unwrap();
    let sink = record(
        tmp.path(),
        "plain",
        b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(sink.path(), None);
    assert!(names(tmp.path()).is_empty());
}

#[tokio::test]
async fn a_recording_that_did_not_finish_is_kept_as_incomplete() {
    let tmp = TempDir::new("kubecast-tokio-file-sink").unwrap();
    let mut sink = FileSink::new(tmp.path(), "../cut");
    sink.cast(Bytes::from_static(b"{\"version\":2}\n"))
        .await
        .unwrap();
    assert_eq!(names(tmp.path()).len(), 1);
    assert!(
        names(tmp.path())[0].ends_with(".partial"),
        "{:?}",
        names(tmp.path())
    );
    sink.finish().await.unwrap();
    assert_eq!(names(tmp.path()), ["-cut_incomplete.cast"]);

    let mut sink = FileSink::new(tmp.path(), "done");
    sink.cast(Bytes::from_static(b"{\"version\":2}\n"))
        .await
        .unwrap();
    sink.event(SessionEvent::RecordingFinished(RecordingStats::default()))
        .await
        .unwrap();
    sink.finish().await.unwrap();
    assert_eq!(names(tmp.path()), ["-cut_incomplete.cast", "done.cast"]);
}

/// Many sessions writing small and large casts at once, through the
/// blocking pool: every write is in its own file, in order, when `cast`
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_writes_from_many_sessions_land_in_order() {
    let tmp = TempDir::new("kubecast-tokio-file-sink").unwrap();
    let dir = tmp.path().to_path_buf();
    let sessions = (0..8).map(|s| {
        let dir = dir.clone();
        tokio::spawn(async move {
            let stem = format!("s{s}");
            let mut sink = FileSink::new(&dir, &stem);
            let mut expected = Vec::new();
            for i in 0..200usize {
                // Every tenth write is a bulk one (40 KiB).
                let len = if i % 10 == 9 { 40 * 1024 } else { 1 + i % 30 };
                let line: Vec<u8> = (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect();
                sink.cast(Bytes::from(line.clone())).await.unwrap();
                expected.extend_from_slice(&line);
                assert_eq!(sink.written(), expected.len() as u64);
            }
            sink.event(SessionEvent::RecordingFinished(RecordingStats::default()))
                .await
                .unwrap();
            sink.finish().await.unwrap();
            (stem, expected)
        })
    });
    for session in sessions.collect::<Vec<_>>() {
        let (stem, expected) = session.await.unwrap();
        let written = std::fs::read(dir.join(format!("{stem}.cast"))).unwrap();
        assert!(written == expected, "{stem}: the cast differs");
    }
}
