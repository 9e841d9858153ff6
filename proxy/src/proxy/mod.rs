//! `kubecast proxy`: a Kubernetes API proxy in front of kube-apiserver.
//!
//! - [`kubeconfig`]: where the upstream is (`--upstream`, a kubeconfig, the
//!   in-cluster service account) and [`upstream`]: the hyper clients and
//!   the proxy's own credentials.
//! - [`auth`]: `noauth` / `token` / `x509`, impersonation headers;
//!   [`review`]: in noauth mode, who a bearer token belongs to (TokenReview).
//! - [`forward`]: ordinary requests, streamed both ways.
//! - [`upgrade`]: exec/attach/port-forward upgrades, the [`UpgradeHandler`]
//!   hook point where recording plugs in, and re-serialisable raw heads.
//! - [`status`]: the proxy's own errors as Kubernetes `Status` bodies.
//!
//! The listener (TCP/TLS accept, ALPN, HTTP/1.1 and HTTP/2, graceful
//! shutdown) is shared with `kubecast recorder` in [`crate::net`].
//!
//! - [`rules`]: the recording rules (`--config`, YAML) and the flags that
//!   make their default; [`record`]: the recording handler; [`offers`]:
//!   which offered protocol versions can be recorded.
//!
//! Recording: the recording flags and rules are parsed and validated into
//! [`RecordingConfig`] at startup (and again on SIGHUP, [`reload_on_hangup`]);
//! exec/attach upgrades go to the [`record::RecordingHandler`], which
//! records each session to a recorder or the local directory, refuses it
//! (fail-closed) or relays it unrecorded, as the rules say.

mod audit;
mod auth;
mod forward;
mod kubeconfig;
mod metrics;
mod offers;
mod record;
mod review;
mod rules;
mod status;
mod upgrade;
mod upstream;

pub use auth::{AuthMode, UserInfo};
pub use upgrade::UpgradeHandler;

use crate::net::{self, Accepted, HttpOptions, ServeConn};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Errors of streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the proxy sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// How long sessions get after the grace period to end themselves.
const ABORT_TIMEOUT: Duration = Duration::from_secs(5);
const H2_MAX_STREAMS: u32 = 250;

/// Arguments of `kubecast proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 0.0.0.0:8443 (port 0 picks a free port; the
    /// chosen address is logged as `listening addr=ADDR`).
    #[arg(long)]
    pub listen: SocketAddr,
    /// PEM certificate chain; with --tls-key serves TLS (ALPN h2, http/1.1).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Upstream from this kubeconfig (server, CA, client certificate, token).
    #[arg(long, conflicts_with = "upstream")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, conflicts_with = "upstream")]
    pub context: Option<String>,
    /// Upstream API server URL, e.g. https://10.0.0.1:6443 (or http://…).
    /// Default: the in-cluster service account when KUBERNETES_SERVICE_HOST
    /// is set, else the current context of $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub upstream: Option<String>,
    /// PEM CA bundle for the --upstream server (default: the system roots).
    #[arg(long, requires = "upstream")]
    pub upstream_ca: Option<PathBuf>,
    /// File with the bearer token the proxy presents upstream (re-read
    /// every minute; token/x509 mode: with every request; noauth: only for
    /// TokenReviews of callers' tokens).
    #[arg(long, requires = "upstream")]
    pub upstream_token_file: Option<PathBuf>,
    /// Do not verify the --upstream server's certificate (testing only).
    #[arg(long, requires = "upstream")]
    pub upstream_insecure_skip_tls_verify: bool,
    /// How callers are authenticated.
    #[arg(long, value_enum, default_value = "noauth")]
    pub auth: AuthMode,
    /// Static token file (token,user,uid,"group1,group2") for --auth token.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// PEM CA bundle that signs client certificates, for --auth x509.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Recorder to upload sessions to (repeat for failover, in order).
    #[arg(long = "recorder", value_name = "ADDR", value_parser = parse_recorder)]
    pub recorders: Vec<String>,
    /// Refuse sessions that cannot be recorded (fail-closed).
    #[arg(long)]
    pub enforce_recording: bool,
    /// How long a recorder may take to acknowledge, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub recorder_ack_timeout: Duration,
    /// Where recordings go when no --recorder is given.
    #[arg(long, default_value = "./recordings")]
    pub recordings_dir: PathBuf,
    /// Recording rules (YAML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Deadline for connecting to the upstream.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Deadline for a TLS handshake, a request head, the upstream's
    /// response head (connecting included) and the completion of an upgrade.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// After SIGTERM/SIGINT: how long open requests and sessions may go on
    /// before they are cut.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most client connections served at once; further ones wait.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Audit events to a webhook (`--audit-*`; see docs/audit.md).
    #[command(flatten)]
    pub audit: audit::AuditArgs,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address
    /// (plain HTTP), e.g. 0.0.0.0:9090.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// A duration: `10s`, `500ms`, `2m`, `1h`, or plain seconds (`1.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 10s, 500ms, 2m"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// A recorder address: `http(s)://host[:port][/]` or `host:port`.
