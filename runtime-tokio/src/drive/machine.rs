//! What the driver loop drives: a [`Machine`] (a plain [`Session`], or a
//! [`crate::RecordingHandle`]) and the [`SinkPort`] its outputs go through.

use super::{DriveErrorKind, DriveOptions, DriveSummary, OnSinkError};
use crate::sink::{SessionSink, SinkError, UploadEvent};
use bytes::Bytes;
use kubecast_core::session::{Output, Session, SessionEvent};
use kubecast_core::Side;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The sans-IO machine the loop drives, whatever it is made of. The loop
/// feeds it the bytes it reads, its EOFs and its deadlines, asks it before
/// every read whether that side may be read, polls its own I/O (the
/// recorder upload), and drains it after every input.
pub(crate) trait Machine<S: SessionSink> {
    fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]);
    fn handle_eof(&mut self, now: Instant, side: Side);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    /// `false`: do not read `side` now (the core's read budget is 0, or
    /// cast bytes are still being written to the recorder).
    fn may_read(&self, side: Side) -> bool;
    /// Polls the machine's own I/O; `Ready` once it fed an input (drain next).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Hands every pending output to `port` (or to the machine's I/O).
    /// `Err` ends the session now.
    async fn drain(&mut self, port: &mut SinkPort<'_, S>) -> Result<(), DriveErrorKind>;
    /// The core's last words to the client, if it decided to end the
    /// session: `(forward, bytes)` as in `Output::Inject`.
    fn take_farewell(&mut self) -> Option<(usize, Bytes)>;
    /// Why the session must end now, if the core said so.
    fn take_close(&mut self) -> Option<DriveErrorKind>;
    /// After both connections are closed: run what remains (the upload's
    /// end) until it has settled.
    async fn settle(&mut self, port: &mut SinkPort<'_, S>);
}

/// One output for the sink.
pub(crate) enum Item {
    Event(SessionEvent),
    Cast(Bytes),
    Capture(Bytes),
    Upload(UploadEvent),
}

/// The sink, its deadline and error policy, and the summary being built.
pub(crate) struct SinkPort<'a, S> {
    pub(crate) sink: &'a mut S,
    pub(crate) options: &'a DriveOptions,
    pub(crate) summary: DriveSummary,
    failed: bool,
}

impl<'a, S: SessionSink> SinkPort<'a, S> {
    pub(crate) fn new(sink: &'a mut S, options: &'a DriveOptions) -> Self {
        SinkPort {
            sink,
            options,
            summary: DriveSummary::default(),
            failed: false,
        }
    }

    /// Delivers one output, applying [`DriveOptions::sink_timeout`] and
    /// [`DriveOptions::on_sink_error`].
    pub(crate) async fn deliver(&mut self, item: Item) -> Result<(), DriveErrorKind> {
        let len = match &item {
            Item::Cast(b) | Item::Capture(b) => b.len() as u64,
            Item::Event(_) | Item::Upload(_) => 0,
        };
        match &item {
            Item::Event(event) => self.note(event),
            Item::Upload(UploadEvent::Failed(failure)) => {
                self.summary.upload_failure = Some(failure.clone());
            }
            Item::Upload(UploadEvent::Completed { bytes }) => {
                self.summary.upload_completed = Some(*bytes);
            }
            Item::Upload(_) | Item::Cast(_) | Item::Capture(_) => {}
        }
        if self.failed {
            self.summary.lost_bytes += len;
            return Ok(());
        }
        let limit = self.options.sink_timeout;
        let delivered = match item {
            Item::Event(e) => bounded(limit, self.sink.event(e)).await,
            Item::Upload(e) => bounded(limit, self.sink.upload(e)).await,
            Item::Cast(b) => bounded(limit, self.sink.cast(b))
                .await
                .map(|()| self.summary.cast_bytes += len),
            Item::Capture(b) => bounded(limit, self.sink.capture(b))
                .await
                .map(|()| self.summary.capture_bytes += len),
        };
        if let Err(e) = delivered {
            self.failed = true;
            self.summary.lost_bytes += len;
            match self.options.on_sink_error {
                OnSinkError::KeepForwarding => {
                    self.summary.sink_error.get_or_insert(e);
                }
                OnSinkError::EndSession => return Err(DriveErrorKind::Sink(e)),
            }
        }
        Ok(())
    }

    fn note(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::PassThrough(why) => self.summary.pass_through = Some(*why),
            SessionEvent::DecodeFailed { message } => {
                self.summary
                    .decode_error
                    .get_or_insert_with(|| message.clone());
            }
            SessionEvent::RecordingFinished(stats) => self.summary.recording = Some(stats.clone()),
            _ => {}
        }
    }

    /// The sink's `finish`, with the same deadline; an error ends an
    /// otherwise clean session only when fail-closed.
    pub(crate) async fn finish(&mut self, result: &mut Result<(), DriveErrorKind>) {
        if let Err(e) = bounded(self.options.sink_timeout, self.sink.finish()).await {
            match (&*result, self.options.on_sink_error) {
                (Ok(()), OnSinkError::EndSession) => *result = Err(DriveErrorKind::Sink(e)),
                _ => {
                    self.summary.sink_error.get_or_insert(e);
                }
            }
        }
    }
}

/// A sink call with the sink deadline.
async fn bounded<F>(limit: Option<Duration>, call: F) -> Result<(), SinkError>
where
    F: Future<Output = Result<(), SinkError>>,
{
    match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(SinkError::TimedOut(limit))),
        None => call.await,
    }
}

/// A plain session: its cast goes to the sink; it has no I/O of its own.
#[derive(Debug)]
pub(crate) struct SessionMachine<'a> {
    pub(crate) session: &'a mut Session,
    farewell: Option<(usize, Bytes)>,
}

impl<'a> SessionMachine<'a> {
    pub(crate) fn new(session: &'a mut Session) -> Self {
        SessionMachine {
            session,
            farewell: None,
        }
    }
}

impl<S: SessionSink> Machine<S> for SessionMachine<'_> {
    fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]) {
        match side {
            Side::Client => self.session.handle_client_bytes(now, bytes),
            Side::Upstream => self.session.handle_upstream_bytes(now, bytes),
        }
    }

    fn handle_eof(&mut self, now: Instant, side: Side) {
        self.session.handle_eof(now, side);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    fn may_read(&self, _side: Side) -> bool {
        true
    }

    fn poll_io(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    async fn drain(&mut self, port: &mut SinkPort<'_, S>) -> Result<(), DriveErrorKind> {
        while let Some(output) = self.session.poll_output() {
            let item = match output {
                Output::Event(e) => Item::Event(e),
                Output::Cast(b) => Item::Cast(b),
                Output::Capture(b) => Item::Capture(b),
                // Only after `Session::end_with_message`, which the caller
                // may have used on a session it drives.
                Output::Inject { forward, bytes } => {
                    self.farewell = Some((forward, bytes));
                    continue;
                }
            };
            port.deliver(item).await?;
        }
        Ok(())
    }

    fn take_farewell(&mut self) -> Option<(usize, Bytes)> {
        self.farewell.take()
    }

    fn take_close(&mut self) -> Option<DriveErrorKind> {
        None
    }

    async fn settle(&mut self, _port: &mut SinkPort<'_, S>) {}
}
