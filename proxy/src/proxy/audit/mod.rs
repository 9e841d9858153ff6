//! Audit events for every proxied request (`--audit-*` flags), delivered
//! to a webhook by [`kubecast_tokio::audit::AuditSink`]; see
//! `docs/audit.md`.
//!
//! [`RequestAudit::begin`] runs once a request is authenticated (or
//! refused): it gives the request its `auditID` (a UUID v4, also sent
//! upstream as `Audit-ID`), evaluates the policy and records
//! `RequestReceived`. [`RequestAudit::finish`] sees the response head:
//! ordinary requests get `ResponseComplete` there; long-running ones
//! (upgrades that switched protocols, watches) get `ResponseStarted`, and
//! `ResponseComplete` when the last holder of the request's [`Tracker`]
//! lets go of it — the end of the watch body, or the end of the upgraded
//! session (the recording handler adds its annotations first, see
//! [`annotate_session`]).

mod args;
mod request;

pub use args::{AuditArgs, ModeArg, OverflowArg};
pub use request::{audit_id, request_info};

use super::auth::Caller;
use super::status::Refusal;
use super::{Body, BoxError, ConnInfo, Ctx};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use kubecast_core::audit::{
    Attributes, AuditConfig, Decision, Event, Level, MicroTime, Mode, Overflow, Policy,
    ResponseStatus, Stage, UserInfo,
};
use kubecast_tokio::audit::{AuditHandle, AuditSink, RecordError, ShutdownReport, WebhookConfig};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// The header that carries the `auditID` upstream (and back to the client).
pub const AUDIT_ID_HEADER: &str = "audit-id";

/// Annotation keys on exec/attach `ResponseComplete` events.
pub const ANN_RECORDED: &str = "kubecast.io/recorded";
pub const ANN_RECORDER: &str = "kubecast.io/recorder";
pub const ANN_RECORDING: &str = "kubecast.io/recording";
pub const ANN_SESSION: &str = "kubecast.io/session-id";
pub const ANN_FAILED: &str = "kubecast.io/failed-attempts";
pub const ANN_UNRECORDED: &str = "kubecast.io/unrecorded";
pub const ANN_PROBLEMS: &str = "kubecast.io/recording-problems";
/// `noauth`: the proxy does not know who the caller is.
pub const ANN_USER_UNKNOWN: &str = "kubecast.io/user-unknown";
/// `noauth`: the user is what the API server answered to a TokenReview of
/// the caller's token (not impersonated: the caller's credentials went
/// upstream).
pub const ANN_USER_REVIEWED: &str = "kubecast.io/user-from-tokenreview";

/// The running audit pipeline.
#[derive(Debug)]
pub(crate) struct Auditor {
    handle: AuditHandle,
    policy: Policy,
    blocking_fail_closed: bool,
    /// Events that could not be recorded or delivered.
    pub failures: AtomicU64,
    /// `ResponseComplete` events recorded from `Drop`, still running.
    pending: watch::Sender<usize>,
    task: Mutex<Option<tokio::task::JoinHandle<ShutdownReport>>>,
}

