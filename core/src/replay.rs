//! Replaying a capture through a [`Session`]: the deterministic path from
//! recorded bytes to a cast, used by `kubecast replay` and the fixture tests.

use crate::capture::{CaptureError, CaptureReader, RecordKind};
use crate::session::{Output, Session, SessionConfig, SessionEvent, SessionMeta};
use crate::Side;
use std::time::{Duration, Instant};

/// What a replay produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The complete cast.
    pub cast: Vec<u8>,
    /// Every session event, in order.
    pub events: Vec<SessionEvent>,
    /// The raw capture, when [`SessionConfig::capture`] was set.
    pub capture: Vec<u8>,
}

/// Feeds every record of `capture` to a new session, at the record's time
/// offset from `base`, firing the session's timers in between as a live
/// driver would. `base` only anchors the clock: the cast does not depend on
/// it. Session metadata missing from `meta` is taken from the capture header.
///
/// `split` cuts each record into pieces of at most that many bytes (`None`:
/// whole records) — the cast must not change, which the tests check.
pub fn replay(
    capture: &[u8],
    config: SessionConfig,
    mut meta: SessionMeta,
    base: Instant,
    split: Option<usize>,
) -> Result<Replay, CaptureError> {
    let (header, records) = CaptureReader::new(capture)?;
    meta.started_unix = meta.started_unix.or(header.timestamp);
    meta.user = meta.user.or(header.user);
    meta.uid = meta.uid.or(header.uid);
    if meta.groups.is_empty() {
        meta.groups = header.groups;
    }
    meta.session_id = meta.session_id.or(header.session_id);
    let config = SessionConfig {
        cluster: config.cluster.or(header.cluster),
        ..config
    };
    let mut session = Session::new(config, meta);
    let mut out = Replay::default();
    let mut eof = [false, false];
    let mut last = base;
    for record in records {
        let record = record?;
        let now = base + Duration::from_micros(record.at_micros);
        fire_timers(&mut session, now, &mut out);
        match record.kind {
            RecordKind::Data(side) => {
                let piece = split.unwrap_or(usize::MAX).max(1);
                for chunk in record.bytes.chunks(piece) {
                    match side {
                        Side::Client => session.handle_client_bytes(now, chunk),
                        Side::Upstream => session.handle_upstream_bytes(now, chunk),
                    }
                    drain(&mut session, &mut out);
                }
            }
            RecordKind::Eof(side) => {
                let [client, upstream] = &mut eof;
                *match side {
                    Side::Client => client,
                    Side::Upstream => upstream,
                } = true;
                session.handle_eof(now, side);
                drain(&mut session, &mut out);
            }
        }
        last = now;
    }
    // A capture cut short still ends its recording, as a driver would when
    // both sockets close.
    for (closed, side) in eof.into_iter().zip([Side::Client, Side::Upstream]) {
        if !closed {
            fire_timers(&mut session, last, &mut out);
            session.handle_eof(last, side);
            drain(&mut session, &mut out);
        }
    }
    Ok(out)
}

/// Fires every deadline due by `now`, in order, at its own instant.
fn fire_timers(session: &mut Session, now: Instant, out: &mut Replay) {
    while let Some(deadline) = session.poll_timeout().filter(|d| *d <= now) {
        session.handle_timeout(deadline);
        drain(session, out);
    }
}

fn drain(session: &mut Session, out: &mut Replay) {
    while let Some(output) = session.poll_output() {
        match output {
            Output::Cast(bytes) => out.cast.extend_from_slice(&bytes),
            Output::Capture(bytes) => out.capture.extend_from_slice(&bytes),
            // A replay never ends a session itself.
            Output::Inject { .. } => {}
            Output::Event(e) => out.events.push(e),
        }
    }
}
