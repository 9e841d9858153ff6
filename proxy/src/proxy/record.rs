//! The recording [`UpgradeHandler`]: exec and attach sessions recorded as
//! asciicasts, to a recorder (`--recorder`, rules) or into the local
//! recordings directory (`--recordings-dir`, the embedded default).
//!
//! 1. [`UpgradeHandler::admit`] (before the request goes upstream): the
//!    rules decide for this caller, namespace and pod ([`Rules::decide`]).
//!    `record: false` → raw relay. A request the core cannot parse → 403
//!    when enforced, else a raw relay with a warning. The protocol offer
//!    is checked ([`super::offers`]): only the recordable versions go
//!    upstream; none recordable → 403 when enforced, else a raw relay
//!    with a warning. With recorders the core `Recording` is created (its
//!    upload dials at once); enforced (fail-closed) it is awaited
//!    ([`start_recording`]) and a failure is a 403 naming every attempt —
//!    nothing ran in the container. Fail-open never refuses. Locally, an
//!    enforced session is refused when the directory cannot be written.
//!    The settings (rules, recorder token and CA) are swapped whole on
//!    SIGHUP ([`RecordingHandler::reload`]).
//! 2. [`UpgradeSession::run`]: the raw request head and the raw 101 head
//!    are the driver's [`Preamble`] (fed to the core, not forwarded), then
//!    [`drive_until_ended`] / [`drive_recording_until_ended`] moves the
//!    bytes until both sides end or the shutdown grace runs out (then the
//!    core ends the session with [`SHUTDOWN_FAREWELL`]). One log line per
//!    session.
//! 3. [`UpgradeSession::not_upgraded`]: the recording is dropped (no cast;
//!    an upload that never got cast bytes stores nothing at the recorder).

use super::offers::{self, Offer};
use super::rules::{Decision, Rules, Subject};
use super::status::Refusal;
use super::upgrade::{BoxFuture, RawRelay, UpgradeHandler, UpgradeSession, UpgradedConnection};
use super::upgrade::{ResponseHead, UpgradeRequestInfo};
use super::RecordingConfig;
use crate::recorder::store::{self, HeaderInfo};
use bytes::Bytes;
use hyper::header::HeaderName;
use hyper::StatusCode;
use kubecast_core::recording::{Policy, Recording};
use kubecast_core::session::{Session, SessionConfig, SessionEvent, SessionMeta};
use kubecast_core::upload::UploadConfig;
use kubecast_tokio::{
    drive_recording_until_ended, drive_until_ended, start_recording, DriveError, DriveOptions,
    DriveSummary, FileSink, OnSinkError, Preamble, RecordingHandle, SessionSink, SinkError,
    UploadEvent, UploadTls,
};
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Records exec/attach sessions according to the rules.
#[derive(Debug)]
pub struct RecordingHandler {
    /// Replaced as a whole by [`RecordingHandler::reload`]; each admission
    /// uses the settings current when it started.
    settings: RwLock<Arc<Settings>>,
}

/// What the handler decides with.
#[derive(Debug)]
struct Settings {
    rules: Rules,
    dir: PathBuf,
    ack_timeout: std::time::Duration,
    token: Option<String>,
    tls: UploadTls,
}

impl Settings {
    fn of(config: &RecordingConfig) -> Settings {
        Settings {
            rules: config.rules.clone(),
            dir: config.recordings_dir.clone(),
            ack_timeout: config.ack_timeout,
            token: config.recorder_token.as_ref().map(|t| t.0.clone()),
            tls: config.recorder_tls.clone(),
        }
    }
}

impl RecordingHandler {
    pub fn new(config: &RecordingConfig) -> RecordingHandler {
        RecordingHandler {
            settings: RwLock::new(Arc::new(Settings::of(config))),
        }
    }

