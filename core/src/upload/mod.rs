//! The recorder upload: one recording streamed to one of an ordered list of
//! recorders, over the v2 or the v1 protocol, with failover, budgets, an ack
//! window and back-pressure.
//!
//! The wire, as the uploader speaks it, is described in
//! `docs/recorder-protocol.md`; in short:
//!
//! - **v2** ([`v2`]): `HEAD /v2/record` over HTTP/2 as a probe; a `200` over
//!   HTTP/2 means v2. Then `POST /v2/record`: the request body is the cast
//!   stream, the response body newline-delimited JSON frames `{"ack":N}`
//!   (`{}` = ack 0) and at most one final `{"error":"…"}`.
//! - **v1** ([`v1`]): anything else on the probe falls back to
//!   `POST /record` over HTTP/1.1 on a new connection, chunked, with
//!   `Expect: 100-continue`; the final `200` confirms the recording.
//! - **failover** ([`failover`]): recorders are tried in order, each attempt
//!   within [`UploadConfig::attempt_budget`] and all within
//!   [`UploadConfig::overall_budget`]; every failure goes into the attempt
//!   log ([`Upload::attempts`]).
//!
//! The adapter does the I/O (TCP, TLS, HTTP/2 via `h2`); this module decides
//! and interprets.

mod config;
pub mod failover;
mod output;
#[cfg(test)]
mod tests;
mod transitions;
pub mod v1;
pub mod v2;

pub use config::{AddrError, ConfigError, RecorderAddr, Scheme, UploadConfig};
pub use failover::{
    AttemptError, AttemptId, AttemptRecord, Budget, FailureReason, Protocol, ProtocolError, Stage,
    Then, UploadFailure,
};
pub use output::{Progress, RequestHead, Timer, UploadOutput, UploadState};

use bytes::Bytes;
use failover::{Failover, Target};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use v1::{FinalResponse, ResponseEvent, ResponseReader};
use v2::{Frame, FrameReader};

/// One recording's upload. Create it with [`Upload::new`] when the session
/// starts; it begins dialling the first recorder at once.
///
/// # The contract
///
/// - **getters** (`&self`): [`Upload::poll_timeout`] — when
///   [`Upload::handle_timeout`] must next be called — and [`Upload::timer`],
///   which says why ([`Timer`]); [`Upload::read_budget`] — how many more
///   cast bytes the upload will take before the session should stop reading
///   the upstream (0 = stop; it reopens as acks arrive);
///   [`Upload::state`], [`Upload::progress`], [`Upload::current`] and
///   [`Upload::attempts`] (the attempt log).
/// - **cast input** (`now` first, infallible): [`Upload::push_cast`] — the
///   session's cast bytes, at any time, buffered until an upload is open —
///   and [`Upload::finish`] — the recording is complete.
/// - **network inputs** (`now` first, then the [`AttemptId`] the input
///   belongs to; infallible): [`Upload::handle_connected`],
///   [`Upload::handle_connect_failed`], [`Upload::handle_probe_response`],
///   [`Upload::handle_v2_response_head`], [`Upload::handle_v2_body`],
///   [`Upload::handle_v1_bytes`], [`Upload::handle_response_end`],
///   [`Upload::handle_stream_error`]. Inputs for an attempt that is not the
///   current one (an abandoned connection still talking), or that make no
///   sense in the current state, are ignored. Any chunking of response bytes
///   gives the same result.
/// - **time**: [`Upload::handle_timeout`]; spurious or early calls are
///   harmless.
/// - **outputs**: [`Upload::poll_output`], drained after *every* input
///   until `None`: [`UploadOutput`] — connections to open and close,
///   requests and body bytes to send, the attempt log as it grows, and
///   finally exactly one of [`UploadOutput::Completed`] or
///   [`UploadOutput::Failed`].
///
/// # Attempts
///
/// An attempt is one connection to one recorder with one protocol. The
/// first attempt on a recorder is v2 (probe, then `POST /v2/record` on the
/// same connection); if the probe is not answered with `200` over HTTP/2
/// (another status, HTTP/1.x, or a stream error), the next attempt is v1 on
/// the same recorder. A `417` to v1's `Expect: 100-continue` retries v1 once
/// without it. Any other failure (connect error, budget, non-2xx start, an
/// error frame or a broken response before any cast byte was sent) moves to
/// the next recorder. An attempt budget timing out moves on too, even in
/// the probe: a recorder that does not answer is not worth a second dial.
///
/// # Failure mid-upload
///
/// Once cast bytes were handed to the adapter for a recorder, a failure of
/// that recorder ends the upload with [`FailureReason::Interrupted`]; it is
/// *not* restarted elsewhere (that would leave a half cast on the first
/// recorder and need every byte kept). The [`UploadFailure`] carries how
/// many bytes were accepted, sent and acknowledged, so the session's policy
/// can act (fail-closed: end the session; fail-open: continue unrecorded,
/// log and audit the loss). Nothing is dropped silently.
///
/// # Back-pressure
///
/// [`Upload::read_budget`] is [`UploadConfig::max_unacked`] minus: the bytes
/// buffered while no upload is open; with v2, the bytes accepted but not yet
/// acknowledged by the recorder; with v1 (no acks), the bytes not yet
/// handed to the adapter — which is none once open, because the adapter's
/// socket write (TCP flow control) holds the loop back instead: the adapter
/// must finish writing a `Send` before it reads more from the upstream.
/// The cap is soft: [`Upload::push_cast`] never refuses bytes, so one read's
/// worth may overshoot it.
#[derive(Debug)]
pub struct Upload {
    config: UploadConfig,
    state: State,
    failover: Failover,
    /// Cast bytes waiting for an upload to open.
    queue: VecDeque<Bytes>,
    queued: usize,
    progress: Progress,
    finish_requested: bool,
    outputs: VecDeque<UploadOutput>,
}

