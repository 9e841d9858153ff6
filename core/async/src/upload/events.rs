//! The attempts' events for the driver: a bounded queue, so a chatty
//! recorder waits for the driver. The driver takes events right after
//! polling the attempts in place (only they send, and only then), so it
//! needs no waker of its own; a sender that found the queue full is woken
//! when an event is taken. async-channel's bounded channel allocated its
//! slots and three listeners up front (≈1.6 KiB per session); this queue
//! holds only what is waiting.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};

/// Room kept while the queue is empty: enough for the usual few events
/// at a time without reallocating.
const KEPT: usize = 4;

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Senders waiting for room.
    blocked: Vec<Waker>,
}

/// The driver's end: dropping it makes every [`EventSender::send`] fail.
#[derive(Debug)]
pub(crate) struct Events<T> {
    state: Arc<Mutex<State<T>>>,
    bound: usize,
}

/// An attempt's end.
#[derive(Debug)]
pub(crate) struct EventSender<T> {
    state: Weak<Mutex<State<T>>>,
    bound: usize,
}

impl<T> Clone for EventSender<T> {
    fn clone(&self) -> Self {
        EventSender {
            state: self.state.clone(),
            bound: self.bound,
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the queue is consistent.
fn lock<T>(state: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Events<T> {
    /// A queue of at most `bound` events.
    pub(crate) fn new(bound: usize) -> Events<T> {
        let state = State {
            queue: VecDeque::new(),
            blocked: Vec::new(),
        };
        Events {
            state: Arc::new(Mutex::new(state)),
            bound,
        }
    }

    pub(crate) fn sender(&self) -> EventSender<T> {
        EventSender {
            state: Arc::downgrade(&self.state),
            bound: self.bound,
        }
    }

    /// The oldest event, if any.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let (event, blocked) = {
            let mut state = lock(&self.state);
            let event = state.queue.pop_front();
            if state.queue.is_empty() && state.queue.capacity() > KEPT {
                // An idle session keeps no room for a burst it once had.
                state.queue.shrink_to(KEPT);
            }
            let blocked = if event.is_some() {
                std::mem::take(&mut state.blocked)
            } else {
                Vec::new()
            };
            (event, blocked)
        };
        for waker in blocked {
            waker.wake();
        }
        event
    }
}

impl<T> EventSender<T> {
    /// Queues `event` once there is room; `false` if the driver is gone.
    pub(crate) async fn send(&self, event: T) -> bool {
        let mut event = Some(event);
        poll_fn(|cx| {
            let Some(state) = self.state.upgrade() else {
                return Poll::Ready(false);
            };
            let mut state = lock(&state);
            if state.queue.len() < self.bound {
                if let Some(event) = event.take() {
                    state.queue.push_back(event);
                }
                return Poll::Ready(true);
            }
            if !state.blocked.iter().any(|w| w.will_wake(cx.waker())) {
                state.blocked.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn a_full_queue_holds_the_sender_until_an_event_is_taken() {
        let events = Events::new(1);
        let tx = events.sender();
        assert!(block_on(tx.send(1)));
        let mut second = Box::pin(tx.send(2));
        assert_eq!(block_on(poll_once(second.as_mut())), None, "full");
        assert_eq!(events.try_recv(), Some(1));
        assert!(block_on(second));
        assert_eq!(events.try_recv(), Some(2));
        assert_eq!(events.try_recv(), None);
    }

    #[test]
    fn sending_fails_once_the_driver_is_gone() {
        let events = Events::new(1);
        let tx = events.sender();
        drop(events);
        assert!(!block_on(tx.send(1)));
    }
}
