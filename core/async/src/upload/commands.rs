//! The core's commands for one attempt: an unbounded queue (the core bounds
//! what goes in: the write gate and `max_unacked`) with one consumer, the
//! attempt. async-channel's unbounded queue allocates a block of 31 slots
//! (≈3 KiB) with its first message and keeps it while the session idles;
//! this one holds only what is waiting.

use kubecast_core::drive::AttemptCommand;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Room kept while the queue is empty: a command or two arrive at a time.
const KEPT: usize = 2;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<AttemptCommand>,
    waker: Option<Waker>,
    /// The driver dropped its end.
    closed: bool,
    /// The attempt ended: later commands go nowhere.
    ended: bool,
}

type Shared = Arc<Mutex<State>>;

/// A poisoned lock only means a panic elsewhere; the queue is consistent.
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new queue: the driver's end and the attempt's.
pub(crate) fn queue() -> (Sender, Commands) {
    let shared = Shared::default();
    (Sender(shared.clone()), Commands(shared))
}

/// The driver's end; dropping it ends the attempt's [`Commands::recv`].
/// Commands sent after the attempt ended are dropped.
#[derive(Debug)]
pub(crate) struct Sender(Shared);

impl Sender {
    pub(crate) fn send(&self, command: AttemptCommand) {
        let waker = {
            let mut state = lock(&self.0);
            if state.ended {
                return;
            }
            state.queue.push_back(command);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.0);
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The attempt's end.
#[derive(Debug)]
pub(crate) struct Commands(Shared);

impl Commands {
    /// The next command; `None` once the driver dropped its end.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<AttemptCommand>> {
        let mut state = lock(&self.0);
        if let Some(command) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > KEPT {
                // An idle attempt keeps no room for a burst it once had.
                state.queue.shrink_to(KEPT);
            }
            return Poll::Ready(Some(command));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    pub(crate) async fn recv(&self) -> Option<AttemptCommand> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.ended = true;
        state.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_lite::future::block_on;

    #[test]
    fn commands_arrive_in_order_and_end_when_the_driver_drops_its_end() {
        let (tx, rx) = queue();
        tx.send(AttemptCommand::Send(Bytes::from_static(b"a")));
        tx.send(AttemptCommand::EndStream);
        assert_eq!(
            block_on(rx.recv()),
            Some(AttemptCommand::Send(Bytes::from_static(b"a")))
        );
        assert_eq!(block_on(rx.recv()), Some(AttemptCommand::EndStream));
        drop(tx);
        assert_eq!(block_on(rx.recv()), None);
    }

    #[test]
    fn commands_for_an_attempt_that_ended_are_dropped() {
        let (tx, rx) = queue();
        drop(rx);
        tx.send(AttemptCommand::EndStream);
        assert!(lock(&tx.0).queue.is_empty());
    }
}