fn parse_recorder(s: &str) -> Result<String, String> {
    let uri: hyper::Uri = if s.contains("://") {
        s.parse().map_err(|e| format!("{s:?}: {e}"))?
    } else {
        format!("http://{s}")
            .parse()
            .map_err(|e| format!("{s:?}: {e}"))?
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    let port_ok = s.contains("://") || uri.port().is_some();
    if !(scheme_ok && host_ok && port_ok) {
        return Err(format!(
            "{s:?}: expected http://HOST:PORT, https://HOST:PORT or HOST:PORT"
        ));
    }
    Ok(s.to_string())
}

/// The recording settings: parsed and validated, for the recording
/// handler to use.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// `--recorder`, in failover order; empty = `recordings_dir`.
    pub recorders: Vec<String>,
    /// `--enforce-recording`: fail-closed.
    pub enforce: bool,
    pub ack_timeout: Duration,
    pub recordings_dir: PathBuf,
    /// `--config`: recording rules.
    pub rules_file: Option<PathBuf>,
    /// The rules (from `--config`, or the flags alone).
    pub rules: rules::Rules,
    /// The bearer token for recorders (`recorderTokenFile` in `--config`).
    pub recorder_token: Option<Secret>,
    /// How `https://` recorders are verified (`recorderCA`, else webpki).
    pub recorder_tls: kubecast_tokio::UploadTls,
}

/// A string kept out of `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub upstream: upstream::Upstream,
    pub auth: auth::Authenticator,
    pub auth_mode: AuthMode,
    /// Exec/attach upgrades.
    pub sessions: Arc<dyn UpgradeHandler>,
    pub header_timeout: Duration,
    /// Turns true when open sessions and requests must end.
    pub abort: watch::Receiver<bool>,
    /// Upgraded sessions running.
    pub active_sessions: watch::Sender<usize>,
    /// Audit events (`None` without `--audit-webhook-config-file`).
    pub audit: Option<Arc<audit::Auditor>>,
    /// noauth mode with credentials of the proxy's own: TokenReviews.
    pub reviewer: Option<review::TokenReviewer>,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub addr: SocketAddr,
    /// The client certificate's user (x509 mode), or why there is none.
    pub cert_user: Option<Result<UserInfo, String>>,
}

#[derive(Debug, Clone)]
struct ProxyConn {
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
}

impl ServeConn for ProxyConn {
    async fn serve<I>(self, io: I, accepted: Accepted) -> Result<(), String>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cert_user = match (self.ctx.auth_mode, &accepted.client_certs) {
            (AuthMode::X509, Some(certs)) => Some(auth::cert_user(certs)),
            _ => None,
        };
        let conn = Arc::new(ConnInfo {
            addr: accepted.addr,
            cert_user,
        });
        let options = HttpOptions {
            header_timeout: self.ctx.header_timeout,
            h2_max_streams: H2_MAX_STREAMS,
            h2_bulk: None,
        };
        let ctx = self.ctx.clone();
        let service = service_fn(move |req| handle(ctx.clone(), conn.clone(), req));
        let abort = self.ctx.abort.clone();
        net::serve_http(io, accepted.h2, &options, service, self.stop, Some(abort)).await
    }

    fn connection_error(&self, addr: Option<SocketAddr>, error: &str) {
        match addr {
            Some(addr) => tracing::info!(peer = %addr, error, "connection failed"),
            None => tracing::warn!(error, "accept failed"),
        }
    }
}

