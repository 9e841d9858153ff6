//! [`Recorder`]: a core `RecordingMachine` with its upload transport and
//! deadline — what an adapter's `RecordingHandle` is — on any runtime:
//! waiting for the recorder before the session ([`Recorder::wait_open`]),
//! the upload's events inside the drive loop ([`Driven::poll_io`]), and the
//! upload's end after it ([`Driven::settle`]).

use crate::port::{Driven, SinkPort};
use crate::Clock;
use kubecast_core::drive::{Deadline, Machine, Net, RecordingMachine, SessionSink, UploadWork};
use kubecast_core::recording::Recording;
use kubecast_core::upload::{AttemptId, UploadFailure};
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::pin;
use std::task::{Context, Poll};

/// An adapter's upload I/O: it executes the core's [`UploadWork`] and
/// reports what happens on the wire.
pub trait UploadTransport {
    fn execute(&mut self, work: UploadWork);
    /// The next network event, if one is waiting (this also runs the
    /// attempts of a transport that polls them in place).
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<(AttemptId, Net)>;
}

/// A recording's machine, its transport `T` and its deadline, on clock
/// `K`. Drive it with [`crate::run`].
#[derive(Debug)]
pub struct Recorder<T, K> {
    machine: RecordingMachine,
    transport: T,
    deadline: Deadline,
    clock: PhantomData<fn() -> K>,
}

impl<T: UploadTransport, K: Clock> Recorder<T, K> {
    /// Takes over `recording` (just created: its upload is dialling) and
    /// hands its first work to `transport`.
    pub fn new(recording: Recording, transport: T) -> Self {
        let mut recorder = Recorder {
            machine: RecordingMachine::new(recording),
            transport,
            deadline: Deadline::default(),
            clock: PhantomData,
        };
        recorder.execute_work();
        recorder
    }

    /// The core machine, for its getters.
    pub fn recording(&self) -> &Recording {
        self.machine.recording()
    }

    /// The upload's failure, once it failed.
    pub fn failure(&self) -> Option<&UploadFailure> {
        self.machine.failure()
    }

    /// Runs the upload until it is open (`Ok`) or failed (`Err`, with
    /// every attempt); bounded by the upload's overall budget.
    pub async fn wait_open(&mut self) -> Result<(), UploadFailure> {
        loop {
            self.execute_work();
            if let Some(open) = self.machine.open_result() {
                return open;
            }
            self.step().await;
        }
    }

    fn execute_work(&mut self) {
        while let Some(work) = self.machine.poll_work() {
            self.transport.execute(work);
        }
    }

    /// Fires the deadline if due, else waits for one network event or the
    /// deadline.
    async fn step(&mut self) {
        if self.deadline.fire(K::now(), &mut self.machine) {
            return;
        }
        let mut sleep = pin!(self.deadline.next(&self.machine).map(K::sleep_until));
        let event = poll_fn(|cx| {
            if let Poll::Ready(event) = self.transport.poll_event(cx) {
                return Poll::Ready(Some(event));
            }
            match sleep.as_mut().as_pin_mut().map(|s| s.poll(cx)) {
                Some(Poll::Ready(_)) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        if let Some((attempt, net)) = event {
            self.machine.handle_net(K::now(), attempt, net);
        }
    }
}

impl<T: UploadTransport, K: Clock> Driven<K> for Recorder<T, K> {
    type M = RecordingMachine;

    fn machine(&mut self) -> &mut RecordingMachine {
        &mut self.machine
    }

    fn execute(&mut self, work: UploadWork) {
        self.transport.execute(work);
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.transport
            .poll_event(cx)
            .map(|(attempt, net)| self.machine.handle_net(K::now(), attempt, net))
    }

    async fn settle<S: SessionSink>(&mut self, port: &mut SinkPort<'_, S, K>) {
        loop {
            // A sink error was already recorded by the port.
            let _ = port.drain(self).await;
            // A session that recorded nothing never finishes its upload:
            // there is nothing to wait for (dropping the recorder drops the
            // connections).
            if self.machine.settled() {
                break;
            }
            self.step().await;
        }
        self.machine.clear_verdicts();
    }
}