impl Auditor {
    /// `None` without `--audit-webhook-config-file`. Must run inside the
    /// runtime.
    pub fn start(args: &AuditArgs) -> Result<Option<Arc<Auditor>>, String> {
        let Some(file) = &args.audit_webhook_config_file else {
            return Ok(None);
        };
        let webhook = WebhookConfig::from_file(file)
            .map_err(|e| format!("--audit-webhook-config-file: {e}"))?;
        let policy = match &args.audit_policy_file {
            Some(path) => read_policy(path)?,
            None => Policy::default(),
        };
        let mode = match args.audit_webhook_mode {
            ModeArg::Batch => Mode::Batch,
            ModeArg::Blocking => Mode::Blocking,
        };
        let config = AuditConfig {
            mode,
            buffer_size: args.audit_webhook_batch_buffer_size,
            max_batch_size: args.audit_webhook_batch_max_size,
            max_batch_wait: args.audit_webhook_batch_max_wait,
            throttle_qps: args.audit_webhook_batch_throttle_qps,
            throttle_burst: args.audit_webhook_batch_throttle_burst,
            initial_backoff: args.audit_webhook_initial_backoff,
            max_spill_bytes: args.audit_spill_max_bytes,
            overflow: match args.audit_overflow {
                OverflowArg::Block => Overflow::Block,
                OverflowArg::FailClosed => Overflow::FailClosed,
            },
            ..AuditConfig::default()
        };
        let config = AuditConfig {
            max_backoff: config.max_backoff.max(config.initial_backoff),
            ..config
        };
        let (handle, task) = AuditSink::start(config, webhook.clone(), &args.audit_spill_dir)
            .map_err(|e| format!("audit: {e}"))?;
        tracing::info!(
            webhook = %webhook.server(),
            mode = ?mode,
            policy = ?args.audit_policy_file,
            spill_dir = %args.audit_spill_dir.display(),
            "auditing requests"
        );
        Ok(Some(Arc::new(Auditor {
            handle,
            policy,
            blocking_fail_closed: args.audit_webhook_blocking_fail_closed,
            failures: AtomicU64::new(0),
            pending: watch::Sender::new(0),
            task: Mutex::new(Some(task)),
        })))
    }

    /// Waits for events still being recorded, then drains the sink
    /// (delivered or persisted to the spill file) and logs its report.
    pub async fn shutdown(&self) {
        let mut pending = self.pending.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), pending.wait_for(|n| *n == 0)).await;
        match self.handle.shutdown().await {
            Ok(report) => tracing::info!(
                delivered = report.drain.delivered,
                persisted = report.drain.persisted,
                dead_lettered = report.drain.dead_lettered,
                accepted = report.stats.accepted,
                failed_sends = report.stats.failed_sends,
                failures = self.failures.load(Ordering::Relaxed),
                "audit drained"
            ),
            Err(e) => tracing::error!(error = %e, "audit drain failed"),
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Records `event`; `Err` (already logged and counted) when the request
    /// must be refused.
    async fn record(&self, event: Event) -> Result<(), ()> {
        let (id, stage) = (event.audit_id.clone(), event.stage);
        match self.handle.record(event).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(audit_id = %id, stage = ?stage, error = %e, "audit event not recorded");
                match e {
                    RecordError::Failed(_) if !self.blocking_fail_closed => Ok(()),
                    _ => Err(()),
                }
            }
        }
    }
}

fn read_policy(path: &std::path::Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--audit-policy-file {}: {e}", path.display()))?;
    let policy: Policy = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("--audit-policy-file {}: {e}", path.display()))?;
    policy
        .check()
        .map_err(|e| format!("--audit-policy-file {}: {e}", path.display()))?;
    Ok(policy)
}

/// One request's audit state, shared by the handler and (for upgrades)
/// the session; `ResponseComplete` goes out when the last holder drops it,
/// unless it went out already.
#[derive(Debug)]
pub struct Tracker {
    auditor: Arc<Auditor>,
    /// The event with every request field set (stage and timestamp are
    /// set per emission).
    template: Event,
    decision: Decision,
    state: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    code: i32,
    annotations: BTreeMap<String, String>,
    completed: bool,
}

impl Tracker {
    /// The `auditID`.
    pub fn id(&self) -> &str {
        &self.template.audit_id
    }

    /// Adds annotations to the events still to come.
    pub fn annotate(&self, annotations: impl IntoIterator<Item = (String, String)>) {
        if let Ok(mut state) = self.state.lock() {
            state.annotations.extend(annotations);
        }
    }

