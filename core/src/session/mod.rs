//! One exec/attach session: bytes in, recording out.
//!
//! [`Session`] is the sans-IO state machine an adapter drives for every
//! upgraded connection. It observes both byte streams (the adapter forwards
//! them unchanged), decodes them with a [`ConnectionDecoder`], and turns what
//! the user saw into an asciicast ([`crate::cast::CastWriter`]).
//!
//! # The contract
//!
//! - **getters** (`&self`): [`Session::poll_timeout`] — the next instant at
//!   which [`Session::handle_timeout`] must be called, and [`Session::timer`]
//!   says why.
//! - **inputs** (`now` first, infallible): [`Session::handle_client_bytes`],
//!   [`Session::handle_upstream_bytes`], [`Session::handle_eof`],
//!   [`Session::handle_timeout`] (spurious calls are harmless). Any chunking of
//!   the input gives the same outputs.
//! - **outputs**: [`Session::poll_output`], drained after *every* input until
//!   `None`: [`Output::Event`] (what happened, for logs and audit — never the
//!   terminal bytes themselves) and [`Output::Cast`] (recording bytes, in
//!   order, ready to upload or write).
//!
//! # When the header is written
//!
//! The cast header carries the terminal size, which a tty session only learns
//! from the client's first resize. The session holds events back until that
//! resize arrives or [`SessionConfig::resize_wait`] (default 1 s) has passed
//! since the upgrade, whichever comes first; then it writes the header (with
//! [`SessionConfig::default_size`] if no resize came) and releases everything
//! held. Non-tty sessions get the default size at once. Output is therefore
//! delayed by at most `resize_wait`, never indefinitely.
//!
//! # Memory
//!
//! Terminal payload is never buffered by the decoders; the session holds at
//! most [`SessionConfig::max_held_cast`] bytes of cast while waiting for the
//! first resize (past that the header is written with the default size), and
//! the cast bytes produced by one input until they are polled. Decoder state
//! is bounded by [`Limits`].

mod output;
mod recorder;
#[cfg(test)]
mod tests;

pub use output::{Output, RecordingStats, SessionEvent, Timer};

use crate::capture::{self, CaptureHeader, RecordKind};
use crate::exec::{ConnectionDecoder, FrameRemaining};
use crate::handshake::{Negotiated, UpgradeRequest};
use crate::{Limits, Side, TerminalSize};
use bytes::Bytes;
use recorder::Recorder;
use std::time::{Duration, Instant};

/// How sessions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The cluster's name for the cast header.
    pub cluster: Option<String>,
    /// Record stdin as `"i"` events. Off by default: input can hold secrets.
    pub record_stdin: bool,
    /// How long a tty session waits for the first resize before the header
    /// is written with [`SessionConfig::default_size`].
    pub resize_wait: Duration,
    /// The size written when no resize is known (non-tty sessions, or a tty
    /// session whose client sent none in time). 80x24, the classic terminal.
    pub default_size: TerminalSize,
    /// Cast bytes held while waiting for the first resize.
    pub max_held_cast: usize,
    /// Bounds on wire data.
    pub limits: Limits,
    /// Also emit the raw capture of the connection ([`Output::Capture`]).
    /// Off by default: it holds stdin (secrets) and binary payload verbatim.
    pub capture: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cluster: None,
            record_stdin: false,
            resize_wait: Duration::from_secs(1),
            default_size: TerminalSize {
                width: 80,
                height: 24,
            },
            max_held_cast: 256 * 1024,
            limits: Limits::default(),
            capture: false,
        }
    }
}

/// Who is running the session, as the proxy authenticated them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMeta {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// An id for this session (also the recording's name).
    pub session_id: Option<String>,
    /// Unix seconds when the session started (the caller's wall clock).
    pub started_unix: Option<u64>,
    /// The client's `TERM`, when known.
    pub term: Option<String>,
}

/// One exec/attach session. See the module documentation for the contract.
#[derive(Debug)]
pub struct Session {
    decoder: ConnectionDecoder,
    recorder: Recorder,
    capture: Option<CaptureTap>,
    start: Option<Instant>,
    eof: [bool; 2],
    ending: Ending,
}

