//! [`drive`]: one [`Session`] between two tokio byte streams. The loop
//! every driven machine shares is `kubecast-async`'s ([`run`]), the
//! decisions are the core's `Driver`; this module gives it tokio's streams
//! and clock.

pub(crate) mod io;

use io::Stream;
pub(crate) use io::TokioClock;
use kubecast_async::Driven;
pub use kubecast_core::drive::{
    DriveError, DriveErrorKind, DriveOptions, DriveSummary, OnSinkError, Preamble,
    DEFAULT_BUFFER_SIZE,
};
use kubecast_core::drive::{SessionMachine, SessionSink};
use kubecast_core::session::Session;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};

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

/// The loop, `kubecast-async`'s, on tokio streams and TokioClock.
pub(crate) async fn run<D, C, U, S, F>(
    driven: &mut D,
    client: C,
    upstream: U,
    sink: &mut S,
    options: &DriveOptions,
    stop: F,
) -> Result<DriveSummary, DriveError>
where
    D: Driven<TokioClock>,
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    S: SessionSink,
    F: Future<Output = Option<String>>,
{
    let (client, upstream) = (Stream(client), Stream(upstream));
    kubecast_async::run(driven, client, upstream, sink, options, stop).await
}
