//! `kubecast-tokio`: drives `kubecast-core` sessions on tokio.
//!
//! The core ([`kubecast_core::session::Session`]) decides; this crate moves
//! bytes and sleeps. [`drive`] runs one session between two async byte
//! streams — the client's upgraded connection and the upstream's — until
//! both directions have ended:
//!
//! ```text
//! loop {
//!     fire the core's timer if due (clock checked before awaiting)
//!     wait for: a read on either side | a pending write/flush/shutdown | the deadline
//!     read n bytes from A  => core.handle_A_bytes(now, &buf[..n]); drain into the sink (awaited);
//!                             then write the same n bytes to B (no read from A until done)
//!     end of file on A     => core.handle_eof(now, A); drain; shut down B's write half
//! }
//! core hears both sides closed; drain; sink.finish()
//! ```
//!
//! The outputs go to a [`SessionSink`]: the cast, the optional raw capture
//! and the events. Its methods are awaited before the bytes that produced
//! them are forwarded, which is how a recorder that lags applies
//! back-pressure and how a fail-closed policy stops a session before
//! anything unrecorded reaches the other side ([`OnSinkError`]). Two sinks
//! are ready: [`FileSink`] (the cast into `DIR/STEM.cast`, written to a
//! temporary name and renamed when complete) and [`ChannelSink`] (a bounded
//! channel).
//!
//! A recorded session ([`drive_recording`]) runs in the same loop: a core
//! `Recording` (a session wired to its recorder upload) whose upload I/O —
//! TCP, TLS ([`UploadTls`]), HTTP/2 via `h2` or raw HTTP/1.1 — runs as
//! one future per attempt polled by the driver, whose read budget gates
//! reading, and whose fail-closed
//! verdict ends the session. [`start_recording`] waits for a recorder before
//! anything goes upstream. The upload's log reaches the sink as
//! [`UploadEvent`]s ([`SessionSink::upload`]).
//!
//! The audit webhook sink ([`AuditSink`], module [`audit`]) drives the
//! core's `AuditBatcher`: webhook POSTs (HTTP/1.1, rustls), the spill file
//! and the dead-letter file.
//!
//! Names are runtime-neutral: the smol twin (`kubecast-smol`) offers the
//! same `drive`, `DriveOptions`, `SessionSink`, … over `futures-io`.

pub mod audit;
mod drive;
pub mod kubeconfig;
mod sink;
pub mod tls;
mod upload;

pub use audit::{
    AuditHandle, AuditSink, AuditStartError, RecordError, Recorded, ShutdownError, ShutdownReport,
    WebhookConfig, WebhookConfigError,
};
pub use drive::FileSink;
pub use drive::{
    drive, drive_until, drive_until_ended, DriveError, DriveErrorKind, DriveOptions, DriveSummary,
    OnSinkError, Preamble, DEFAULT_BUFFER_SIZE,
};
pub use drive::{
    drive_recording, drive_recording_until, drive_recording_until_ended, start_recording,
    RecordingHandle,
};
pub use sink::{ChannelSink, SessionSink, SinkError, SinkItem, UploadEvent};
pub use upload::UploadTls;
