//! The two things `kubecast-async`'s shared loop needs from tokio: its
//! byte streams ([`Stream`]) and its clock ([`TokioClock`], pausable in
//! tests).

use kubecast_async::{ByteStream, Clock};
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

/// tokio's clock and sleep.
#[derive(Debug)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Sleep = tokio::time::Sleep;
    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }
    fn sleep_until(at: std::time::Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(Instant::from_std(at))
    }
}