    /// Uses `config` for the sessions admitted from now on (SIGHUP); the
    /// running ones keep the decision they were admitted with.
    pub fn reload(&self, config: &RecordingConfig) {
        let fresh = Arc::new(Settings::of(config));
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The message of every refusal starts with this (kubectl prints it).
pub(super) const MUST: &str = "kubecast proxy: this session must be recorded";

/// Where the cast goes.
enum Target {
    File {
        session: Box<Session>,
        sink: Box<FileSink>,
    },
    Upload {
        handle: Box<RecordingHandle>,
    },
}

/// An admitted, recorded session.
struct RecordedSession {
    id: String,
    decision: Decision,
    target: Target,
    /// The recordable part of the client's offer, when it offered more.
    upstream_offers: Option<Vec<String>>,
}

impl UpgradeHandler for RecordingHandler {
    fn admit<'a>(
        &'a self,
        info: &'a UpgradeRequestInfo,
    ) -> BoxFuture<'a, Result<Box<dyn UpgradeSession>, Refusal>> {
        Box::pin(async { super::metrics::admitted(self.admit_inner(info).await, |s| s.recorded()) })
    }
}

impl RecordingHandler {
    async fn admit_inner(
        &self,
        info: &UpgradeRequestInfo,
    ) -> Result<Box<dyn UpgradeSession>, Refusal> {
        let settings = self.settings();
        // noauth without a TokenReview: the caller's own credentials went
        // upstream; who it is the proxy does not know, and the header says
        // so by omission.
        let (user, uid, groups) = match info.caller.user() {
            Some(u) => (
                Some(u.name.clone()),
                Some(u.uid.clone()).filter(|uid| !uid.is_empty()),
                u.groups.clone(),
            ),
            None => (None, None, Vec::new()),
        };
        let parsed = info.parsed.as_ref().ok();
        let namespace = parsed.and_then(|r| r.namespace.clone());
        let pod = parsed.and_then(|r| r.pod.clone());
        let decision = settings.rules.decide(&Subject {
            user: user.as_deref(),
            groups: &groups,
            namespace: namespace.as_deref().unwrap_or(""),
            pod: pod.as_deref().unwrap_or(""),
        });
        if !decision.record {
            return Ok(Box::new(RawRelay));
        }
        let request = match &info.parsed {
            Ok(request) => request,
            Err(e) => {
                if decision.enforce {
                    return Err(Refusal::forbidden(format!(
                        "{MUST}, but kubecast cannot decode this request ({e}); refused"
                    )));
                }
                tracing::warn!(user = %info.caller, peer = %info.peer, error = %e,
                    "exec/attach request the recorder cannot decode: relayed unrecorded (fail-open)");
                return Ok(Box::new(RawRelay));
            }
        };
        let upstream_offers = match offers::admit(info, request, decision.enforce)? {
            Offer::Decodable => None,
            Offer::Partly { keep, .. } => Some(keep),
            Offer::Undecodable => return Ok(Box::new(RawRelay)),
        };

        let id = session_id();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let meta = SessionMeta {
            user: user.clone(),
            uid,
            groups,
            session_id: Some(id.clone()),
            started_unix: Some(started),
            term: None,
        };
        let config = SessionConfig {
            cluster: settings.rules.cluster.clone(),
            record_stdin: decision.record_stdin,
            ..Default::default()
        };

        let target = if decision.recorders.is_empty() {
            if let Err(e) = writable(&settings.dir).await {
                let why = format!("{}: {e}", settings.dir.display());
                if decision.enforce {
                    tracing::warn!(session = %id, user = %info.caller, error = %why,
                        "session refused: the recordings directory is not writable");
                    return Err(Refusal::forbidden(format!(
                        "{MUST}, but the proxy cannot write its recordings directory ({why}); refused"
                    )));
                }
                tracing::warn!(session = %id, user = %info.caller, error = %why,
                    "the recordings directory is not writable; the session goes on (fail-open)");
            }
            let stem = store::stem(
                &HeaderInfo {
                    timestamp: Some(started),
                    namespace,
                    pod,
                    container: parsed.and_then(|r| r.container.clone()),
                    user,
                },
                SystemTime::now(),
            );
            Target::File {
                session: Box::new(Session::new(config, meta)),
                sink: Box::new(FileSink::new(&settings.dir, &stem)),
            }
        } else {
            let mut upload = UploadConfig::with_recorders(&decision.recorders)
                .map_err(|e| Refusal::internal(format!("kubecast proxy: recorders: {e}")))?;
            upload.ack_window = settings.ack_timeout;
            upload.token = settings.token.clone();
            upload
                .headers
                .push(("x-kubecast-session".into(), id.clone()));
            let policy = if decision.enforce {
                Policy::FailClosed
            } else {
                Policy::FailOpen
            };
            let recording = Recording::new(Instant::now(), config, meta, upload, policy)
                .map_err(|e| Refusal::internal(format!("kubecast proxy: recording: {e}")))?;
            let handle = if decision.enforce {
                start_recording(recording, settings.tls.clone())
                    .await
                    .map_err(|failure| {
                        super::metrics::upload_refused(&failure);
                        tracing::warn!(session = %id, user = %info.caller, peer = %info.peer,
                            failure = %failure, "session refused: no recorder reachable (fail-closed)");
                        Refusal::forbidden(format!(
                            "{MUST} (recording is enforced), but no recorder could be reached, \
                             so it was refused before anything ran: {failure}"
                        ))
                    })?
            } else {
                RecordingHandle::new(recording, settings.tls.clone())
            };
            Target::Upload {
                handle: Box::new(handle),
            }
        };
        Ok(Box::new(RecordedSession {
            id,
            decision,
            target,
            upstream_offers,
        }))
    }
}

