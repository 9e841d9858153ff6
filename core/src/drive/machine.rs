//! What a driver drives: a [`Machine`] — a plain [`Session`]
//! ([`SessionMachine`]) or a recorded one
//! ([`super::RecordingMachine`]) — and the [`Deadline`] bookkeeping both
//! the loop and the upload waits share.

use super::sink::SinkItem;
use super::summary::DriveErrorKind;
use super::upload_io::UploadWork;
use crate::session::{Output, Session};
use crate::Side;
use bytes::Bytes;
use std::time::Instant;

/// The sans-IO machine a driver runs, whatever it is made of. The adapter
/// feeds it the bytes it reads, its EOFs and its deadlines, asks it before
/// every read whether that side may be read, and after every input
/// executes its upload work ([`Machine::poll_work`]) and hands its outputs
/// to the sink ([`Machine::poll_item`]).
pub trait Machine {
    fn handle_bytes(&mut self, now: Instant, side: Side, bytes: &[u8]);
    fn handle_eof(&mut self, now: Instant, side: Side);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    /// `false`: do not read `side` now (the read budget is 0, or cast bytes
    /// are still being written to the recorder).
    fn may_read(&self, side: Side) -> bool;
    /// Network work for the adapter's upload transport, executed at once
    /// (before the sink items). A plain session has none.
    fn poll_work(&mut self) -> Option<UploadWork> {
        None
    }
    /// The next output for the sink.
    fn poll_item(&mut self) -> Option<SinkItem>;
    /// The core's last words to the client, if it decided to end the
    /// session: `(forward, bytes)` as in [`Output::Inject`].
    fn take_farewell(&mut self) -> Option<(usize, Bytes)>;
    /// Why the session must end now, if the core said so.
    fn take_close(&mut self) -> Option<DriveErrorKind>;
    /// The caller ends the session with `message`: the core's farewell,
    /// written at a frame boundary ([`Session::end_with_message`]).
    fn end_with_message(&mut self, now: Instant, message: &str);
}

/// A plain session: its cast goes to the sink; it has no I/O of its own.
#[derive(Debug)]
pub struct SessionMachine<'a> {
    session: &'a mut Session,
    farewell: Option<(usize, Bytes)>,
    /// [`Machine::end_with_message`] was called: the client is not read
    /// any more (nothing of it would be forwarded).
    ending: bool,
}

impl<'a> SessionMachine<'a> {
    pub fn new(session: &'a mut Session) -> Self {
        SessionMachine {
            session,
            farewell: None,
            ending: false,
        }
    }
}

impl Machine for SessionMachine<'_> {
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

    fn may_read(&self, side: Side) -> bool {
        side == Side::Upstream || !self.ending
    }

    fn poll_item(&mut self) -> Option<SinkItem> {
        loop {
            return Some(match self.session.poll_output()? {
                Output::Event(e) => SinkItem::Event(e),
                Output::Cast(b) => SinkItem::Cast(b),
                Output::Capture(b) => SinkItem::Capture(b),
                // Only after `Session::end_with_message`, which the caller
                // may have used on a session it drives.
                Output::Inject { forward, bytes } => {
                    self.farewell = Some((forward, bytes));
                    continue;
                }
            });
        }
    }

    fn take_farewell(&mut self) -> Option<(usize, Bytes)> {
        self.farewell.take()
    }

    fn take_close(&mut self) -> Option<DriveErrorKind> {
        None
    }

    fn end_with_message(&mut self, now: Instant, message: &str) {
        self.ending = true;
        self.session.end_with_message(now, message);
    }
}

/// A machine's deadline as a loop should treat it: fired when due, and a
/// deadline the machine did not move after firing (a core bug) ignored
/// rather than spun on.
#[derive(Debug, Default)]
pub struct Deadline {
    stale: Option<Instant>,
}

impl Deadline {
    /// The machine's next deadline, unless it is the stale one.
    pub fn next(&self, machine: &impl Machine) -> Option<Instant> {
        machine.poll_timeout().filter(|d| Some(*d) != self.stale)
    }

    /// Fires the machine's deadline if it is due at `now`; `true` if it
    /// did (drain the machine next).
    pub fn fire(&mut self, now: Instant, machine: &mut impl Machine) -> bool {
        let Some(due) = self.next(machine).filter(|d| *d <= now) else {
            return false;
        };
        machine.handle_timeout(now);
        if machine.poll_timeout() == Some(due) {
            self.stale = Some(due);
        }
        true
    }
}
