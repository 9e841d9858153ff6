//! `kubecast recorder`: receives recordings over the v1 and v2 upload
//! protocols and stores each as its own `.cast` file.
//!
//! - [`listener`]: the per-connection hyper service on the listener shared
//!   with the proxy ([`crate::net`]: TCP/TLS accept, HTTP/2-preface
//!   sniffing, ALPN, graceful shutdown).
//! - [`ingest`]: one upload's body into one file: header validation, limits,
//!   deadlines, fsync and acks, the log line.
//! - [`v1`] / [`v2`]: the two wire protocols on top of `ingest`.
//! - [`store`]: naming, temporary files, never-overwrite placement.
//! - [`writer`]: one recording's writes and fsyncs, on a task of its own.
//!
//! The wire protocol and storage layout are documented in `docs/recorder.md`.

mod ingest;
mod listener;
pub(crate) mod store;
mod v1;
mod v2;
mod writer;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Arguments of `kubecast recorder`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free port; the
    /// chosen address is logged as `listening on ADDR`).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Directory where recordings are stored (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// PEM certificate chain; with --tls-key serves TLS (ALPN h2, http/1.1).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token uploads must present (surrounding
    /// whitespace is ignored). Without it, no token is required.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest recording stored, in bytes; beyond it the upload fails and
    /// what arrived is kept as incomplete.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_recording_bytes: u64,
    /// Seconds an upload may go without sending a byte (sessions can be idle
    /// for long; the default matches the kubelet's 4 h streaming idle timeout).
    #[arg(long, default_value = "14400", value_parser = parse_secs)]
    pub idle_timeout: Duration,
    /// Seconds allowed for a TLS handshake, an HTTP request head, and the
    /// cast's header line after the request.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Seconds open uploads get to finish after SIGINT/SIGTERM before they
    /// are cut and kept as incomplete.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub shutdown_grace: Duration,
    /// Most connections served at once; further ones wait in the backlog.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Test only: sleep this many milliseconds before every fsync of a
    /// recording, to stand in for a busy disk.
    #[arg(long, default_value_t = 0, hide = true)]
    pub test_sync_delay_ms: u64,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Heartbeat: an ack frame at least this often while a v2 upload is open.
const ACK_INTERVAL: Duration = Duration::from_millis(500);
/// After progress, the ack (and the fsync behind it) follows within this.
const ACK_DELAY: Duration = Duration::from_millis(50);
/// How long the last frame of a v2 response may wait for the client.
const FINAL_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long cut uploads get to be stored after the grace period.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits and deadlines for one upload.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_recording_bytes: u64,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub ack_interval: Duration,
    pub ack_delay: Duration,
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub store: store::Store,
    pub token: Option<Vec<u8>>,
    pub limits: Limits,
    /// Turns true when open uploads must stop (after the shutdown grace).
    pub abort: watch::Receiver<bool>,
    /// Number of uploads being received.
    pub active: watch::Sender<usize>,
}

pub(crate) use crate::net::{until_set, Counted};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(message)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = status;
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Constant-time comparison of the presented bearer token.
fn authorized(ctx: &Ctx, req: &Request<Incoming>) -> bool {
    let Some(expected) = &ctx.token else {
        return true;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Routes one request.
pub(crate) async fn handle(
    ctx: Arc<Ctx>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let http2 = req.version() == Version::HTTP_2;
    let path = req.uri().path();
    let response = match path {
        "/v2/record" | "/record" => {
            let v2 = path == "/v2/record";
            if v2 && !http2 {
                // A prober that reaches us over HTTP/1.1 must fall back to v1.
                return Ok(text(
                    StatusCode::NOT_FOUND,
                    "/v2/record is served over HTTP/2 only (h2c with prior knowledge, or ALPN h2); use POST /record",
                ));
            }
            if !authorized(&ctx, &req) {
                if req.method() == Method::POST {
                    eprintln!(
                        "kubecast recorder: {} rejected peer={} reason=\"missing or wrong bearer token\"",
                        if v2 { "v2" } else { "v1" },
                        peer.addr
                    );
                }
                let mut response = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Ok(response);
            }
            match (req.method(), v2) {
                (&Method::HEAD, true) => empty(StatusCode::OK),
                (&Method::POST, true) => v2::record(ctx, peer, req),
                (&Method::POST, false) => v1::record(ctx, peer, req).await,
                (_, true) => method_not_allowed("HEAD, POST"),
                (_, false) => method_not_allowed("POST"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?;
    let token = raw.trim_ascii().to_vec();
    if token.is_empty() {
        return Err(format!(
            "--token-file {}: the file is empty",
            path.display()
        ));
    }
    if token.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "--token-file {}: the token must be printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(token)
}

/// Runs the recorder until SIGINT or SIGTERM.
pub fn run(args: Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), String> {
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::net::server_tls(cert, key, None)?),
        _ => None,
    };
    let (store, recovered) =
        store::Store::open(&args.dir).map_err(|e| format!("--dir {}: {e}", args.dir.display()))?;
    let store = store.before_sync(writer::BeforeSync::sleep(Duration::from_millis(
        args.test_sync_delay_ms,
    )));
    for path in recovered {
        eprintln!(
            "kubecast recorder: recovered a recording left by an earlier run as {}",
            path.display()
        );
    }
    let signals = crate::net::ShutdownSignals::install();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        store,
        token,
        limits: Limits {
            max_recording_bytes: args.max_recording_bytes,
            idle_timeout: args.idle_timeout,
            header_timeout: args.header_timeout,
            ack_interval: ACK_INTERVAL,
            ack_delay: ACK_DELAY,
        },
        abort: abort_rx,
        active: watch::Sender::new(0),
    });
    let connections = Arc::new(watch::Sender::new(0usize));

    eprintln!(
        "kubecast recorder: listening on {local} ({}), storing in {}{}",
        if tls.is_some() {
            "TLS, ALPN h2 and http/1.1"
        } else {
            "h2c prior knowledge and HTTP/1.1"
        },
        ctx.store.dir().display(),
        if ctx.token.is_some() {
            ", bearer token required"
        } else {
            ""
        }
    );

    let accept = tokio::spawn(crate::net::accept_loop(
        listener,
        tls,
        stop_rx.clone(),
        connections.clone(),
        args.max_connections,
        args.header_timeout,
        listener::Recorder {
            ctx: ctx.clone(),
            stop: stop_rx,
        },
    ));

    let signal = signals.recv().await;
    let open = *ctx.active.borrow();
    eprintln!(
        "kubecast recorder: {signal}: no longer accepting; {open} open upload(s) get {:?} to finish",
        args.shutdown_grace
    );
    let _ = stop_tx.send(true);
    let _ = accept.await;

    let mut active = ctx.active.subscribe();
    if tokio::time::timeout(args.shutdown_grace, active.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        eprintln!(
            "kubecast recorder: cutting {} open upload(s); they are kept as incomplete",
            *active.borrow()
        );
        let _ = abort_tx.send(true);
        let _ = tokio::time::timeout(ABORT_TIMEOUT, active.wait_for(|n| *n == 0)).await;
    }
    // Let the connections deliver their last responses and frames.
    let mut connections = connections.subscribe();
    let _ = tokio::time::timeout(FINAL_FRAME_TIMEOUT, connections.wait_for(|n| *n == 0)).await;
    eprintln!("kubecast recorder: stopped");
    Ok(())
}
