//! Adapter scenarios written once and run on every runtime adapter: a
//! recorded session end to end to the real `kubecast recorder` (v2, v1
//! behind an HTTP/1.1-only front, failover, TLS with a private CA), the
//! ack window expiring (fail-closed ends the session, fail-open goes on),
//! the recorder killed mid-upload, and captured sessions driven through
//! `drive` ([`fixtures`]).
//!
//! A scenario is generic over [`Runtime`]: what it needs from an adapter —
//! drive a session or a recording between two sockets on a thread of its
//! own, with its executor. The scenario plays the peers with blocking
//! `std::net` sockets (every read bounded by [`STEP`]), so the same steps
//! run on tokio, smol and async-std. The recorder is a [`RecorderPeer`]:
//! the test's `kubecast recorder` process.

pub mod adapters;
pub mod fixtures;
pub mod fronts;
pub mod recorder;
pub mod script;
pub mod sharing;

use kubecast_core::drive::{
    DriveError, DriveOptions, DriveSummary, ItemSink, SinkError, SinkItem, UploadEvent, UploadTls,
};
use kubecast_core::recording::Recording;
use kubecast_core::session::{Session, SessionEvent};
use kubecast_core::upload::UploadFailure;
use std::future::{poll_fn, ready, Future};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Every scenario step waits at most this long.
pub const STEP: Duration = Duration::from_secs(20);

/// What a scenario needs from a runtime adapter. Both methods are called on
/// a thread of their own and block it until the session is over.
pub trait Runtime {
    /// Drives a plain session between the two sockets into `sink`.
    fn drive(
        session: Session,
        client: TcpStream,
        upstream: TcpStream,
        options: DriveOptions,
        sink: Collect,
    ) -> Result<DriveSummary, DriveError>;

    /// Creates the recording's handle — when `job.wait_open`, waits for the
    /// upload to open first (`start_recording`) and reports the outcome on
    /// `job.opened`, stopping there on `Err` — then drives it between the
    /// two sockets into `job.sink` (`drive_recording`, or
    /// `drive_recording_until_ended` with `job.end`).
    fn record(job: RecordJob) -> Recorded;

    /// [`Runtime::record`] for several jobs at once on one executor, as a
    /// proxy runs its sessions (what an adapter shares, it may share only
    /// within one executor: tokio's sockets belong to their runtime).
    fn record_together(jobs: Vec<RecordJob>) -> Vec<Recorded>;
}

/// A recorded session for [`Runtime::record`].
#[derive(Debug)]
pub struct RecordJob {
    pub recording: Recording,
    pub tls: UploadTls,
    pub wait_open: bool,
    pub opened: mpsc::Sender<Result<(), UploadFailure>>,
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub options: DriveOptions,
    pub sink: Collect,
    /// `Some`: drive with `drive_recording_until_ended`, ended when the
    /// scenario says so; `None`: `drive_recording`.
    pub end: Option<EndSignal>,
}

/// The scenario's way to end a driven session with a message, whatever the
/// runtime: [`EndSignal::message`] is the future the adapter awaits; it
/// completes once the scenario calls [`EndSignal::end`].
#[derive(Debug, Clone, Default)]
pub struct EndSignal(Arc<Mutex<EndState>>);

#[derive(Debug, Default)]
struct EndState {
    message: Option<String>,
    waker: Option<Waker>,
}

