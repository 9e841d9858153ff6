//! One attempt's connection task: dial (TCP, TLS), then HTTP/2 through `h2`
//! (v2) or raw HTTP/1.1 bytes (v1). It only does I/O: every result goes
//! back to the driver as a [`Net`] event, every step comes from the core as
//! a [`Command`]. Dropping the task (abort) drops the connection.

use super::UploadTls;
use bytes::Bytes;
use kubecast_core::drive::{AttemptCommand as Command, Net, SendQueue};
use kubecast_core::upload::{AttemptId, Protocol, RecorderAddr, RequestHead, Scheme};
use std::future::poll_fn;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

/// The byte stream under HTTP: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// Reports back to the driver; `false` when the driver is gone.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub(crate) attempt: AttemptId,
    pub(crate) tx: mpsc::Sender<(AttemptId, Net)>,
}

impl Reporter {
    async fn send(&self, net: Net) -> bool {
        self.tx.send((self.attempt, net)).await.is_ok()
    }
}

/// The whole life of one attempt.
pub(crate) async fn run(
    recorder: RecorderAddr,
    protocol: Protocol,
    tls: UploadTls,
    connect_timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
    report: Reporter,
) {
    let v2 = protocol == Protocol::V2;
    let (io, alpn_h2) = match connect(&recorder, v2, &tls, connect_timeout).await {
        Ok(connected) => connected,
        Err(e) => {
            report.send(Net::ConnectFailed(e.to_string())).await;
            return;
        }
    };
    if !report.send(Net::Connected).await {
        return;
    }
    if v2 && recorder.scheme() == Scheme::Https && !alpn_h2 {
        let message = "the recorder did not select ALPN h2";
        report.send(Net::StreamError(message.into())).await;
        return;
    }
    let result = match protocol {
        Protocol::V2 => run_v2(io, &recorder, &mut commands, &report).await,
        Protocol::V1 => run_v1(io, &mut commands, &report).await,
    };
    if let Err(e) = result {
        report.send(Net::StreamError(e)).await;
    }
    // Keep the connection until the core closes the attempt: a completed
    // upload is not torn down before the core has seen the last event.
    while commands.recv().await.is_some() {}
}

/// TCP (+ TLS): the stream and whether ALPN chose `h2`.
async fn connect(
    recorder: &RecorderAddr,
    v2: bool,
    tls: &UploadTls,
    limit: Duration,
) -> io::Result<(BoxIo, bool)> {
    let dial = async {
        let tcp = TcpStream::connect(recorder.host_port()).await?;
        tcp.set_nodelay(true)?;
        if recorder.scheme() == Scheme::Http {
            return Ok((Box::new(tcp) as BoxIo, false));
        }
        let name = rustls::pki_types::ServerName::try_from(recorder.host().to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TlsConnector::from(tls.config(v2))
            .connect(name, tcp)
            .await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Box::new(stream) as BoxIo, h2))
    };
    // The core's attempt budget normally ends a slow dial first; this bound
    // holds even if nobody drives the core any more.
    tokio::time::timeout(limit, dial)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
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

/// v2: the h2 handshake and the probe on `Probe`, then the upload on
/// `StartV2`. `Err` is reported as a stream error.
async fn run_v2(
    io: BoxIo,
    recorder: &RecorderAddr,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    report: &Reporter,
) -> Result<(), String> {
    let Some(Command::Probe(probe)) = commands.recv().await else {
        return Ok(());
    };
    let (client, connection) = h2::client::handshake(io).await.map_err(h2_error)?;
    // The connection task is owned here: aborting this attempt drops it.
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut client = client.ready().await.map_err(h2_error)?;
    let (response, _) = client
        .send_request(request(recorder.scheme(), &probe)?, true)
        .map_err(h2_error)?;
    let status = response.await.map_err(h2_error)?.status().as_u16();
    if !report
        .send(Net::ProbeResponse {
            status,
            http2: true,
        })
        .await
    {
        return Ok(());
    }
    let Some(Command::StartV2(start)) = commands.recv().await else {
        return Ok(());
    };
    let mut client = client.ready().await.map_err(h2_error)?;
    let (response, body) = client
        .send_request(request(recorder.scheme(), &start)?, false)
        .map_err(h2_error)?;
    let upload = V2Upload {
        body,
        queue: SendQueue::default(),
    };
    let result = upload.run(response, commands, report).await;
    drop(connection);
    result
}

/// The `POST /v2/record` stream: cast bytes out within h2 flow control,
/// response head and ack frames in.
struct V2Upload {
    body: h2::SendStream<Bytes>,
    /// `Send`s not yet handed to h2 (waiting for window), and the end.
    queue: SendQueue,
}

impl V2Upload {
    async fn run(
        mut self,
        response: h2::client::ResponseFuture,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        report: &Reporter,
    ) -> Result<(), String> {
        let mut response = std::pin::pin!(response);
        let mut recv: Option<h2::RecvStream> = None;
        loop {
            let want = self.queue.wanted();
            if want > 0 {
                self.body.reserve_capacity(want);
            } else if self.queue.take_end() {
                self.body.send_data(Bytes::new(), true).map_err(h2_error)?;
            }
            tokio::select! {
                head = &mut response, if recv.is_none() => {
                    let head = head.map_err(h2_error)?;
                    let status = head.status().as_u16();
                    recv = Some(head.into_body());
                    if !report.send(Net::V2Head(status)).await {
                        return Ok(());
                    }
                }
                data = poll_fn(|cx| match recv.as_mut() {
                    Some(r) => r.poll_data(cx),
                    None => std::task::Poll::Pending,
                }), if recv.is_some() => match data {
                    Some(Ok(chunk)) => {
                        let len = chunk.len();
                        if !report.send(Net::V2Body(chunk)).await {
                            return Ok(());
                        }
                        // Released once the driver took it: a recorder
                        // cannot make us buffer more than the window.
                        if let Some(r) = recv.as_mut() {
                            let _ = r.flow_control().release_capacity(len);
                        }
                    }
                    Some(Err(e)) => return Err(h2_error(e)),
                    None => {
                        report.send(Net::ResponseEnd).await;
                        return Ok(());
                    }
                },
                capacity = poll_fn(|cx| self.body.poll_capacity(cx)), if want > 0 => match capacity {
                    Some(Ok(n)) => self.send_within(n, report).await?,
                    Some(Err(e)) => return Err(h2_error(e)),
                    None => return Err("HTTP/2: the request stream closed".into()),
                },
                command = commands.recv() => match command {
                    Some(command) => self.queue.push(command),
                    None => return Ok(()),
                },
            }
        }
    }

    /// Hands up to `n` pending bytes to h2.
    async fn send_within(&mut self, n: usize, report: &Reporter) -> Result<(), String> {
        let mut written = 0;
        for chunk in self.queue.take(n) {
            written += chunk.len();
            self.body.send_data(chunk, false).map_err(h2_error)?;
        }
        if written > 0 {
            report.send(Net::Written(written)).await;
        }
        Ok(())
    }
}

/// v1: write the head on `StartV1`, then every `Send` as it is; every byte
/// read goes back as it comes, EOF as the response end.
async fn run_v1(
    io: BoxIo,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    report: &Reporter,
) -> Result<(), String> {
    let Some(Command::StartV1(head)) = commands.recv().await else {
        return Ok(());
    };
    let (mut rd, mut wr) = tokio::io::split(io);
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
    tokio::select! {
        r = write => r.map_err(|e| format!("writing to the recorder: {e}")),
        r = read => r.map_err(|e| format!("reading from the recorder: {e}")),
    }
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