impl UpgradeSession for RecordedSession {
    fn run(self: Box<Self>, conn: UpgradedConnection) -> BoxFuture<'static, ()> {
        Box::pin(self.run_inner(conn))
    }

    fn recorded(&self) -> bool {
        true
    }

    fn upstream_offers(&self) -> Option<&[String]> {
        self.upstream_offers.as_deref()
    }

    fn not_upgraded(self: Box<Self>, status: StatusCode) {
        // Dropping the target drops the recording: no cast byte was made, so
        // no file is written and the recorder stores nothing.
        tracing::debug!(session = %self.id, status = status.as_u16(),
            "the upstream did not switch protocols; recording dropped");
    }
}

impl RecordedSession {
    async fn run_inner(self, conn: UpgradedConnection) {
        let UpgradedConnection {
            info,
            response_head,
            client,
            upstream,
            mut shutdown,
        } = conn;
        let RecordedSession {
            id,
            decision,
            target,
            upstream_offers: _,
        } = self;
        let options = DriveOptions {
            preamble: Preamble {
                client: Bytes::from(info.client_head.to_bytes()),
                upstream: Bytes::from(response_head.to_bytes()),
            },
            // Fail-closed: a failed write of the local cast, or a session
            // the core cannot decode (see `Guard`), ends the session.
            on_sink_error: if decision.enforce {
                OnSinkError::EndSession
            } else {
                OnSinkError::KeepForwarding
            },
            ..DriveOptions::default()
        };
        // The grace period ran out: the core tells kubectl why, at a frame
        // boundary, and finishes the cast with a marker.
        let cut = std::sync::atomic::AtomicBool::new(false);
        let end = async {
            shutdown.wait().await;
            cut.store(true, Ordering::Relaxed);
            SHUTDOWN_FAREWELL.to_string()
        };
        let (result, place) = match target {
            Target::File {
                mut session,
                mut sink,
            } => {
                let mut guard = Guard {
                    sink: &mut sink,
                    enforce: decision.enforce,
                };
                let result =
                    drive_until_ended(&mut session, client, upstream, &mut guard, &options, end)
                        .await;
                let place = sink
                    .path()
                    .map_or_else(|| "none".to_string(), |p| p.display().to_string());
                (result, place)
            }
            Target::Upload { mut handle } => {
                let mut sink = UploadLog {
                    id: id.clone(),
                    recorder: None,
                    enforce: decision.enforce,
                };
                let result = drive_recording_until_ended(
                    &mut handle,
                    client,
                    upstream,
                    &mut sink,
                    &options,
                    end,
                )
                .await;
                let place = sink
                    .recorder
                    .unwrap_or_else(|| format!("none of {:?}", decision.recorders));
                (result, place)
            }
        };
        let cut = cut.load(Ordering::Relaxed);
        log_end(&id, &info, &response_head, &decision, result, &place, cut);
    }
}

