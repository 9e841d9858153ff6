//! A [`Session`] wired to its [`Upload`]: the composite a runtime adapter
//! drives for one recorded exec/attach session.
//!
//! The session's cast bytes go to the upload, the session's end finishes
//! the upload, the two machines' deadlines merge into one, the upload's
//! back-pressure becomes the session's read budget, and the recording policy
//! decides what a lost recorder means:
//!
//! - [`Policy::FailClosed`] (`--enforce-recording`): a failed upload ends the
//!   session ([`RecordingOutput::Close`]); nothing unrecorded is forwarded
//!   after that decision.
//! - [`Policy::FailOpen`]: the session goes on unrecorded; the failure is
//!   reported ([`UploadOutput::Failed`]) for logs and audit.
//!
//! The contract is the one of [`Session`] and [`Upload`]: feed inputs with
//! `now`, then drain [`Recording::poll_output`] until `None`; sleep until
//! [`Recording::poll_timeout`]. Network results for the upload go in through
//! [`Recording::handle_upload`].

use crate::session::{Output, Session, SessionConfig, SessionEvent, SessionMeta, Timer};
use crate::upload::{
    self, ConfigError, Upload, UploadConfig, UploadFailure, UploadOutput, UploadState,
};
use crate::Side;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Instant;

/// What a lost recorder means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The session continues unrecorded; the loss is reported.
    #[default]
    FailOpen,
    /// The session ends: no unrecorded exec.
    FailClosed,
}

/// Why the adapter must end the session now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Fail-closed and the recording could not be uploaded.
    RecordingFailed(UploadFailure),
}

/// One output of a [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingOutput {
    /// What happened in the session (for logs and audit).
    Event(SessionEvent),
    /// Network work for the upload, and its progress (see [`UploadOutput`]).
    Upload(UploadOutput),
    /// Raw capture bytes (only with [`SessionConfig::capture`]).
    Capture(Bytes),
    /// The session's last words to the client (see
    /// [`crate::session::Output::Inject`]: forward `forward` bytes of the
    /// upstream read just fed, then write `bytes`); a [`RecordingOutput::Close`]
    /// follows.
    Inject { forward: usize, bytes: Bytes },
    /// End the session now (fail-closed): close both connections, forward
    /// nothing more.
    Close(CloseReason),
}

/// Which machine a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingTimer {
    Session(Timer),
    Upload(upload::Timer),
}

/// A session and the upload of its cast. See the module documentation.
#[derive(Debug)]
pub struct Recording {
    session: Session,
    upload: Upload,
    policy: Policy,
    record_stdin: bool,
    outputs: VecDeque<RecordingOutput>,
    /// Fail-closed decided to end the session; the close waits for the
    /// session's farewell.
    closing: Option<CloseReason>,
    closed: bool,
    /// The adapter ended the session ([`Recording::end_with_message`]).
    ending: bool,
}

impl Recording {
    /// Starts the upload at once (it dials the first recorder), so that a
    /// fail-closed proxy can wait for [`UploadState::Open`] before it lets
    /// the session start.
    pub fn new(
        now: Instant,
        session: SessionConfig,
        meta: SessionMeta,
        upload: UploadConfig,
        policy: Policy,
    ) -> Result<Self, ConfigError> {
        let record_stdin = session.record_stdin;
        let mut recording = Recording {
            session: Session::new(session, meta),
            upload: Upload::new(now, upload)?,
            policy,
            record_stdin,
            outputs: VecDeque::new(),
            closing: None,
            closed: false,
            ending: false,
        };
        recording.pump(now);
        Ok(recording)
    }

    /// The session, for its getters.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The upload, for its getters (state, progress, attempt log).
    pub fn upload(&self) -> &Upload {
        &self.upload
    }

    /// Whether stdin goes into the cast (and so is held back by the
    /// upload's back-pressure like the upstream's output).
    pub fn records_stdin(&self) -> bool {
        self.record_stdin
    }

    /// Where the upload stands.
    pub fn upload_state(&self) -> UploadState {
        self.upload.state()
    }