impl EndSignal {
    fn state(&self) -> std::sync::MutexGuard<'_, EndState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the session with `message`.
    pub fn end(&self, message: &str) {
        let waker = {
            let mut state = self.state();
            state.message = Some(message.to_string());
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Completes with the message once [`EndSignal::end`] was called.
    pub async fn message(self) -> String {
        poll_fn(|cx| {
            let mut state = self.state();
            match state.message.clone() {
                Some(message) => Poll::Ready(message),
                None => {
                    state.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// What [`Runtime::record`] saw.
#[derive(Debug)]
pub struct Recorded {
    /// `None` when the upload never opened (fail-closed refusal).
    pub result: Option<Result<DriveSummary, DriveError>>,
    /// Cast bytes the recorder acknowledged (the core's progress).
    pub acked: u64,
    /// The handle's failure, if the upload failed.
    pub failure: Option<UploadFailure>,
}

impl Recorded {
    /// A fail-open session whose upload was lost: the session itself ended
    /// cleanly, and its summary reports the loss.
    pub fn lost_upload(self) -> (DriveSummary, UploadFailure) {
        let mut summary = self
            .result
            .expect("driven")
            .expect("fail-open: a clean end");
        let failure = summary.upload_failure.take().expect("the loss is reported");
        (summary, failure)
    }
}

/// A sink that keeps every item, shared with the scenario (which may look
/// while the session runs). Runtime-neutral: its futures are ready at once.
#[derive(Debug, Clone, Default)]
pub struct Collect(Arc<Mutex<Vec<SinkItem>>>);

impl Collect {
    fn push(&self, item: SinkItem) -> impl Future<Output = Result<(), SinkError>> + Send {
        if let SinkItem::Upload(event) = &item {
            eprintln!("[upload] {event}");
        }
        let pushed = match self.0.lock() {
            Ok(mut items) => {
                items.push(item);
                Ok(())
            }
            Err(_) => Err(SinkError::Closed),
        };
        ready(pushed)
    }

    /// Everything received so far, sorted by kind.
    pub fn received(&self) -> Received {
        let mut got = Received::default();
        let items = self.0.lock().map(|i| i.clone()).unwrap_or_default();
        for item in items {
            match item {
                SinkItem::Event(e) => got.events.push(e),
                SinkItem::Capture(b) => got.capture.extend_from_slice(&b),
                SinkItem::Cast(b) => got.cast.extend_from_slice(&b),
                SinkItem::Upload(e) => got.upload.push(e),
                SinkItem::Finished => got.finished = true,
            }
        }
        got
    }
}

impl ItemSink for Collect {
    fn send(&mut self, item: SinkItem) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.push(item)
    }
}

/// What a sink received, by kind.
#[derive(Debug, Default)]
pub struct Received {
    pub events: Vec<SessionEvent>,
    pub capture: Vec<u8>,
    pub upload: Vec<UploadEvent>,
    pub cast: Vec<u8>,
    pub finished: bool,
}

/// Both ends of a loopback TCP connection: `(ours, the driver's)`.
pub fn socket_pair() -> (Peer, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    let ours = TcpStream::connect(addr).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (Peer::new(ours), theirs)
}

/// One side of a session as the scenario plays it: blocking writes, reads
/// bounded by [`STEP`].
#[derive(Debug)]
pub struct Peer(TcpStream);

impl Peer {
    pub fn new(stream: TcpStream) -> Peer {
        stream.set_read_timeout(Some(STEP)).expect("a read timeout");
        Peer(stream)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("write to the driver");
    }

    /// Like [`Peer::write`], for a driver that may have closed the
    /// connection already.
    pub fn try_write(&mut self, bytes: &[u8]) -> bool {
        self.0.write_all(bytes).is_ok()
    }

    /// Closes our write half (the driver reads end of file).
    pub fn shutdown(&mut self) {
        self.0.shutdown(Shutdown::Write).expect("shut down");
    }

    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.0.read_exact(&mut buf).expect("bytes in time");
        buf
    }

    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.0.read_to_end(&mut buf).expect("end of file in time");
        buf
    }
}

/// Polls `f` until it gives a value; panics after [`STEP`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The test's `kubecast recorder` process, as the scenarios use it.
pub trait RecorderPeer {
    /// Its `http://` (or `https://`) base URL.
    fn url(&self) -> String;
    /// Its address.
    fn addr(&self) -> std::net::SocketAddr;
    /// Stored recordings (not hidden), sorted.
    fn files(&self) -> Vec<String>;
    /// Hidden (temporary) files: uploads in progress.
    fn hidden(&self) -> Vec<String>;
    fn read(&self, name: &str) -> Vec<u8>;
    /// Its log lines so far.
    fn log(&self) -> Vec<String>;
    /// Sends a signal (`STOP`, `CONT`, `KILL`) to the process.
    fn signal(&mut self, signal: &str);
    /// Starts a new recorder on the same directory (after a kill).
    fn restart(&mut self);
}

/// Waits for `recorder` to log `n` lines containing `needle`.
pub fn wait_log(recorder: &dyn RecorderPeer, needle: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} log lines with {needle:?}"), || {
        let lines: Vec<String> = recorder
            .log()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        (lines.len() >= n).then_some(lines)
    })
}