/// Whether the core is ending the session ([`Session::end_with_message`]).
#[derive(Debug)]
enum Ending {
    Live,
    /// Waiting for the upstream's current frame to end.
    Pending {
        message: String,
        deadline: Instant,
    },
    Ended,
}

/// How long an ending session waits for a frame boundary to write its
/// farewell at: a frame already under way normally finishes within a read.
pub const FAREWELL_WAIT: Duration = Duration::from_secs(2);

impl Session {
    pub fn new(config: SessionConfig, meta: SessionMeta) -> Self {
        let capture = config.capture.then(|| CaptureTap::new(&meta, &config));
        Session {
            decoder: ConnectionDecoder::new(config.limits.clone()),
            recorder: Recorder::new(config, meta),
            capture,
            start: None,
            eof: [false; 2],
            ending: Ending::Live,
        }
    }

    /// The parsed upgrade request, once complete.
    pub fn request(&self) -> Option<&UpgradeRequest> {
        self.decoder.request()
    }

    /// The negotiated protocol, once the upstream switched.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.decoder.negotiated()
    }

    /// Bytes the client sent.
    pub fn handle_client_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(self.ending, Ending::Live) {
            // Ending: nothing more from the client reaches the upstream.
            return;
        }
        self.handle_bytes(now, Side::Client, bytes);
    }

    /// Bytes the upstream sent.
    pub fn handle_upstream_bytes(&mut self, now: Instant, bytes: &[u8]) {
        match &self.ending {
            Ending::Live => self.handle_bytes(now, Side::Upstream, bytes),
            Ending::Pending { .. } => self.upstream_until_boundary(now, bytes),
            Ending::Ended => {}
        }
    }

    /// Ends the session from our side and tells the user why: the frames
    /// that carry `message` to kubectl are written at the next frame
    /// boundary of the upstream→client stream ([`Output::Inject`]), at most
    /// [`FAREWELL_WAIT`] from now. Until then the adapter keeps reading
    /// (and forwarding) the upstream but forwards nothing from the client.
    pub fn end_with_message(&mut self, now: Instant, message: &str) {
        if !matches!(self.ending, Ending::Live) {
            return;
        }
        self.ending = Ending::Pending {
            message: message.to_string(),
            deadline: now + FAREWELL_WAIT,
        };
        if self.decoder.frame_remaining(Side::Upstream) == FrameRemaining::AtBoundary {
            self.say_farewell(now, 0, true);
        }
    }

    /// Feeds the upstream's bytes only up to the end of its current frame,
    /// then says farewell there.
    fn upstream_until_boundary(&mut self, now: Instant, bytes: &[u8]) {
        let mut fed = 0;
        while fed < bytes.len() {
            let step = match self.decoder.frame_remaining(Side::Upstream) {
                FrameRemaining::AtBoundary => break,
                FrameRemaining::Exactly(n) | FrameRemaining::AtLeast(n) => {
                    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
                }
            };
            let end = fed.saturating_add(step).min(bytes.len());
            self.handle_bytes(now, Side::Upstream, bytes.get(fed..end).unwrap_or_default());
            fed = end;
        }
        if self.decoder.frame_remaining(Side::Upstream) == FrameRemaining::AtBoundary {
            self.say_farewell(now, fed, true);
        }
    }

    /// Emits the farewell (or, when `with_message` is false, just the end)
    /// and completes the recording.
    fn say_farewell(&mut self, now: Instant, forward: usize, with_message: bool) {
        let Ending::Pending { message, .. } = std::mem::replace(&mut self.ending, Ending::Ended)
        else {
            return;
        };
        let bytes = if with_message {
            self.decoder.farewell(&message)
        } else {
            Vec::new()
        };
        let at = self.elapsed(now);
        self.recorder.end_session(at, &message);
        self.recorder.push_output(Output::Inject {
            forward,
            bytes: Bytes::from(bytes),
        });
        self.flush_capture();
    }

    /// `side` closed its half of the connection. Once both have, the
    /// recording is complete.
    pub fn handle_eof(&mut self, now: Instant, side: Side) {
        let at = self.elapsed(now);
        let index = match side {
            Side::Client => 0,
            Side::Upstream => 1,
        };
        if let Some(seen) = self.eof.get_mut(index) {
            if *seen {
                return;
            }
            *seen = true;
        }
        if let Some(tap) = &mut self.capture {
            tap.record(at, RecordKind::Eof(side), &[]);
        }
        let recorder = &mut self.recorder;
        match self.decoder.finish(side, |e| recorder.on_event(now, at, e)) {
            Ok(()) => {}
            Err(e) if e.cut_by() == Some(Side::Client) && recorder.exit_seen() => {
                recorder.client_cut_after_exit(at, &e.to_string())
            }
            Err(e) => recorder.fail(at, &e.to_string()),
        }
        if self.eof == [true, true] {
            recorder.finish(at);
        }
        recorder.flush();
        self.flush_capture();
    }

    /// The deadline from [`Session::poll_timeout`] passed (spurious calls
    /// are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Ending::Pending { deadline, .. } = &self.ending {
            if now >= *deadline {
                // The frame under way never ended: close without a message
                // rather than corrupt the stream kubectl is reading.
                self.say_farewell(now, 0, false);
            }
        }
        self.recorder.handle_timeout(now);
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer().map(|(at, _)| at)
    }

    /// The next deadline and why it exists.
    pub fn timer(&self) -> Option<(Instant, Timer)> {
        let farewell = match &self.ending {
            Ending::Pending { deadline, .. } => Some((*deadline, Timer::Farewell)),
            _ => None,
        };
        match (farewell, self.recorder.timer()) {
            (Some(f), Some(r)) => Some(if r.0 < f.0 { r } else { f }),
            (f, r) => f.or(r),
        }
    }

    /// The next output; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.recorder.poll_output()
    }

    fn flush_capture(&mut self) {
        if let Some(bytes) = self.capture.as_mut().and_then(CaptureTap::take) {
            self.recorder.push_output(Output::Capture(bytes));
        }
    }

    /// Bytes of the current read that may be forwarded up to the last
    /// complete frame from `side` (see [`crate::ExecDecoder::partial_frame_len`]).
    pub fn partial_frame_len(&self, side: Side) -> usize {
        self.decoder.partial_frame_len(side)
    }

    fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]) {
        let at = self.elapsed(now);
        if let Some(tap) = &mut self.capture {
            tap.record(at, RecordKind::Data(side), bytes);
        }
        let recorder = &mut self.recorder;
        if side == Side::Upstream {
            recorder.expect_output(bytes.len());
        }
        if let Err(e) = self
            .decoder
            .handle(side, bytes, |e| recorder.on_event(now, at, e))
        {
            recorder.fail(at, &e.to_string());
        }
        recorder.flush();
        self.flush_capture();
    }

    /// Time since the session's first input.
    fn elapsed(&mut self, now: Instant) -> Duration {
        let start = *self.start.get_or_insert(now);
        now.saturating_duration_since(start)
    }
}

/// Writes the raw capture of a session as it goes (opt-in).
#[derive(Debug)]
struct CaptureTap {
    buf: Vec<u8>,
}

impl CaptureTap {
    fn new(meta: &SessionMeta, config: &SessionConfig) -> Self {
        let header = CaptureHeader {
            timestamp: meta.started_unix,
            note: None,
            user: meta.user.clone(),
            uid: meta.uid.clone(),
            groups: meta.groups.clone(),
            session_id: meta.session_id.clone(),
            cluster: config.cluster.clone(),
        };
        let mut buf = Vec::new();
        capture::write_header(&header, &mut buf);
        CaptureTap { buf }
    }

    fn record(&mut self, at: Duration, kind: RecordKind, bytes: &[u8]) {
        let micros = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
        capture::write_record(micros, kind, bytes, &mut self.buf);
    }

    fn take(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.buf)))
    }
}
