//! One upload's body into one recording file.
//!
//! Shared by v1 and v2: the body is handed to the recording's writer
//! ([`super::writer`]) and read only as fast as the writer's bounded queue
//! drains (so HTTP flow control holds a fast uploader back) — but it keeps
//! being read while an fsync runs; the first line must be an
//! asciicast v2 header before anything is stored, every wait has a deadline,
//! and the outcome is logged as one line.

use super::store::{self, HeaderInfo};
use super::writer::{Progress, Recording};
use super::{until_set, Counted, Ctx, Peer};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::StatusCode;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;

/// Why an upload did not end in a complete recording.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The first line is not an asciicast v2 header; nothing kept.
    BadHeader(String),
    /// The header line did not arrive in time; nothing kept.
    HeaderTimeout(Duration),
    /// More than the size limit; the first `limit` bytes kept as incomplete.
    TooLarge(u64),
    /// Nothing arrived for the idle timeout; kept as incomplete.
    IdleTimeout(Duration),
    /// The uploader went away mid-upload; kept as incomplete.
    ClientGone(String),
    /// The recorder is shutting down; kept as incomplete.
    Shutdown,
    /// The disk failed us; whatever was written kept as incomplete.
    Storage(String),
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadHeader(_) => StatusCode::BAD_REQUEST,
            Failure::HeaderTimeout(_) | Failure::IdleTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Failure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::ClientGone(_) => StatusCode::BAD_REQUEST,
            Failure::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::BadHeader(m) => format!("rejected: {m}"),
            Failure::HeaderTimeout(t) => {
                format!("no complete cast header line within {}s", t.as_secs_f64())
            }
            Failure::TooLarge(limit) => {
                format!("the recording exceeds the recorder's limit of {limit} bytes")
            }
            Failure::IdleTimeout(t) => {
                format!("no data for {}s; upload closed", t.as_secs_f64())
            }
            Failure::ClientGone(e) => format!("the upload was cut short: {e}"),
            Failure::Shutdown => "the recorder is shutting down".into(),
            Failure::Storage(e) => format!("the recorder could not store the recording: {e}"),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Failure::BadHeader(_) | Failure::HeaderTimeout(_) => "rejected",
            _ => "incomplete",
        }
    }
}

/// How an upload ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Bytes stored (and fsync'd, for a complete recording).
    pub bytes: u64,
    /// The stored file, if anything was kept.
    pub file: Option<PathBuf>,
    pub result: Result<(), Failure>,
}

/// Encodes one v2 ack frame.
pub(crate) fn ack_frame(n: u64) -> Bytes {
    Bytes::from(format!("{{\"ack\":{n}}}\n"))
}

/// Encodes the v2 error frame.
pub(crate) fn error_frame(message: &str) -> Bytes {
    let mut frame = serde_json::json!({ "error": message }).to_string();
    frame.push('\n');
    Bytes::from(frame)
}

