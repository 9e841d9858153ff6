//! [`Driver`]: the decisions of the driving loop, without the I/O — which
//! direction may move, when the core's deadline is due, the idle and
//! half-close limits, the farewell, and when the session is over. The
//! adapter owns the streams, the sleep and the sink; it asks the driver
//! what to do next ([`Driver::poll`]) and tells it what happened
//! ([`Driver::on_pump`], [`Driver::on_io`]).

use super::machine::{Deadline, Machine};
use super::options::DriveOptions;
use super::pump::{Pump, PumpState, PumpStep};
use super::summary::{DriveError, DriveErrorKind, DriveSummary, Ledger};
use crate::session::FAREWELL_WAIT;
use crate::Side;
use std::time::Instant;

/// What the adapter does next.
#[derive(Debug)]
pub enum Next {
    /// The machine has outputs: execute its work and deliver its items to
    /// the sink (through [`Driver::ledger`]); an error ends the session
    /// ([`Driver::end`]). Then ask again.
    Drain,
    /// Wait until one of: a pump makes progress (poll them in
    /// [`Driver::order`], each with [`Driver::pump`]), the machine's own
    /// I/O has an event, `wake` (re-arm the sleep only when `changed`),
    /// or the caller's stop signal. Then report and ask again.
    Wait {
        wake: Option<Instant>,
        changed: bool,
    },
    /// The session is over: close both streams, then [`Driver::end`].
    End(Result<(), DriveErrorKind>),
}

/// The loop's state. See the module documentation.
#[derive(Debug)]
pub struct Driver {
    started: Instant,
    idle_timeout: Option<std::time::Duration>,
    half_close_timeout: Option<std::time::Duration>,
    preamble: super::options::Preamble,
    /// `pumps[0]`: client → upstream; `pumps[1]`: upstream → client.
    pumps: [Pump; 2],
    may_read: [bool; 2],
    eof_fed: [bool; 2],
    idle_check: Option<Instant>,
    half_closed_at: Option<Instant>,
    /// Set when the core ended the session: the farewell's deadline and
    /// the reason to report once it is written.
    parting: Option<(Instant, Result<(), DriveErrorKind>)>,
    deadline: Deadline,
    armed: Option<Instant>,
    turn: usize,
    /// A read fed to the machine, to forward once its outputs are drained.
    held: Option<(usize, usize)>,
    drain_due: bool,
    /// A pump failed: the session ends with that error at once.
    failed: Option<DriveErrorKind>,
    ledger: Ledger,
}

impl Driver {
    pub fn new(options: &DriveOptions, now: Instant) -> Driver {
        let size = options.buffer_size.max(1);
        Driver {
            started: now,
            idle_timeout: options.idle_timeout,
            half_close_timeout: options.half_close_timeout,
            preamble: options.preamble.clone(),
            pumps: [
                Pump::new(Side::Client, size, now),
                Pump::new(Side::Upstream, size, now),
            ],
            may_read: [false, false],
            eof_fed: [false, false],
            idle_check: options.idle_timeout.map(|t| now + t),
            half_closed_at: None,
            parting: None,
            deadline: Deadline::default(),
            armed: None,
            turn: 0,
            held: None,
            // Whatever the machine holds from before the session (a
            // recording's upload log or verdict, the preamble's outputs)
            // goes first.
            drain_due: true,
            failed: None,
            ledger: Ledger::new(options),
        }
    }

    /// Feeds the [`super::Preamble`] (client, then upstream): not forwarded,
    /// not counted. Call once, before the first [`Driver::poll`].
    pub fn start(&mut self, now: Instant, machine: &mut impl Machine) {
        let preamble = std::mem::take(&mut self.preamble);
        for (side, bytes) in [
            (Side::Client, &preamble.client),
            (Side::Upstream, &preamble.upstream),
        ] {
            if !bytes.is_empty() {
                machine.handle_bytes(now, side, bytes);
            }
        }
    }

    /// The summary being built and the sink's error policy.
    pub fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// Which pump to poll first: they alternate, for fairness.
    pub fn order(&self) -> [usize; 2] {
        [self.turn, self.turn ^ 1]
    }

