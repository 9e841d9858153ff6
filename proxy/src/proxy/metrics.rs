//! Operability: `--metrics-listen ADDR` serves `/metrics` (the
//! OpenMetrics/Prometheus text format, `prometheus-client`), `/healthz` and
//! `/readyz` over plain HTTP/1.1.
//!
//! The counters are process-wide ([`get`]) so that the proxy's code needs a
//! line per hook; they count whether or not `--metrics-listen` is given.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `kubecast_proxy_requests_total` | `kind`, `code` | requests answered, by kind (`ordinary`, `exec`, `attach`, `portforward`, `other_upgrade`) and status class (`1xx`…`5xx`; a switched upgrade is `1xx`) |
//! | `kubecast_proxy_sessions_total` | `outcome` | exec/attach upgrades admitted to be `recorded`, admitted `unrecorded` (the rules say so, or fail-open on a request the core cannot decode), or `refused` (fail-closed) |
//! | `kubecast_proxy_recorder_attempts_total` | | upload attempts to a recorder (each dial of each recorder) |
//! | `kubecast_proxy_recorder_failures_total` | `reason` | failed upload attempts, by why |
//! | `kubecast_proxy_recorded_bytes_total` | | cast bytes produced by ended recorded sessions |
//! | `kubecast_proxy_active_sessions` | | upgraded connections open now (exec, attach, port-forward, other) |
//! | `kubecast_proxy_token_reviews_total` | `result` | TokenReviews sent in noauth mode (cache misses): `authenticated`, `unauthenticated`, `forbidden`, `failed` |
//! | `kubecast_proxy_undecodable_offers_total` | `action` | exec/attach requests offering protocol versions the core cannot record: `narrowed` (only the recordable ones went upstream), `refused` (none recordable, fail-closed), `relayed` (none recordable, fail-open: unrecorded) |
//!
//! `/healthz`: 200 while the process serves. `/readyz`: 200 when the proxy
//! is not draining (after SIGTERM it is 503, so that a Service stops
//! sending new clients) and the upstream answers: a `GET /readyz` to the
//! API server, with the proxy's own credentials when it has them, must get
//! an HTTP response that is not 5xx within [`READY_TIMEOUT`] (401 and 403
//! count as reachable: the proxy's credentials are not the point).

use super::upstream::Upstream;
use super::{Body, Ctx};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::http::uri::PathAndQuery;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubecast_core::handshake::Resource;
use kubecast_core::upload::failover::AttemptError;
use kubecast_core::upload::UploadFailure;
use kubecast_tokio::UploadEvent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::watch;

