//! Shared by the `upload_*` tests: a scripted WebSocket v5 exec session
//! driven with `kubecast_tokio::drive_recording` over in-memory pipes, a
//! collecting sink, a fake v2 recorder (hyper, HTTP/2 only) whose acks the
//! test controls, an HTTP/1.1-only front, and a refused address.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubecast_core::handshake::WsProtocol;
use kubecast_core::recording::{Policy, Recording};
use kubecast_core::session::{SessionConfig, SessionEvent, SessionMeta};
use kubecast_core::upload::UploadConfig;
use kubecast_core::ws::{encode_channel_message, encode_close_signal};
use kubecast_tokio::{
    drive_recording, ChannelSink, DriveError, DriveOptions, DriveSummary, RecordingHandle,
    SinkItem, UploadEvent, UploadTls,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::recorder_support;
pub use crate::recorder_support::{eventually, Scratch, Server, STEP};

pub const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/web-0/exec?command=sh&container=main&stdin=true&stdout=true&stderr=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
pub const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
pub const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

pub fn from_upstream(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, None);
    out
}

pub fn from_client(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, MASK);
    out
}

pub fn client_close() -> Vec<u8> {
    let mut out = Vec::new();
    encode_close_signal(&mut out, 0, MASK);
    out
}

pub fn meta() -> SessionMeta {
    SessionMeta {
        user: Some("alice".into()),
        session_id: Some("s-1".into()),
        started_unix: Some(1_793_534_584),
        ..Default::default()
    }
}

/// The session config of every test: capture on, so the test can replay
/// exactly what the driver fed the core.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        capture: true,
        ..Default::default()
    }
}

/// An upload config for `recorders` with short test budgets.
pub fn upload_config(recorders: &[String]) -> UploadConfig {
    let mut config = UploadConfig::with_recorders(recorders).unwrap();
    config.attempt_budget = Duration::from_secs(5);
    config.overall_budget = Duration::from_secs(15);
    config
}

pub fn recording(upload: UploadConfig, policy: Policy) -> Recording {
    Recording::new(
        std::time::Instant::now(),
        session_config(),
        meta(),
        upload,
        policy,
    )
    .unwrap()
}

/// What the sink received.
#[derive(Debug, Default)]
pub struct Received {
    pub events: Vec<SessionEvent>,
    pub capture: Vec<u8>,
    pub upload: Vec<UploadEvent>,
    pub cast: Vec<u8>,
    pub finished: bool,
}

pub type Driven = JoinHandle<(Result<DriveSummary, DriveError>, RecordingHandle, Received)>;

/// One driven recorded session: the client's and the upstream's ends.
pub struct Harness {
    pub client: DuplexStream,
    pub upstream: DuplexStream,
    pub driven: Driven,
}

/// Drives `handle` between two in-memory pipes of `pipe` bytes each.
pub fn start(mut handle: RecordingHandle, options: DriveOptions, pipe: usize) -> Harness {
    let (client, client_proxy) = duplex(pipe);
    let (upstream_proxy, upstream) = duplex(pipe);
    let driven = tokio::spawn(async move {
        let (mut sink, mut rx) = ChannelSink::new(16);
        let collect = tokio::spawn(async move {
            let mut got = Received::default();
            while let Some(item) = rx.recv().await {
                match item {
                    SinkItem::Event(e) => got.events.push(e),
                    SinkItem::Capture(b) => got.capture.extend_from_slice(&b),
                    SinkItem::Cast(b) => got.cast.extend_from_slice(&b),
                    SinkItem::Upload(e) => {
                        eprintln!("[upload] {e}");
                        got.upload.push(e)
                    }
                    SinkItem::Finished => got.finished = true,
                }
            }
            got
        });
        let result = drive_recording(
            &mut handle,
            client_proxy,
            upstream_proxy,
            &mut sink,
            &options,
        )
        .await;
        drop(sink);
        (result, handle, collect.await.unwrap())
    });
    Harness {
        client,
        upstream,
        driven,
    }
}

pub async fn read_n(stream: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(STEP, stream.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .expect("read");
    buf
}

pub async fn read_to_eof(stream: &mut DuplexStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut buf))
        .await
        .expect("end of file in time")
        .expect("read");
    buf
}

