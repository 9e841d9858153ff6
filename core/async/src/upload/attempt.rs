//! One attempt: v2 as streams on a shared HTTP/2 connection ([`Lease`]:
//! reused, or dialled with the adapter's [`Dial`] and handshaken through
//! `h2`), v1 as raw HTTP/1.1 bytes on a connection of its own. It only does
//! I/O: every result goes back to the driver as a [`Net`] event, every step
//! comes from the core as an [`AttemptCommand`](Command). Dropping the
//! future drops the v1 connection or the v2 streams.

use super::commands::Commands;
use super::events::EventSender;
use super::io::H2Io;
use super::pool::{self, Acquire, BoxConn, Lease, Outcome};
use super::Dial;
use crate::Clock;
use bytes::Bytes;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use kubecast_core::drive::{AttemptCommand as Command, Net, SendQueue};
use kubecast_core::upload::{AttemptId, Protocol, RecorderAddr, RequestHead, Scheme};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Reports back to the driver; `false` when the driver is gone.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) attempt: AttemptId,
    pub(crate) tx: EventSender<(AttemptId, Net)>,
}

impl Reporter {
    async fn send(&self, net: Net) -> bool {
        self.tx.send((self.attempt, net)).await
    }
}

/// The whole life of one attempt.
pub(crate) async fn run<D: Dial + 'static, K: Clock>(
    recorder: RecorderAddr,
    protocol: Protocol,
    tls: D::Tls,
    connect_timeout: Duration,
    commands: Commands,
    report: Reporter,
) {
    if protocol == Protocol::V2 {
        run_shared::<D, K>(recorder, tls, connect_timeout, commands, report).await;
        return;
    }
    let io = match Box::pin(connect::<D, K>(&recorder, false, &tls, connect_timeout)).await {
        Ok((io, _)) => io,
        Err(e) => {
            report.send(Net::ConnectFailed(e.to_string())).await;
            return;
        }
    };
    if !report.send(Net::Connected).await {
        return;
    }
    if let Err(e) = run_v1(io, &commands, &report).await {
        report.send(Net::StreamError(e)).await;
    }
    // Keep the connection until the core closes the attempt: a completed
    // upload is not torn down before the core has seen the last event.
    while commands.recv().await.is_some() {}
}

/// v2 on a shared connection ([`Lease`]): a live one to the same recorder
/// with room, or a new one (dial, ALPN check, h2 handshake) that later
/// attempts may share. The attempt drives the connection for every attempt
/// on it while it lives.
async fn run_shared<D: Dial + 'static, K: Clock>(
    recorder: RecorderAddr,
    tls: D::Tls,
    connect_timeout: Duration,
    commands: Commands,
    report: Reporter,
) {
    let lease = loop {
        let dialing = match pool::acquire::<D>(&recorder, &tls) {
            Acquire::Reuse(lease) => {
                if !report.send(Net::Connected).await {
                    return;
                }
                break lease;
            }
            Acquire::Wait(waiter) => match waiter.outcome().await {
                Outcome::Open | Outcome::Abandoned => continue,
                failed => {
                    fail(failed, &commands, &report).await;
                    return;
                }
            },
            Acquire::Dial(dialing) => dialing,
        };
        // Boxed: the dial's state (TLS handshake included) is not kept in
        // this future for the whole upload.
        match Box::pin(open::<D, K>(&recorder, &tls, connect_timeout)).await {
            Ok(lease) => {
                dialing.finish(Outcome::Open);
                if !report.send(Net::Connected).await {
                    return;
                }
                break lease;
            }
            Err(failed) => {
                dialing.finish(failed.clone());
                fail(failed, &commands, &report).await;
                return;
            }
        }
    };
    // The core closes (drops) an attempt whose requests still run only when
    // it gave the attempt up (a budget or the ack window ran out, a status
    // or error frame it refuses): the connection may be what failed it.
    let mut unfinished = RetireIfDropped(Some(&lease));
    // The streams' work first, then the connection's I/O, in every poll
    // (the connection ending is an error the requests see too: keep
    // waiting for them).
    let mut requests = pin!(run_v2(lease.send_request(), &recorder, &commands, &report));
    let result = poll_fn(|cx| {
        if let Poll::Ready(result) = lease.quietly(|| requests.as_mut().poll(cx)) {
            return Poll::Ready(result);
        }
        let _ = lease.poll_drive(cx);
        Poll::Pending
    })
    .await;
    unfinished.0 = None;
    let drive = async {
        poll_fn(|cx| lease.poll_drive(cx)).await;
        std::future::pending::<()>().await
    };
    let mut drive = pin!(drive);
    if let Err(e) = result {
        // The core fails over to a new attempt, which must not land on
        // the connection that just failed this one.
        lease.retire();
        let report = report.send(Net::StreamError(e));
        future::or(report, async {
            drive.as_mut().await;
            false
        })
        .await;
    }
    // Keep the stream until the core closes the attempt (a completed
    // upload is not torn down before the core has seen the last event),
    // and go on driving the connection for the others on it.
    let wait = async { while commands.recv().await.is_some() {} };
    future::or(wait, drive).await;
}

