//! What `kubecast-async` needs from `futures-io`, `async-io` and
//! `blocking`: byte streams ([`Stream`]; an end of file is passed on with
//! `close()`), a clock and a blocking pool ([`AsyncIo`]).

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};
use kubecast_async::{ByteStream, Clock, Unblock};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A `futures-io` byte stream for the shared loop.
pub(crate) struct Stream<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Unpin> ByteStream for Stream<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    /// futures-io's `close` shuts the write half of a socket down.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The system clock, `async-io` timers and the `blocking` pool.
#[derive(Debug)]
pub(crate) struct AsyncIo;

impl Clock for AsyncIo {
    type Sleep = Timer;
    fn now() -> Instant {
        Instant::now()
    }
    fn sleep_until(at: Instant) -> Timer {
        Timer::at(at)
    }
}

impl Unblock for AsyncIo {
    fn unblock<T, F>(work: F) -> impl Future<Output = io::Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        blocking::unblock(work)
    }
}
