//! A recorded session: a core [`Recording`] (a `Session` wired to its
//! `Upload`) driven between two streams while its cast streams to a
//! recorder ([`drive_recording`]), with a way to wait for the recorder
//! before the session starts ([`RecordingHandle::wait_open`],
//! [`start_recording`]).

use crate::drive::machine::{Item, Machine, SinkPort};
use crate::drive::{run, DriveError, DriveErrorKind, DriveOptions, DriveSummary};
use crate::sink::{SessionSink, UploadEvent};
use crate::upload::{NetEvent, Transport, UploadTls};
use bytes::Bytes;
use kubecast_core::recording::{CloseReason, Recording, RecordingOutput};
use kubecast_core::session::SessionEvent;
use kubecast_core::upload::{FailureReason, UploadFailure, UploadState};
use kubecast_core::Side;
use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// A [`Recording`] and the I/O of its upload: the attempts' connections
/// (spawned tasks, dropped with the handle) and what happened before the
/// session was driven (the upload log, a fail-closed verdict), delivered to
/// the sink when [`drive_recording`] starts.
///
/// Create it as soon as the session is known — the upload starts dialling at
/// once — and drive it with [`drive_recording`]. A fail-closed proxy first
/// awaits [`RecordingHandle::wait_open`] (or uses [`start_recording`]) and
/// refuses the request if it fails, before anything is sent upstream.
#[derive(Debug)]
pub struct RecordingHandle {
    recording: Recording,
    transport: Transport,
    /// Outputs waiting for a sink (taken before the session is driven).
    early: VecDeque<Item>,
    failure: Option<UploadFailure>,
    farewell: Option<(usize, Bytes)>,
    close: Option<CloseReason>,
    /// The session reported `RecordingFinished` (so the upload was told to
    /// finish and will settle).
    finished: bool,
}

/// Creates a [`RecordingHandle`] and waits until its upload is open
/// ([`RecordingHandle::wait_open`]). For a fail-closed proxy: on `Err`,
/// refuse the request with the failure (every attempt is in it); nothing
/// has reached the upstream. The wait is bounded by the upload's overall
/// budget.
pub async fn start_recording(
    recording: Recording,
    tls: UploadTls,
) -> Result<RecordingHandle, UploadFailure> {
    let mut handle = RecordingHandle::new(recording, tls);
    handle.wait_open().await?;
    Ok(handle)
}

