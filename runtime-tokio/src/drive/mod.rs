//! [`drive`]: one [`Session`] between two async byte streams — and the
//! one loop every driven machine shares ([`run`], over [`Machine`]).

pub(crate) mod machine;
mod pump;

use crate::sink::{SessionSink, SinkError};
use kubecast_core::exec::PassThrough;
use kubecast_core::session::{RecordingStats, Session, FAREWELL_WAIT};
use kubecast_core::upload::UploadFailure;
use kubecast_core::Side;
use machine::{Machine, SessionMachine, SinkPort};
use pump::{Pump, PumpState, PumpStep};
use std::future::{poll_fn, Future};
use std::io;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Size of each direction's read buffer unless [`DriveOptions::buffer_size`]
/// says otherwise.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// What the driver does when the sink fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSinkError {
    /// Fail open: keep forwarding; nothing more goes to the sink, and the
    /// summary carries the error and the bytes that could not be recorded.
    #[default]
    KeepForwarding,
    /// Fail closed: end the session at once — the bytes whose output failed
    /// are not forwarded — and return [`DriveErrorKind::Sink`].
    EndSession,
}

/// How [`drive`] runs. Every limit is documented with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveOptions {
    /// Bytes read at most at once from each side, and the most held per
    /// direction while the write to the other side is pending (the only
    /// buffering the driver does). Default 64 KiB.
    pub buffer_size: usize,
    /// End the session when no byte has moved in either direction — no read
    /// and no write progress; a write the peer does not accept counts as
    /// idle — for this long. Default `None`: an interactive shell may
    /// legitimately sit idle for hours; the proxy sets its own policy.
    pub idle_timeout: Option<Duration>,
    /// Once one side has closed its half, how long the other direction may
    /// keep going. Default `None` (no limit).
    pub half_close_timeout: Option<Duration>,
    /// How long one sink call ([`SessionSink::cast`], …, `finish`) may take
    /// before it counts as a [`SinkError::TimedOut`]. Default 60 s: longer
    /// than the recorder upload's own ack window (30 s), so the upload
    /// reports its failure first; a bound so a stuck sink cannot hold a
    /// session (and both its sockets) forever.
    pub sink_timeout: Option<Duration>,
    /// Fail open or fail closed on a sink error. Default
    /// [`OnSinkError::KeepForwarding`].
    pub on_sink_error: OnSinkError,
    /// Bytes the machine is fed before anything is read, as if they had
    /// been read from each side — but **not forwarded** (the peers already
    /// exchanged them). Default: empty. See [`Preamble`].
    pub preamble: Preamble,
}

/// What was exchanged before the driver got the streams, fed to the core
/// first: client bytes, then upstream bytes.
///
/// A proxy whose HTTP layer (hyper) already parsed and relayed the upgrade
/// request and the `101` response hands over streams that start *after*
/// the heads; the core, which reads the heads to learn the resource and the
/// negotiated protocol, needs them first. Put the raw request head in
/// `client` and the raw response head in `upstream`. They are not counted
/// in [`DriveSummary::client_bytes`] / [`DriveSummary::upstream_bytes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preamble {
    pub client: bytes::Bytes,
    pub upstream: bytes::Bytes,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
            idle_timeout: None,
            half_close_timeout: None,
            sink_timeout: Some(Duration::from_secs(60)),
            on_sink_error: OnSinkError::KeepForwarding,
            preamble: Preamble::default(),
        }
    }
}

