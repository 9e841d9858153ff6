//! Accepting connections and choosing the HTTP version.
//!
//! Plaintext: the first bytes are read (with the header timeout); if they are
//! the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) the
//! connection is served as h2c with prior knowledge, otherwise as HTTP/1.1.
//! hyper-util's `auto` builder can sniff the preface itself, but it waits for
//! those bytes without a deadline, so we sniff here and hand it a fixed
//! version. Under TLS the ALPN result decides (`h2` or `http/1.1`); a client
//! that offers no ALPN is sniffed like plaintext.

use super::{until_set, Counted, Ctx, Peer};
use bytes::{Buf, Bytes};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 keep-alive pings find uploaders that vanished without a FIN.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
const H2_MAX_STREAMS: u32 = 100;
const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// Builds the TLS acceptor from PEM files (ALPN `h2`, `http/1.1`).
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate found",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts until `stop` turns true.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    connections: Arc<watch::Sender<usize>>,
    max_connections: usize,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = until_set(&mut stop) => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, addr) = tokio::select! {
            _ = until_set(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("kubecast recorder: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let ctx = ctx.clone();
        let stop = stop.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let _counted = Counted::new(&connections);
            let peer = Peer {
                addr,
                tls: tls.is_some(),
            };
            let header_timeout = ctx.limits.header_timeout;
            let result = match tls {
                None => serve(stream, None, peer, ctx, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let h2 = match stream.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Some(true),
                                Some(_) => Some(false),
                                None => None,
                            };
                            serve(stream, h2, peer, ctx, stop).await
                        }
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                eprintln!("kubecast recorder: connection from {addr}: {e}");
            }
            drop(permit);
        });
    }
}

/// Serves one connection; `h2` is the ALPN verdict, `None` to sniff.
async fn serve<I>(
    mut io: I,
    h2: Option<bool>,
    peer: Peer,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = ctx.limits.header_timeout;
    let (h2, prefix) = match h2 {
        Some(h2) => (h2, Bytes::new()),
        None => match tokio::time::timeout(header_timeout, sniff(&mut io)).await {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return Ok(()), // closed before sending anything
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Err(_) => return Ok(()), // idle connection: just close it
        },
    };
    let io = TokioIo::new(Rewind { prefix, inner: io });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADERS_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADERS_BYTES as u32);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let service = service_fn(move |req| super::handle(ctx.clone(), peer, req));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = until_set(&mut stop) => {
            // HTTP/2: GOAWAY, open streams go on; HTTP/1.1: close after the
            // request in flight. Uploads are cut by the abort signal.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Peers hanging up are routine; the per-recording log line says what
    // happened to a recording.
    let _ = result;
    Ok(())
}

/// Reads until the bytes are, or cannot be, the HTTP/2 preface. Returns
/// whether they are, with the bytes read; `None` on EOF before any byte.
async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<Option<(bool, Bytes)>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    while n < buf.len() {
        let read = io.read(&mut buf[n..]).await?;
        if read == 0 {
            if n == 0 {
                return Ok(None);
            }
            break;
        }
        n += read;
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some((false, Bytes::copy_from_slice(&buf[..n]))));
        }
    }
    Ok(Some((n == buf.len(), Bytes::copy_from_slice(&buf[..n]))))
}

/// An IO that first replays the sniffed bytes.
#[derive(Debug)]
struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
