//! HTTP/2 connections shared by the v2 attempts of every session in the
//! process that upload to the same recorder (issue #8): a connection's
//! buffers, HPACK state and socket cost ≈37 KiB, more than an idle session
//! itself, so one connection carries up to [`STREAMS_PER_CONNECTION`]
//! uploads, one stream each.
//!
//! Nothing is spawned (the crate runs on any runtime), so a shared
//! connection is driven by whichever of its attempts is polled: each
//! attempt polls the connection as part of its own poll, and the
//! connection's waker wakes every attempt on it, so whoever runs first
//! after the socket is ready does the connection's I/O. h2 then wakes the
//! streams that got something.
//!
//! Attempts share a connection only with the same dialer, TLS
//! configuration and [`Dial::Scope`] (tokio: the runtime whose I/O driver
//! serves the socket). A connection takes no new attempts once it ended, an
//! attempt on it failed, or the core gave up an attempt on it while its
//! requests still ran ([`Lease::retire`]): the core's failover must get a
//! fresh connection, never the one that just failed it. It closes
//! when its last attempt drops its [`Lease`].
//!
//! Sharing has a price: the uploads on one connection share its TCP stream
//! and the recorder's connection-level flow-control window, so a stalled
//! stream can hold back the others until the core closes it (ack window).
//! `kubecast recorder` makes its connection window cover every stream's
//! window, so against it a stalled upload holds back only its own stream.

use super::io::H2Io;
use super::Dial;
use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use kubecast_core::upload::RecorderAddr;
use std::any::{Any, TypeId};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};

/// Uploads one connection carries at most (fewer if the recorder allows
/// fewer concurrent streams): every socket wake-up wakes all of them.
const STREAMS_PER_CONNECTION: usize = 32;

/// Any adapter's connection, so that one registry serves every [`Dial`].
pub(crate) type BoxConn = Box<dyn Conn>;

pub(crate) trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

type H2Connection = h2::client::Connection<H2Io<BoxConn>, Bytes>;

/// The connections of the process, whatever their dialer; entries whose
/// connection closed are pruned on the next lease.
static POOL: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Connections being dialled. Attempts that would open the same one wait
/// for it instead (sessions often start together), and then share it or
/// fail as it did. Locked after [`POOL`] when both are.
static DIALS: Mutex<Vec<Arc<Gate>>> = Mutex::new(Vec::new());

/// How a v2 attempt gets its connection.
pub(crate) enum Acquire {
    /// A live connection with room.
    Reuse(Lease),
    /// Another attempt is dialling this connection: wait for its outcome.
    Wait(Waiter),
    /// Dial it, and tell the waiters how it went.
    Dial(Dialing),
}

/// Finds a connection for an attempt of dialer `D` to `recorder`.
pub(crate) fn acquire<D: Dial + 'static>(recorder: &RecorderAddr, tls: &D::Tls) -> Acquire {
    let scope = D::scope();
    let mut pool = lock(&POOL);
    pool.retain(|entry| entry.strong_count() > 0);
    let open = pool
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| s.key.matches::<D>(&scope, recorder, tls) && s.has_room());
    if let Some(shared) = open {
        return Acquire::Reuse(Lease::join(shared));
    }
    let mut dials = lock(&DIALS);
    let dialling = dials
        .iter()
        .find(|g| g.key.matches::<D>(&scope, recorder, tls));
    if let Some(gate) = dialling {
        return Acquire::Wait(Waiter(gate.clone()));
    }
    let gate = Arc::new(Gate {
        key: Key::new::<D>(recorder, tls),
        state: Mutex::default(),
    });
    dials.push(gate.clone());
    Acquire::Dial(Dialing {
        gate,
        finished: false,
    })
}