/// What a driven session did.
#[derive(Debug, Default)]
pub struct DriveSummary {
    /// Bytes read from the client (all forwarded upstream unless the
    /// session ended early).
    pub client_bytes: u64,
    /// Bytes read from the upstream.
    pub upstream_bytes: u64,
    /// The client closed its half of the connection (end of file).
    pub client_eof: bool,
    /// The upstream closed its half of the connection.
    pub upstream_eof: bool,
    /// Cast bytes the sink accepted.
    pub cast_bytes: u64,
    /// Capture bytes the sink accepted.
    pub capture_bytes: u64,
    /// Cast and capture bytes the sink never got because it had failed.
    pub lost_bytes: u64,
    /// The finished recording's totals
    /// ([`kubecast_core::session::SessionEvent::RecordingFinished`]); `None` if nothing was recorded.
    pub recording: Option<RecordingStats>,
    /// Why the connection was not recorded, if it was passed through.
    pub pass_through: Option<PassThrough>,
    /// Why decoding stopped, if it did ([`kubecast_core::session::SessionEvent::DecodeFailed`]).
    pub decode_error: Option<String>,
    /// A sink error tolerated under [`OnSinkError::KeepForwarding`] (or
    /// raised by `finish` after the session had already ended otherwise).
    pub sink_error: Option<SinkError>,
    /// [`crate::drive_recording`]: the recorder confirmed this many cast
    /// bytes (the upload completed).
    pub upload_completed: Option<u64>,
    /// [`crate::drive_recording`]: the upload failed (fail-open: the
    /// session went on unrecorded from there; fail-closed: it ended).
    pub upload_failure: Option<UploadFailure>,
    /// From the call to the end (for a recording, until the upload settled).
    pub duration: Duration,
}

/// Why a session ended early. The session's recording is still finished
/// (both sides are reported closed to the core) and the sink finished.
#[derive(Debug, thiserror::Error)]
pub enum DriveErrorKind {
    #[error("reading from the {}: {source}", side_name(*side))]
    Read {
        side: Side,
        #[source]
        source: io::Error,
    },
    /// Writing (or flushing, or shutting down) towards `side` failed.
    #[error("writing to the {}: {source}", side_name(*side))]
    Write {
        side: Side,
        #[source]
        source: io::Error,
    },
    #[error("no bytes moved in either direction for {0:?}")]
    Idle(Duration),
    #[error("the {} kept its half open {timeout:?} after the other side closed", side_name(*open))]
    HalfClose { open: Side, timeout: Duration },
    #[error("recording sink: {0}")]
    Sink(#[source] SinkError),
    /// Fail-closed: the recording could not be uploaded, so the session was
    /// ended (after the core's last words to kubectl, if it could say them).
    #[error("the session was ended because its recording was lost: {0}")]
    RecordingFailed(Box<UploadFailure>),
    /// The `stop` future given to [`drive_until`] completed.
    #[error("stopped by the caller")]
    Stopped,
}

/// A session that ended early: why, and what it did until then.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct DriveError {
    pub kind: DriveErrorKind,
    pub summary: Box<DriveSummary>,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Upstream => "upstream",
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Upstream => 1,
    }
}

