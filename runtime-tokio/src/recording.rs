//! A recorded session: a core [`Recording`] (a `Session` wired to its
//! `Upload`) driven between two streams while its cast streams to a
//! recorder ([`drive_recording`]), with a way to wait for the recorder
//! before the session starts ([`RecordingHandle::wait_open`],
//! [`start_recording`]).

use crate::drive::{run, DriveError, DriveOptions, DriveSummary, TokioClock};
use crate::upload::{Transport, UploadTls};
use kubecast_async::Recorder;
use kubecast_core::drive::SessionSink;
use kubecast_core::recording::Recording;
use kubecast_core::upload::UploadFailure;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};

/// A [`Recording`] and the I/O of its upload, created as soon as the
/// session is known (the upload dials at once) and driven with
/// [`drive_recording`]; see [`kubecast_core::drive::RecordingMachine`]
/// for the whole contract.
#[derive(Debug)]
pub struct RecordingHandle(Recorder<Transport, TokioClock>);

/// [`RecordingHandle::new`], then [`RecordingHandle::wait_open`]: on
/// `Err` a fail-closed proxy refuses the request (nothing went upstream).
pub async fn start_recording(
    recording: Recording,
    tls: UploadTls,
) -> Result<RecordingHandle, UploadFailure> {
    let mut handle = RecordingHandle::new(recording, tls);
    handle.wait_open().await?;
    Ok(handle)
}

/// Drives a recorded session between `client` and `upstream` — the loop of
/// [`crate::drive`] — while its cast streams to the recorder; fail-closed
/// ends it with [`crate::DriveErrorKind::RecordingFailed`]. The upload is
/// run to its end before the sink's `finish`; the outcome is in
/// [`DriveSummary::upload_completed`] / [`DriveSummary::upload_failure`].
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
    run(&mut handle.0, client, upstream, sink, options, stop).await
}

/// [`drive_recording`], ended by the caller with a message when `end`
/// completes (see [`crate::drive_until_ended`]); the cast gets its end
/// marker and the upload finishes.
pub async fn drive_recording_until_ended<C, U, S, F>(
    handle: &mut RecordingHandle,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    end: F,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = String>,
{
    let end = async { Some(end.await) };
    run(&mut handle.0, client, upstream, sink, options, end).await
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
    let stop = async {
        stop.await;
        None
    };
    run(&mut handle.0, client, upstream, sink, options, stop).await
}

impl RecordingHandle {
    /// Takes over `recording` (just created: its upload is dialling) and
    /// starts the upload's I/O. `tls` is used for `https://` recorders.
    pub fn new(recording: Recording, tls: UploadTls) -> Self {
        let connect_timeout = recording.upload().config().attempt_budget;
        let transport = Transport::new(tls, connect_timeout);
        RecordingHandle(Recorder::new(recording, transport))
    }

    /// The core machine, for its getters (upload state, progress, attempt
    /// log, session).
    pub fn recording(&self) -> &Recording {
        self.0.recording()
    }

    /// The upload's failure, once it failed.
    pub fn failure(&self) -> Option<&UploadFailure> {
        self.0.failure()
    }

    /// Runs the upload until it is open (a recorder accepted it: `Ok`) or
    /// failed (every recorder tried, or the overall budget spent: `Err`,
    /// with every attempt). Bounded by the upload's overall budget. The
    /// upload log so far reaches the sink when the session is driven.
    pub async fn wait_open(&mut self) -> Result<(), UploadFailure> {
        self.0.wait_open().await
    }
}
