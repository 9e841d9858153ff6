//! The recorder upload's dial on `async-net` and `futures-rustls`; the
//! rest of the upload (attempts polled in place, h2 v2, HTTP/1.1 v1) is
//! `kubecast_async::Uploads`, shared with `kubecast-tokio`.

use crate::drive::io::AsyncIo;
use async_net::TcpStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use kubecast_async::{Dial, Uploads};
pub use kubecast_core::drive::UploadTls;
use kubecast_core::upload::{RecorderAddr, Scheme};
use std::io;

/// The upload transport of a `RecordingHandle`.
pub(crate) type Transport = Uploads<Dialer, AsyncIo>;

/// The byte stream under HTTP: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP and TLS with futures-io types.
#[derive(Debug)]
pub(crate) struct Dialer;

impl Dial for Dialer {
    type Tls = UploadTls;
    type Conn = Box<dyn Io>;
    /// async-io's reactor serves every executor in the process.
    type Scope = ();

    fn scope() {}

    async fn dial(
        recorder: &RecorderAddr,
        v2: bool,
        tls: &UploadTls,
    ) -> io::Result<(Box<dyn Io>, bool)> {
        let tcp = TcpStream::connect(recorder.host_port()).await?;
        tcp.set_nodelay(true)?;
        if recorder.scheme() == Scheme::Http {
            return Ok((Box::new(tcp), false));
        }
        let name = rustls::pki_types::ServerName::try_from(recorder.host().to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls.config(v2))
            .connect(name, tcp)
            .await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Box::new(stream), h2))
    }
}