    /// The event for `stage`, or `None` when the policy omits it.
    fn event(&self, stage: Stage, state: &TrackerState) -> Option<Event> {
        if !self.decision.emits(stage) {
            return None;
        }
        let mut event = self.template.clone();
        event.stage = stage;
        event.stage_timestamp = MicroTime::from_system_time(SystemTime::now());
        event.annotations.extend(
            state
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        if stage != Stage::RequestReceived && state.code != 0 {
            event.response_status = Some(status_of(state.code));
        }
        Some(event)
    }

    async fn emit(&self, stage: Stage) -> Result<(), ()> {
        let event = {
            let Ok(mut state) = self.state.lock() else {
                return Ok(());
            };
            if stage == Stage::ResponseComplete {
                state.completed = true;
            }
            self.event(stage, &state)
        };
        match event {
            Some(event) => self.auditor.record(event).await,
            None => Ok(()),
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.completed {
            return;
        }
        state.completed = true;
        let streaming = self
            .template
            .object_ref
            .as_ref()
            .is_some_and(|o| matches!(o.subresource.as_str(), "exec" | "attach"));
        if streaming && !state.annotations.contains_key(ANN_RECORDED) {
            state
                .annotations
                .insert(ANN_RECORDED.into(), "false".into());
        }
        let Some(event) = self.event(Stage::ResponseComplete, &state) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(audit_id = %event.audit_id, "no runtime to record ResponseComplete");
            return;
        };
        let auditor = self.auditor.clone();
        auditor.pending.send_modify(|n| *n += 1);
        runtime.spawn(async move {
            let _ = auditor.record(event).await;
            auditor.pending.send_modify(|n| *n -= 1);
        });
    }
}

fn status_of(code: i32) -> ResponseStatus {
    let mut status = ResponseStatus::code(code);
    if code >= 400 {
        status.status = "Failure".into();
        status.reason = StatusCode::from_u16(u16::try_from(code).unwrap_or(500))
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("")
            .replace(' ', "");
    }
    status
}

/// A request's audit: nothing when auditing is off.
#[derive(Debug)]
pub(crate) struct RequestAudit(Option<(Arc<Tracker>, bool)>);

impl RequestAudit {
    /// Gives the request its `auditID` (replacing any `Audit-ID` the client
    /// sent: the proxy is the trust boundary), puts the [`Tracker`] into its
    /// extensions (upgrades hand it to the session) and records
    /// `RequestReceived`. `Err` is the refusal to send when that event
    /// cannot be recorded.
    pub async fn begin<B>(
        ctx: &Ctx,
        conn: &ConnInfo,
        req: &mut Request<B>,
        caller: Result<&Caller, Option<&str>>,
    ) -> Result<RequestAudit, Response<Body>> {
        let Some(auditor) = &ctx.audit else {
            return Ok(RequestAudit(None));
        };
        let now = MicroTime::from_system_time(SystemTime::now());
        let id = audit_id();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
        let info = request_info(req.method().as_str(), &target);
        let mut annotations = BTreeMap::new();
        let audit_user = |u: &super::auth::UserInfo| UserInfo {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            ..UserInfo::default()
        };
        let (user, impersonated) = match caller {
            Ok(Caller::User(u)) => (audit_user(u), Some(audit_user(u))),
            Ok(Caller::Passthrough(Some(u))) => {
                annotations.insert(ANN_USER_REVIEWED.into(), "true".into());
                (audit_user(u), None)
            }
            Ok(Caller::Passthrough(None)) => {
                annotations.insert(
                    ANN_USER_UNKNOWN.into(),
                    "noauth: the caller's own credentials went upstream".into(),
                );
                (UserInfo::default(), None)
            }
            Err(name) => (
                UserInfo {
                    username: name.unwrap_or_default().to_string(),
                    ..UserInfo::default()
                },
                None,
            ),
        };
        let mut source_ips = Vec::new();
        if matches!(caller, Ok(Caller::Passthrough(_))) {
            if let Some(xff) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                source_ips.extend(
                    xff.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
        }
        source_ips.push(conn.addr.ip().to_string());
        let user_agent = req
            .headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut template = Event {
            level: Level::Metadata,
            audit_id: id.clone(),
            stage: Stage::RequestReceived,
            request_uri: target,
            verb: info.verb,
            user,
            impersonated_user: impersonated,
            source_ips,
            user_agent,
            object_ref: info.object,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: now,
            stage_timestamp: now,
            annotations: BTreeMap::new(),
        };
        let decision = auditor.policy.evaluate(&Attributes::of_event(&template));
        template.level = decision.level;
        if let Ok(value) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(AUDIT_ID_HEADER, value);
        }
        let tracker = Arc::new(Tracker {
            auditor: auditor.clone(),
            template,
            decision,
            state: Mutex::new(TrackerState {
                annotations,
                ..TrackerState::default()
            }),
        });
        if super::upgrade::is_upgrade(req) {
            req.extensions_mut().insert(tracker.clone());
        }
        if tracker.emit(Stage::RequestReceived).await.is_err() {
            let refusal = Refusal {
                code: StatusCode::SERVICE_UNAVAILABLE,
                reason: "ServiceUnavailable",
                message: "kubecast proxy: the request cannot be audited; refused".into(),
            };
            if let Ok(mut state) = tracker.state.lock() {
                state.code = 503;
            }
            let _ = tracker.emit(Stage::ResponseComplete).await;
            return Err(with_id(refusal.into_response(), &id));
        }
        Ok(RequestAudit(Some((tracker, info.long_running))))
    }

