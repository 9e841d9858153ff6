//! Shared helpers for the `kubecast recorder` tests: a server process per
//! test (the built binary), scratch directories, casts, and small clients.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Every test step waits at most this long.
pub const STEP: Duration = Duration::from_secs(20);

/// A scratch directory, removed on drop.
pub use kubecast_tests::scratch::TempDir as Scratch;

/// A `kubecast recorder` process.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _scratch: Scratch,
}

impl Server {
    /// Starts a recorder storing into a fresh directory with `extra` args.
    pub fn start(name: &str, extra: &[&str]) -> Server {
        let scratch = Scratch::create(name);
        let dir = scratch.join("casts");
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(scratch, dir, extra)
    }

    /// Starts a recorder on `dir` (inside `scratch`).
    pub fn start_in(scratch: Scratch, dir: PathBuf, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubecast"))
            .arg("recorder")
            .args(["--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubecast recorder");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[recorder] {line}");
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(STEP) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the recorder did not start: {:?}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            dir,
            log,
            _scratch: scratch,
        }
    }

    /// Recording files (not hidden), sorted.
    pub fn files(&self) -> Vec<String> {
        list(&self.dir, false)
    }

    /// Hidden (temporary) files.
    pub fn hidden(&self) -> Vec<String> {
        list(&self.dir, true)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    /// Waits until the recorder has logged `n` lines containing `needle`.
    pub async fn wait_log(&self, needle: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        loop {
            let lines: Vec<String> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {needle:?} (x{n}) in {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal to the recorder (by its pid) and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the recorder did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn list(dir: &Path, hidden: bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') == hidden)
        .collect();
    names.sort();
    names
}

/// A cast with a kubecast-style header and `events` output events.
pub fn cast(namespace: &str, pod: &str, user: &str, events: usize) -> Vec<u8> {
    let header = serde_json::json!({
        "version": 2, "width": 80, "height": 24, "timestamp": 1_793_534_584u64,
        "command": "sh", "title": "test",
        "kubernetes": {"namespace": namespace, "pod": pod, "container": "main", "user": user,
                       "resource": "exec", "protocol": "websocket",
                       "protocol_version": "v5.channel.k8s.io", "tty": true, "stdin": true}
    });
    let mut out = serde_json::to_vec(&header).unwrap();
    out.push(b'\n');
    for i in 0..events {
        out.extend_from_slice(format!("[{}.5, \"o\", \"line {i}\\r\\n\"]\n", i).as_bytes());
    }
    out
}

/// The name every `cast(namespace, pod, user, _)` is stored under.
pub fn stem(namespace: &str, pod: &str, user: &str) -> String {
    format!("20261101T120304Z_{namespace}_{pod}_{user}")
}

/// A request body fed from a channel; dropping the sender ends it.
#[derive(Debug)]
pub struct ChanBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }
}

/// An HTTP/2 client connection (h2c or over TLS).
pub struct H2 {
    pub send: hyper::client::conn::http2::SendRequest<ChanBody>,
    pub conn: tokio::task::JoinHandle<()>,
}

impl H2 {
    pub async fn connect<I>(io: I) -> H2
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = tokio::time::timeout(
            STEP,
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
        )
        .await
        .expect("h2 handshake timed out")
        .expect("h2 handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { send, conn }
    }

    pub async fn h2c(addr: SocketAddr) -> H2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        Self::connect(tcp).await
    }

    /// `HEAD /v2/record`'s status.
    pub async fn head(&mut self, token: Option<&str>) -> u16 {
        let (_tx, rx) = mpsc::channel(1);
        drop(_tx);
        let mut req = hyper::Request::head("/v2/record").uri("http://recorder/v2/record");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = tokio::time::timeout(
            STEP,
            self.send.send_request(req.body(ChanBody(rx)).unwrap()),
        )
        .await
        .expect("HEAD timed out")
        .expect("HEAD");
        res.status().as_u16()
    }

    /// Starts `POST /v2/record`; returns the body sender and the response.
    pub async fn post(
        &mut self,
        token: Option<&str>,
    ) -> (mpsc::Sender<Bytes>, hyper::Response<Incoming>) {
        let (tx, rx) = mpsc::channel(16);
        let mut req = hyper::Request::post("http://recorder/v2/record");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = tokio::time::timeout(
            STEP,
            self.send.send_request(req.body(ChanBody(rx)).unwrap()),
        )
        .await
        .expect("POST timed out")
        .expect("POST");
        (tx, res)
    }
}

/// Reads newline-delimited JSON frames from a v2 response body.
pub struct Frames {
    body: Incoming,
    buf: Vec<u8>,
}

impl Frames {
    pub fn new(body: Incoming) -> Frames {
        Frames {
            body,
            buf: Vec::new(),
        }
    }

    /// The next frame, or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON frame"));
            }
            let frame = tokio::time::timeout(STEP, self.body.frame())
                .await
                .expect("no frame within the step timeout");
            match frame {
                None => {
                    assert!(self.buf.is_empty(), "unterminated frame {:?}", self.buf);
                    return None;
                }
                Some(Err(e)) => panic!("response body failed: {e}"),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Reads frames until an ack of at least `n` (returns the acks seen).
    pub async fn until_ack(&mut self, n: u64) -> Vec<u64> {
        let mut acks = Vec::new();
        loop {
            let frame = self.next().await.expect("the stream ended before the ack");
            let ack = frame
                .get("ack")
                .and_then(|a| a.as_u64())
                .unwrap_or_else(|| panic!("expected an ack, got {frame}"));
            acks.push(ack);
            if ack >= n {
                return acks;
            }
        }
    }

    /// Reads all remaining frames.
    pub async fn rest(&mut self) -> Vec<serde_json::Value> {
        let mut frames = Vec::new();
        while let Some(f) = self.next().await {
            frames.push(f);
        }
        frames
    }
}

/// Polls until `f` returns `Some` (at most [`STEP`]).
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP/1.1 exchange helper: reads one response head (and body, by
/// Content-Length) from a stream.
pub async fn read_response<I: AsyncRead + Unpin>(io: &mut I) -> (u16, String) {
    read_response_to(io, false).await
}

/// Like [`read_response`]; a response to `HEAD` has no body whatever its
/// Content-Length says.
pub async fn read_response_to<I: AsyncRead + Unpin>(io: &mut I, is_head: bool) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !buf.ends_with(b"\r\n\r\n") {
            let n = io.read(&mut byte).await.expect("read response");
            assert!(
                n == 1,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let len = if is_head { 0 } else { len };
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await.expect("read response body");
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("response timed out")
}