/// Receives `body` into a new recording. With `acks` (v2), sends an ack
/// frame at least every `ack_interval` and within `ack_delay` of progress;
/// the caller sends the final ack or error frame.
pub(crate) async fn ingest(
    ctx: &Ctx,
    version: &'static str,
    peer: Peer,
    mut body: Incoming,
    acks: Option<&mpsc::Sender<Bytes>>,
) -> Outcome {
    let _active = Counted::new(&ctx.active);
    let limits = &ctx.limits;
    let started = Instant::now();
    let received = SystemTime::now();
    let mut abort = ctx.abort.clone();

    let mut head: Vec<u8> = Vec::new();
    let mut info = HeaderInfo::default();
    let mut recording: Option<Recording> = None;
    let header_deadline = started + limits.header_timeout;
    let mut idle_deadline = started + limits.idle_timeout;
    // v2: the first ack (0) goes out at once, so the uploader knows we are there.
    let mut next_ack = acks.map(|_| started);
    let far = started + Duration::from_secs(86_400 * 365);
    // The writer's progress (once the recording exists) and the last ack sent.
    let mut progress: Option<watch::Receiver<Progress>> = None;
    let mut acked = 0u64;

    let result: Result<(), Failure> = loop {
        let deadline = if recording.is_none() {
            header_deadline.min(idle_deadline)
        } else {
            idle_deadline
        };
        // Checked here, not only by the timers below: a body whose frames are
        // always ready must not starve the acks or the deadlines.
        let now = Instant::now();
        if now >= deadline {
            break Err(if recording.is_none() && now >= header_deadline {
                Failure::HeaderTimeout(limits.header_timeout)
            } else {
                Failure::IdleTimeout(limits.idle_timeout)
            });
        }
        if next_ack.is_some_and(|at| now >= at) {
            // An ack only ever reports bytes whose fsync has returned: with new
            // bytes, ask the writer for a sync and ack when it reports back
            // (below); otherwise (or while a sync is still running) repeat
            // what is durable, as the heartbeat.
            let heartbeat = match recording.as_mut() {
                Some(r) => match r.request_sync().and_then(|asked| Ok((asked, r.durable()?))) {
                    Ok((true, _)) => None,
                    Ok((false, durable)) => Some(durable),
                    Err(e) => break Err(Failure::Storage(e.to_string())),
                },
                None => Some(0),
            };
            if let (Some(tx), Some(durable)) = (acks, heartbeat) {
                // Acks are cumulative: if the client is not reading, a
                // dropped one is superseded by the next.
                let _ = tx.try_send(ack_frame(durable));
                acked = durable;
            }
            next_ack = Some(Instant::now() + limits.ack_interval);
        }
        tokio::select! {
            biased;
            _ = until_set(&mut abort) => break Err(Failure::Shutdown),
            changed = progressed(&mut progress) => {
                let now = match (changed, progress.as_mut()) {
                    (true, Some(rx)) => rx.borrow_and_update().clone(),
                    _ => Progress { failed: Some("the recording's writer stopped".into()), ..Progress::default() },
                };
                if let Some(e) = now.failed {
                    break Err(Failure::Storage(e));
                }
                if let Some(tx) = acks.filter(|_| now.durable > acked) {
                    let _ = tx.try_send(ack_frame(now.durable));
                    acked = now.durable;
                }
                if let (Some(r), Some(_)) = (recording.as_mut(), acks) {
                    if let Err(e) = sync_early(r) {
                        break Err(Failure::Storage(e.to_string()));
                    }
                }
            }
            // Wake-ups only: the loop's head does the work.
            _ = sleep_until(next_ack.unwrap_or(far).into()), if next_ack.is_some() => {}
            _ = sleep_until(deadline.into()) => {}
            frame = body.frame() => {
                let data = match frame {
                    None => break finish_header(ctx, &mut head, &mut info, &mut recording, received).await,
                    Some(Err(e)) => break Err(Failure::ClientGone(e.to_string())),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => data,
                        _ => continue, // trailers, empty frames
                    },
                };
                idle_deadline = Instant::now() + limits.idle_timeout;
                // Waits only while the writer's queue is full (a slow disk).
                let accepted = tokio::select! {
                    biased;
                    _ = until_set(&mut abort) => Err(Failure::Shutdown),
                    r = accept(ctx, &mut head, &mut info, &mut recording, received, data) => r,
                };
                if let Err(f) = accepted {
                    break Err(f);
                }
                if progress.is_none() {
                    progress = recording.as_ref().map(Recording::progress);
                }
                if let (Some(r), Some(_)) = (recording.as_mut(), acks) {
                    if let Err(e) = sync_early(r) {
                        break Err(Failure::Storage(e.to_string()));
                    }
                }
                if let Some(at) = next_ack.as_mut() {
                    *at = (*at).min(Instant::now() + limits.ack_delay);
                }
            }
        }
    };

    let mut result = result;
    let (bytes, file) = match recording {
        None => (0, None),
        Some(recording) => {
            let (bytes, placed) = recording.finish(&ctx.store, result.is_ok()).await;
            match placed {
                Ok(path) => (bytes, Some(path)),
                Err(e) => {
                    if result.is_ok() {
                        result = Err(Failure::Storage(e.to_string()));
                    }
                    (bytes, None)
                }
            }
        }
    };
    log(version, peer, &info, bytes, started, &result, file.as_ref());
    Outcome {
        bytes,
        file,
        result,
    }
}

/// Takes one chunk of the body.
async fn accept(
    ctx: &Ctx,
    head: &mut Vec<u8>,
    info: &mut HeaderInfo,
    recording: &mut Option<Recording>,
    received: SystemTime,
    data: Bytes,
) -> Result<(), Failure> {
    if let Some(r) = recording.as_mut() {
        return write_limited(r, data, ctx.limits.max_recording_bytes).await;
    }
    match data.iter().position(|b| *b == b'\n') {
        None => {
            if head.len() + data.len() > store::MAX_HEADER_LINE {
                return Err(Failure::BadHeader(format!(
                    "the first line is longer than {} bytes",
                    store::MAX_HEADER_LINE
                )));
            }
            head.extend_from_slice(&data);
            Ok(())
        }
        Some(i) => {
            let line_len = head.len() + i;
            if line_len > store::MAX_HEADER_LINE {
                return Err(Failure::BadHeader(format!(
                    "the first line is longer than {} bytes",
                    store::MAX_HEADER_LINE
                )));
            }
            head.extend_from_slice(&data[..i]);
            start(ctx, head, info, recording, received).await?;
            let r = recording.as_mut().ok_or(Failure::Shutdown)?;
            write_limited(r, data.slice(i..), ctx.limits.max_recording_bytes).await
        }
    }
}

