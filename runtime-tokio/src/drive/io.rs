//! What `kubecast-async` needs from tokio: its byte streams ([`Stream`]),
//! its clock (pausable in tests) and its blocking pool ([`Tokio`]).

use kubecast_async::{ByteStream, Clock, Unblock};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
        let task = tokio::task::spawn_blocking(work);
        async move { task.await.unwrap_or_else(|e| Err(io::Error::other(e))) }
    }
}
