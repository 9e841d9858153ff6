//! The driver between in-memory pipes (`tokio::io::duplex`), with scripted
//! WebSocket v5 exec sessions: bytes arrive unchanged, the cast is what a
//! replay of the same bytes gives, half-close propagates, timers fire,
//! back-pressure holds, errors end the session cleanly.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kubecast_core::capture::{CaptureReader, RecordKind};
use kubecast_core::handshake::WsProtocol;
use kubecast_core::session::{Session, SessionConfig, SessionEvent, SessionMeta};
use kubecast_core::ws::{encode_channel_message, encode_close_signal};
use kubecast_core::{ExitStatus, Side};
use kubecast_tokio::{
    drive, ChannelSink, DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError,
    SessionSink, SinkError, SinkItem,
};
use tokio::io::{
    duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const WS_TTY_REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=sh&container=main&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const WS_PLAIN_REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&container=main&stdout=true&stderr=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);
const PIPE: usize = 64 * 1024;

fn from_upstream(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, None);
    out
}

fn from_client(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, MASK);
    out
}

fn meta() -> SessionMeta {
    SessionMeta {
        user: Some("alice".into()),
        session_id: Some("s-1".into()),
        started_unix: Some(1_700_000_000),
        ..Default::default()
    }
}

type Driven = JoinHandle<(Result<DriveSummary, DriveError>, Session)>;

/// One driven session: the client's and the upstream's ends of the pipes.
struct Harness {
    client: DuplexStream,
    upstream: DuplexStream,
    driven: Driven,
}

fn start<S>(config: SessionConfig, mut sink: S, options: DriveOptions) -> Harness
where
    S: SessionSink + Send + 'static,
{
    let (client, client_proxy) = duplex(PIPE);
    let (upstream_proxy, upstream) = duplex(PIPE);
    let driven = tokio::spawn(async move {
        let mut session = Session::new(config, meta());
        let result = drive(
            &mut session,
            client_proxy,
            upstream_proxy,
            &mut sink,
            &options,
        )
        .await;
        (result, session)
    });
    Harness {
        client,
        upstream,
        driven,
    }
}

/// What a sink received.
#[derive(Debug, Default)]
struct Received {
    cast: Vec<u8>,
    capture: Vec<u8>,
    events: Vec<SessionEvent>,
    finished: bool,
}

/// Collects a [`ChannelSink`]'s items until the sink is dropped.
fn collect(mut rx: mpsc::Receiver<SinkItem>) -> JoinHandle<Received> {
    tokio::spawn(async move {
        let mut got = Received::default();
        while let Some(item) = rx.recv().await {
            assert!(!got.finished, "nothing after Finished: {item:?}");
            match item {
                SinkItem::Event(e) => got.events.push(e),
                SinkItem::Cast(b) => got.cast.extend_from_slice(&b),
                SinkItem::Capture(b) => got.capture.extend_from_slice(&b),
                SinkItem::Upload(e) => panic!("no upload in a plain session: {e}"),
                SinkItem::Finished => got.finished = true,
            }
        }
        got
    })
}

async fn read_n(stream: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("bytes within 10 s")
        .expect("read");
    buf
}

async fn read_to_eof(stream: &mut DuplexStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("end of file within 10 s")
        .expect("read");
    buf
}

