//! [`drive`]: one [`Session`] between two async byte streams.

use crate::sink::{SessionSink, SinkError};
use kubecast_core::exec::PassThrough;
use kubecast_core::session::{Output, RecordingStats, Session, SessionEvent};
use kubecast_core::Side;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            buffer_size: DEFAULT_BUFFER_SIZE,
            idle_timeout: None,
            half_close_timeout: None,
            sink_timeout: Some(Duration::from_secs(60)),
            on_sink_error: OnSinkError::KeepForwarding,
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
    /// ([`SessionEvent::RecordingFinished`]); `None` if nothing was recorded.
    pub recording: Option<RecordingStats>,
    /// Why the connection was not recorded, if it was passed through.
    pub pass_through: Option<PassThrough>,
    /// Why decoding stopped, if it did ([`SessionEvent::DecodeFailed`]).
    pub decode_error: Option<String>,
    /// A sink error tolerated under [`OnSinkError::KeepForwarding`] (or
    /// raised by `finish` after the session had already ended otherwise).
    pub sink_error: Option<SinkError>,
    /// From the call to the end.
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
    mut client: C,
    mut upstream: U,
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
    let mut stop = std::pin::pin!(stop);
    let started = Instant::now();
    let mut core = Core {
        session,
        sink,
        options,
        summary: DriveSummary::default(),
        sink_failed: false,
        eof_fed: [false, false],
    };
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
    // A core deadline already handled that the core did not move (a core
    // bug): ignored rather than spun on.
    let mut stale: Option<Instant> = None;
    let mut turn = 0;

    let result: Result<(), DriveErrorKind> = loop {
        if pumps.iter().all(|p| p.state == PumpState::Done) {
            break Ok(());
        }
        // Check the clock before awaiting (quinn's tokio driver gotcha).
        let now = Instant::now();
        let deadline = core
            .session
            .poll_timeout()
            .map(Instant::from_std)
            .filter(|d| Some(*d) != stale);
        if let Some(d) = deadline.filter(|d| *d <= now) {
            core.session.handle_timeout(now.into_std());
            if let Err(e) = core.drain().await {
                break Err(e);
            }
            if core.session.poll_timeout().map(Instant::from_std) == Some(d) {
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
        let wake = [deadline, idle_check, half_close_deadline]
            .into_iter()
            .flatten()
            .min();
        if wake != armed {
            if let Some(at) = wake {
                sleep.as_mut().reset(at);
            }
            armed = wake;
        }

        turn ^= 1;
        let step = poll_fn(|cx| {
            for i in [turn, turn ^ 1] {
                let [to_upstream, to_client] = &mut pumps;
                let polled = match i {
                    0 => to_upstream.poll(cx, &mut client, &mut upstream),
                    _ => to_client.poll(cx, &mut upstream, &mut client),
                };
                if let Poll::Ready(step) = polled {
                    return Poll::Ready(Wake::Pump(i, step));
                }
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
            Wake::Deadline => continue, // handled at the top
            Wake::Stop => break Err(DriveErrorKind::Stopped),
        };
        let pump = &mut pumps[i];
        match step {
            PumpStep::Read(n) => {
                let bytes = pump.buf.get(..n).unwrap_or_default();
                let now = Instant::now().into_std();
                match pump.from {
                    Side::Client => {
                        core.summary.client_bytes += n as u64;
                        core.session.handle_client_bytes(now, bytes);
                    }
                    Side::Upstream => {
                        core.summary.upstream_bytes += n as u64;
                        core.session.handle_upstream_bytes(now, bytes);
                    }
                }
                // Drained (and the sink awaited) before forwarding: a
                // fail-closed sink error leaves these bytes unforwarded.
                if let Err(e) = core.drain().await {
                    break Err(e);
                }
                pump.state = PumpState::Writing { pos: 0, end: n };
            }
            PumpStep::Eof => {
                match pump.from {
                    Side::Client => core.summary.client_eof = true,
                    Side::Upstream => core.summary.upstream_eof = true,
                }
                half_closed_at.get_or_insert_with(Instant::now);
                pump.state = PumpState::ShuttingDown;
                if let Err(e) = core.eof(pump.from).await {
                    break Err(e);
                }
            }
            PumpStep::Closed => {}
            PumpStep::Failed(kind) => break Err(kind),
        }
    };
    core.finish(result, started).await
}

/// The session and its sink: everything the two directions share.
struct Core<'a, S> {
    session: &'a mut Session,
    sink: &'a mut S,
    options: &'a DriveOptions,
    summary: DriveSummary,
    sink_failed: bool,
    eof_fed: [bool; 2],
}

impl<S: SessionSink> Core<'_, S> {
    /// Hands every pending output to the sink.
    async fn drain(&mut self) -> Result<(), DriveErrorKind> {
        while let Some(output) = self.session.poll_output() {
            let len = match &output {
                Output::Cast(b) | Output::Capture(b) => b.len() as u64,
                // Only `end_with_message` produces it, which this driver
                // does not call.
                Output::Event(_) | Output::Inject { .. } => 0,
            };
            if let Output::Event(event) = &output {
                self.note(event);
            }
            if self.sink_failed {
                self.summary.lost_bytes += len;
                continue;
            }
            let limit = self.options.sink_timeout;
            let delivered = match output {
                Output::Event(e) => bounded(limit, self.sink.event(e)).await,
                Output::Cast(b) => bounded(limit, self.sink.cast(b))
                    .await
                    .map(|()| self.summary.cast_bytes += len),
                Output::Capture(b) => bounded(limit, self.sink.capture(b))
                    .await
                    .map(|()| self.summary.capture_bytes += len),
                Output::Inject { .. } => Ok(()),
            };
            if let Err(e) = delivered {
                self.sink_failed = true;
                self.summary.lost_bytes += len;
                match self.options.on_sink_error {
                    OnSinkError::KeepForwarding => {
                        self.summary.sink_error.get_or_insert(e);
                    }
                    OnSinkError::EndSession => return Err(DriveErrorKind::Sink(e)),
                }
            }
        }
        Ok(())
    }

    fn note(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::PassThrough(why) => self.summary.pass_through = Some(*why),
            SessionEvent::DecodeFailed { message } => {
                self.summary
                    .decode_error
                    .get_or_insert_with(|| message.clone());
            }
            SessionEvent::RecordingFinished(stats) => self.summary.recording = Some(stats.clone()),
            _ => {}
        }
    }

    async fn eof(&mut self, side: Side) -> Result<(), DriveErrorKind> {
        if std::mem::replace(&mut self.eof_fed[index(side)], true) {
            return Ok(());
        }
        self.session.handle_eof(Instant::now().into_std(), side);
        self.drain().await
    }

    /// Ends the session: the core hears both sides are done (so the
    /// recording is finished whatever happened), the sink finishes.
    async fn finish(
        mut self,
        mut result: Result<(), DriveErrorKind>,
        started: Instant,
    ) -> Result<DriveSummary, DriveError> {
        for side in [Side::Client, Side::Upstream] {
            if let Err(e) = self.eof(side).await {
                result = result.and(Err(e));
            }
        }
        if let Err(e) = bounded(self.options.sink_timeout, self.sink.finish()).await {
            match (&result, self.options.on_sink_error) {
                (Ok(()), OnSinkError::EndSession) => result = Err(DriveErrorKind::Sink(e)),
                _ => {
                    self.summary.sink_error.get_or_insert(e);
                }
            }
        }
        let mut summary = self.summary;
        summary.duration = started.elapsed();
        match result {
            Ok(()) => Ok(summary),
            Err(kind) => Err(DriveError {
                kind,
                summary: Box::new(summary),
            }),
        }
    }
}

