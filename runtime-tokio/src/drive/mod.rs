//! [`drive`]: one [`Session`] between two tokio byte streams — and the one
//! loop every driven machine shares ([`run`]). The decisions are the
//! core's [`Driver`]; this module reads and writes, sleeps and awaits the
//! sink.

pub(crate) mod port;
mod pump;

pub use kubecast_core::drive::{
    DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError, Preamble,
    DEFAULT_BUFFER_SIZE,
};
use kubecast_core::drive::{Driver, Next, SessionMachine, SessionSink};
use kubecast_core::session::Session;
use port::{Driven, SinkPort};
use pump::poll_pump;
use std::future::{poll_fn, Future};
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Drives `session` between `client` and `upstream` until both directions
/// have ended, forwarding every byte unchanged while the session observes
/// it; the outputs go to `sink`, each awaited before the bytes that made it
/// are forwarded. The loop's rules are the core's
/// ([`kubecast_core::drive::Driver`]); see the crate documentation.
///
/// Dropping the returned future abandons the session on the spot: the
/// sink's `finish` is not called. To end a session early and still finish
/// its recording, use [`drive_until`].
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
    let stop = async {
        stop.await;
        None
    };
    run(&mut machine, client, upstream, sink, options, stop).await
}

/// [`drive`], ended by the caller with a message when `end` completes
/// (e.g. a proxy's shutdown grace period is over): the core writes it to
/// the client at the upstream's next frame boundary — a Status on the
/// error channel or stream, which kubectl prints before it exits non-zero
/// — forwards nothing more from the client, and ends the cast with a
/// marker; then both streams close, as at any end
/// ([`kubecast_core::drive::Driver::on_stop`]). The result is `Ok` unless
/// something else ended the session first.
pub async fn drive_until_ended<C, U, S, F>(
    session: &mut Session,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    end: F,
) -> Result<DriveSummary, DriveError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = String>,
{
    let mut machine = SessionMachine::new(session);
    let end = async { Some(end.await) };
    run(&mut machine, client, upstream, sink, options, end).await
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The loop: both directions, the machine's I/O, one timer, the stop
/// future (`None`: cut the session now; `Some(message)`: end it with that
/// message). See the crate documentation for the rules.
pub(crate) async fn run<D, C, U, S, F>(
    driven: &mut D,
    mut client: C,
    mut upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    D: Driven,
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = Option<String>>,
{
    // `None` once it completed: a finished future is not polled again.
    let mut stop = Some(Box::pin(stop));
    let mut driver = Driver::new(options, now());
    driver.start(now(), driven.machine());
    let mut sleep = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut result = loop {
        match driver.poll(now(), driven.machine()) {
            Next::End(result) => break result,
            Next::Drain => {
                let mut port = SinkPort {
                    sink: &mut *sink,
                    ledger: driver.ledger(),
                };
                if let Err(e) = port.drain(driven).await {
                    break Err(e);
                }
            }
            Next::Wait { wake, changed } => {
                if changed {
                    if let Some(at) = wake {
                        sleep.as_mut().reset(Instant::from_std(at));
                    }
                }
                let armed = wake.is_some();
                let woke = poll_fn(|cx| {
                    for i in driver.order() {
                        let (pump, may_read) = driver.pump(i);
                        let polled = match i {
                            0 => poll_pump(pump, may_read, cx, &mut client, &mut upstream),
                            _ => poll_pump(pump, may_read, cx, &mut upstream, &mut client),
                        };
                        if let Poll::Ready(step) = polled {
                            return Poll::Ready(Wake::Pump(i, step));
                        }
                    }
                    if driven.poll_io(cx).is_ready() {
                        return Poll::Ready(Wake::Io);
                    }
                    if armed && sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                    if let Some(Poll::Ready(message)) = stop.as_mut().map(|s| s.as_mut().poll(cx)) {
                        return Poll::Ready(Wake::Stop(message));
                    }
                    Poll::Pending
                })
                .await;
                match woke {
                    Wake::Pump(i, step) => driver.on_pump(now(), driven.machine(), i, step),
                    Wake::Io => driver.on_io(),
                    Wake::Deadline => {} // handled by the next poll
                    Wake::Stop(message) => {
                        stop = None;
                        driver.on_stop(now(), driven.machine(), message.as_deref());
                    }
                }
            }
        }
    };
    // Both connections end here, before the upload settles: kubectl does
    // not wait for the recorder's last ack.
    drop(client);
    drop(upstream);
    driver.close_sides(now(), driven.machine());
    let mut port = SinkPort {
        sink,
        ledger: driver.ledger(),
    };
    if let Err(e) = port.drain(driven).await {
        result = result.and(Err(e));
    }
    result = driver.verdict(driven.machine(), result);
    let mut port = SinkPort {
        sink,
        ledger: driver.ledger(),
    };
    driven.settle(&mut port).await;
    port.finish(&mut result).await;
    driver.end(now(), result)
}

/// What woke the driver.
enum Wake {
    Pump(usize, kubecast_core::drive::PumpStep),
    Io,
    Deadline,
    /// The stop future completed: `None` stop now, `Some` end with a message.
    Stop(Option<String>),
}
