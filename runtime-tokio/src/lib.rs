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
//! Names are runtime-neutral: the smol twin (`kubecast-smol`) offers the
//! same `drive`, `DriveOptions`, `SessionSink`, … over `futures-io`.

mod drive;
mod file_sink;
mod sink;

pub use drive::{
    drive, drive_until, DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError,
    DEFAULT_BUFFER_SIZE,
};
pub use file_sink::FileSink;
pub use sink::{ChannelSink, SessionSink, SinkError, SinkItem};
