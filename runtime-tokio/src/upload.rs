//! The recorder upload's dial on tokio's TCP and `tokio-rustls`; the rest
//! of the upload (attempts polled in place, h2 v2, HTTP/1.1 v1) is
//! `kubecast_async::Uploads`, shared with `kubecast-smol`.

use crate::drive::io::Tokio;
use kubecast_async::{Dial, Uploads};
pub use kubecast_core::drive::UploadTls;
use kubecast_core::upload::{RecorderAddr, Scheme};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The upload transport of a `RecordingHandle`.
pub(crate) type Transport = Uploads<Dialer, Tokio>;

/// The byte stream under HTTP: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP and TLS with tokio types, seen as a futures-io stream.
#[derive(Debug)]
pub(crate) struct Dialer;

impl Dial for Dialer {
    type Tls = UploadTls;
    type Conn = FuturesIo;
    /// A socket is served by the I/O driver of the runtime that opened it.
    type Scope = Option<tokio::runtime::Id>;

    fn scope() -> Self::Scope {
        tokio::runtime::Handle::try_current().ok().map(|h| h.id())
    }

    async fn dial(
        recorder: &RecorderAddr,
        v2: bool,
        tls: &UploadTls,
    ) -> io::Result<(FuturesIo, bool)> {
        let tcp = TcpStream::connect(recorder.host_port()).await?;
        tcp.set_nodelay(true)?;
        if recorder.scheme() == Scheme::Http {
            return Ok((FuturesIo(Box::new(tcp)), false));
        }
        let name = rustls::pki_types::ServerName::try_from(recorder.host().to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls.config(v2))
            .connect(name, tcp)
            .await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((FuturesIo(Box::new(stream)), h2))
    }
}

/// A tokio stream through futures-io's traits. tokio-util's compat layer
/// would do, but it drops vectored writes, and h2 (which the upload runs
/// over this) then writes each DATA frame's header and payload with two
/// syscalls instead of one `writev`.
pub(crate) struct FuturesIo(Box<dyn Io>);

impl std::fmt::Debug for FuturesIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FuturesIo")
    }
}

impl futures_lite::io::AsyncRead for FuturesIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_lite::io::AsyncWrite for FuturesIo {
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
