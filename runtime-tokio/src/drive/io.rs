//! What `kubecast-async` needs from tokio: its byte streams ([`Stream`]),
//! its clock (pausable in tests) and its blocking pool ([`Tokio`]).

use kubecast_async::{ByteStream, Clock, Unblock};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::RuntimeFlavor;
use tokio::time::Instant;

/// A tokio byte stream for the shared loop.
pub(crate) struct Stream<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> ByteStream for Stream<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut read)
            .map_ok(|()| read.filled().len())
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tokio's clock, sleep and blocking pool.
#[derive(Debug)]
pub(crate) struct Tokio;

impl Clock for Tokio {
    type Sleep = tokio::time::Sleep;
    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }
    fn sleep_until(at: std::time::Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(Instant::from_std(at))
    }
}

impl Unblock for Tokio {
    fn unblock<T, F>(work: F) -> impl Future<Output = io::Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        // Counted until the work itself is over (done, or dropped unrun),
        // not until this future is: a write that outlived its sink timeout
        // still keeps `unblock_short` off the executor threads.
        let busy = PoolBusy::enter();
        let task = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            work()
        });
        async move { task.await.unwrap_or_else(|e| Err(io::Error::other(e))) }
    }

    /// In place with `block_in_place` on the multi-threaded runtime, else
    /// on the blocking pool. See [`InPlace`] for why that is safe.
    async fn unblock_short<T, F>(work: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let Some(claim) = InPlace::claim() else {
            return Self::unblock(work).await;
        };
        let mut work = Some(work);
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tokio::task::block_in_place(|| work.take().map(|work| work()))
        }));
        drop(claim);
        match (ran, work) {
            (Ok(Some(result)), _) => result,
            // `block_in_place` refused before running it (see
            // `InPlace::claim`): never again, and the pool this time.
            (Err(_), Some(work)) => {
                REFUSED.store(true, Ordering::Relaxed);
                Self::unblock(work).await
            }
            // The work itself panicked (std's file I/O does not).
            (Err(_), None) | (Ok(None), _) => Err(io::Error::other("a file write panicked")),
        }
    }
}

/// A [`Unblock::unblock_short`] call runs in place only while no other file
/// work of the process is under way — none in place, none on the pool —
/// and on the multi-threaded runtime; otherwise it takes the blocking pool
/// as before.
///
/// In place, a keystroke's cast write costs no thread hand-off: the worker
/// writes (a page-cache copy, microseconds) and forwards the echo at once.
/// tokio's own `File` always takes the pool, because a write can block for
/// as long as the disk or file system likes (dirty-page throttling, a
/// journal commit, a hung network mount). What bounds that here:
///
/// - `block_in_place` first hands this worker's run queue (including its
///   LIFO slot) and I/O driver to another thread, so the other sessions of
///   this worker keep running while the write blocks — the same guarantee
///   the pool gives;
/// - one write at a time in place, and none while the pool has file work
///   of ours: a stalled disk blocks at most one session's task (and one
///   thread) in place, and once anything is slow enough to overlap (a
///   pool write still hanging, a burst of sessions writing at once)
///   every write takes the pool, where the sink timeout still ends or
///   releases its session ([`kubecast_core::drive::OnSinkError`]).
///   Without the limit, every session writing during a stall would hand
///   a worker off through the pool, and a full pool would leave those
///   workers' queues unrun.
///
/// The second limit also keeps thread counts down under load: each
/// `block_in_place` starts a pool thread to take the worker over, and the
/// worker role then moves between threads — with many sessions writing at
/// once that grew the proxy by a hundred threads (and their malloc arenas)
/// in the 1000-session load run, for no latency gain: under that load the
/// writes queue anyway.
///
/// The cost: the one session whose write stalls in place cannot hear its
/// sink timeout until the write returns (its task is inside the `write`
/// call, not awaiting it), where through the pool the timeout would end
/// it (fail-closed) or let it continue unrecorded (fail-open) while the
/// write still hangs. Its output is not forwarded meanwhile either way:
/// nothing is shown that was not written to the recording first.
///
/// `block_in_place` panics on a thread that may not block — a
/// current-thread runtime, or a `LocalSet` on the thread that calls a
/// multi-threaded runtime's `block_on`; the first check rules out the
/// former, the latter is caught once and then never tried again.
struct InPlace;

/// Set while a call runs in place.
static IN_PLACE: AtomicBool = AtomicBool::new(false);
/// [`Unblock::unblock`] calls whose work has not finished.
static POOL_BUSY: AtomicUsize = AtomicUsize::new(0);
/// `block_in_place` refused once: this process uses the pool only.
static REFUSED: AtomicBool = AtomicBool::new(false);

impl InPlace {
    fn claim() -> Option<InPlace> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        if !multi_thread || REFUSED.load(Ordering::Relaxed) || POOL_BUSY.load(Ordering::Acquire) > 0
        {
            return None;
        }
        IN_PLACE
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            .then_some(InPlace)
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        IN_PLACE.store(false, Ordering::Release);
    }
}

/// One unit of [`POOL_BUSY`], given back when dropped.
struct PoolBusy;

impl PoolBusy {
    fn enter() -> PoolBusy {
        POOL_BUSY.fetch_add(1, Ordering::AcqRel);
        PoolBusy
    }
}

impl Drop for PoolBusy {
    fn drop(&mut self) {
        POOL_BUSY.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::InPlace;

    #[test]
    fn nothing_runs_in_place_outside_a_multi_threaded_runtime() {
        assert!(InPlace::claim().is_none(), "no runtime");
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        current.block_on(async { assert!(InPlace::claim().is_none(), "current thread") });
    }

    #[test]
    fn one_call_at_a_time_runs_in_place() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        multi.block_on(async {
            // Another test's write may hold the claim for a moment.
            let claim = loop {
                if let Some(claim) = InPlace::claim() {
                    break claim;
                }
                tokio::task::yield_now().await;
            };
            assert!(InPlace::claim().is_none(), "held");
            drop(claim);
        });
    }
}