/// Routes one request and logs it.
async fn handle(
    ctx: Arc<Ctx>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let kind = metrics::request_kind(&req);
    let path = req.uri().path().to_string();
    let mut authenticated = ctx
        .auth
        .authenticate(req.headers(), conn.cert_user.as_ref());
    // noauth: who it is, if the API server says so.
    if let (Ok(auth::Caller::Passthrough(unknown @ None)), Some(reviewer)) =
        (&mut authenticated, &ctx.reviewer)
    {
        *unknown = reviewer.user(req.headers()).await;
    }
    let who = authenticated.as_ref().map_err(|(_, u)| u.as_deref());
    let audit = match audit::RequestAudit::begin(&ctx, &conn, &mut req, who).await {
        Ok(audit) => audit,
        Err(refusal) => return Ok(refusal),
    };
    let (response, user) = match authenticated {
        Err((refusal, user)) => {
            if let Some(Err(why)) = &conn.cert_user {
                tracing::info!(peer = %conn.addr, why, "client certificate not usable");
            }
            (refusal.into_response(), user.unwrap_or_else(|| "-".into()))
        }
        Ok(caller) => {
            let user = caller.name().to_string();
            let response = if upgrade::is_upgrade(&req) {
                upgrade::upgrade(ctx.clone(), &conn, caller, req).await
            } else {
                forward::forward(&ctx, &conn, &caller, req).await
            };
            (response, user)
        }
    };
    let response = audit.finish(response).await;
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        user = %user,
        peer = %conn.addr,
        "request"
    );
    metrics::request(kind, response.status());
    Ok(response)
}

/// Checks the flags that depend on each other, and the recording settings.
fn recording_config(args: &Args) -> Result<RecordingConfig, String> {
    let flags = rules::Flags {
        recorders: &args.recorders,
        enforce: args.enforce_recording,
    };
    let check_recorder = |address: &str| {
        parse_recorder(address)?;
        kubecast_core::upload::UploadConfig::with_recorders([address])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let rules = match &args.config {
        Some(path) => rules::Rules::read(path, &flags, check_recorder)?,
        None => rules::Rules::from_flags(&flags),
    };
    let recorder_token = match &rules.recorder_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("recorderTokenFile {}: {e}", path.display()))?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(format!("recorderTokenFile {}: empty", path.display()));
            }
            Some(Secret(token))
        }
        None => None,
    };
    let recorder_tls = match &rules.recorder_ca {
        Some(path) => {
            kubecast_tokio::UploadTls::from_ca_file(path).map_err(|e| format!("recorderCA: {e}"))?
        }
        None => kubecast_tokio::UploadTls::default(),
    };
    Ok(RecordingConfig {
        recorders: args.recorders.clone(),
        enforce: args.enforce_recording,
        ack_timeout: args.recorder_ack_timeout,
        recordings_dir: args.recordings_dir.clone(),
        rules_file: args.config.clone(),
        rules,
        recorder_token,
        recorder_tls,
    })
}

fn authenticator(args: &Args) -> Result<auth::Authenticator, String> {
    let tls = args.tls_cert.is_some();
    match args.auth {
        AuthMode::Noauth | AuthMode::X509 if args.token_auth_file.is_some() => {
            return Err("--token-auth-file is used with --auth token only".into())
        }
        AuthMode::Noauth | AuthMode::Token if args.client_ca.is_some() => {
            return Err("--client-ca is used with --auth x509 only".into())
        }
        _ => {}
    }
    Ok(match args.auth {
        AuthMode::Noauth => auth::Authenticator::Noauth,
        AuthMode::Token => {
            let path = args
                .token_auth_file
                .as_deref()
                .ok_or("--auth token needs --token-auth-file")?;
            if !tls {
                tracing::warn!(
                    "--auth token without --tls-cert: bearer tokens travel in clear text"
                );
            }
            auth::Authenticator::Token(auth::read_token_file(path)?)
        }
        AuthMode::X509 => {
            if args.client_ca.is_none() || !tls {
                return Err("--auth x509 needs --client-ca and TLS (--tls-cert, --tls-key)".into());
            }
            auth::Authenticator::X509
        }
    })
}

/// On SIGHUP, reads `--config` again (and the files it names): the
/// sessions admitted from then on use the new rules; a file that does not
/// parse or validate is logged and the previous rules stay.
fn reload_on_hangup(args: Arc<Args>, handler: Arc<record::RecordingHandler>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(file) = &args.config else {
                tracing::info!("SIGHUP: no --config to reload; the flags stay as they are");
                continue;
            };
            match recording_config(&args) {
                Ok(config) => {
                    handler.reload(&config);
                    tracing::info!(
                        rules_file = %file.display(),
                        rules = %config.rules.describe(),
                        "SIGHUP: recording rules reloaded"
                    );
                }
                Err(e) => tracing::error!(
                    rules_file = %file.display(),
                    error = %e,
                    "SIGHUP: the rules file is invalid; keeping the previous rules"
                ),
            }
        }
    });
    Ok(())
}