/// How a dial that others waited for went.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The connection is in the pool (it may be full by now): look again.
    Open,
    /// The dialling attempt was closed first: look again.
    Abandoned,
    /// The dial failed ([`Net::ConnectFailed`](kubecast_core::drive::Net)).
    ConnectFailed(String),
    /// Connected, then no HTTP/2 (ALPN, handshake): a stream error.
    StreamFailed(String),
}

/// One connection being dialled, and who waits for it.
struct Gate {
    key: Key,
    state: Mutex<(Option<Outcome>, Vec<Waker>)>,
}

impl Gate {
    fn finish(&self, outcome: Outcome) {
        lock(&DIALS).retain(|g| !std::ptr::eq(Arc::as_ptr(g), self));
        let wakers = {
            let mut state = lock(&self.state);
            state.0 = Some(outcome);
            std::mem::take(&mut state.1)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// An attempt waiting for another one's dial.
pub(crate) struct Waiter(Arc<Gate>);

impl Waiter {
    pub(crate) async fn outcome(self) -> Outcome {
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0.state);
            if let Some(outcome) = &state.0 {
                return Poll::Ready(outcome.clone());
            }
            if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
                state.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// The attempt that dials; dropped unfinished, it lets the waiters look
/// again.
pub(crate) struct Dialing {
    gate: Arc<Gate>,
    finished: bool,
}

impl Dialing {
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.gate.finish(outcome);
    }
}

impl Drop for Dialing {
    fn drop(&mut self) {
        if !self.finished {
            self.gate.finish(Outcome::Abandoned);
        }
    }
}

/// A poisoned lock only means another attempt panicked while holding it;
/// the state behind it is still consistent (every update is one step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a connection was opened for: only attempts with the same dialer,
/// scope, TLS configuration and recorder may share it.
struct Key {
    dial: TypeId,
    scope: Box<dyn Any + Send + Sync>,
    tls: Box<dyn Any + Send + Sync>,
    recorder: RecorderAddr,
}

impl Key {
    fn new<D: Dial + 'static>(recorder: &RecorderAddr, tls: &D::Tls) -> Key {
        Key {
            dial: TypeId::of::<D>(),
            scope: Box::new(D::scope()),
            tls: Box::new(tls.clone()),
            recorder: recorder.clone(),
        }
    }

    fn matches<D: Dial + 'static>(
        &self,
        scope: &D::Scope,
        recorder: &RecorderAddr,
        tls: &D::Tls,
    ) -> bool {
        self.dial == TypeId::of::<D>()
            && self.scope.downcast_ref::<D::Scope>() == Some(scope)
            && &self.recorder == recorder
            && self.tls.downcast_ref::<D::Tls>() == Some(tls)
    }
}

/// One shared HTTP/2 connection.
struct Shared {
    key: Key,
    /// `None` once the connection ended.
    connection: Mutex<Option<H2Connection>>,
    send: h2::client::SendRequest<Bytes>,
    wakers: Arc<FanOut>,
    /// The connection's waker: wakes every attempt on it.
    waker: Waker,
    users: AtomicUsize,
    /// Set once the connection ended or failed an attempt.
    retired: AtomicBool,
    /// The recorder's `MAX_CONCURRENT_STREAMS`, as last seen.
    max_streams: AtomicUsize,
}

impl Shared {
    fn has_room(&self) -> bool {
        let cap = STREAMS_PER_CONNECTION.min(self.max_streams.load(Ordering::Relaxed));
        !self.retired.load(Ordering::Relaxed) && self.users.load(Ordering::Relaxed) < cap
    }
}

/// The wakers of the attempts on one connection, by slot.
struct FanOut {
    /// Tells this connection apart in [`QUIET`].
    id: u64,
    slots: Mutex<Vec<Option<Waker>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The connection whose attempt is running its streams on this thread
    /// and drives the connection next ([`Lease::quietly`]); 0 for none.
    static QUIET: Cell<u64> = const { Cell::new(0) };
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // h2 wakes the connection whenever a stream queues a frame; the
        // attempt doing so polls the connection right after, so waking
        // every other attempt on it would only cost them a poll each.
        if QUIET.with(Cell::get) == self.id {
            return;
        }
        for waker in lock(&self.slots).iter().flatten() {
            waker.wake_by_ref();
        }
    }
}