/// Retires the connection of a v2 attempt dropped while it holds a lease.
struct RetireIfDropped<'a>(Option<&'a Lease>);

impl Drop for RetireIfDropped<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.0 {
            lease.retire();
        }
    }
}

/// Dials and handshakes a connection for the pool.
async fn open<D: Dial + 'static, K: Clock>(
    recorder: &RecorderAddr,
    tls: &D::Tls,
    connect_timeout: Duration,
) -> Result<Lease, Outcome> {
    let (io, alpn_h2) = connect::<D, K>(recorder, true, tls, connect_timeout)
        .await
        .map_err(|e| Outcome::ConnectFailed(e.to_string()))?;
    if recorder.scheme() == Scheme::Https && !alpn_h2 {
        let message = "the recorder did not select ALPN h2";
        return Err(Outcome::StreamFailed(message.into()));
    }
    let io: BoxConn = Box::new(io);
    let (send, connection) = h2::client::handshake(H2Io(io))
        .await
        .map_err(|e| Outcome::StreamFailed(h2_error(e)))?;
    Ok(Lease::open::<D>(recorder, tls, send, connection))
}

/// Reports a failed dial (as the dialling attempt saw it) and waits to be
/// closed.
async fn fail(failed: Outcome, commands: &Commands, report: &Reporter) {
    match failed {
        Outcome::ConnectFailed(message) => {
            report.send(Net::ConnectFailed(message)).await;
            return;
        }
        Outcome::StreamFailed(message) => {
            if report.send(Net::Connected).await {
                report.send(Net::StreamError(message)).await;
            }
        }
        Outcome::Open | Outcome::Abandoned => {}
    }
    while commands.recv().await.is_some() {}
}

