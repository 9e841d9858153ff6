//! What a driven session did ([`DriveSummary`]), why it ended early
//! ([`DriveError`]), and the [`Ledger`] that builds the summary from the
//! outputs handed to the sink and applies the sink error policy.

use super::options::{DriveOptions, OnSinkError};
use super::sink::{SinkError, SinkItem, UploadEvent};
use crate::exec::PassThrough;
use crate::session::{RecordingStats, SessionEvent};
use crate::upload::UploadFailure;
use crate::Side;
use std::io;
use std::time::Duration;

/// What a driven session did.
#[derive(Debug, Default)]
pub struct DriveSummary {
    /// Bytes read from the client (all forwarded upstream unless the
    /// session ended early).
    pub client_bytes: u64,
    /// Bytes read from the upstream.
    pub upstream_bytes: u64,
    /// The client closed its half of the connection (end of file).
    pub client_eof: bool,
    /// The upstream closed its half of the connection.
    pub upstream_eof: bool,
    /// Cast bytes the sink accepted.
    pub cast_bytes: u64,
    /// Capture bytes the sink accepted.
    pub capture_bytes: u64,
    /// Cast and capture bytes the sink never got because it had failed.
    pub lost_bytes: u64,
    /// The finished recording's totals
    /// ([`SessionEvent::RecordingFinished`]); `None` if nothing was recorded.
    pub recording: Option<RecordingStats>,
    /// Why the connection was not recorded, if it was passed through.
    pub pass_through: Option<PassThrough>,
    /// Why decoding stopped, if it did ([`SessionEvent::DecodeFailed`]).
    pub decode_error: Option<String>,
    /// A sink error tolerated under [`OnSinkError::KeepForwarding`] (or
    /// raised by `finish` after the session had already ended otherwise).
    pub sink_error: Option<SinkError>,
    /// A recorded session (`drive_recording`): the recorder confirmed this
    /// many cast bytes (the upload completed).
    pub upload_completed: Option<u64>,
    /// A recorded session: the upload failed (fail-open: the session went
    /// on unrecorded from there; fail-closed: it ended).
    pub upload_failure: Option<UploadFailure>,
    /// From the call to the end (for a recording, until the upload settled).
    pub duration: Duration,
}

/// Why a session ended early. The session's recording is still finished
/// (both sides are reported closed to the core) and the sink finished.
#[derive(Debug, thiserror::Error)]
pub enum DriveErrorKind {
    #[error("reading from the {}: {source}", side_name(*side))]
    Read {
        side: Side,
        #[source]
        source: io::Error,
    },
    /// Writing (or flushing, or shutting down) towards `side` failed.
    #[error("writing to the {}: {source}", side_name(*side))]
    Write {
        side: Side,
        #[source]
        source: io::Error,
    },
    #[error("no bytes moved in either direction for {0:?}")]
    Idle(Duration),
    #[error("the {} kept its half open {timeout:?} after the other side closed", side_name(*open))]
    HalfClose { open: Side, timeout: Duration },
    #[error("recording sink: {0}")]
    Sink(#[source] SinkError),
    /// Fail-closed: the recording could not be uploaded, so the session was
    /// ended (after the core's last words to kubectl, if it could say them).
    #[error("the session was ended because its recording was lost: {0}")]
    RecordingFailed(Box<UploadFailure>),
    /// The `stop` future given to `drive_until` completed.
    #[error("stopped by the caller")]
    Stopped,
}

/// A session that ended early: why, and what it did until then.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct DriveError {
    pub kind: DriveErrorKind,
    pub summary: Box<DriveSummary>,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Upstream => "upstream",
    }
}

/// What a delivery carried, for [`Ledger::delivered`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Receipt {
    cast: u64,
    capture: u64,
}

/// The summary under construction and the sink's health: every output is
/// shown to it before it goes to the sink ([`Ledger::admit`]) and the sink's
/// answer after ([`Ledger::delivered`]). The adapter only awaits the sink
/// call, bounded by [`Ledger::sink_timeout`].
#[derive(Debug)]
pub struct Ledger {
    summary: DriveSummary,
    on_sink_error: OnSinkError,
    sink_timeout: Option<Duration>,
    failed: bool,
}

impl Ledger {
    pub fn new(options: &DriveOptions) -> Ledger {
        Ledger {
            summary: DriveSummary::default(),
            on_sink_error: options.on_sink_error,
            sink_timeout: options.sink_timeout,
            failed: false,
        }
    }

    /// The bound on one sink call ([`DriveOptions::sink_timeout`]).
    pub fn sink_timeout(&self) -> Option<Duration> {
        self.sink_timeout
    }

    /// The summary so far.
    pub fn summary_mut(&mut self) -> &mut DriveSummary {
        &mut self.summary
    }

    pub fn into_summary(self) -> DriveSummary {
        self.summary
    }

    /// Notes what `item` says about the session; returns it with its
    /// receipt if it must go to the sink, `None` if the sink has failed
    /// (its bytes are counted as lost).
    pub fn admit(&mut self, item: SinkItem) -> Option<(SinkItem, Receipt)> {
        let receipt = match &item {
            SinkItem::Cast(b) => Receipt {
                cast: b.len() as u64,
                capture: 0,
            },
            SinkItem::Capture(b) => Receipt {
                cast: 0,
                capture: b.len() as u64,
            },
            _ => Receipt {
                cast: 0,
                capture: 0,
            },
        };
        match &item {
            SinkItem::Event(event) => self.note(event),
            SinkItem::Upload(UploadEvent::Failed(failure)) => {
                self.summary.upload_failure = Some(failure.clone());
            }
            SinkItem::Upload(UploadEvent::Completed { bytes }) => {
                self.summary.upload_completed = Some(*bytes);
            }
            _ => {}
        }
        if self.failed {
            self.summary.lost_bytes += receipt.cast + receipt.capture;
            return None;
        }
        Some((item, receipt))
    }

    /// The sink's answer to an admitted item. `Err`: end the session now
    /// (fail-closed).
    pub fn delivered(
        &mut self,
        receipt: Receipt,
        result: Result<(), SinkError>,
    ) -> Result<(), DriveErrorKind> {
        match result {
            Ok(()) => {
                self.summary.cast_bytes += receipt.cast;
                self.summary.capture_bytes += receipt.capture;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                self.summary.lost_bytes += receipt.cast + receipt.capture;
                match self.on_sink_error {
                    OnSinkError::KeepForwarding => {
                        self.summary.sink_error.get_or_insert(e);
                        Ok(())
                    }
                    OnSinkError::EndSession => Err(DriveErrorKind::Sink(e)),
                }
            }
        }
    }

    /// The sink's `finish` answered `finished`: an error ends an otherwise
    /// clean session only when fail-closed.
    pub fn finished(
        &mut self,
        result: &mut Result<(), DriveErrorKind>,
        finished: Result<(), SinkError>,
    ) {
        if let Err(e) = finished {
            match (&*result, self.on_sink_error) {
                (Ok(()), OnSinkError::EndSession) => *result = Err(DriveErrorKind::Sink(e)),
                _ => {
                    self.summary.sink_error.get_or_insert(e);
                }
            }
        }
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
}