/// What kubectl prints when the shutdown grace period ends its session.
const SHUTDOWN_FAREWELL: &str =
    "kubecast: the proxy is shutting down and its grace period is over; the session was ended";

/// Fail-closed: an event saying the session goes on unrecorded (the core
/// passed it through or stopped decoding it, e.g. a protocol version it
/// does not know) becomes a sink error, which ends the session
/// ([`OnSinkError::EndSession`]) before the bytes that caused it are
/// forwarded.
fn unrecorded(enforce: bool, event: &SessionEvent) -> Result<(), SinkError> {
    let why = match event {
        SessionEvent::PassThrough(why) => format!("passed through ({why:?})"),
        SessionEvent::DecodeFailed { message } => message.clone(),
        _ => return Ok(()),
    };
    if enforce {
        Err(SinkError::Other(format!(
            "this session must be recorded, but it cannot be decoded: {why}"
        )))
    } else {
        Ok(())
    }
}

/// The local cast's sink, with the fail-closed check of [`unrecorded`].
struct Guard<'a> {
    sink: &'a mut FileSink,
    enforce: bool,
}

impl SessionSink for Guard<'_> {
    async fn event(&mut self, event: SessionEvent) -> Result<(), SinkError> {
        unrecorded(self.enforce, &event)?;
        self.sink.event(event).await
    }

    async fn cast(&mut self, bytes: Bytes) -> Result<(), SinkError> {
        self.sink.cast(bytes).await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.sink.finish().await
    }
}

/// A recorded session's sink: the cast goes to the upload (not here); the
/// upload's log goes to `tracing`; fail-closed checks as [`Guard`].
struct UploadLog {
    id: String,
    recorder: Option<String>,
    enforce: bool,
}

impl SessionSink for UploadLog {
    async fn event(&mut self, event: SessionEvent) -> Result<(), SinkError> {
        unrecorded(self.enforce, &event)
    }

    async fn cast(&mut self, _bytes: Bytes) -> Result<(), SinkError> {
        Ok(())
    }

    async fn upload(&mut self, event: UploadEvent) -> Result<(), SinkError> {
        super::metrics::upload_event(&event);
        match &event {
            UploadEvent::Started { recorder, .. } => {
                self.recorder = Some(recorder.to_string());
                tracing::debug!(session = %self.id, "{event}");
            }
            UploadEvent::Completed { .. } => tracing::debug!(session = %self.id, "{event}"),
            UploadEvent::AttemptFailed(_) | UploadEvent::Failed(_) => {
                tracing::warn!(session = %self.id, "{event}")
            }
        }
        Ok(())
    }
}