    /// How many bytes may be read from `side` now (0 = stop reading it):
    /// the upload's back-pressure applies to the sides whose bytes end up in
    /// the cast — the upstream always, the client when stdin is recorded.
    pub fn read_budget(&self, side: Side) -> usize {
        if self.closing.is_some() || self.closed || self.ending {
            // Ending: the upstream is read only to finish its current frame.
            return match side {
                Side::Client => 0,
                Side::Upstream if self.closed => 0,
                Side::Upstream => usize::MAX,
            };
        }
        match side {
            Side::Client if !self.record_stdin => usize::MAX,
            _ => self.upload.read_budget(),
        }
    }

    pub fn handle_client_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.session.handle_client_bytes(now, bytes);
        self.pump(now);
    }

    pub fn handle_upstream_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.session.handle_upstream_bytes(now, bytes);
        self.pump(now);
    }

    pub fn handle_eof(&mut self, now: Instant, side: Side) {
        self.session.handle_eof(now, side);
        self.pump(now);
    }

    /// Ends the session from our side and tells the user why (see
    /// [`Session::end_with_message`]), e.g. a proxy whose shutdown grace
    /// period is over. The cast gets its marker and the upload finishes as
    /// for any other end; no [`RecordingOutput::Close`] follows the
    /// `Inject` (it is not a failure).
    pub fn end_with_message(&mut self, now: Instant, message: &str) {
        self.ending = true;
        self.session.end_with_message(now, message);
        self.pump(now);
    }

    /// A network result for the upload, e.g.
    /// `r.handle_upload(now, |u| u.handle_v2_body(now, id, &bytes))`.
    pub fn handle_upload(&mut self, now: Instant, input: impl FnOnce(&mut Upload)) {
        input(&mut self.upload);
        self.pump(now);
    }

    /// Fires whichever deadlines are due (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.upload.handle_timeout(now);
        self.pump(now);
    }

    /// The earliest deadline of the session and the upload.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer().map(|(at, _)| at)
    }

    /// The earliest deadline and whose it is.
    pub fn timer(&self) -> Option<(Instant, RecordingTimer)> {
        let session = self
            .session
            .timer()
            .map(|(at, t)| (at, RecordingTimer::Session(t)));
        let upload = self
            .upload
            .timer()
            .map(|(at, t)| (at, RecordingTimer::Upload(t)));
        match (session, upload) {
            (Some(s), Some(u)) => Some(if u.0 < s.0 { u } else { s }),
            (s, u) => s.or(u),
        }
    }

    /// The next output; drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<RecordingOutput> {
        self.outputs.pop_front()
    }

    /// Moves the session's cast into the upload and both machines' outputs
    /// into ours, applying the policy.
    fn pump(&mut self, now: Instant) {
        self.pump_session(now);
        while let Some(output) = self.upload.poll_output() {
            let failed = match (&output, self.policy) {
                (UploadOutput::Failed(failure), Policy::FailClosed) if !self.closed => {
                    Some(failure.clone())
                }
                _ => None,
            };
            self.outputs.push_back(RecordingOutput::Upload(output));
            if let Some(failure) = failed {
                let message = format!(
                    "kubecast: this session must be recorded and the recording was lost ({}); the session was ended",
                    failure
                );
                self.closing = Some(CloseReason::RecordingFailed(failure));
                self.session.end_with_message(now, &message);
                self.pump_session(now);
            }
        }
    }

    fn pump_session(&mut self, now: Instant) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Cast(bytes) => self.upload.push_cast(now, bytes),
                Output::Capture(bytes) => self.outputs.push_back(RecordingOutput::Capture(bytes)),
                Output::Inject { forward, bytes } => {
                    self.outputs
                        .push_back(RecordingOutput::Inject { forward, bytes });
                    if let Some(reason) = self.closing.take() {
                        self.closed = true;
                        self.outputs.push_back(RecordingOutput::Close(reason));
                    }
                }
                Output::Event(event) => {
                    let finished = matches!(event, SessionEvent::RecordingFinished(_));
                    self.outputs.push_back(RecordingOutput::Event(event));
                    if finished {
                        self.upload.finish(now);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::WsProtocol;
    use crate::upload::{AttemptId, Protocol};
    use crate::ws::encode_channel_message;
    use std::time::Duration;

    const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=ls&stdout=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
    const SWITCHED: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";

    #[allow(clippy::disallowed_methods)] // tests need some base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn stdout(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_channel_message(&mut out, WsProtocol::V5Channel, 1, payload, None);
        out
    }

    fn recording(now: Instant, policy: Policy, max_unacked: usize) -> Recording {
        let mut upload = UploadConfig::with_recorders(["http://127.0.0.1:9"]).unwrap();
        upload.max_unacked = max_unacked;
        Recording::new(
            now,
            SessionConfig::default(),
            SessionMeta::default(),
            upload,
            policy,
        )
        .unwrap()
    }

    fn drain(r: &mut Recording) -> Vec<RecordingOutput> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    /// Plays the recorder side of a v2 upload up to the open body stream.
    fn open_v2(r: &mut Recording, now: Instant) -> AttemptId {
        let connect = drain(r);
        let attempt = match connect.as_slice() {
            [RecordingOutput::Upload(UploadOutput::Connect {
                attempt,
                protocol: Protocol::V2,
                ..
            })] => *attempt,
            other => panic!("expected one Connect, got {other:?}"),
        };
        r.handle_upload(now, |u| u.handle_connected(now, attempt));
        r.handle_upload(now, |u| u.handle_probe_response(now, attempt, 200, true));
        r.handle_upload(now, |u| u.handle_v2_response_head(now, attempt, 200));
        assert_eq!(r.upload_state(), UploadState::Open);
        attempt
    }

    fn sent(outputs: &[RecordingOutput]) -> Vec<u8> {
        outputs
            .iter()
            .filter_map(|o| match o {
                RecordingOutput::Upload(UploadOutput::Send { bytes, .. }) => Some(bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn the_cast_is_what_the_upload_sends_and_the_session_end_finishes_it() {
        let now = t0();
        let mut r = recording(now, Policy::FailClosed, 1 << 20);
        let attempt = open_v2(&mut r, now);
        let mut outputs = drain(&mut r);
        r.handle_client_bytes(now, REQUEST);
        r.handle_upstream_bytes(now, SWITCHED);
        r.handle_upstream_bytes(now, &stdout(b"total 0\n"));
        r.handle_eof(now, Side::Upstream);
        r.handle_eof(now, Side::Client);
        outputs.extend(drain(&mut r));
        let body = sent(&outputs);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with("{\"version\":2"), "{text}");
        assert!(text.contains("\"o\", \"total 0\\n\""), "{text}");
        assert!(outputs
            .iter()
            .any(|o| matches!(o, RecordingOutput::Upload(UploadOutput::EndStream { .. }))));
        let total = body.len() as u64;
        r.handle_upload(now, |u| {
            u.handle_v2_body(now, attempt, format!("{{\"ack\":{total}}}\n").as_bytes())
        });
        r.handle_upload(now, |u| u.handle_response_end(now, attempt));
        let end = drain(&mut r);
        assert!(end.iter().any(|o| matches!(o, RecordingOutput::Upload(UploadOutput::Completed { bytes }) if *bytes == total)), "{end:?}");
        assert!(!end.iter().any(|o| matches!(o, RecordingOutput::Close(_))));
    }

    /// A recording under `policy` whose only recorder refuses the
    /// connection; returns it and what it said about that.
    fn no_recorder_takes_it(policy: Policy) -> (Recording, Vec<RecordingOutput>) {
        let now = t0();
        let mut r = recording(now, policy, 1 << 20);
        let RecordingOutput::Upload(UploadOutput::Connect { attempt, .. }) =
            drain(&mut r).remove(0)
        else {
            panic!("expected Connect");
        };
        r.handle_upload(now, |u| {
            u.handle_connect_failed(now, attempt, "connection refused")
        });
        let outputs = drain(&mut r);
        assert!(outputs
            .iter()
            .any(|o| matches!(o, RecordingOutput::Upload(UploadOutput::Failed(_)))));
        (r, outputs)
    }

    #[test]
    fn fail_closed_ends_the_session_when_no_recorder_takes_it() {
        let (r, outputs) = no_recorder_takes_it(Policy::FailClosed);
        assert!(
            matches!(outputs.last(), Some(RecordingOutput::Close(CloseReason::RecordingFailed(f))) if !f.attempts.is_empty())
        );
        assert_eq!(r.upload_state(), UploadState::Failed);
    }

    #[test]
    fn fail_open_reports_the_loss_and_goes_on() {
        let now = t0();
        let (mut r, outputs) = no_recorder_takes_it(Policy::FailOpen);
        assert!(!outputs
            .iter()
            .any(|o| matches!(o, RecordingOutput::Close(_))));
        // The session still decodes and nothing blocks reading.
        r.handle_client_bytes(now, REQUEST);
        r.handle_upstream_bytes(now, SWITCHED);
        r.handle_upstream_bytes(now, &stdout(b"still here\n"));
        assert_eq!(r.read_budget(Side::Upstream), usize::MAX);
        assert!(drain(&mut r)
            .iter()
            .any(|o| matches!(o, RecordingOutput::Event(SessionEvent::Upgraded(_)))));
    }

    #[test]
    fn unacknowledged_cast_stops_reading_the_upstream_until_acks_come() {
        let now = t0();
        let mut r = recording(now, Policy::FailClosed, 1024);
        let attempt = open_v2(&mut r, now);
        r.handle_client_bytes(now, REQUEST);
        r.handle_upstream_bytes(now, SWITCHED);
        r.handle_upstream_bytes(now, &stdout(&[b'x'; 2000]));
        let body = sent(&drain(&mut r));
        assert_eq!(r.read_budget(Side::Upstream), 0, "cap reached");
        assert_eq!(
            r.read_budget(Side::Client),
            usize::MAX,
            "stdin is not recorded"
        );
        let acked = body.len();
        r.handle_upload(now, |u| {
            u.handle_v2_body(now, attempt, format!("{{\"ack\":{acked}}}\n").as_bytes())
        });
        assert_eq!(r.read_budget(Side::Upstream), 1024, "released by the ack");
    }

    #[test]
    fn the_earliest_deadline_wins_and_says_whose_it_is() {
        let now = t0();
        let mut r = recording(now, Policy::FailOpen, 1 << 20);
        drain(&mut r);
        // Only the upload's budgets run before the session is upgraded.
        assert!(matches!(r.timer(), Some((_, RecordingTimer::Upload(_)))));
        let tty = String::from_utf8(REQUEST.to_vec())
            .unwrap()
            .replace("stdout=true", "stdout=true&tty=true");
        r.handle_client_bytes(now, tty.as_bytes());
        r.handle_upstream_bytes(now, SWITCHED);
        let (at, timer) = r.timer().unwrap();
        assert_eq!(timer, RecordingTimer::Session(Timer::FirstResize));
        assert_eq!(at, now + Duration::from_secs(1));
    }

    #[test]
    fn fail_closed_mid_session_tells_kubectl_why_then_closes() {
        let now = t0();
        let mut r = recording(now, Policy::FailClosed, 1 << 20);
        let attempt = open_v2(&mut r, now);
        r.handle_client_bytes(now, REQUEST);
        r.handle_upstream_bytes(now, SWITCHED);
        r.handle_upstream_bytes(now, &stdout(b"working...\n"));
        drain(&mut r);
        r.handle_upload(now, |u| {
            u.handle_v2_body(now, attempt, b"{\"error\":\"disk full\"}\n")
        });
        let outputs = drain(&mut r);
        let position = |f: &dyn Fn(&RecordingOutput) -> bool| outputs.iter().position(f);
        let failed = position(&|o| matches!(o, RecordingOutput::Upload(UploadOutput::Failed(_))));
        let inject = position(&|o| matches!(o, RecordingOutput::Inject { .. }));
        let close = position(&|o| matches!(o, RecordingOutput::Close(_)));
        assert!(failed < inject && inject < close, "{outputs:?}");
        let Some(RecordingOutput::Inject { forward: 0, bytes }) =
            inject.map(|i| outputs[i].clone())
        else {
            panic!("{outputs:?}");
        };
        let mut d = crate::exec::ExecDecoder::new(
            crate::handshake::Negotiated::WebSocket(WsProtocol::V5Channel),
            &crate::Limits::default(),
        );
        let mut said = None;
        d.decode(Side::Upstream, &bytes, |e| {
            if let crate::ExecEvent::Exit(crate::ExitStatus::Failure { message, .. }) = e {
                said = Some(message);
            }
        })
        .unwrap();
        let said = said.expect("a Status on the error channel");
        assert!(
            said.contains("recording was lost") && said.contains("disk full"),
            "{said}"
        );
        assert_eq!(r.read_budget(Side::Client), 0);
        assert_eq!(r.read_budget(Side::Upstream), 0);
    }
}