/// At the end of the body: a header line without a newline still counts.
async fn finish_header(
    ctx: &Ctx,
    head: &mut Vec<u8>,
    info: &mut HeaderInfo,
    recording: &mut Option<Recording>,
    received: SystemTime,
) -> Result<(), Failure> {
    if recording.is_some() {
        return Ok(());
    }
    if head.is_empty() {
        return Err(Failure::BadHeader(
            "the upload is empty (no asciicast v2 header line)".into(),
        ));
    }
    start(ctx, head, info, recording, received).await
}

/// Validates the header line in `head`, opens the recording and writes the
/// line (without its newline; the caller writes the rest).
async fn start(
    ctx: &Ctx,
    head: &mut Vec<u8>,
    info: &mut HeaderInfo,
    recording: &mut Option<Recording>,
    received: SystemTime,
) -> Result<(), Failure> {
    *info = store::parse_header(head).map_err(Failure::BadHeader)?;
    let stem = store::stem(info, received);
    let mut r = ctx
        .store
        .create(stem)
        .await
        .map_err(|e| Failure::Storage(e.to_string()))?;
    let line = Bytes::copy_from_slice(head);
    let result = write_limited(&mut r, line, ctx.limits.max_recording_bytes).await;
    head.clear();
    head.shrink_to_fit();
    *recording = Some(r);
    result
}

/// Writes `data`, or as much of it as fits under `limit`.
async fn write_limited(r: &mut Recording, data: Bytes, limit: u64) -> Result<(), Failure> {
    let room = limit.saturating_sub(r.written());
    let len = data.len();
    let fits = usize::try_from(room).map_or(len, |room| room.min(len));
    if fits > 0 {
        r.write(data.slice(..fits))
            .await
            .map_err(|e| Failure::Storage(e.to_string()))?;
    }
    if fits < len {
        return Err(Failure::TooLarge(limit));
    }
    Ok(())
}

/// While a v2 upload streams, fsyncs (and the acks behind them) follow each
/// other back to back once this many new bytes wait, instead of every
/// `ack_delay`: the uploader stops at a bounded number of unacked bytes, so
/// acks only every `ack_delay` would cap the rate at that bound per delay.
const SYNC_EARLY_BYTES: u64 = 1 << 20;

/// Asks for a sync now if [`SYNC_EARLY_BYTES`] wait and none is running.
fn sync_early(r: &mut Recording) -> std::io::Result<()> {
    if r.unsynced() >= SYNC_EARLY_BYTES && !r.sync_pending() {
        r.request_sync()?;
    }
    Ok(())
}

/// Resolves when the writer reports progress (true) or is gone (false);
/// never before a recording exists.
async fn progressed(progress: &mut Option<watch::Receiver<Progress>>) -> bool {
    match progress {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// One line per recording on stderr: who, where, bytes, duration, outcome, file.
fn log(
    version: &str,
    peer: Peer,
    info: &HeaderInfo,
    bytes: u64,
    started: Instant,
    result: &Result<(), Failure>,
    file: Option<&PathBuf>,
) {
    let outcome = match result {
        Ok(()) => "complete",
        Err(f) => f.outcome(),
    };
    let opt = |v: &Option<String>| format!("{:?}", v.as_deref().unwrap_or("-"));
    let mut line = format!(
        "kubecast recorder: {version} {outcome} peer={}{} user={} namespace={} pod={} container={} bytes={bytes} duration={:.3}s",
        peer.addr,
        if peer.tls { " tls" } else { "" },
        opt(&info.user),
        opt(&info.namespace),
        opt(&info.pod),
        opt(&info.container),
        started.elapsed().as_secs_f64(),
    );
    match file.and_then(|f| f.file_name()) {
        Some(name) => line.push_str(&format!(" file={:?}", name.to_string_lossy())),
        None => line.push_str(" file=-"),
    }
    if let Err(f) = result {
        line.push_str(&format!(" reason={:?}", f.message()));
    }
    eprintln!("{line}");
}