/// A sink call with the sink deadline.
async fn bounded<F>(limit: Option<Duration>, call: F) -> Result<(), SinkError>
where
    F: Future<Output = Result<(), SinkError>>,
{
    match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(SinkError::TimedOut(limit))),
        None => call.await,
    }
}

/// One direction's copy state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpState {
    Reading,
    /// `n` bytes read, waiting for the driver to feed the core.
    Held,
    Writing {
        pos: usize,
        end: usize,
    },
    Flushing,
    /// End of file seen, waiting for the driver to tell the core.
    EofSeen,
    ShuttingDown,
    Done,
}

/// What woke the driver.
enum Wake {
    Pump(usize, PumpStep),
    Deadline,
    Stop,
}

enum PumpStep {
    Read(usize),
    Eof,
    /// The other side's write half is shut down: this direction is over.
    Closed,
    Failed(DriveErrorKind),
}

/// Copies one direction through a bounded buffer: read, (the driver feeds
/// the core), write all, flush, read again. It never reads while a write
/// is pending — that is the back-pressure.
struct Pump {
    from: Side,
    buf: Box<[u8]>,
    state: PumpState,
    /// Last read or write progress.
    active_at: Instant,
}

impl Pump {
    fn new(from: Side, size: usize, now: Instant) -> Pump {
        Pump {
            from,
            buf: vec![0; size].into_boxed_slice(),
            state: PumpState::Reading,
            active_at: now,
        }
    }