/// The adapter's dial, bounded by `limit`.
async fn connect<D: Dial, K: Clock>(
    recorder: &RecorderAddr,
    v2: bool,
    tls: &D::Tls,
    limit: Duration,
) -> io::Result<(D::Conn, bool)> {
    // The core's attempt budget normally ends a slow dial first; this bound
    // holds even if nobody drives the core any more.
    let expired = async {
        match K::now().checked_add(limit) {
            Some(at) => {
                K::sleep_until(at).await;
            }
            None => std::future::pending::<()>().await,
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    };
    future::or(D::dial(recorder, v2, tls), expired).await
}

fn request(scheme: Scheme, head: &RequestHead) -> Result<http::Request<()>, String> {
    let mut builder = http::Request::builder()
        .method(head.method)
        .uri(format!("{scheme}://{}{}", head.authority, head.path));
    for (name, value) in &head.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(())
        .map_err(|e| format!("bad request head: {e}"))
}

fn h2_error(e: h2::Error) -> String {
    format!("HTTP/2: {e}")
}

/// v2: the probe on `Probe`, then the upload on `StartV2`, as streams of
/// the attempt's shared connection (which its caller drives). `Err` is
/// reported as a stream error.
async fn run_v2(
    client: h2::client::SendRequest<Bytes>,
    recorder: &RecorderAddr,
    commands: &Commands,
    report: &Reporter,
) -> Result<(), String> {
    let Some(Command::Probe(probe)) = commands.recv().await else {
        return Ok(());
    };
    let mut client = client.ready().await.map_err(h2_error)?;
    let (response, _) = client
        .send_request(request(recorder.scheme(), &probe)?, true)
        .map_err(h2_error)?;
    let status = response.await.map_err(h2_error)?.status().as_u16();
    let probed = Net::ProbeResponse {
        status,
        http2: true,
    };
    if !report.send(probed).await {
        return Ok(());
    }
    let Some(Command::StartV2(start)) = commands.recv().await else {
        return Ok(());
    };
    let mut client = client.ready().await.map_err(h2_error)?;
    let (response, body) = client
        .send_request(request(recorder.scheme(), &start)?, false)
        .map_err(h2_error)?;
    upload_v2(body, response, commands, report).await
}

/// What woke the v2 upload.
enum V2Wake {
    Head(Result<http::Response<h2::RecvStream>, h2::Error>),
    Data(Option<Result<Bytes, h2::Error>>),
    Capacity(Option<Result<usize, h2::Error>>),
    Command(Option<Command>),
}

/// The `POST /v2/record` stream: cast bytes out within h2 flow control,
/// response head and ack frames in.
async fn upload_v2(
    mut body: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
    commands: &Commands,
    report: &Reporter,
) -> Result<(), String> {
    let mut response = pin!(response);
    let mut recv: Option<h2::RecvStream> = None;
    let mut queue = SendQueue::default();
    loop {
        let want = queue.wanted();
        if want > 0 {
            body.reserve_capacity(want);
        } else if queue.take_end() {
            body.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        let wake = poll_fn(|cx| {
            if recv.is_none() {
                if let Poll::Ready(head) = response.as_mut().poll(cx) {
                    return Poll::Ready(V2Wake::Head(head));
                }
            }
            if let Some(r) = recv.as_mut() {
                if let Poll::Ready(data) = r.poll_data(cx) {
                    return Poll::Ready(V2Wake::Data(data));
                }
            }
            if want > 0 {
                if let Poll::Ready(capacity) = body.poll_capacity(cx) {
                    return Poll::Ready(V2Wake::Capacity(capacity));
                }
            }
            commands.poll_recv(cx).map(V2Wake::Command)
        })
        .await;
        match wake {
            V2Wake::Head(head) => {
                let head = head.map_err(h2_error)?;
                let status = head.status().as_u16();
                recv = Some(head.into_body());
                if !report.send(Net::V2Head(status)).await {
                    return Ok(());
                }
            }
            V2Wake::Data(Some(Ok(chunk))) => {
                let len = chunk.len();
                if !report.send(Net::V2Body(chunk)).await {
                    return Ok(());
                }
                // Released once the driver took it: a recorder cannot make
                // us buffer more than the window.
                if let Some(r) = recv.as_mut() {
                    let _ = r.flow_control().release_capacity(len);
                }
            }
            V2Wake::Data(Some(Err(e))) => return Err(h2_error(e)),
            V2Wake::Data(None) => {
                report.send(Net::ResponseEnd).await;
                return Ok(());
            }
            V2Wake::Capacity(Some(Ok(n))) => {
                let mut written = 0;
                for chunk in queue.take(n) {
                    written += chunk.len();
                    body.send_data(chunk, false).map_err(h2_error)?;
                }
                if written > 0 {
                    report.send(Net::Written(written)).await;
                }
            }
            V2Wake::Capacity(Some(Err(e))) => return Err(h2_error(e)),
            V2Wake::Capacity(None) => return Err("HTTP/2: the request stream closed".into()),
            V2Wake::Command(Some(command)) => queue.push(command),
            V2Wake::Command(None) => return Ok(()),
        }
    }
}

/// v1: write the head on `StartV1`, then every `Send` as it is; every byte
/// read goes back as it comes, EOF as the response end.
async fn run_v1(
    io: impl futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin,
    commands: &Commands,
    report: &Reporter,
) -> Result<(), String> {
    let Some(Command::StartV1(head)) = commands.recv().await else {
        return Ok(());
    };
    let (mut rd, mut wr) = futures_lite::io::split(io);
    let write = async {
        wr.write_all(&head).await?;
        wr.flush().await?;
        while let Some(command) = commands.recv().await {
            match command {
                Command::Send(bytes) => {
                    wr.write_all(&bytes).await?;
                    wr.flush().await?;
                    report.send(Net::Written(bytes.len())).await;
                }
                // The terminal chunk was the last `Send`; the socket is not
                // half-closed (some servers take that as an abort).
                Command::EndStream => wr.flush().await?,
                _ => {}
            }
        }
        Ok::<(), io::Error>(())
    };
    let read = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            let event = match n {
                0 => Net::ResponseEnd,
                n => Net::V1Bytes(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default())),
            };
            if !report.send(event).await || n == 0 {
                // Wait here: the writer may still have work until the core
                // closes the attempt.
                return std::future::pending::<io::Result<()>>().await;
            }
        }
    };
    let write = async {
        write
            .await
            .map_err(|e| format!("writing to the recorder: {e}"))
    };
    let read = async {
        read.await
            .map_err(|e| format!("reading from the recorder: {e}"))
    };
    future::or(write, read).await
}