/// Runs the proxy until SIGINT or SIGTERM.
pub fn run(args: Args) -> Result<(), String> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve_then(args, |_| {}))
}

/// Structured logs on stderr (one line per event).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Serves until SIGINT or SIGTERM; `on_listening` hears the bound address
/// once the proxy accepts connections (`kubecast demo` prints it).
pub async fn serve_then(args: Args, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let args = Arc::new(args);
    let recording = recording_config(&args)?;
    let auth = authenticator(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let verifier = match &args.client_ca {
                Some(ca) => Some(auth::client_verifier(ca)?),
                None => None,
            };
            Some(net::server_tls(cert, key, verifier)?)
        }
        _ => None,
    };
    let settings = kubeconfig::resolve(&args)?;
    let impersonating = args.auth != AuthMode::Noauth;
    let upstream = upstream::Upstream::new(&settings, impersonating, args.connect_timeout)?;
    if impersonating && !upstream.has_token() && settings.client_cert.is_none() {
        tracing::warn!(
            "the proxy has no credentials of its own for the upstream; \
             it must allow the proxy to impersonate anonymously"
        );
    }
    let signals = crate::net::ShutdownSignals::install();
    let sessions = Arc::new(record::RecordingHandler::new(&recording));
    reload_on_hangup(args.clone(), sessions.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        upstream,
        auth,
        auth_mode: args.auth,
        sessions: sessions.clone(),
        header_timeout: args.header_timeout,
        abort: abort_rx,
        active_sessions: watch::Sender::new(0),
        audit: audit::Auditor::start(&args.audit)?,
        reviewer: match args.auth {
            AuthMode::Noauth => review::TokenReviewer::new(&settings, args.connect_timeout),
            _ => None,
        },
    });
    let connections = Arc::new(watch::Sender::new(0usize));
    tracing::info!(
        addr = %local,
        tls = tls.is_some(),
        auth = ?args.auth,
        upstream = %ctx.upstream.describe,
        "listening"
    );
    tracing::info!(
        recorders = ?recording.recorders,
        enforce = recording.enforce,
        ack_timeout = ?recording.ack_timeout,
        recordings_dir = %recording.recordings_dir.display(),
        rules_file = ?recording.rules_file,
        rules = %recording.rules.describe(),
        "recording exec/attach sessions"
    );
    on_listening(local);

    if let Some(addr) = args.metrics_listen {
        metrics::serve(addr, ctx.clone(), stop_rx.clone()).await?;
    }
    let accept = tokio::spawn(net::accept_loop(
        listener,
        tls,
        stop_rx.clone(),
        connections.clone(),
        args.max_connections,
        args.header_timeout,
        ProxyConn {
            ctx: ctx.clone(),
            stop: stop_rx,
        },
    ));

    let signal = signals.recv().await;
    tracing::info!(
        signal,
        connections = *connections.borrow(),
        sessions = *ctx.active_sessions.borrow(),
        grace = ?args.shutdown_grace,
        "no longer accepting; draining"
    );
    let _ = stop_tx.send(true);
    let _ = accept.await;
    let mut open = connections.subscribe();
    let mut sessions = ctx.active_sessions.subscribe();
    let drained = tokio::time::timeout(args.shutdown_grace, async {
        let _ = open.wait_for(|n| *n == 0).await;
        let _ = sessions.wait_for(|n| *n == 0).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = *connections.borrow(),
            sessions = *ctx.active_sessions.borrow(),
            "grace period over; cutting what is still open"
        );
        let _ = abort_tx.send(true);
        let _ = tokio::time::timeout(ABORT_TIMEOUT, sessions.wait_for(|n| *n == 0)).await;
    }
    if let Some(audit) = &ctx.audit {
        audit.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn recorder_addresses() {
        assert!(parse_recorder("recorder.kubecast:8080").is_ok());
        assert!(parse_recorder("https://recorder.example").is_ok());
        assert!(parse_recorder("recorder").is_err());
        assert!(parse_recorder("ftp://x:1").is_err());
    }
}
