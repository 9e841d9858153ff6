//! The connection as h2 wants it: h2 speaks tokio's I/O traits, the
//! adapters hand us futures-io streams. tokio-util's compat layer would do,
//! but it drops vectored writes, and without them h2 writes every DATA
//! frame as two syscalls (its 9-byte header, then the payload) — the
//! upload's hot path. This adapter forwards `poll_write_vectored`, so a
//! frame goes out in one `writev`.

use futures_lite::io::{AsyncRead, AsyncWrite};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A futures-io stream seen through tokio's I/O traits.
#[derive(Debug)]
pub(crate) struct H2Io<T>(pub(crate) T);

impl<T: AsyncRead + Unpin> tokio::io::AsyncRead for H2Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // futures-io reads into initialised bytes: zero the spare part
        // first, as tokio-util's compat layer does.
        let n = match Pin::new(&mut self.0).poll_read(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> tokio::io::AsyncWrite for H2Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    /// futures-io cannot say; a stream without real vectored writes
    /// writes the first buffer, which is what h2 would do otherwise.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