/// The attempt in progress.
#[derive(Debug, Clone, Copy)]
struct Current {
    id: AttemptId,
    target: Target,
    started: Instant,
}

#[derive(Debug)]
enum State {
    /// An attempt is under way; nothing has been sent on it.
    Trying {
        cur: Current,
        /// The attempt budget's end.
        deadline: Instant,
        step: Step,
    },
    /// The body is streaming (or has ended and awaits confirmation).
    Open {
        cur: Current,
        link: Link,
    },
    Completed,
    Failed,
}

#[derive(Debug)]
enum Step {
    /// `Connect` emitted.
    Dialing,
    /// v2: `Probe` emitted.
    Probing,
    /// v2: `StartV2` emitted, waiting for the response head.
    AwaitingHead,
    /// v1: head with `Expect: 100-continue` written.
    AwaitingContinue {
        until: Instant,
        response: ResponseReader,
    },
}

#[derive(Debug)]
enum Link {
    V2 {
        ack_deadline: Instant,
        frames: FrameReader,
        /// `EndStream` emitted.
        ended: bool,
    },
    V1 {
        response: ResponseReader,
        /// Set when the terminal chunk was sent.
        final_deadline: Option<Instant>,
    },
}

/// A copyable summary of where the current attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dialing,
    Probing,
    AwaitingHead,
    AwaitingContinue,
    V2 { ended: bool },
    V1 { ended: bool },
}

impl Phase {
    fn stage(self) -> Stage {
        match self {
            Phase::Dialing => Stage::Connect,
            Phase::Probing => Stage::Probe,
            Phase::AwaitingHead | Phase::AwaitingContinue => Stage::Start,
            Phase::V2 { ended: false } | Phase::V1 { ended: false } => Stage::Upload,
            Phase::V2 { ended: true } | Phase::V1 { ended: true } => Stage::Finish,
        }
    }
}

impl Upload {
    /// Validates `config` and starts the first attempt (a `Connect` output).
    /// The overall budget runs from `now`.
    pub fn new(now: Instant, mut config: UploadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let overall = deadline(now, config.overall_budget);
        let mut upload = Upload {
            failover: Failover::new(config.recorders.len(), overall),
            config,
            state: State::Failed,
            queue: VecDeque::new(),
            queued: 0,
            progress: Progress::default(),
            finish_requested: false,
            outputs: VecDeque::new(),
        };
        let first = upload.failover.first();
        upload.start_attempt(now, first);
        Ok(upload)
    }

    // ---- getters ----