    /// Pump `i` (0: client → upstream, 1: upstream → client) and whether
    /// its side may be read now.
    pub fn pump(&mut self, i: usize) -> (&mut Pump, bool) {
        let may_read = self.may_read.get(i).copied().unwrap_or(false);
        (self.at(i), may_read)
    }

    /// Pump `i` (anything but 0 is the upstream → client one).
    fn at(&mut self, i: usize) -> &mut Pump {
        let [to_upstream, to_client] = &mut self.pumps;
        if i == 0 {
            to_upstream
        } else {
            to_client
        }
    }

    fn eof_fed(&mut self, side: Side) -> &mut bool {
        let [client, upstream] = &mut self.eof_fed;
        match side {
            Side::Client => client,
            Side::Upstream => upstream,
        }
    }

    /// What to do next. `now` is read before anything is awaited.
    pub fn poll(&mut self, now: Instant, machine: &mut impl Machine) -> Next {
        if let Some(kind) = self.failed.take() {
            return Next::End(Err(kind));
        }
        if std::mem::take(&mut self.drain_due) {
            return Next::Drain;
        }
        if let Some((i, n)) = self.held.take() {
            self.forward_held(now, machine, i, n);
        }
        // The core ended the session: write its last words to the client
        // (after the write under way), forward nothing else, then stop.
        if let Some((forward, bytes)) = machine.take_farewell() {
            let [to_upstream, to_client] = &mut self.pumps;
            let held = (to_client.state() == PumpState::Held).then_some(0);
            let writing = to_client.part(held, forward, bytes);
            to_upstream.stop();
            let why = machine.take_close().map_or(Ok(()), Err);
            if !writing {
                return Next::End(why);
            }
            self.parting = Some((now + FAREWELL_WAIT, why));
        } else if let Some(why) = machine.take_close() {
            return Next::End(Err(why));
        }
        if let Some((deadline, _)) = &self.parting {
            if self.pumps[1].state() == PumpState::Done || *deadline <= now {
                return Next::End(self.parting.take().map_or(Ok(()), |(_, why)| why));
            }
        } else if self.pumps.iter().all(|p| p.state() == PumpState::Done) {
            return Next::End(Ok(()));
        }
        if self.deadline.fire(now, machine) {
            return Next::Drain;
        }
        if let (Some(limit), Some(check)) = (self.idle_timeout, self.idle_check) {
            if check <= now {
                // Lazily re-armed: activity only moves the check when it fires.
                let last = self.pumps[0].active_at().max(self.pumps[1].active_at());
                if last + limit <= now {
                    return Next::End(Err(DriveErrorKind::Idle(limit)));
                }
                self.idle_check = Some(last + limit);
            }
        }
        let half_close_deadline = self
            .half_close_timeout
            .zip(self.half_closed_at)
            .map(|(limit, since)| since + limit);
        if half_close_deadline.is_some_and(|d| d <= now) {
            let open = self
                .pumps
                .iter()
                .find(|p| p.state() != PumpState::Done)
                .map_or(Side::Client, |p| p.from());
            return Next::End(Err(DriveErrorKind::HalfClose {
                open,
                timeout: self.half_close_timeout.unwrap_or_default(),
            }));
        }
        let wake = [
            self.deadline.next(machine),
            self.idle_check,
            half_close_deadline,
            self.parting.as_ref().map(|p| p.0),
        ]
        .into_iter()
        .flatten()
        .min();
        let changed = wake != self.armed;
        self.armed = wake;
        self.may_read = [
            machine.may_read(Side::Client),
            machine.may_read(Side::Upstream),
        ];
        self.turn ^= 1;
        Next::Wait { wake, changed }
    }