/// Drives `session` between `client` and `upstream` until both directions
/// have ended, forwarding every byte unchanged while the session observes
/// it; the session's outputs go to `sink`.
///
/// For each read: the core is fed and drained into the sink (awaited), and
/// only then are the same bytes written to the other side — so a slow sink
/// and a slow reader both hold the sender back, and nothing is buffered
/// beyond one read per direction. End of file on one side is reported to the
/// core and half-closes the other side's write half; the other direction
/// keeps running. The core's deadlines are honoured in between. A socket
/// error, a timeout from [`DriveOptions`] or (fail-closed) a sink error ends
/// the session early; either way the core hears that both sides are done,
/// the sink's `finish` is called once, and both streams are dropped.
///
/// Dropping the returned future abandons the session on the spot: the sink's
/// `finish` is not called. To end a session early and still finish its
/// recording (e.g. a shutdown grace period running out), use
/// [`drive_until`].
pub async fn drive<C, U, S>(
    session: &mut Session,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
{
    drive_until(
        session,
        client,
        upstream,
        sink,
        options,
        std::future::pending(),
    )
    .await
}

/// [`drive`], ended early when `stop` completes: the core hears that both
/// sides are done (so the cast is finished), the sink's `finish` is called,
/// both streams are dropped, and the result is [`DriveErrorKind::Stopped`].
pub async fn drive_until<C, U, S, F>(
    session: &mut Session,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = ()>,
{
    let mut machine = SessionMachine::new(session);
    run(&mut machine, client, upstream, sink, options, stop).await
}

/// The loop: both directions, the machine's I/O, one timer, the stop
/// future. See the crate documentation for the rules.
pub(crate) async fn run<M, C, U, S, F>(
    machine: &mut M,
    mut client: C,
    mut upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    M: Machine<S>,
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = ()>,
{
    let mut stop = std::pin::pin!(stop);
    let started = Instant::now();
    let mut port = SinkPort::new(sink, options);
    let mut eof_fed = [false, false];
    let size = options.buffer_size.max(1);
    // pumps[0]: client → upstream; pumps[1]: upstream → client.
    let mut pumps = [
        Pump::new(Side::Client, size, started),
        Pump::new(Side::Upstream, size, started),
    ];
    let mut sleep = Box::pin(tokio::time::sleep_until(started));
    let mut armed: Option<Instant> = None;
    let mut idle_check = options.idle_timeout.map(|t| started + t);
    let mut half_closed_at: Option<Instant> = None;
    // Set when the core ended the session: the farewell's deadline and the
    // reason to report once it is written.
    let mut parting: Option<(Instant, Result<(), DriveErrorKind>)> = None;
    // A core deadline already handled that the core did not move (a core
    // bug): ignored rather than spun on.
    let mut stale: Option<Instant> = None;
    let mut turn = 0;

    // The heads exchanged before the driver got the streams: fed, not
    // forwarded.
    let preamble = &options.preamble;
    for (side, bytes) in [
        (Side::Client, &preamble.client),
        (Side::Upstream, &preamble.upstream),
    ] {
        if !bytes.is_empty() {
            machine.handle_bytes(Instant::now().into_std(), side, bytes);
        }
    }
    // Whatever the machine holds from before the session (a recording's
    // upload log, or its fail-closed verdict, the preamble's outputs) goes
    // first.
    let mut result: Result<(), DriveErrorKind> = match machine.drain(&mut port).await {
        Err(e) => Err(e),
        Ok(()) => loop {
            // The core ended the session: write its last words to the client
            // (after the write under way), forward nothing else, then stop.
            if let Some((forward, bytes)) = machine.take_farewell() {
                let [to_upstream, to_client] = &mut pumps;
                let held = (to_client.state == PumpState::Held).then_some(0);
                let writing = to_client.part(held, forward, bytes);
                to_upstream.stop();
                let why = machine.take_close().map_or(Ok(()), Err);
                if !writing {
                    break why;
                }
                parting = Some((Instant::now() + FAREWELL_WAIT, why));
            } else if let Some(why) = machine.take_close() {
                break Err(why);
            }
            if let Some((deadline, _)) = &parting {
                if pumps[1].state == PumpState::Done || *deadline <= Instant::now() {
                    break parting.take().map_or(Ok(()), |(_, why)| why);
                }
            } else if pumps.iter().all(|p| p.state == PumpState::Done) {
                break Ok(());
            }
            // Check the clock before awaiting (quinn's tokio driver gotcha).
            let now = Instant::now();
            let deadline = machine
                .poll_timeout()
                .map(Instant::from_std)
                .filter(|d| Some(*d) != stale);
            if let Some(d) = deadline.filter(|d| *d <= now) {
                machine.handle_timeout(now.into_std());
                if let Err(e) = machine.drain(&mut port).await {
                    break Err(e);
                }
                if machine.poll_timeout().map(Instant::from_std) == Some(d) {
                    stale = Some(d);
                }
                continue;
            }
            if let (Some(limit), Some(check)) = (options.idle_timeout, idle_check) {
                if check <= now {
                    // Lazily re-armed: activity only moves the check when it fires.
                    let last = pumps[0].active_at.max(pumps[1].active_at);
                    if last + limit <= now {
                        break Err(DriveErrorKind::Idle(limit));
                    }
                    idle_check = Some(last + limit);
                }
            }
            let half_close_deadline = options
                .half_close_timeout
                .zip(half_closed_at)
                .map(|(limit, since)| since + limit);
            if half_close_deadline.is_some_and(|d| d <= now) {
                let open = pumps
                    .iter()
                    .find(|p| p.state != PumpState::Done)
                    .map_or(Side::Client, |p| p.from);
                break Err(DriveErrorKind::HalfClose {
                    open,
                    timeout: options.half_close_timeout.unwrap_or_default(),
                });
            }
            // Reset the sleep only when the deadline changes.
            let wake = [
                deadline,
                idle_check,
                half_close_deadline,
                parting.as_ref().map(|p| p.0),
            ]
            .into_iter()
            .flatten()
            .min();
            if wake != armed {
                if let Some(at) = wake {
                    sleep.as_mut().reset(at);
                }
                armed = wake;
            }

            let may_read = [
                machine.may_read(Side::Client),
                machine.may_read(Side::Upstream),
            ];
            turn ^= 1;
            let step = poll_fn(|cx| {
                for i in [turn, turn ^ 1] {
                    let [to_upstream, to_client] = &mut pumps;
                    let polled = match i {
                        0 => to_upstream.poll(cx, &mut client, &mut upstream, may_read[0]),
                        _ => to_client.poll(cx, &mut upstream, &mut client, may_read[1]),
                    };
                    if let Poll::Ready(step) = polled {
                        return Poll::Ready(Wake::Pump(i, step));
                    }
                }
                if machine.poll_io(cx).is_ready() {
                    return Poll::Ready(Wake::Io);
                }
                if armed.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Stop);
                }
                Poll::Pending
            })
            .await;
            let (i, step) = match step {
                Wake::Pump(i, step) => (i, step),
                Wake::Io => match machine.drain(&mut port).await {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                },
                Wake::Deadline => continue, // handled at the top
                Wake::Stop => break Err(DriveErrorKind::Stopped),
            };
            let from = pumps.get(i).map_or(Side::Client, |p| p.from);
            match step {
                PumpStep::Read(n) => {
                    let pump = &mut pumps[i];
                    let bytes = pump.buf.get(..n).unwrap_or_default();
                    let summary = &mut port.summary;
                    match from {
                        Side::Client => summary.client_bytes += n as u64,
                        Side::Upstream => summary.upstream_bytes += n as u64,
                    }
                    machine.handle_bytes(Instant::now().into_std(), from, bytes);
                    // Drained (and the sink awaited) before forwarding: a
                    // fail-closed decision leaves these bytes unforwarded.
                    if let Err(e) = machine.drain(&mut port).await {
                        break Err(e);
                    }
                    if let Some((forward, bytes)) = machine.take_farewell() {
                        // Only the first `forward` bytes of an upstream read
                        // go on; a client read goes nowhere.
                        let [to_upstream, to_client] = &mut pumps;
                        let held = (from == Side::Upstream).then_some(n);
                        if from == Side::Client {
                            to_client.part(None, 0, bytes)
                        } else {
                            to_client.part(held, forward, bytes)
                        };
                        to_upstream.stop();
                        let why = machine.take_close().map_or(Ok(()), Err);
                        parting = Some((Instant::now() + FAREWELL_WAIT, why));
                        continue;
                    }
                    pumps[i].state = PumpState::Writing { pos: 0, end: n };
                }
                PumpStep::Eof => {
                    match from {
                        Side::Client => port.summary.client_eof = true,
                        Side::Upstream => port.summary.upstream_eof = true,
                    }
                    half_closed_at.get_or_insert_with(Instant::now);
                    pumps[i].state = PumpState::ShuttingDown;
                    if !std::mem::replace(&mut eof_fed[index(from)], true) {
                        machine.handle_eof(Instant::now().into_std(), from);
                        if let Err(e) = machine.drain(&mut port).await {
                            break Err(e);
                        }
                    }
                }
                PumpStep::Closed => {}
                PumpStep::Failed(kind) => break Err(kind),
            }
        },
    };
    // Both connections end here, before the upload settles: kubectl does
    // not wait for the recorder's last ack.
    drop(client);
    drop(upstream);
    // The core hears both sides are done (so the recording is finished
    // whatever happened).
    for side in [Side::Client, Side::Upstream] {
        if !std::mem::replace(&mut eof_fed[index(side)], true) {
            machine.handle_eof(Instant::now().into_std(), side);
            if let Err(e) = machine.drain(&mut port).await {
                result = result.and(Err(e));
            }
        }
    }
    if let Some(why) = machine.take_close() {
        result = result.and(Err(why));
    }
    machine.settle(&mut port).await;
    port.finish(&mut result).await;
    let mut summary = port.summary;
    summary.duration = started.elapsed();
    match result {
        Ok(()) => Ok(summary),
        Err(kind) => Err(DriveError {
            kind,
            summary: Box::new(summary),
        }),
    }
}

/// What woke the driver.
enum Wake {
    Pump(usize, PumpStep),
    Io,
    Deadline,
    Stop,
}
