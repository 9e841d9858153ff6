//! Shared by the `upload_*` and `runtime_*` tests: the real `kubecast
//! recorder` as the scenarios' [`RecorderPeer`] and the macro that runs
//! every shared recorder scenario on one runtime adapter
//! ([`recorder_scenarios!`]); and, for the tokio-only tests, the scripted
//! session driven with `kubecast_tokio::drive_recording` over in-memory
//! pipes and a fake v2 recorder (hyper, HTTP/2 only) whose acks the test
//! controls.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubecast_core::recording::Recording;
use kubecast_tokio::{
    drive_recording, ChannelSink, DriveError, DriveOptions, DriveSummary, RecordingHandle,
    SinkItem, UploadTls,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::recorder_support;
pub use crate::recorder_support::{Scratch, Server, STEP};

// Not every test file uses the script.
#[allow(unused_imports)]
pub use kubecast_tests::scenarios::script::*;
pub use kubecast_tests::scenarios::{Received, RecorderPeer};

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

/// A `kubecast recorder` process whose directory outlives it (so a
/// restarted recorder recovers what a killed one left).
#[derive(Debug)]
pub struct LiveRecorder {
    pub server: Server,
    extra: Vec<String>,
    /// Holds the recordings directory; declared after `server` so the
    /// process is gone before the directory is removed.
    dirs: Scratch,
}

impl LiveRecorder {
    pub fn start(name: &str, extra: &[&str]) -> LiveRecorder {
        let dirs = Scratch::create(name);
        let dir = dirs.join("casts");
        std::fs::create_dir_all(&dir).unwrap();
        let server = Server::start_in(Scratch::create(name), dir, extra);
        LiveRecorder {
            server,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dirs,
        }
    }
}

impl RecorderPeer for LiveRecorder {
    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
    fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    fn files(&self) -> Vec<String> {
        self.server.files()
    }
    fn hidden(&self) -> Vec<String> {
        self.server.hidden()
    }
    fn read(&self, name: &str) -> Vec<u8> {
        self.server.read(name)
    }
    fn log(&self) -> Vec<String> {
        self.server.log.lock().unwrap().clone()
    }
    fn signal(&mut self, signal: &str) {
        if signal == "KILL" {
            self.server.child.kill().unwrap();
            self.server.child.wait().unwrap();
            return;
        }
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.server.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }
    fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let dir = self.server.dir.clone();
        self.server = Server::start_in(Scratch::create("restarted"), dir, &extra);
    }
}

/// Every shared recorder scenario (`kubecast_tests::scenarios::recorder`)
/// as a test, on runtime `$rt` (a `kubecast_tests::scenarios::Runtime`).
#[macro_export]
macro_rules! recorder_scenarios {
    ($rt:ty) => {
        use kubecast_tests::scenarios::recorder as scenario;
        use upload_support::LiveRecorder;

        #[test]
        fn a_session_arrives_complete_over_v2() {
            scenario::arrives_over_v2::<$rt>(&LiveRecorder::start("v2", &[]));
        }

        #[test]
        fn a_session_arrives_complete_over_v1_behind_an_http1_only_front() {
            let recorder = LiveRecorder::start("v1", &[]);
            scenario::arrives_over_v1_behind_an_http1_only_front::<$rt>(&recorder);
        }

        #[test]
        fn a_session_ended_with_a_message_says_farewell_and_finishes_its_cast() {
            scenario::ended_with_a_message::<$rt>(&LiveRecorder::start("ended", &[]));
        }

        #[test]
        fn a_refused_recorder_fails_over_to_the_next() {
            let recorder = LiveRecorder::start("failover", &[]);
            scenario::fails_over_from_a_refused_recorder::<$rt>(&recorder);
        }

        #[test]
        fn tls_with_a_private_ca_negotiates_h2_and_uploads_v2() {
            let scratch = upload_support::Scratch::create("tls-ca");
            let (cert, key, ca) = scenario::tls_files(scratch.path());
            let args = [
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ];
            let recorder = LiveRecorder::start("tls", &args);
            scenario::tls_with_a_private_ca::<$rt>(&recorder, &ca);
        }

        #[test]
        fn ack_window_expiry_ends_a_fail_closed_session() {
            let mut recorder = LiveRecorder::start("window-closed", &[]);
            scenario::ack_window_expiry_ends_a_fail_closed_session::<$rt>(&mut recorder);
        }

        #[test]
        fn ack_window_expiry_is_reported_and_a_fail_open_session_goes_on() {
            let mut recorder = LiveRecorder::start("window-open", &[]);
            scenario::ack_window_expiry_is_reported_and_a_fail_open_session_goes_on::<$rt>(
                &mut recorder,
            );
        }

        #[test]
        fn uploads_to_one_recorder_share_a_connection() {
            let recorder = LiveRecorder::start("shared", &[]);
            scenario::uploads_to_one_recorder_share_a_connection::<$rt>(&recorder);
        }

        #[test]
        fn a_broken_shared_connection_is_not_reused() {
            let recorder = LiveRecorder::start("broken-shared", &[]);
            scenario::a_broken_shared_connection_is_not_reused::<$rt>(&recorder);
        }

        #[test]
        fn a_failed_upload_fails_over_to_a_fresh_connection() {
            let recorder = LiveRecorder::start("refused-upload", &[]);
            scenario::a_failed_upload_fails_over_to_a_fresh_connection::<$rt>(&recorder);
        }

        #[test]
        fn a_given_up_upload_fails_over_to_a_fresh_connection() {
            let recorder = LiveRecorder::start("stalled-upload", &[]);
            scenario::a_given_up_upload_fails_over_to_a_fresh_connection::<$rt>(&recorder);
        }

        #[test]
        fn a_recorder_killed_mid_upload_leaves_an_incomplete_cast() {
            let mut recorder = LiveRecorder::start("killed", &[]);
            scenario::a_recorder_killed_mid_upload_leaves_an_incomplete_cast::<$rt>(&mut recorder);
        }
    };
}