fn cast_lines(cast: &[u8]) -> Vec<String> {
    String::from_utf8(cast.to_vec())
        .expect("a cast is UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

fn header(cast: &[u8]) -> serde_json::Value {
    serde_json::from_str(&cast_lines(cast)[0]).expect("a JSON header")
}

#[tokio::test(start_paused = true)]
async fn bytes_pass_unchanged_and_the_cast_equals_a_replay() {
    let (sink, rx) = ChannelSink::new(16);
    let received = collect(rx);
    let config = SessionConfig {
        capture: true,
        ..Default::default()
    };
    let Harness {
        mut client,
        mut upstream,
        driven,
    } = start(config, sink, DriveOptions::default());
    let (mut sent_up, mut sent_down) = (Vec::new(), Vec::new());

    client.write_all(WS_TTY_REQUEST).await.unwrap();
    sent_up.extend_from_slice(WS_TTY_REQUEST);
    assert_eq!(
        read_n(&mut upstream, WS_TTY_REQUEST.len()).await,
        WS_TTY_REQUEST
    );

    let mut down = WS_101.to_vec();
    down.extend(from_upstream(1, b"$ "));
    upstream.write_all(&down).await.unwrap();
    sent_down.extend_from_slice(&down);
    assert_eq!(read_n(&mut client, down.len()).await, down);

    // A frame split across two writes, and binary payload.
    let mut up = from_client(4, br#"{"Width":100,"Height":30}"#);
    up.extend(from_client(0, b"echo \xffhi\r"));
    let (a, b) = up.split_at(up.len() - 3);
    client.write_all(a).await.unwrap();
    client.write_all(b).await.unwrap();
    sent_up.extend_from_slice(&up);
    assert_eq!(read_n(&mut upstream, up.len()).await, up);

    let mut down = from_upstream(1, "echo \u{fffd}hi\r\nhi €\r\n".as_bytes());
    down.extend(from_upstream(3, SUCCESS));
    upstream.write_all(&down).await.unwrap();
    sent_down.extend_from_slice(&down);
    // The upstream half-closes: the client sees end of file ...
    upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut client).await, down);
    // ... and its direction still runs.
    let mut close = Vec::new();
    encode_close_signal(&mut close, 0, MASK);
    client.write_all(&close).await.unwrap();
    sent_up.extend_from_slice(&close);
    client.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut upstream).await, close);

    let (result, session) = driven.await.unwrap();
    let summary = result.expect("a clean end");
    assert!(summary.client_eof && summary.upstream_eof, "{summary:?}");
    assert_eq!(summary.client_bytes, sent_up.len() as u64);
    assert_eq!(summary.upstream_bytes, sent_down.len() as u64);
    assert!(summary.sink_error.is_none() && summary.lost_bytes == 0);
    assert_eq!(
        summary.recording.as_ref().and_then(|r| r.exit.clone()),
        Some(ExitStatus::Success)
    );
    assert!(session.negotiated().is_some());

    let got = received.await.unwrap();
    assert!(got.finished);
    assert_eq!(summary.cast_bytes, got.cast.len() as u64);
    assert_eq!(header(&got.cast)["width"], 100);
    let lines = cast_lines(&got.cast);
    assert!(
        lines.iter().any(|l| l.contains(r#""o", "$ ""#)),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("hi €")), "{lines:#?}");
    assert_eq!(lines.last().unwrap(), r#"[0.000000, "m", "exit 0"]"#);
    assert!(matches!(
        got.events.last(),
        Some(SessionEvent::RecordingFinished(_))
    ));

    // The core saw exactly the bytes that were forwarded, in order ...
    let (_, records) = CaptureReader::new(&got.capture).unwrap();
    let (mut seen_up, mut seen_down, mut eofs) = (Vec::new(), Vec::new(), Vec::new());
    for record in records {
        let record = record.unwrap();
        match record.kind {
            RecordKind::Data(Side::Client) => seen_up.extend_from_slice(record.bytes),
            RecordKind::Data(Side::Upstream) => seen_down.extend_from_slice(record.bytes),
            RecordKind::Eof(side) => eofs.push(side),
        }
    }
    assert_eq!(seen_up, sent_up);
    assert_eq!(seen_down, sent_down);
    assert_eq!(eofs, [Side::Upstream, Side::Client]);
    // ... and a replay of them gives the same cast, byte for byte.
    let replayed = kubecast_core::replay::replay(
        &got.capture,
        SessionConfig::default(),
        SessionMeta::default(),
        std::time::Instant::now(),
        Some(7),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(replayed.cast).unwrap(),
        String::from_utf8(got.cast).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_resize_the_first_resize_timer_writes_the_header() {
    let (sink, mut rx) = ChannelSink::new(64);
    let mut h = start(SessionConfig::default(), sink, DriveOptions::default());
    h.client.write_all(WS_TTY_REQUEST).await.unwrap();
    read_n(&mut h.upstream, WS_TTY_REQUEST.len()).await;
    let mut down = WS_101.to_vec();
    down.extend(from_upstream(1, b"hello"));
    h.upstream.write_all(&down).await.unwrap();
    read_n(&mut h.client, down.len()).await;
    let upgraded = Instant::now();

    // Nothing but events until the header can be written ...
    let cast = loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(SinkItem::Event(_))) => continue,
            Ok(Some(SinkItem::Cast(bytes))) => break bytes,
            other => panic!("expected the cast header, got {other:?}"),
        }
    };
    // ... which the driver's sleep on `poll_timeout` writes after
    // `resize_wait` (1 s) with the default size, the session still open.
    let waited = upgraded.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "{waited:?}"
    );
    assert_eq!(
        (
            header(&cast)["width"].as_u64(),
            header(&cast)["height"].as_u64()
        ),
        (Some(80), Some(24))
    );
    assert!(cast_lines(&cast)[1].contains(r#""o", "hello""#), "{cast:?}");
    assert!(!h.driven.is_finished());
    drop(h.client);
    drop(h.upstream);
    let (result, _) = h.driven.await.unwrap();
    let summary = result.expect("both sides closed");
    assert!(summary.recording.is_some());
}

#[tokio::test(start_paused = true)]
async fn connections_that_are_not_upgrades_are_forwarded_unrecorded() {
    let (sink, rx) = ChannelSink::new(16);
    let received = collect(rx);
    let mut h = start(SessionConfig::default(), sink, DriveOptions::default());
    // Keep-alive: two plain requests, then an upgrade, on one connection.
    let exchanges: [(&[u8], &[u8]); 3] = [
        (
            b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[  ]",
        ),
        (WS_TTY_REQUEST, WS_101),
    ];
    for (request, response) in exchanges {
        h.client.write_all(request).await.unwrap();
        assert_eq!(read_n(&mut h.upstream, request.len()).await, request);
        h.upstream.write_all(response).await.unwrap();
        assert_eq!(read_n(&mut h.client, response.len()).await, response);
    }
    let frame = from_upstream(1, b"out");
    h.upstream.write_all(&frame).await.unwrap();
    assert_eq!(read_n(&mut h.client, frame.len()).await, frame);
    // The client half-closes first this time.
    h.client.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.upstream).await, b"");
    h.upstream.write_all(b"late").await.unwrap();
    h.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.client).await, b"late");

    let (result, _) = h.driven.await.unwrap();
    let summary = result.expect("a clean end");
    assert_eq!((summary.cast_bytes, summary.recording), (0, None));
    let got = received.await.unwrap();
    assert!(got.cast.is_empty() && got.finished);
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_holds_the_bytes_back() {
    // Room for one item, and nobody reading it yet.
    let (sink, mut rx) = ChannelSink::new(1);
    let mut h = start(SessionConfig::default(), sink, DriveOptions::default());
    h.client.write_all(WS_PLAIN_REQUEST).await.unwrap();
    read_n(&mut h.upstream, WS_PLAIN_REQUEST.len()).await;
    // The request event filled the channel: the 101's outputs cannot be
    // delivered, so the 101 is not forwarded.
    h.upstream.write_all(WS_101).await.unwrap();
    let mut buf = [0; 1];
    let early = tokio::time::timeout(Duration::from_secs(5), h.client.read(&mut buf)).await;
    assert!(early.is_err(), "forwarded before the sink took the outputs");
    assert!(matches!(
        rx.try_recv(),
        Ok(SinkItem::Event(SessionEvent::Request { .. }))
    ));
    let received = collect(rx);
    assert_eq!(read_n(&mut h.client, WS_101.len()).await, WS_101);
    drop(h.client);
    drop(h.upstream);
    let (result, _) = h.driven.await.unwrap();
    result.expect("clean end");
    let got = received.await.unwrap();
    assert!(got.events.contains(&SessionEvent::Upgraded(
        kubecast_core::handshake::Negotiated::WebSocket(WsProtocol::V5Channel)
    )));
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_holds_the_writer_back() {
    let (sink, rx) = ChannelSink::new(16);
    let _received = collect(rx);
    let mut h = start(SessionConfig::default(), sink, DriveOptions::default());
    h.client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let total = 8 * 1024 * 1024;
    let payload: Vec<u8> = (0..total).map(|i| (i * 31 % 251) as u8).collect();
    let (progress_tx, progress) = tokio::sync::watch::channel(0usize);
    let mut upstream = h.upstream;
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        for chunk in payload.chunks(16 * 1024) {
            upstream.write_all(chunk).await.unwrap();
            progress_tx.send_modify(|n| *n += chunk.len());
        }
        upstream.shutdown().await.unwrap();
        upstream
    });
    // The client reads nothing for a while: the upstream is stopped after
    // what the pipes and the driver's one buffer hold.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stalled = *progress.borrow();
    assert!(
        stalled <= 4 * PIPE && !writer.is_finished(),
        "the upstream wrote {stalled} bytes into a client that reads nothing"
    );
    let got = read_to_eof(&mut h.client).await;
    assert!(got == expected, "{} bytes arrived, not the same", got.len());
    drop(writer.await.unwrap());
    drop(h.client);
    let (result, _) = h.driven.await.unwrap();
    assert_eq!(result.unwrap().upstream_bytes, total as u64);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_vanishes_ends_the_session_cleanly() {
    let (sink, rx) = ChannelSink::new(16);
    let received = collect(rx);
    let mut h = start(SessionConfig::default(), sink, DriveOptions::default());
    h.client.write_all(WS_PLAIN_REQUEST).await.unwrap();
    read_n(&mut h.upstream, WS_PLAIN_REQUEST.len()).await;
    let mut down = WS_101.to_vec();
    down.extend(from_upstream(1, b"hi\n"));
    h.upstream.write_all(&down).await.unwrap();
    read_n(&mut h.client, down.len()).await;
    // The upstream disappears (its end of file half-closes the client) ...
    drop(h.upstream);
    assert_eq!(read_to_eof(&mut h.client).await, b"");
    // ... and a write towards it fails.
    let _ = h.client.write_all(&from_client(0, b"more")).await;
    let (result, _) = h.driven.await.unwrap();
    let error = result.expect_err("the write towards a vanished upstream fails");
    assert!(
        matches!(
            error.kind,
            DriveErrorKind::Write {
                side: Side::Upstream,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.summary.recording.is_some(),
        "the cast is still finished"
    );
    let got = received.await.unwrap();
    assert!(got.finished);
    assert!(cast_lines(&got.cast)
        .iter()
        .any(|l| l.contains(r#""o", "hi\n""#)));
}

/// A connection that was reset: reads fail.
struct Reset;

impl AsyncRead for Reset {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
}

impl AsyncWrite for Reset {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_read_error_is_reported_not_panicked() {
    let (_upstream, upstream_proxy) = duplex(PIPE);
    let mut session = Session::new(SessionConfig::default(), meta());
    let (mut sink, _rx) = ChannelSink::new(16);
    let result = drive(
        &mut session,
        Reset,
        upstream_proxy,
        &mut sink,
        &DriveOptions::default(),
    )
    .await;
    let error = result.expect_err("reset");
    assert!(
        matches!(&error.kind, DriveErrorKind::Read { side: Side::Client, source } if source.kind() == io::ErrorKind::ConnectionReset),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_from_the_last_byte() {
    let (sink, rx) = ChannelSink::new(16);
    let _received = collect(rx);
    let options = DriveOptions {
        idle_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut h = start(SessionConfig::default(), sink, options);
    tokio::time::sleep(Duration::from_secs(20)).await;
    h.client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (result, _) = h.driven.await.unwrap();
    let error = result.expect_err("idle");
    assert!(matches!(error.kind, DriveErrorKind::Idle(_)), "{error}");
    let ended = t0.elapsed();
    assert!(
        ended >= Duration::from_secs(50) && ended < Duration::from_secs(51),
        "{ended:?}"
    );
    drop(h.upstream);
}

/// A sink whose cast output always fails.
struct BrokenDisk {
    finished: bool,
}

impl SessionSink for BrokenDisk {
    async fn cast(&mut self, _: Bytes) -> Result<(), SinkError> {
        Err(io::Error::other("disk full").into())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.finished = true;
        Ok(())
    }
}

async fn with_broken_sink(policy: OnSinkError) -> (Result<DriveSummary, DriveError>, Vec<u8>) {
    let (mut client, client_proxy) = duplex(PIPE);
    let (upstream_proxy, mut upstream) = duplex(PIPE);
    let options = DriveOptions {
        on_sink_error: policy,
        ..Default::default()
    };
    let driven = tokio::spawn(async move {
        let mut session = Session::new(SessionConfig::default(), meta());
        let mut sink = BrokenDisk { finished: false };
        let result = drive(
            &mut session,
            client_proxy,
            upstream_proxy,
            &mut sink,
            &options,
        )
        .await;
        assert!(sink.finished, "finish is called whatever happened");
        result
    });
    client.write_all(WS_PLAIN_REQUEST).await.unwrap();
    read_n(&mut upstream, WS_PLAIN_REQUEST.len()).await;
    // A non-tty 101 writes the cast header at once: the sink fails on it.
    let mut down = WS_101.to_vec();
    down.extend(from_upstream(1, b"hi\n"));
    down.extend(from_upstream(3, SUCCESS));
    upstream.write_all(&down).await.unwrap();
    upstream.shutdown().await.unwrap();
    let seen = read_to_eof(&mut client).await;
    drop(client);
    (driven.await.unwrap(), seen)
}

#[tokio::test(start_paused = true)]
async fn fail_closed_stops_before_forwarding_what_was_not_recorded() {
    let (result, seen) = with_broken_sink(OnSinkError::EndSession).await;
    let error = result.expect_err("fail closed");
    assert!(matches!(error.kind, DriveErrorKind::Sink(_)), "{error}");
    assert!(
        seen.is_empty(),
        "the 101 must not reach the client: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_open_keeps_forwarding_and_reports_the_loss() {
    let (result, seen) = with_broken_sink(OnSinkError::KeepForwarding).await;
    let summary = result.expect("fail open");
    assert!(seen.starts_with(WS_101) && seen.len() > WS_101.len());
    assert!(
        matches!(summary.sink_error, Some(SinkError::Io(_))),
        "{summary:?}"
    );
    assert!(
        summary.lost_bytes > 0 && summary.cast_bytes == 0,
        "{summary:?}"
    );
}

/// How a test ends a live session from outside.
enum EndFrom {
    /// `drive_until`: cut.
    Stop,
    /// `drive_until_ended`: the core's farewell with this message.
    Message(&'static str),
}

/// What a session ended from outside left: the result, what the client
/// and the upstream read until their end of file, what the sink got.
struct Ended {
    result: Result<DriveSummary, DriveError>,
    client: Vec<u8>,
    upstream: Vec<u8>,
    received: Received,
}

/// A session that printed `still running`, then ended from outside.
async fn end_from_outside(how: EndFrom) -> Ended {
    let (mut client, client_proxy) = duplex(PIPE);
    let (upstream_proxy, mut upstream) = duplex(PIPE);
    let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
    let (mut sink, rx) = ChannelSink::new(16);
    let received = collect(rx);
    let driven = tokio::spawn(async move {
        let mut session = Session::new(SessionConfig::default(), meta());
        let options = DriveOptions::default();
        let (c, u) = (client_proxy, upstream_proxy);
        match how {
            EndFrom::Stop => {
                let stop = async {
                    let _ = end_rx.await;
                };
                kubecast_tokio::drive_until(&mut session, c, u, &mut sink, &options, stop).await
            }
            EndFrom::Message(message) => {
                let end = async {
                    let _ = end_rx.await;
                    message.to_string()
                };
                kubecast_tokio::drive_until_ended(&mut session, c, u, &mut sink, &options, end)
                    .await
            }
        }
    });
    client.write_all(WS_PLAIN_REQUEST).await.unwrap();
    read_n(&mut upstream, WS_PLAIN_REQUEST.len()).await;
    let mut down = WS_101.to_vec();
    down.extend(from_upstream(1, b"still running\n"));
    upstream.write_all(&down).await.unwrap();
    read_n(&mut client, down.len()).await;
    end_tx.send(()).unwrap();
    let result = driven.await.unwrap();
    Ended {
        result,
        client: read_to_eof(&mut client).await,
        upstream: read_to_eof(&mut upstream).await,
        received: received.await.unwrap(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_session_still_finishes_its_recording() {
    let ended = end_from_outside(EndFrom::Stop).await;
    let error = ended.result.expect_err("stopped");
    assert!(matches!(error.kind, DriveErrorKind::Stopped), "{error}");
    assert!(error.summary.recording.is_some());
    // Both streams were dropped: the peers see end of file.
    assert_eq!(ended.client, b"");
    assert_eq!(ended.upstream, b"");
    assert!(ended.received.finished);
    assert!(cast_lines(&ended.received.cast)
        .iter()
        .any(|l| l.contains("still running")));
}

#[tokio::test(start_paused = true)]
async fn a_session_ended_from_outside_says_farewell_and_finishes_its_recording() {
    let ended = end_from_outside(EndFrom::Message("the proxy is shutting down")).await;
    let summary = ended.result.expect("ended cleanly");
    assert!(summary.recording.is_some());
    // kubectl's last words: a Status on the error channel, then the close.
    let text = String::from_utf8_lossy(&ended.client);
    assert!(text.contains("the proxy is shutting down"), "{text:?}");
    assert_eq!(ended.client.get(2), Some(&3), "error channel: {text:?}");
    assert_eq!(ended.upstream, b"", "nothing more goes upstream");
    assert!(ended.received.finished);
    let lines = cast_lines(&ended.received.cast);
    assert!(lines.iter().any(|l| l.contains("still running")));
    assert!(
        lines
            .last()
            .unwrap()
            .contains(r#""m", "kubecast: session ended: the proxy is shutting down"]"#),
        "{lines:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_half_close_timeout_bounds_the_open_direction() {
    let (sink, rx) = ChannelSink::new(16);
    let _received = collect(rx);
    let options = DriveOptions {
        half_close_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let mut h = start(SessionConfig::default(), sink, options);
    h.client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read_n(&mut h.upstream, 18).await;
    h.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.client).await, b"");
    let closed = Instant::now();
    // The client keeps its half open (and even sends) but never closes it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.client.write_all(b"x").await.unwrap();
    let (result, _) = h.driven.await.unwrap();
    let error = result.expect_err("half-close timeout");
    assert!(
        matches!(
            error.kind,
            DriveErrorKind::HalfClose {
                open: Side::Client,
                ..
            }
        ),
        "{error}"
    );
    let waited = closed.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "{waited:?}"
    );
    assert_eq!(error.summary.client_bytes, 19);
}