    /// When [`Upload::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer().map(|(at, _)| at)
    }

    /// The next deadline and why it exists.
    pub fn timer(&self) -> Option<(Instant, Timer)> {
        match &self.state {
            State::Trying { deadline, step, .. } => {
                let overall = self.failover.overall_deadline();
                let mut next = if overall <= *deadline {
                    (overall, Timer::OverallBudget)
                } else {
                    (*deadline, Timer::AttemptBudget)
                };
                if let Step::AwaitingContinue { until, .. } = step {
                    if *until < next.0 {
                        next = (*until, Timer::ContinueWait);
                    }
                }
                Some(next)
            }
            State::Open {
                link: Link::V2 { ack_deadline, .. },
                ..
            } => Some((*ack_deadline, Timer::AckWindow)),
            State::Open {
                link:
                    Link::V1 {
                        final_deadline: Some(at),
                        ..
                    },
                ..
            } => Some((*at, Timer::FinalResponse)),
            State::Open { .. } | State::Completed | State::Failed => None,
        }
    }

    /// How many more cast bytes the upload takes before the session should
    /// stop reading the upstream (0 = stop). See "Back-pressure" above.
    /// After the upload completed or failed it holds nothing back
    /// (`usize::MAX`): what happens to the session then is its policy's call.
    pub fn read_budget(&self) -> usize {
        let cap = self.config.max_unacked;
        match &self.state {
            State::Trying { .. }
            | State::Open {
                link: Link::V1 { .. },
                ..
            } => cap.saturating_sub(self.queued),
            State::Open {
                link: Link::V2 { .. },
                ..
            } => {
                let unacked = self.progress.accepted.saturating_sub(self.progress.acked);
                cap.saturating_sub(usize::try_from(unacked).unwrap_or(usize::MAX))
            }
            State::Completed | State::Failed => usize::MAX,
        }
    }

    pub fn state(&self) -> UploadState {
        match &self.state {
            State::Trying { .. } => UploadState::Connecting,
            State::Open { .. } => match self.phase_of_state() {
                Some(Phase::V2 { ended: true } | Phase::V1 { ended: true }) => {
                    UploadState::Finishing
                }
                _ => UploadState::Open,
            },
            State::Completed => UploadState::Completed,
            State::Failed => UploadState::Failed,
        }
    }

    /// Byte counts so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// The attempt in progress: its id, recorder and protocol.
    pub fn current(&self) -> Option<(AttemptId, &RecorderAddr, Protocol)> {
        let cur = match &self.state {
            State::Trying { cur, .. } | State::Open { cur, .. } => cur,
            State::Completed | State::Failed => return None,
        };
        let addr = self.config.recorders.get(cur.target.recorder)?;
        Some((cur.id, addr, cur.target.protocol))
    }

    /// Every failed attempt so far, in order.
    pub fn attempts(&self) -> &[AttemptRecord] {
        self.failover.attempts()
    }

    /// The configuration in use.
    pub fn config(&self) -> &UploadConfig {
        &self.config
    }

    // ---- outputs ----

    /// The next output; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<UploadOutput> {
        self.outputs.pop_front()
    }

    // ---- cast input ----

    /// The next cast bytes of the recording. Sent at once while an upload
    /// is open, buffered otherwise. Bytes pushed after [`Upload::finish`] or
    /// after the upload ended are counted in [`Progress::discarded`].
    pub fn push_cast(&mut self, _now: Instant, bytes: Bytes) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        if self.finish_requested || matches!(self.state, State::Completed | State::Failed) {
            self.progress.discarded += len as u64;
            return;
        }
        self.progress.accepted += len as u64;
        match &self.state {
            State::Trying { .. } => {
                self.queued += len;
                self.queue.push_back(bytes);
            }
            State::Open { cur, link } => {
                let (id, v1) = (cur.id, matches!(link, Link::V1 { .. }));
                self.send(id, v1, std::slice::from_ref(&bytes), len);
            }
            State::Completed | State::Failed => {}
        }
    }

    /// The recording is complete: end the body once everything is sent.
    /// The upload completes when the recorder confirms it.
    pub fn finish(&mut self, now: Instant) {
        if self.finish_requested {
            return;
        }
        self.finish_requested = true;
        if matches!(self.state, State::Open { .. }) {
            self.end_body(now);
        }
    }

    // ---- network inputs ----

    /// The connection of `attempt` is up (TCP and TLS).
    pub fn handle_connected(&mut self, now: Instant, attempt: AttemptId) {
        if self.phase(attempt) != Some(Phase::Dialing) {
            return;
        }
        let Some(target) = self.current_target() else {
            return;
        };
        let Some(addr) = self.config.recorders.get(target.recorder) else {
            return;
        };
        match target.protocol {
            Protocol::V2 => {
                let request = self.request_head(addr, "HEAD");
                self.set_step(Step::Probing);
                self.outputs
                    .push_back(UploadOutput::Probe { attempt, request });
            }
            Protocol::V1 => {
                let head = v1::request_head(&self.config, addr, target.expect_continue);
                self.outputs
                    .push_back(UploadOutput::StartV1 { attempt, head });
                let response = ResponseReader::new(self.config.max_response_head);
                if target.expect_continue {
                    let until = deadline(now, self.config.continue_wait);
                    self.set_step(Step::AwaitingContinue { until, response });
                } else {
                    self.open_v1(now, response);
                }
            }
        }
    }

    /// The connection of `attempt` could not be established.
    pub fn handle_connect_failed(&mut self, now: Instant, attempt: AttemptId, message: &str) {
        match self.phase(attempt) {
            Some(Phase::Dialing) => self.fail(
                now,
                AttemptError::Connect(sanitize(message)),
                Then::NextRecorder,
            ),
            Some(_) => self.handle_stream_error(now, attempt, message),
            None => {}
        }
    }

    /// v2: the probe's response status, and whether it came over HTTP/2.
    pub fn handle_probe_response(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        status: u16,
        http2: bool,
    ) {
        if self.phase(attempt) != Some(Phase::Probing) {
            return;
        }
        if status != 200 || !http2 {
            self.fail(
                now,
                AttemptError::Probe { status, http2 },
                Then::FallBackToV1,
            );
            return;
        }
        let Some(addr) = self
            .current_target()
            .and_then(|t| self.config.recorders.get(t.recorder))
        else {
            return;
        };
        let request = self.request_head(addr, "POST");
        self.set_step(Step::AwaitingHead);
        self.outputs
            .push_back(UploadOutput::StartV2 { attempt, request });
    }

    /// v2: the upload's response head arrived with `status`.
    pub fn handle_v2_response_head(&mut self, now: Instant, attempt: AttemptId, status: u16) {
        if self.phase(attempt) != Some(Phase::AwaitingHead) {
            return;
        }
        if !(200..300).contains(&status) {
            let error = AttemptError::Status {
                status,
                message: String::new(),
            };
            self.fail(now, error, Then::NextRecorder);
            return;
        }
        let link = Link::V2 {
            ack_deadline: deadline(now, self.config.ack_window),
            frames: FrameReader::new(self.config.max_frame_line),
            ended: false,
        };
        self.open(now, link);
    }

    /// v2: bytes of the upload's response body (ack frames).
    pub fn handle_v2_body(&mut self, now: Instant, attempt: AttemptId, bytes: &[u8]) {
        let mut frames = Vec::new();
        match &mut self.state {
            State::Open {
                cur,
                link: Link::V2 { frames: reader, .. },
            } if cur.id == attempt => reader.push(bytes, &mut frames),
            _ => return,
        }
        for frame in frames {
            if !matches!(self.phase(attempt), Some(Phase::V2 { .. })) {
                return;
            }
            match frame {
                Ok(Frame::Ack(ack)) => self.on_ack(now, ack),
                Ok(Frame::Error(message)) => {
                    self.fail(now, AttemptError::Recorder(message), Then::NextRecorder)
                }
                Err(e) => self.fail(now, e.into(), Then::NextRecorder),
            }
        }
    }

    /// v1: bytes read from the connection (interim and final responses).
    pub fn handle_v1_bytes(&mut self, now: Instant, attempt: AttemptId, bytes: &[u8]) {
        match &mut self.state {
            State::Trying {
                cur,
                step: Step::AwaitingContinue { response, .. },
                ..
            }
            | State::Open {
                cur,
                link: Link::V1 { response, .. },
            } if cur.id == attempt => response.push(bytes),
            _ => return,
        }
        loop {
            let event = match &mut self.state {
                State::Trying {
                    cur,
                    step: Step::AwaitingContinue { response, .. },
                    ..
                }
                | State::Open {
                    cur,
                    link: Link::V1 { response, .. },
                } if cur.id == attempt => response.next(),
                _ => return,
            };
            match event {
                Ok(None) => return,
                Ok(Some(ResponseEvent::Continue)) => self.continue_v1(now),
                Ok(Some(ResponseEvent::Final(response))) => self.v1_final(now, response),
                Err(e) => self.fail(now, e.into(), Then::NextRecorder),
            }
        }
    }

    /// The recorder's side ended cleanly: v2 — the response body's end;
    /// v1 — EOF on the connection.
    pub fn handle_response_end(&mut self, now: Instant, attempt: AttemptId) {
        let Some(phase) = self.phase(attempt) else {
            return;
        };
        match phase {
            Phase::Dialing | Phase::Probing => {
                self.handle_stream_error(now, attempt, "connection closed")
            }
            Phase::AwaitingHead | Phase::AwaitingContinue | Phase::V1 { .. } => self.fail(
                now,
                AttemptError::EndedEarly("connection"),
                Then::NextRecorder,
            ),
            Phase::V2 { ended: false } => self.fail(
                now,
                AttemptError::EndedEarly("response"),
                Then::NextRecorder,
            ),
            Phase::V2 { ended: true } => {
                let Progress { sent, acked, .. } = self.progress;
                if acked == sent {
                    self.complete();
                } else {
                    self.fail(
                        now,
                        AttemptError::Incomplete { acked, sent },
                        Then::NextRecorder,
                    );
                }
            }
        }
    }

    /// The connection or stream of `attempt` failed (reset, TLS or h2
    /// error, write error, ALPN without `h2` on a v2 connection, …).
    pub fn handle_stream_error(&mut self, now: Instant, attempt: AttemptId, message: &str) {
        let Some(phase) = self.phase(attempt) else {
            return;
        };
        let message = sanitize(message);
        match phase {
            Phase::Dialing => self.fail(now, AttemptError::Connect(message), Then::NextRecorder),
            Phase::Probing => self.fail(now, AttemptError::Stream(message), Then::FallBackToV1),
            _ => self.fail(now, AttemptError::Stream(message), Then::NextRecorder),
        }
    }

    // ---- time ----

    /// A deadline from [`Upload::poll_timeout`] may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Trying { deadline, step, .. } => {
                if now >= self.failover.overall_deadline() {
                    let error = AttemptError::TimedOut {
                        budget: Budget::Overall,
                        limit: self.config.overall_budget,
                    };
                    self.fail(now, error, Then::GaveUp);
                } else if now >= *deadline {
                    let error = AttemptError::TimedOut {
                        budget: Budget::Attempt,
                        limit: self.config.attempt_budget,
                    };
                    self.fail(now, error, Then::NextRecorder);
                } else if matches!(step, Step::AwaitingContinue { until, .. } if now >= *until) {
                    // No `100 Continue` in time: send the body anyway, as
                    // curl does; a final response may still refuse it.
                    self.continue_v1(now);
                }
            }
            State::Open {
                link: Link::V2 { ack_deadline, .. },
                ..
            } if now >= *ack_deadline => {
                let error = AttemptError::AckWindowExpired(self.config.ack_window);
                self.fail(now, error, Then::NextRecorder);
            }
            State::Open {
                link:
                    Link::V1 {
                        final_deadline: Some(at),
                        ..
                    },
                ..
            } if now >= *at => {
                let error = AttemptError::FinalResponseTimeout(self.config.final_response_wait);
                self.fail(now, error, Then::NextRecorder);
            }
            State::Open { .. } | State::Completed | State::Failed => {}
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Most characters of a peer-supplied message kept.
const MAX_MESSAGE_CHARS: usize = 512;

/// Makes a peer-supplied message safe for logs and a user's terminal:
/// control characters (escape sequences, newlines) become U+FFFD, and it is
/// cut at [`MAX_MESSAGE_CHARS`].
pub(crate) fn sanitize(message: &str) -> String {
    let mut out: String = message
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if message.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}