/// Plays a short exec session to its end: request, 101, output, exit,
/// close both ways, checking that every byte arrives unchanged.
pub async fn play_whole_session(h: &mut Harness) {
    h.client.write_all(REQUEST).await.unwrap();
    assert_eq!(read_n(&mut h.upstream, REQUEST.len()).await, REQUEST);
    let mut down = SWITCHED.to_vec();
    down.extend(from_upstream(1, b"$ total 0\r\n"));
    down.extend(from_upstream(2, "warning: é\n".as_bytes()));
    h.upstream.write_all(&down).await.unwrap();
    assert_eq!(read_n(&mut h.client, down.len()).await, down);
    let input = from_client(0, b"exit\n");
    h.client.write_all(&input).await.unwrap();
    assert_eq!(read_n(&mut h.upstream, input.len()).await, input);
    let down = from_upstream(3, SUCCESS);
    h.upstream.write_all(&down).await.unwrap();
    h.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.client).await, down);
    let close = client_close();
    h.client.write_all(&close).await.unwrap();
    h.client.shutdown().await.unwrap();
    assert_eq!(read_to_eof(&mut h.upstream).await, close);
}

/// The cast a replay of `capture` gives: what must arrive at the recorder.
pub fn replayed_cast(capture: &[u8]) -> Vec<u8> {
    kubecast_core::replay::replay(
        capture,
        session_config_without_capture(),
        meta(),
        std::time::Instant::now(),
        None,
    )
    .unwrap()
    .cast
}

fn session_config_without_capture() -> SessionConfig {
    SessionConfig::default()
}

pub fn started(events: &[UploadEvent]) -> Option<&UploadEvent> {
    events
        .iter()
        .find(|e| matches!(e, UploadEvent::Started { .. }))
}

/// Waits for `server` to store exactly one complete recording; its bytes.
pub async fn stored(server: &Server) -> Vec<u8> {
    let name = eventually("a stored recording", || {
        let files = server.files();
        (files.len() == 1).then(|| files[0].clone())
    })
    .await;
    assert!(!name.contains("_incomplete"), "{name}");
    server.read(&name)
}

/// An address nothing listens on (connection refused).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A front that speaks only HTTP/1.1, like an L7 proxy without h2c: a
/// connection that opens with the HTTP/2 preface (`PRI …`) is closed at
/// once; any other is relayed byte for byte to `target`.
pub async fn h1_only_front(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut first = [0u8; 3];
                if inbound.read_exact(&mut first).await.is_err() || &first == b"PRI" {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                if outbound.write_all(&first).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// A fake v2 recorder (HTTP/2 with prior knowledge only): `HEAD` → 200,
/// `POST /v2/record` → 200 at once, the body is stored in memory, and acks
/// go out only while `acking` is on (then for every chunk, every 100 ms,
/// and a final ack before the response ends).
#[derive(Clone)]
pub struct FakeV2 {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<u8>>>,
    pub acking: Arc<AtomicBool>,
}

type RespBody = recorder_support::ChanBody;

impl FakeV2 {
    pub async fn start(acking: bool) -> FakeV2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeV2 {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            acking: Arc::new(AtomicBool::new(acking)),
        };
        let serve = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let fake = serve.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fake = fake.clone();
                        async move { Ok::<_, std::convert::Infallible>(fake.respond(req)) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received_len(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn respond(&self, req: hyper::Request<Incoming>) -> hyper::Response<RespBody> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        if req.method() == hyper::Method::POST {
            let fake = self.clone();
            tokio::spawn(fake.consume(req.into_body(), tx));
        }
        hyper::Response::new(recorder_support::ChanBody(rx))
    }

    async fn consume(self, mut body: Incoming, acks: mpsc::Sender<Bytes>) {
        let ack = |fake: &FakeV2| {
            let n = fake.received_len();
            Bytes::from(format!("{{\"ack\":{n}}}\n"))
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.received.lock().unwrap().extend_from_slice(&data);
                        }
                        if self.acking.load(Ordering::SeqCst) {
                            let _ = acks.try_send(ack(&self));
                        }
                    }
                    Some(Err(_)) => return,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.acking.load(Ordering::SeqCst) {
                        let _ = acks.try_send(ack(&self));
                    }
                }
            }
        }
        // The body ended: a final ack once acking, then end the response.
        loop {
            if self.acking.load(Ordering::SeqCst) {
                let _ = acks.send(ack(&self)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A handle for `recording` with the default TLS roots.
pub fn handle(recording: Recording) -> RecordingHandle {
    RecordingHandle::new(recording, UploadTls::default())
}
