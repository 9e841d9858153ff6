//! Failover over the ordered recorder list: attempts, budgets, the attempt
//! log and the typed failure.

use super::config::RecorderAddr;
use std::fmt;
use std::time::{Duration, Instant};

/// Identifies one attempt (one connection to one recorder). Every input
/// names the attempt it belongs to; inputs for any other attempt than the
/// current one are stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(u32);

impl AttemptId {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The upload protocol of an attempt, which is also what the adapter speaks
/// on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/2: h2c with prior knowledge on `http://`, TLS with ALPN `h2`
    /// (and `http/1.1`) on `https://`. Probe, then `POST /v2/record`.
    V2,
    /// HTTP/1.1 on a raw byte stream (TLS with ALPN `http/1.1` on
    /// `https://`): `POST /record`.
    V1,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V2 => "v2",
            Protocol::V1 => "v1",
        })
    }
}

/// How far an attempt got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Dialling (TCP, TLS).
    Connect,
    /// v2: `HEAD /v2/record`.
    Probe,
    /// Request sent, waiting for the v2 response head or the v1
    /// `100 Continue`.
    Start,
    /// The body was streaming.
    Upload,
    /// The body had ended; waiting for the recorder's confirmation.
    Finish,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Probe => "probe",
            Stage::Start => "start",
            Stage::Upload => "upload",
            Stage::Finish => "finish",
        })
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Attempt,
    Overall,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Budget::Attempt => "attempt budget",
            Budget::Overall => "overall budget",
        })
    }
}

/// The recorder's bytes broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("response head longer than {0} bytes")]
    ResponseHeadTooLarge(usize),
    #[error("malformed HTTP/1.1 response: {0}")]
    BadResponse(String),
    #[error("unexpected status {0}")]
    UnexpectedStatus(u16),
    #[error("ack frame longer than {0} bytes")]
    FrameTooLong(usize),
    #[error("malformed ack frame: {0}")]
    BadFrame(String),
    #[error("ack of {ack} bytes but only {sent} were sent")]
    AckBeyondSent { ack: u64, sent: u64 },
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("the {budget} of {limit:?} ran out")]
    TimedOut { budget: Budget, limit: Duration },
    /// v2 probe answered with something else than 200 over HTTP/2.
    #[error("v2 probe answered {status} over {}", if *.http2 { "HTTP/2" } else { "HTTP/1.x" })]
    Probe { status: u16, http2: bool },
    #[error("recorder answered {status} {message}")]
    Status { status: u16, message: String },
    #[error("connection error: {0}")]
    Stream(String),
    #[error("recorder closed the {0} before the upload was complete")]
    EndedEarly(&'static str),
    /// An `{"error":"…"}` frame.
    #[error("recorder error: {0}")]
    Recorder(String),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("no ack frame within the ack window of {0:?}")]
    AckWindowExpired(Duration),
    #[error("no final response within {0:?} after the body ended")]
    FinalResponseTimeout(Duration),
    /// The v2 response ended cleanly but not everything was acknowledged.
    #[error("recorder ended the response with {acked} of {sent} bytes acknowledged")]
    Incomplete { acked: u64, sent: u64 },
}

/// What the uploader did after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Then {
    /// Tried v1 on the same recorder (the v2 probe failed).
    FallBackToV1,
    /// Tried v1 again on the same recorder without `Expect: 100-continue`
    /// (the recorder answered `417 Expectation Failed`).
    RetryWithoutExpect,
    /// Moved on to the next recorder in the list.
    NextRecorder,
    /// Gave up: see [`UploadFailure::reason`].
    GaveUp,
}

/// One failed attempt, for logs, audit annotations and user-facing errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: AttemptId,
    pub recorder: RecorderAddr,
    pub protocol: Protocol,
    pub stage: Stage,
    pub error: AttemptError,
    /// When `Connect` was emitted.
    pub started: Instant,
    /// When the failure was noticed.
    pub failed: Instant,
    pub then: Then,
}

impl AttemptRecord {
    /// How long the attempt lasted.
    pub fn duration(&self) -> Duration {
        self.failed.saturating_duration_since(self.started)
    }
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}, {} after {:?}): {}",
            self.attempt,
            self.recorder,
            self.protocol,
            self.stage,
            self.duration(),
            self.error
        )
    }
}