    /// Pump `i` reported `step`.
    pub fn on_pump(&mut self, now: Instant, machine: &mut impl Machine, i: usize, step: PumpStep) {
        let from = self.at(i).from();
        match step {
            PumpStep::Read(n) => {
                let summary = self.ledger.summary_mut();
                match from {
                    Side::Client => summary.client_bytes += n as u64,
                    Side::Upstream => summary.upstream_bytes += n as u64,
                }
                machine.handle_bytes(now, from, self.at(i).read_bytes(n));
                // Drained (and the sink awaited) before forwarding: a
                // fail-closed decision leaves these bytes unforwarded.
                self.held = Some((i, n));
                self.drain_due = true;
            }
            PumpStep::Eof => {
                let summary = self.ledger.summary_mut();
                match from {
                    Side::Client => summary.client_eof = true,
                    Side::Upstream => summary.upstream_eof = true,
                }
                self.half_closed_at.get_or_insert(now);
                self.at(i).set_state(PumpState::ShuttingDown);
                if !std::mem::replace(self.eof_fed(from), true) {
                    machine.handle_eof(now, from);
                    self.drain_due = true;
                }
            }
            PumpStep::Closed => {}
            PumpStep::Failed(kind) => self.failed = Some(kind),
        }
    }

    /// The caller's stop signal completed. `None`: the session is cut at
    /// once ([`DriveErrorKind::Stopped`]; the recording is still
    /// finished). `Some(message)`: the core ends it with that message
    /// ([`Machine::end_with_message`]): its farewell to the client at the
    /// upstream's next frame boundary (within
    /// [`crate::session::FAREWELL_WAIT`]), nothing more from the client,
    /// the cast's end marker, then the usual end — `Ok` unless something
    /// else ended the session first. Report it once: the adapter does not
    /// poll a completed stop signal again.
    pub fn on_stop(&mut self, now: Instant, machine: &mut impl Machine, message: Option<&str>) {
        match message {
            None => self.failed = Some(DriveErrorKind::Stopped),
            Some(message) => {
                machine.end_with_message(now, message);
                self.drain_due = true;
            }
        }
    }

    /// The machine's own I/O fed it an input: drain next.
    pub fn on_io(&mut self) {
        self.drain_due = true;
    }

    /// A read whose outputs are drained: forward it — or, if the core
    /// decided to end the session, only what it allows, then its farewell.
    fn forward_held(&mut self, now: Instant, machine: &mut impl Machine, i: usize, n: usize) {
        let from = self.at(i).from();
        let Some((forward, bytes)) = machine.take_farewell() else {
            self.at(i).set_state(PumpState::Writing { pos: 0, end: n });
            return;
        };
        // Only the first `forward` bytes of an upstream read go on; a
        // client read goes nowhere.
        let [to_upstream, to_client] = &mut self.pumps;
        if from == Side::Client {
            to_client.part(None, 0, bytes);
        } else {
            to_client.part(Some(n), forward, bytes);
        }
        to_upstream.stop();
        let why = machine.take_close().map_or(Ok(()), Err);
        self.parting = Some((now + FAREWELL_WAIT, why));
    }

    /// After the loop, with both streams closed: the machine hears that
    /// both sides are done (so the recording is finished whatever
    /// happened). Drain it next, then [`Driver::verdict`].
    pub fn close_sides(&mut self, now: Instant, machine: &mut impl Machine) {
        for side in [Side::Client, Side::Upstream] {
            if !std::mem::replace(self.eof_fed(side), true) {
                machine.handle_eof(now, side);
            }
        }
    }

    /// The outcome so far with the machine's own verdict added (a
    /// fail-closed recording that ended while closing).
    pub fn verdict(
        &self,
        machine: &mut impl Machine,
        result: Result<(), DriveErrorKind>,
    ) -> Result<(), DriveErrorKind> {
        match machine.take_close() {
            Some(why) => result.and(Err(why)),
            None => result,
        }
    }

    /// The result: the summary, with the session's duration until `now`.
    pub fn end(
        self,
        now: Instant,
        result: Result<(), DriveErrorKind>,
    ) -> Result<DriveSummary, DriveError> {
        let mut summary = self.ledger.into_summary();
        summary.duration = now.saturating_duration_since(self.started);
        match result {
            Ok(()) => Ok(summary),
            Err(kind) => Err(DriveError {
                kind,
                summary: Box::new(summary),
            }),
        }
    }
}