    /// Records what the response head says: `ResponseComplete`, or for
    /// a long-running request that got going, `ResponseStarted` (the
    /// completion follows when the body or the session ends).
    pub async fn finish(self, response: Response<Body>) -> Response<Body> {
        let Some((tracker, long_running)) = self.0 else {
            return response;
        };
        let code = response.status();
        if let Ok(mut state) = tracker.state.lock() {
            state.code = i32::from(code.as_u16());
        }
        let id = tracker.id().to_string();
        let started =
            long_running && (code == StatusCode::SWITCHING_PROTOCOLS || code.is_success());
        if !started {
            let _ = tracker.emit(Stage::ResponseComplete).await;
            return with_id(response, &id);
        }
        let _ = tracker.emit(Stage::ResponseStarted).await;
        let response = if code.is_success() {
            // A watch: complete when its body ends (or is dropped).
            response.map(|body| {
                AuditedBody {
                    inner: body,
                    _tracker: tracker,
                }
                .boxed()
            })
        } else {
            // An upgrade: the session holds the tracker until it ends.
            response
        };
        with_id(response, &id)
    }
}

fn with_id(mut response: Response<Body>, id: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(AUDIT_ID_HEADER, value);
    }
    response
}

/// A streamed response body that keeps its request's [`Tracker`] alive.
struct AuditedBody {
    inner: Body,
    _tracker: Arc<Tracker>,
}

impl hyper::body::Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The recording handler's session-end summary as annotations on the
/// exec/attach `ResponseComplete` event: recorded (`true` when cast bytes
/// were made and neither the upload nor the local write failed nor the
/// session was passed through), the recorder (`local` for the recordings
/// directory), the recording (the cast's path, or the session id the
/// recorder stores it under), the failed upload attempts, what went wrong,
/// and for fail-open losses that the session ran unrecorded.
pub fn annotate_session(
    tracker: Option<&Arc<Tracker>>,
    session_id: &str,
    local: bool,
    enforce: bool,
    summary: &kubecast_tokio::DriveSummary,
    problems: &str,
    place: &str,
) {
    let Some(tracker) = tracker else {
        return;
    };
    let recorded = summary.recording.as_ref().is_some_and(|r| r.cast_bytes > 0)
        && summary.upload_failure.is_none()
        && summary.sink_error.is_none()
        && summary.pass_through.is_none();
    let mut a = vec![
        (ANN_RECORDED.to_string(), recorded.to_string()),
        (ANN_SESSION.to_string(), session_id.to_string()),
    ];
    if local {
        a.push((ANN_RECORDER.into(), "local".into()));
        a.push((ANN_RECORDING.into(), place.to_string()));
    } else {
        a.push((ANN_RECORDER.into(), place.to_string()));
        a.push((ANN_RECORDING.into(), session_id.to_string()));
    }
    if let Some(failure) = &summary.upload_failure {
        a.push((ANN_FAILED.into(), failure.to_string()));
    }
    if problems != "-" {
        a.push((ANN_PROBLEMS.into(), problems.to_string()));
    }
    if !recorded && !enforce {
        a.push((
            ANN_UNRECORDED.into(),
            "true: the session ran (at least in part) unrecorded (fail-open)".into(),
        ));
    }
    tracker.annotate(a);
}