    fn to(&self) -> Side {
        match self.from {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    fn write_failed(&mut self, source: io::Error) -> Poll<PumpStep> {
        self.state = PumpState::Done;
        Poll::Ready(PumpStep::Failed(DriveErrorKind::Write {
            side: self.to(),
            source,
        }))
    }

    fn poll<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<PumpStep>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.state {
                PumpState::Reading => {
                    let mut read = ReadBuf::new(&mut self.buf);
                    match Pin::new(&mut *from).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) => {
                            let n = read.filled().len();
                            self.active_at = Instant::now();
                            return Poll::Ready(if n == 0 {
                                self.state = PumpState::EofSeen;
                                PumpStep::Eof
                            } else {
                                self.state = PumpState::Held;
                                PumpStep::Read(n)
                            });
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Poll::Ready(Err(source)) => {
                            self.state = PumpState::Done;
                            return Poll::Ready(PumpStep::Failed(DriveErrorKind::Read {
                                side: self.from,
                                source,
                            }));
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                PumpState::Writing { pos, end } => {
                    let chunk = self.buf.get(pos..end).unwrap_or_default();
                    match Pin::new(&mut *to).poll_write(cx, chunk) {
                        Poll::Ready(Ok(0)) => {
                            return self.write_failed(io::ErrorKind::WriteZero.into())
                        }
                        Poll::Ready(Ok(n)) => {
                            self.active_at = Instant::now();
                            self.state = match pos + n {
                                done if done >= end => PumpState::Flushing,
                                pos => PumpState::Writing { pos, end },
                            };
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Poll::Ready(Err(e)) => return self.write_failed(e),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                PumpState::Flushing => match Pin::new(&mut *to).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.state = PumpState::Reading,
                    Poll::Ready(Err(e)) => return self.write_failed(e),
                    Poll::Pending => return Poll::Pending,
                },
                PumpState::ShuttingDown => match Pin::new(&mut *to).poll_shutdown(cx) {
                    // A peer that is already gone has nothing left to be told.
                    Poll::Ready(Ok(())) => {
                        self.state = PumpState::Done;
                        return Poll::Ready(PumpStep::Closed);
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                        self.state = PumpState::Done;
                        return Poll::Ready(PumpStep::Closed);
                    }
                    Poll::Ready(Err(e)) => return self.write_failed(e),
                    Poll::Pending => return Poll::Pending,
                },
                // Waiting for the driver, or finished: nothing to poll.
                PumpState::Held | PumpState::EofSeen | PumpState::Done => return Poll::Pending,
            }
        }
    }
}