/// The one line per session end: who, where, what, how it ended, where
/// the recording is.
fn log_end(
    id: &str,
    info: &UpgradeRequestInfo,
    response: &ResponseHead,
    decision: &Decision,
    result: Result<DriveSummary, DriveError>,
    place: &str,
    cut: bool,
) {
    let (summary, outcome) = match result {
        // The shutdown grace period ran out (as the raw relay says it).
        Ok(summary) if cut => (summary, "cut at shutdown".to_string()),
        Ok(summary) => (summary, "closed".to_string()),
        Err(e) => (*e.summary, e.kind.to_string()),
    };
    let parsed = info.parsed.as_ref().ok();
    let header = |name: &str| {
        response
            .headers
            .get(HeaderName::from_bytes(name.as_bytes()).ok()?)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let protocol = format!(
        "{}/{}",
        header("upgrade").unwrap_or_else(|| "-".into()),
        header("sec-websocket-protocol")
            .or_else(|| header("x-stream-protocol-version"))
            .unwrap_or_else(|| "-".into())
    );
    let exit = summary
        .recording
        .as_ref()
        .and_then(|r| r.exit.as_ref())
        .map_or_else(|| "-".to_string(), |e| format!("{e:?}"));
    let mut problems = Vec::new();
    if let Some(failure) = &summary.upload_failure {
        problems.push(format!("upload failed: {failure}"));
    }
    if let Some(e) = &summary.sink_error {
        problems.push(format!(
            "recording write failed: {e} ({} bytes lost)",
            summary.lost_bytes
        ));
    }
    if let Some(why) = &summary.pass_through {
        problems.push(format!("not recorded (passed through): {why:?}"));
    }
    if let Some(e) = &summary.decode_error {
        problems.push(format!("decoding stopped: {e}"));
    }
    let problems = if problems.is_empty() {
        "-".to_string()
    } else {
        problems.join("; ")
    };
    let recorded = summary.recording.as_ref().map_or(0, |r| r.cast_bytes);
    let local = decision.recorders.is_empty();
    super::audit::annotate_session(
        info.audit.as_ref(),
        id,
        local,
        decision.enforce,
        &summary,
        &problems,
        place,
    );
    super::metrics::recorded_bytes(recorded);
    let upload = summary
        .upload_completed
        .map_or_else(|| "-".to_string(), |b| format!("{b} bytes confirmed"));
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                session = %id,
                user = %info.caller,
                peer = %info.peer,
                resource = ?info.resource,
                namespace = parsed.and_then(|r| r.namespace.as_deref()).unwrap_or("-"),
                pod = parsed.and_then(|r| r.pod.as_deref()).unwrap_or("-"),
                container = parsed.and_then(|r| r.container.as_deref()).unwrap_or("-"),
                tty = parsed.is_some_and(|r| r.tty),
                protocol = %protocol,
                duration = ?summary.duration,
                bytes_up = summary.client_bytes,
                bytes_down = summary.upstream_bytes,
                cast_bytes = recorded,
                exit = %exit,
                outcome = %outcome,
                enforce = decision.enforce,
                recording = %place,
                upload = %upload,
                problems = %problems,
                "session ended (recorded)"
            )
        };
    }
    if problems == "-" {
        line!(info);
    } else {
        line!(warn);
    }
}

/// 128 random bits as 32 hex digits: two `RandomState` hashers (random
/// keys per process, stepped per hasher) over the time, a counter and the
/// process id.
pub fn session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = String::with_capacity(32);
    for half in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u8(half);
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

/// Whether a file can be created in `dir` (created if missing).
async fn writable(dir: &Path) -> std::io::Result<()> {
    static PROBE: AtomicU64 = AtomicU64::new(0);
    tokio::fs::create_dir_all(dir).await?;
    let probe = dir.join(format!(
        ".kubecast-{}-probe-{}",
        std::process::id(),
        PROBE.fetch_add(1, Ordering::Relaxed)
    ));
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .await?;
    tokio::fs::remove_file(&probe).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| session_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn writable_directories_are_created_and_probed() {
        let dir = std::env::temp_dir().join(format!("kubecast-writable-{}", session_id()));
        let nested = dir.join("a/b");
        writable(&nested).await.unwrap();
        assert_eq!(
            std::fs::read_dir(&nested).unwrap().count(),
            0,
            "probe removed"
        );
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(writable(&file.join("sub")).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
