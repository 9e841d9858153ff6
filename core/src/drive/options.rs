//! How a session is driven: [`DriveOptions`] and the [`Preamble`].

use bytes::Bytes;
use std::time::Duration;

/// The largest read buffer of each direction unless
/// [`DriveOptions::buffer_size`] says otherwise (each starts at
/// [`super::MIN_READ_BUFFER`] and grows while reads fill it).
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// What the driver does when the sink fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSinkError {
    /// Fail open: keep forwarding; nothing more goes to the sink, and the
    /// summary carries the error and the bytes that could not be recorded.
    #[default]
    KeepForwarding,
    /// Fail closed: end the session at once — the bytes whose output failed
    /// are not forwarded — and return [`super::DriveErrorKind::Sink`].
    EndSession,
}

/// How a session is driven. Every limit is documented with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveOptions {
    /// Bytes read at most at once from each side, and the most held per
    /// direction while the write to the other side is pending (the only
    /// buffering the driver does). Default 64 KiB. Each direction starts
    /// with a [`super::MIN_READ_BUFFER`] buffer and grows it only while
    /// reads fill it, so an idle session holds little.
    pub buffer_size: usize,
    /// End the session when no byte has moved in either direction — no read
    /// and no write progress; a write the peer does not accept counts as
    /// idle — for this long. Default `None`: an interactive shell may
    /// legitimately sit idle for hours; the proxy sets its own policy.
    pub idle_timeout: Option<Duration>,
    /// Once one side has closed its half, how long the other direction may
    /// keep going. Default `None` (no limit).
    pub half_close_timeout: Option<Duration>,
    /// How long one sink call ([`super::SessionSink::cast`], …, `finish`)
    /// may take before it counts as a [`super::SinkError::TimedOut`].
    /// Default 60 s: longer than the recorder upload's own ack window
    /// (30 s), so the upload reports its failure first; a bound so a stuck
    /// sink cannot hold a session (and both its sockets) forever.
    pub sink_timeout: Option<Duration>,
    /// Fail open or fail closed on a sink error. Default
    /// [`OnSinkError::KeepForwarding`].
    pub on_sink_error: OnSinkError,
    /// Bytes the machine is fed before anything is read, as if they had
    /// been read from each side — but **not forwarded** (the peers already
    /// exchanged them). Default: empty. See [`Preamble`].
    pub preamble: Preamble,
}

/// What was exchanged before the driver got the streams, fed to the core
/// first: client bytes, then upstream bytes.
///
/// A proxy whose HTTP layer (hyper) already parsed and relayed the upgrade
/// request and the `101` response hands over streams that start *after*
/// the heads; the core, which reads the heads to learn the resource and the
/// negotiated protocol, needs them first. Put the raw request head in
/// `client` and the raw response head in `upstream`. They are not counted
/// in [`super::DriveSummary::client_bytes`] /
/// [`super::DriveSummary::upstream_bytes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preamble {
    pub client: Bytes,
    pub upstream: Bytes,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
            idle_timeout: None,
            half_close_timeout: None,
            sink_timeout: Some(Duration::from_secs(60)),
            on_sink_error: OnSinkError::KeepForwarding,
            preamble: Preamble::default(),
        }
    }
}