/// How long `/readyz` waits for the upstream.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// The proxy's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sessions: Family<OutcomeLabels, Counter>,
    recorder_attempts: Counter,
    recorder_failures: Family<ReasonLabels, Counter>,
    recorded_bytes: Counter,
    active_sessions: Gauge,
    undecodable_offers: Family<ActionLabels, Counter>,
    token_reviews: Family<ResultLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubecast_proxy");
        let m = Metrics {
            requests: Family::default(),
            sessions: Family::default(),
            recorder_attempts: Counter::default(),
            recorder_failures: Family::default(),
            recorded_bytes: Counter::default(),
            active_sessions: Gauge::default(),
            undecodable_offers: Family::default(),
            token_reviews: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by kind and status class",
            m.requests.clone(),
        );
        registry.register(
            "sessions",
            "Exec/attach sessions admitted recorded, admitted unrecorded, or refused",
            m.sessions.clone(),
        );
        registry.register(
            "recorder_attempts",
            "Upload attempts to recorders",
            m.recorder_attempts.clone(),
        );
        registry.register(
            "recorder_failures",
            "Failed upload attempts to recorders, by reason",
            m.recorder_failures.clone(),
        );
        registry.register(
            "recorded_bytes",
            "Cast bytes of ended recorded sessions",
            m.recorded_bytes.clone(),
        );
        registry.register(
            "active_sessions",
            "Upgraded connections open now",
            m.active_sessions.clone(),
        );
        registry.register(
            "undecodable_offers",
            "Exec/attach requests offering protocol versions that cannot be recorded, by what was done",
            m.undecodable_offers.clone(),
        );
        registry.register(
            "token_reviews",
            "TokenReviews sent in noauth mode, by result",
            m.token_reviews.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition.
    fn encode(&self, active_sessions: usize) -> String {
        self.active_sessions
            .set(i64::try_from(active_sessions).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// What kind of request `req` is, for `kubecast_proxy_requests_total`.
pub(crate) fn request_kind<B>(req: &Request<B>) -> &'static str {
    if !super::upgrade::is_upgrade(req) {
        return "ordinary";
    }
    match super::upgrade::resource_of_path(&req.uri().to_string()) {
        Resource::Exec => "exec",
        Resource::Attach => "attach",
        Resource::PortForward => "portforward",
        _ => "other_upgrade",
    }
}

/// Counts an answered request.
pub(crate) fn request(kind: &'static str, status: StatusCode) {
    let code = match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    get()
        .requests
        .get_or_create(&RequestLabels { kind, code })
        .inc();
}

/// Counts an exec/attach admission: `Ok(true)` recorded, `Ok(false)`
/// unrecorded, `Err` refused. Returns `result`.
pub(crate) fn admitted<T, E>(result: Result<T, E>, recorded: impl Fn(&T) -> bool) -> Result<T, E> {
    let outcome = match &result {
        Ok(session) if recorded(session) => "recorded",
        Ok(_) => "unrecorded",
        Err(_) => "refused",
    };
    get()
        .sessions
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
    result
}

/// Counts an upload's log event (attempts started and failed).
pub(crate) fn upload_event(event: &UploadEvent) {
    match event {
        UploadEvent::Started { .. } => {
            get().recorder_attempts.inc();
        }
        UploadEvent::AttemptFailed(record) => attempt_failed(&record.error),
        UploadEvent::Completed { .. } | UploadEvent::Failed(_) => {}
    }
}

/// Counts the attempts of an upload that never got to the session (a
/// fail-closed refusal).
pub(crate) fn upload_refused(failure: &UploadFailure) {
    for record in &failure.attempts {
        attempt_failed(&record.error);
    }
}

fn attempt_failed(error: &AttemptError) {
    let reason = match error {
        AttemptError::Connect(_) => "connect",
        AttemptError::TimedOut { .. } => "timed_out",
        AttemptError::Probe { .. } => "probe",
        AttemptError::Status { .. } => "status",
        AttemptError::Stream(_) => "stream",
        AttemptError::EndedEarly(_) => "ended_early",
        AttemptError::Recorder(_) => "recorder_error",
        AttemptError::Protocol(_) => "protocol",
        AttemptError::AckWindowExpired(_) => "ack_window_expired",
        AttemptError::FinalResponseTimeout(_) => "final_response_timeout",
        AttemptError::Incomplete { .. } => "incomplete",
    };
    let m = get();
    m.recorder_attempts.inc();
    m.recorder_failures
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// Counts an exec/attach request whose offer held versions the core
/// cannot record: `narrowed`, `refused` or `relayed`.
pub(crate) fn undecodable_offer(action: &'static str) {
    get()
        .undecodable_offers
        .get_or_create(&ActionLabels { action })
        .inc();
}

/// Counts a TokenReview sent (noauth mode), by its result.
pub(crate) fn token_review(result: &'static str) {
    get()
        .token_reviews
        .get_or_create(&ResultLabels { result })
        .inc();
}

/// Counts the cast bytes of an ended recorded session.
pub(crate) fn recorded_bytes(bytes: u64) {
    get().recorded_bytes.inc_by(bytes);
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` until the
/// process ends; `stop` turns true when the proxy drains (not ready).
pub(crate) async fn serve(
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    tracing::info!(metrics_addr = %local, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ctx = ctx.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| endpoint(ctx.clone(), stop.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(())
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn endpoint(
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Answer, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            get().encode(*ctx.active_sessions.borrow()),
        ),
        "/healthz" | "/livez" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            if *stop.borrow() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "not ready: draining (shutting down)\n".into(),
                )
            } else {
                match upstream_ready(&ctx.upstream).await {
                    Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".into()),
                    Err(why) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        PLAIN,
                        format!("not ready: upstream {}: {why}\n", ctx.upstream.describe),
                    ),
                }
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    })
}

/// `GET /readyz` upstream: any answer but a 5xx within [`READY_TIMEOUT`].
async fn upstream_ready(upstream: &Upstream) -> Result<(), String> {
    let uri = upstream.uri(Some(&PathAndQuery::from_static("/readyz")))?;
    let body: Body = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
    let mut req = Request::get(uri).body(body).map_err(|e| e.to_string())?;
    if let Some(auth) = upstream.authorization()? {
        req.headers_mut().insert(AUTHORIZATION, auth);
    }
    match tokio::time::timeout(READY_TIMEOUT, upstream.client.request(req)).await {
        Ok(Ok(response)) if response.status().is_server_error() => {
            Err(format!("answered {}", response.status()))
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(super::forward::chain(&e)),
        Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_kind() {
        let req = |path: &str, upgrade: bool| {
            let mut b = Request::get(path);
            if upgrade {
                b = b
                    .header("connection", "Upgrade")
                    .header("upgrade", "websocket");
            }
            b.body(()).unwrap()
        };
        let pod = "/api/v1/namespaces/default/pods/demo";
        assert_eq!(
            request_kind(&req(&format!("{pod}/exec?c=x"), false)),
            "ordinary"
        );
        assert_eq!(request_kind(&req(&format!("{pod}/exec?c=x"), true)), "exec");
        assert_eq!(request_kind(&req(&format!("{pod}/attach"), true)), "attach");
        assert_eq!(
            request_kind(&req(&format!("{pod}/portforward"), true)),
            "portforward"
        );
        assert_eq!(
            request_kind(&req(&format!("{pod}/proxy/"), true)),
            "other_upgrade"
        );
    }

    #[test]
    fn the_exposition_names_every_metric() {
        request("exec", StatusCode::SWITCHING_PROTOCOLS);
        let _ = admitted::<(), ()>(Err(()), |_| true);
        attempt_failed(&AttemptError::Connect("refused".into()));
        recorded_bytes(42);
        undecodable_offer("narrowed");
        token_review("forbidden");
        let text = get().encode(3);
        for line in [
            r#"kubecast_proxy_requests_total{kind="exec",code="1xx"} "#,
            r#"kubecast_proxy_sessions_total{outcome="refused"} "#,
            "kubecast_proxy_recorder_attempts_total ",
            r#"kubecast_proxy_recorder_failures_total{reason="connect"} "#,
            "kubecast_proxy_recorded_bytes_total ",
            "kubecast_proxy_active_sessions 3",
            r#"kubecast_proxy_undecodable_offers_total{action="narrowed"} "#,
            r#"kubecast_proxy_token_reviews_total{result="forbidden"} "#,
            "# EOF",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
    }
}