impl FanOut {
    fn register(&self, slot: usize, waker: &Waker) {
        let mut slots = lock(&self.slots);
        if let Some(entry) = slots.get_mut(slot) {
            if !entry.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *entry = Some(waker.clone());
            }
        }
    }

    /// A free slot (reused after an attempt left).
    fn join(&self) -> usize {
        let mut slots = lock(&self.slots);
        match slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                slots.push(None);
                slots.len() - 1
            }
        }
    }

    fn leave(&self, slot: usize) {
        if let Some(entry) = lock(&self.slots).get_mut(slot) {
            *entry = None;
        }
    }
}

/// One attempt's place on a shared connection. Dropping it leaves the
/// connection (closing it if this was the last attempt).
pub(crate) struct Lease {
    shared: Arc<Shared>,
    slot: usize,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("recorder", &self.shared.key.recorder)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Makes a freshly handshaken connection shareable and takes the
    /// first place on it.
    pub(crate) fn open<D: Dial + 'static>(
        recorder: &RecorderAddr,
        tls: &D::Tls,
        send: h2::client::SendRequest<Bytes>,
        connection: H2Connection,
    ) -> Lease {
        let wakers = Arc::new(FanOut {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            slots: Mutex::default(),
        });
        let shared = Arc::new(Shared {
            key: Key::new::<D>(recorder, tls),
            max_streams: AtomicUsize::new(connection.max_concurrent_send_streams()),
            connection: Mutex::new(Some(connection)),
            send,
            waker: Waker::from(wakers.clone()),
            wakers,
            users: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        });
        lock(&POOL).push(Arc::downgrade(&shared));
        Lease::join(shared)
    }

    fn join(shared: Arc<Shared>) -> Lease {
        shared.users.fetch_add(1, Ordering::Relaxed);
        let slot = shared.wakers.join();
        Lease { shared, slot }
    }

    /// This attempt's handle for opening streams.
    pub(crate) fn send_request(&self) -> h2::client::SendRequest<Bytes> {
        self.shared.send.clone()
    }

    /// No new attempt may use this connection: one failed on it.
    pub(crate) fn retire(&self) {
        self.shared.retired.store(true, Ordering::Relaxed);
    }

    /// Runs `f` (the attempt's work on its streams) without waking the
    /// other attempts on the connection: the caller polls it next
    /// ([`Lease::poll_drive`]), in the same poll of its task.
    pub(crate) fn quietly<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = QUIET.with(|q| q.replace(self.shared.wakers.id));
        let out = f();
        QUIET.with(|q| q.set(before));
        out
    }

    /// Does the connection's I/O as part of the caller's poll; `Ready` once
    /// the connection ended (its streams have seen the error by then).
    pub(crate) fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        // Before polling: a wake-up that comes while another attempt
        // drives must reach this one too.
        shared.wakers.register(self.slot, cx.waker());
        let mut connection = lock(&shared.connection);
        let Some(conn) = connection.as_mut() else {
            return Poll::Ready(());
        };
        let mut fan_out = Context::from_waker(&shared.waker);
        match std::pin::Pin::new(&mut *conn).poll(&mut fan_out) {
            Poll::Pending => {
                let max = conn.max_concurrent_send_streams();
                shared.max_streams.store(max, Ordering::Relaxed);
                Poll::Pending
            }
            Poll::Ready(_) => {
                self.retire();
                // Dropping it fails the streams still open, which wakes
                // their attempts.
                *connection = None;
                drop(connection);
                shared.waker.wake_by_ref();
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.wakers.leave(self.slot);
        self.shared.users.fetch_sub(1, Ordering::Relaxed);
    }
}
