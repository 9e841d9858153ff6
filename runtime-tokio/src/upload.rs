//! The recorder upload's dial on tokio's TCP and `tokio-rustls`; the rest
//! of the upload (attempts polled in place, h2 v2, HTTP/1.1 v1) is
//! `kubecast_async::Uploads`, shared with `kubecast-smol`.

use crate::drive::io::Tokio;
use kubecast_async::{Dial, Uploads};
pub use kubecast_core::drive::UploadTls;
use kubecast_core::upload::{RecorderAddr, Scheme};
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// The upload transport of a `RecordingHandle`.
pub(crate) type Transport = Uploads<Dialer, Tokio>;

/// The byte stream under HTTP: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP and TLS with tokio types, seen through tokio-util's futures-io
/// compat layer.
#[derive(Debug)]
pub(crate) struct Dialer;

impl Dial for Dialer {
    type Tls = UploadTls;
    type Conn = Compat<Box<dyn Io>>;

    async fn dial(
        recorder: &RecorderAddr,
        v2: bool,
        tls: &UploadTls,
    ) -> io::Result<(Compat<Box<dyn Io>>, bool)> {
        let tcp = TcpStream::connect(recorder.host_port()).await?;
        tcp.set_nodelay(true)?;
        if recorder.scheme() == Scheme::Http {
            return Ok(((Box::new(tcp) as Box<dyn Io>).compat(), false));
        }
        let name = rustls::pki_types::ServerName::try_from(recorder.host().to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls.config(v2))
            .connect(name, tcp)
            .await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(((Box::new(stream) as Box<dyn Io>).compat(), h2))
    }
}
