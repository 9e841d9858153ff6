//! [`RecordingMachine`]: a core [`Recording`] as a driver drives it — its
//! upload work for the adapter's transport, its facts for the sink, the
//! write gate, and its verdicts (farewell, close, open or failed).

use super::machine::Machine;
use super::sink::{SinkItem, UploadEvent};
use super::summary::DriveErrorKind;
use super::upload_io::{AttemptCommand, Net, Sorted, UploadWork};
use crate::recording::{CloseReason, Recording, RecordingOutput};
use crate::session::SessionEvent;
use crate::upload::{AttemptId, FailureReason, UploadFailure, UploadState};
use crate::Side;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A recorded session's machine. Its outputs are sorted as they come:
/// upload work is returned by [`Machine::poll_work`] (execute it at once,
/// even before the session is driven), facts wait for the sink in
/// [`Machine::poll_item`] (what happened while waiting for a recorder
/// reaches the sink when the session is driven).
///
/// How the adapters' `RecordingHandle` / `drive_recording` run it:
///
/// - create it as soon as the session is known: the upload dials at once;
///   a fail-closed proxy waits for [`RecordingMachine::open_result`]
///   (`start_recording`) and refuses the request on `Err` — the failure
///   lists every attempt — before anything goes upstream;
/// - the session is driven by the same loop as a plain one; the upload's
///   network events ([`RecordingMachine::handle_net`]) and the merged
///   deadline are handled in it;
/// - a side whose bytes become cast is not read while the read budget is 0
///   (unacknowledged cast at the cap) or while cast bytes are still being
///   written to the recorder (v1's TCP back-pressure, v2's flow-control
///   window): [`Machine::may_read`];
/// - fail-closed: when the upload fails the core ends the session — its
///   last words to kubectl at a frame boundary, nothing else forwarded,
///   both connections closed — and the result is
///   [`DriveErrorKind::RecordingFailed`]; fail-open keeps forwarding and
///   the summary has `upload_failure`;
/// - the sink gets the events, the capture and the upload log
///   (`SessionSink::upload`), not the cast;
/// - when both connections are done they are closed at once, then the
///   upload runs until [`RecordingMachine::settled`] (the final ack or
///   response, bounded by the upload's windows), then the sink's `finish`.
#[derive(Debug)]
pub struct RecordingMachine {
    recording: Recording,
    /// Per live attempt: `Send` bytes handed to the transport and not yet
    /// written to its connection.
    unwritten: HashMap<AttemptId, usize>,
    work: VecDeque<UploadWork>,
    items: VecDeque<SinkItem>,
    failure: Option<UploadFailure>,
    farewell: Option<(usize, Bytes)>,
    close: Option<CloseReason>,
    /// The session reported `RecordingFinished` (so the upload was told to
    /// finish and will settle).
    finished: bool,
}

impl RecordingMachine {
    /// Takes over `recording` (just created: its upload is dialling).
    pub fn new(recording: Recording) -> Self {
        let mut machine = RecordingMachine {
            recording,
            unwritten: HashMap::new(),
            work: VecDeque::new(),
            items: VecDeque::new(),
            failure: None,
            farewell: None,
            close: None,
            finished: false,
        };
        machine.sort();
        machine
    }

    /// The core machine, for its getters.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// The upload's failure, once it failed.
    pub fn failure(&self) -> Option<&UploadFailure> {
        self.failure.as_ref()
    }

    /// Something happened on `attempt`'s connection.
    pub fn handle_net(&mut self, now: Instant, attempt: AttemptId, net: Net) {
        if let Net::Written(n) = net {
            if let Some(left) = self.unwritten.get_mut(&attempt) {
                *left = left.saturating_sub(n);
            }
            return;
        }
        self.recording
            .handle_upload(now, |u| net.apply(now, attempt, u));
        self.sort();
    }