/// Drives a recorded session between `client` and `upstream` — the same
/// loop as [`crate::drive`] — while its cast streams to the recorder:
///
/// - the upload's network events and the merged deadline (session and
///   upload) are handled in the same loop;
/// - a side whose bytes become cast is not read while the core's
///   `read_budget` is 0 (unacknowledged cast at the cap) or while cast bytes
///   are still being written to the recorder (v1's TCP back-pressure, v2's
///   flow-control window);
/// - fail-closed: when the upload fails the core ends the session — its
///   last words to kubectl are written at a frame boundary, nothing else is
///   forwarded, both connections close — and the result is
///   [`DriveErrorKind::RecordingFailed`]; fail-open keeps forwarding and the
///   summary has [`DriveSummary::upload_failure`];
/// - `sink` gets the session's events, the capture, and the upload's log
///   ([`SessionSink::upload`]); [`SessionSink::cast`] is not used.
///
/// When both connections are done they are closed at once, and then the
/// upload is run to its end (the recorder's final ack or response, bounded
/// by the upload's own windows) before the sink's `finish`. The outcome is
/// in [`DriveSummary::upload_completed`] / [`DriveSummary::upload_failure`].
pub async fn drive_recording<C, U, S>(
    handle: &mut RecordingHandle,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
{
    let stop = std::future::pending();
    run(handle, client, upstream, sink, options, stop).await
}

/// [`drive_recording`], ended early when `stop` completes (see
/// [`crate::drive_until`]); the upload still gets to finish.
pub async fn drive_recording_until<C, U, S, F>(
    handle: &mut RecordingHandle,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = ()>,
{
    run(handle, client, upstream, sink, options, stop).await
}

impl RecordingHandle {
    /// Takes over `recording` (just created: its upload is dialling) and
    /// starts the upload's I/O. `tls` is used for `https://` recorders.
    pub fn new(recording: Recording, tls: UploadTls) -> Self {
        let connect_timeout = recording.upload().config().attempt_budget;
        let mut handle = RecordingHandle {
            recording,
            transport: Transport::new(tls, connect_timeout),
            early: VecDeque::new(),
            failure: None,
            farewell: None,
            close: None,
            finished: false,
        };
        handle.pump();
        handle
    }

    /// The core machine, for its getters (upload state, progress, attempt
    /// log, session).
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// The upload's failure, once it failed.
    pub fn failure(&self) -> Option<&UploadFailure> {
        self.failure.as_ref()
    }

    /// Runs the upload until it is open (a recorder accepted it: `Ok`) or
    /// failed (every recorder tried, or the overall budget spent: `Err`,
    /// with every attempt). Bounded by the upload's overall budget. The
    /// upload log so far reaches the sink when the session is driven.
    pub async fn wait_open(&mut self) -> Result<(), UploadFailure> {
        let mut stale = None;
        loop {
            self.pump();
            match self.recording.upload_state() {
                UploadState::Open | UploadState::Finishing | UploadState::Completed => {
                    return Ok(())
                }
                UploadState::Failed => return Err(self.failure_or_summary()),
                UploadState::Connecting => {}
            }
            stale = self.step(stale).await;
        }
    }

    /// Waits for one network event or the next deadline and feeds it to
    /// the core. Returns the deadline to ignore if the core did not move it.
    async fn step(&mut self, stale: Option<Instant>) -> Option<Instant> {
        let deadline = self
            .recording
            .poll_timeout()
            .map(Instant::from_std)
            .filter(|d| Some(*d) != stale);
        let now = Instant::now();
        if let Some(d) = deadline.filter(|d| *d <= now) {
            self.recording.handle_timeout(now.into_std());
            let moved = self.recording.poll_timeout().map(Instant::from_std) != Some(d);
            return if moved { None } else { Some(d) };
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = self.transport.next_event() => self.apply(event),
            () = sleep => {}
        }
        stale
    }

    fn apply(&mut self, event: NetEvent) {
        let now = Instant::now().into_std();
        self.recording.handle_upload(now, |u| event.apply(now, u));
    }

    /// Executes the pending outputs that need no sink and keeps the rest
    /// (in order) for the sink.
    fn pump(&mut self) {
        while let Some(output) = self.recording.poll_output() {
            if let Some(item) = self.take(output) {
                self.early.push_back(item);
            }
        }
    }

    /// One output: upload work is done here, facts become sink items.
    fn take(&mut self, output: RecordingOutput) -> Option<Item> {
        match output {
            RecordingOutput::Upload(output) => {
                let event = self.transport.execute(output)?;
                if let UploadEvent::Failed(failure) = &event {
                    self.failure = Some(failure.clone());
                }
                Some(Item::Upload(event))
            }
            RecordingOutput::Event(event) => {
                if matches!(event, SessionEvent::RecordingFinished(_)) {
                    self.finished = true;
                }
                Some(Item::Event(event))
            }
            RecordingOutput::Capture(bytes) => Some(Item::Capture(bytes)),
            RecordingOutput::Inject { forward, bytes } => {
                self.farewell = Some((forward, bytes));
                None
            }
            RecordingOutput::Close(reason) => {
                self.close = Some(reason);
                None
            }
        }
    }

    fn failure_or_summary(&self) -> UploadFailure {
        self.failure.clone().unwrap_or_else(|| {
            let upload = self.recording.upload();
            let progress = upload.progress();
            UploadFailure {
                reason: FailureReason::NoRecorderAccepted,
                attempts: upload.attempts().to_vec(),
                accepted: progress.accepted,
                sent: progress.sent,
                acked: progress.acked,
            }
        })
    }

    fn settled(&self) -> bool {
        matches!(
            self.recording.upload_state(),
            UploadState::Completed | UploadState::Failed
        )
    }
}

impl<S: SessionSink> Machine<S> for RecordingHandle {
    fn handle_bytes(&mut self, now: std::time::Instant, side: Side, bytes: &[u8]) {
        match side {
            Side::Client => self.recording.handle_client_bytes(now, bytes),
            Side::Upstream => self.recording.handle_upstream_bytes(now, bytes),
        }
    }

    fn handle_eof(&mut self, now: std::time::Instant, side: Side) {
        self.recording.handle_eof(now, side);
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.recording.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.recording.poll_timeout()
    }

    fn may_read(&self, side: Side) -> bool {
        match self.recording.read_budget(side) {
            0 => false,
            // The core does not hold this side back (its bytes do not
            // become cast, or the upload is over).
            usize::MAX => true,
            _ => self.transport.unwritten() == 0,
        }
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.transport.poll_event(cx).map(|event| self.apply(event))
    }

    async fn drain(&mut self, port: &mut SinkPort<'_, S>) -> Result<(), DriveErrorKind> {
        self.pump();
        while let Some(item) = self.early.pop_front() {
            port.deliver(item).await?;
        }
        Ok(())
    }

    fn take_farewell(&mut self) -> Option<(usize, Bytes)> {
        self.farewell.take()
    }

    fn take_close(&mut self) -> Option<DriveErrorKind> {
        match self.close.take()? {
            CloseReason::RecordingFailed(failure) => {
                Some(DriveErrorKind::RecordingFailed(Box::new(failure)))
            }
        }
    }

    async fn settle(&mut self, port: &mut SinkPort<'_, S>) {
        let mut stale = None;
        loop {
            // A sink error was already recorded by the port.
            let _ = Machine::<S>::drain(self, port).await;
            // A session that recorded nothing never finishes its upload:
            // there is nothing to wait for (dropping the handle drops the
            // connections).
            if self.settled() || !self.finished {
                break;
            }
            stale = self.step(stale).await;
        }
        let _ = self.close.take();
        let _ = self.farewell.take();
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Event(e) => f.debug_tuple("Event").field(e).finish(),
            Item::Cast(b) => f.debug_tuple("Cast").field(&b.len()).finish(),
            Item::Capture(b) => f.debug_tuple("Capture").field(&b.len()).finish(),
            Item::Upload(e) => f.debug_tuple("Upload").field(e).finish(),
        }
    }
}