/// Why the upload as a whole failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// Every recorder was tried and none accepted the upload.
    NoRecorderAccepted,
    /// The overall budget ran out before an upload could start.
    OverallBudgetExhausted,
    /// The upload had started sending cast bytes and its recorder failed.
    /// It is not restarted elsewhere (that would leave a half cast there and
    /// need every byte kept); [`UploadFailure::acked`] bytes are safe at the
    /// recorder, the rest are lost.
    Interrupted {
        attempt: AttemptId,
        recorder: RecorderAddr,
        protocol: Protocol,
        error: AttemptError,
    },
}

/// The upload failed: why, every failed attempt, and how much of the
/// recording got where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailure {
    pub reason: FailureReason,
    /// Every failed attempt, in order (the interrupted one last).
    pub attempts: Vec<AttemptRecord>,
    /// Cast bytes the session pushed (the recording so far).
    pub accepted: u64,
    /// Cast bytes handed to the adapter for the recorder.
    pub sent: u64,
    /// Cast bytes the recorder confirmed (v2 acks; v1 only confirms with
    /// its final `200`, so this is 0 for an interrupted v1 upload).
    pub acked: u64,
}

impl fmt::Display for UploadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            FailureReason::NoRecorderAccepted => {
                write!(f, "no recorder accepted the recording")?
            }
            FailureReason::OverallBudgetExhausted => write!(
                f,
                "no recorder accepted the recording before the overall budget ran out"
            )?,
            FailureReason::Interrupted {
                recorder,
                protocol,
                error,
                ..
            } => write!(
                f,
                "recording upload to {recorder} ({protocol}) failed after {} of {} bytes were acknowledged: {error}",
                self.acked, self.accepted
            )?,
        }
        if !matches!(self.reason, FailureReason::Interrupted { .. }) {
            f.write_str(" (")?;
            for (i, a) in self.attempts.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{a}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for UploadFailure {}

/// Where the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub recorder: usize,
    pub protocol: Protocol,
    /// v1 only: send `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// The recorder cursor, the budgets and the attempt log.
#[derive(Debug)]
pub(super) struct Failover {
    recorders: usize,
    next_id: u32,
    overall_deadline: Instant,
    attempts: Vec<AttemptRecord>,
}

impl Failover {
    pub(super) fn new(recorders: usize, overall_deadline: Instant) -> Self {
        Failover {
            recorders,
            next_id: 0,
            overall_deadline,
            attempts: Vec::new(),
        }
    }

    pub(super) fn overall_deadline(&self) -> Instant {
        self.overall_deadline
    }

    pub(super) fn attempts(&self) -> &[AttemptRecord] {
        &self.attempts
    }

    pub(super) fn log(&mut self, record: AttemptRecord) {
        self.attempts.push(record);
    }

    /// A fresh attempt id.
    pub(super) fn next_id(&mut self) -> AttemptId {
        self.next_id = self.next_id.saturating_add(1);
        AttemptId(self.next_id)
    }

    /// The first target.
    pub(super) fn first(&self) -> Target {
        Target {
            recorder: 0,
            protocol: Protocol::V2,
            expect_continue: true,
        }
    }

    /// Where to go after `failed` failed with `then` as the preferred step,
    /// or why not (the overall budget, or the end of the list).
    pub(super) fn after(
        &self,
        now: Instant,
        failed: Target,
        then: Then,
    ) -> Result<(Target, Then), FailureReason> {
        if now >= self.overall_deadline {
            return Err(FailureReason::OverallBudgetExhausted);
        }
        let target = match then {
            Then::FallBackToV1 => Target {
                recorder: failed.recorder,
                protocol: Protocol::V1,
                expect_continue: true,
            },
            Then::RetryWithoutExpect => Target {
                recorder: failed.recorder,
                protocol: Protocol::V1,
                expect_continue: false,
            },
            Then::NextRecorder | Then::GaveUp => {
                let next = failed.recorder.saturating_add(1);
                if then == Then::GaveUp || next >= self.recorders {
                    return Err(FailureReason::NoRecorderAccepted);
                }
                Target {
                    recorder: next,
                    ..self.first()
                }
            }
        };
        Ok((target, then))
    }
}
