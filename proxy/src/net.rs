//! Listening sockets, shared by `kubecast recorder` and `kubecast proxy`.
//!
//! - TLS: PEM loading and a rustls server config with ALPN `h2`,
//!   `http/1.1` ([`server_tls`]), optionally verifying client certificates.
//! - [`accept_loop`]: TCP accept with a connection limit, the TLS handshake
//!   under a deadline, then a [`ServeConn`] per connection.
//! - [`serve_http`]: one connection served by hyper-util's `auto` builder
//!   (HTTP/1.1 with upgrades, or HTTP/2), stopped gracefully on `stop` and
//!   cut on `abort`.
//!
//! Choosing the HTTP version. Plaintext: the first bytes are read (with the
//! header timeout); if they are the HTTP/2 connection preface
//! (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) the connection is served as h2c with
//! prior knowledge, otherwise as HTTP/1.1. hyper-util's `auto` builder can
//! sniff the preface itself, but it waits for those bytes without a
//! deadline, so we sniff here and hand it a fixed version. Under TLS the ALPN
//! result decides (`h2` or `http/1.1`); a client that offers no ALPN is
//! sniffed like plaintext.

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 keep-alive pings find peers that vanished without a FIN.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// The crypto provider every TLS config here uses.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; `flag` names the option in errors.
pub(crate) fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Every certificate in PEM text (e.g. kubeconfig `*-data`).
pub(crate) fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub(crate) fn load_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// A root store holding every certificate of a PEM bundle.
pub(crate) fn root_store(
    certs: Vec<CertificateDer<'static>>,
    what: &str,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(roots)
}

/// Builds the TLS acceptor from PEM files (ALPN `h2`, `http/1.1`). With a
/// `client_verifier`, client certificates are checked by it.
pub(crate) fn server_tls(
    cert: &Path,
    key: &Path,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<TlsAcceptor, String> {
    let certs = load_certs(cert, "--tls-cert")?;
    let key = load_key(key, "--tls-key")?;
    let builder = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Counts something in a `watch` counter while alive.
#[derive(Debug)]
pub(crate) struct Counted<'a>(&'a watch::Sender<usize>);

impl<'a> Counted<'a> {
    pub fn new(counter: &'a watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Resolves when `flag` turns true; never if its sender is gone.
pub(crate) async fn until_set(flag: &mut watch::Receiver<bool>) {
    let set = flag.wait_for(|v| *v).await.is_ok();
    if !set {
        std::future::pending::<()>().await;
    }
}

/// SIGTERM and SIGINT handlers. Install them before announcing the
/// listening address, so that a signal sent right after it is not met by
/// the default action (which would kill the process).
#[derive(Debug)]
pub(crate) struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the handlers (needs a running tokio runtime).
    pub fn install() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        ShutdownSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on SIGTERM or SIGINT, naming it.
    pub async fn recv(mut self) -> &'static str {
        match (self.term.as_mut(), self.int.as_mut()) {
            (Some(term), Some(int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

/// What the accept loop learned about a connection.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The ALPN verdict: `Some(true)` for `h2`, `Some(false)` for
    /// `http/1.1`, `None` to sniff.
    pub h2: Option<bool>,
    /// The certificate chain the client presented (already verified by the
    /// TLS config's client verifier), leaf first.
    pub client_certs: Option<Vec<CertificateDer<'static>>>,
}

/// Serves one accepted connection.
pub(crate) trait ServeConn: Clone + Send + Sync + 'static {
    fn serve<I>(self, io: I, accepted: Accepted) -> impl Future<Output = Result<(), String>> + Send
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Logs a connection that failed (TLS handshake, I/O); `addr` is
    /// `None` when accepting failed.
    fn connection_error(&self, addr: Option<SocketAddr>, error: &str);
}

/// Accepts until `stop` turns true; at most `max_connections` at once.
pub(crate) async fn accept_loop<S: ServeConn>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    connections: Arc<watch::Sender<usize>>,
    max_connections: usize,
    handshake_timeout: Duration,
    handler: S,
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
                    handler.connection_error(None, &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let handler = handler.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let _counted = Counted::new(&connections);
            let result = match tls {
                None => {
                    let accepted = Accepted {
                        addr,
                        tls: false,
                        h2: None,
                        client_certs: None,
                    };
                    handler.clone().serve(stream, accepted).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let session = stream.get_ref().1;
                            let accepted = Accepted {
                                addr,
                                tls: true,
                                h2: match session.alpn_protocol() {
                                    Some(b"h2") => Some(true),
                                    Some(_) => Some(false),
                                    None => None,
                                },
                                client_certs: session.peer_certificates().map(|certs| {
                                    certs.iter().map(|c| c.clone().into_owned()).collect()
                                }),
                            };
                            handler.clone().serve(stream, accepted).await
                        }
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                handler.connection_error(Some(addr), &e);
            }
            drop(permit);
        });
    }
}

/// HTTP settings of [`serve_http`].
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    /// Deadline for the first bytes and for each HTTP/1.1 request head.
    pub header_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// HTTP/2 frame size and flow-control windows; `None` keeps hyper's
    /// defaults (16 KiB frames, 1 MiB windows).
    pub h2_bulk: Option<H2Bulk>,
}

/// HTTP/2 settings for a server that mostly *receives* long bodies (the
/// recorder): frames large enough that one cast chunk is one frame, and
/// windows that let the sender run ahead of the disk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Bulk {
    /// `SETTINGS_MAX_FRAME_SIZE` we accept.
    pub max_frame_size: u32,
    /// The initial window of each stream.
    pub stream_window: u32,
    /// The connection's window, shared by its streams.
    pub connection_window: u32,
}

/// Serves one connection with hyper (HTTP/1.1 with upgrades, or HTTP/2);
/// `h2` is the ALPN verdict, `None` to sniff. When `stop` turns true the
/// connection shuts down gracefully (HTTP/2: GOAWAY, open streams go on;
/// HTTP/1.1: close after the request in flight); when `abort` turns true it
/// is dropped.
pub(crate) async fn serve_http<I, S, B>(
    mut io: I,
    h2: Option<bool>,
    options: &HttpOptions,
    service: S,
    mut stop: watch::Receiver<bool>,
    abort: Option<watch::Receiver<bool>>,
) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let header_timeout = options.header_timeout;
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
        .max_concurrent_streams(options.h2_max_streams)
        .max_header_list_size(MAX_HEADERS_BYTES as u32);
    if let Some(bulk) = options.h2_bulk {
        builder
            .http2()
            .max_frame_size(bulk.max_frame_size)
            .initial_stream_window_size(bulk.stream_window)
            .initial_connection_window_size(bulk.connection_window);
    }
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut abort = abort;
    let aborted = async {
        match abort.as_mut() {
            Some(flag) => until_set(flag).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(aborted);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = until_set(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = aborted.as_mut() => {}
            }
        }
        _ = aborted.as_mut() => {}
    }
    // Peers hanging up are routine; callers log what matters.
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