    /// Cast bytes handed to the transport and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten.values().sum()
    }

    /// Before the session: `Some(Ok)` once a recorder accepted the upload,
    /// `Some(Err)` once it failed (with every attempt), `None` while it is
    /// still connecting.
    pub fn open_result(&self) -> Option<Result<(), UploadFailure>> {
        match self.recording.upload_state() {
            UploadState::Open | UploadState::Finishing | UploadState::Completed => Some(Ok(())),
            UploadState::Failed => Some(Err(self.failure_or_summary())),
            UploadState::Connecting => None,
        }
    }

    /// After the session: nothing more will happen to the upload — it
    /// completed or failed, or the session recorded nothing (an upload that
    /// never got a cast has nothing to wait for).
    pub fn settled(&self) -> bool {
        !self.finished
            || matches!(
                self.recording.upload_state(),
                UploadState::Completed | UploadState::Failed
            )
    }

    fn failure_or_summary(&self) -> UploadFailure {
        self.failure.clone().unwrap_or_else(|| {
            let upload = self.recording.upload();
            let progress = upload.progress();
            UploadFailure {
                reason: FailureReason::NoRecorderAccepted,
                attempts: upload.attempts().to_vec(),
                accepted: progress.accepted,
                sent: progress.sent,
                acked: progress.acked,
            }
        })
    }

    /// Moves the recording's outputs into the work and item queues.
    fn sort(&mut self) {
        while let Some(output) = self.recording.poll_output() {
            match output {
                RecordingOutput::Upload(output) => match Sorted::from_output(output) {
                    Sorted::Work(work) => {
                        self.note_work(&work);
                        self.work.push_back(work);
                    }
                    Sorted::Fact(event) => {
                        if let UploadEvent::Failed(failure) = &event {
                            self.failure = Some(failure.clone());
                        }
                        self.items.push_back(SinkItem::Upload(event));
                    }
                },
                RecordingOutput::Event(event) => {
                    if matches!(event, SessionEvent::RecordingFinished(_)) {
                        self.finished = true;
                    }
                    self.items.push_back(SinkItem::Event(event));
                }
                RecordingOutput::Capture(bytes) => self.items.push_back(SinkItem::Capture(bytes)),
                RecordingOutput::Inject { forward, bytes } => {
                    self.farewell = Some((forward, bytes))
                }
                RecordingOutput::Close(reason) => self.close = Some(reason),
            }
        }
    }

    fn note_work(&mut self, work: &UploadWork) {
        match work {
            UploadWork::Connect { attempt, .. } => {
                self.unwritten.insert(*attempt, 0);
            }
            UploadWork::Close { attempt } => {
                self.unwritten.remove(attempt);
            }
            UploadWork::Command {
                attempt,
                command: AttemptCommand::Send(bytes),
            } => {
                if let Some(left) = self.unwritten.get_mut(attempt) {
                    *left += bytes.len();
                }
            }
            UploadWork::Command { .. } => {}
        }
    }

    /// After the session settled: verdicts nobody will act on any more.
    pub fn clear_verdicts(&mut self) {
        self.close = None;
        self.farewell = None;
    }
}

impl Machine for RecordingMachine {
    fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]) {
        match side {
            Side::Client => self.recording.handle_client_bytes(now, bytes),
            Side::Upstream => self.recording.handle_upstream_bytes(now, bytes),
        }
        self.sort();
    }

    fn handle_eof(&mut self, now: Instant, side: Side) {
        self.recording.handle_eof(now, side);
        self.sort();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.recording.handle_timeout(now);
        self.sort();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.recording.poll_timeout()
    }

    fn may_read(&self, side: Side) -> bool {
        match self.recording.read_budget(side) {
            0 => false,
            // The core does not hold this side back (its bytes do not
            // become cast, or the upload is over).
            usize::MAX => true,
            _ => self.unwritten() == 0,
        }
    }

    fn poll_work(&mut self) -> Option<UploadWork> {
        self.work.pop_front()
    }

    fn poll_item(&mut self) -> Option<SinkItem> {
        self.items.pop_front()
    }

    fn take_farewell(&mut self) -> Option<(usize, Bytes)> {
        self.farewell.take()
    }

    fn take_close(&mut self) -> Option<DriveErrorKind> {
        match self.close.take()? {
            CloseReason::RecordingFailed(failure) => {
                Some(DriveErrorKind::RecordingFailed(Box::new(failure)))
            }
        }
    }

    fn end_with_message(&mut self, now: Instant, message: &str) {
        self.recording.end_with_message(now, message);
        self.sort();
    }
}
