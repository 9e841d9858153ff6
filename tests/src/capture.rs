//! A recording TCP relay: kubectl ⇄ relay ⇄ test upstream.
//!
//! Every connection is relayed byte for byte; each read is recorded with its
//! time in the core's capture format ([`kubecast_core::capture`]), both
//! directions in one file, in the order the relay read them. Connections
//! whose request is an exec or attach are kept (discovery and the Pod GET
//! are not); these are the fixtures in `tests/fixtures/`.
//!
//! A read is recorded before it is forwarded, so a reply is always recorded
//! after the bytes that caused it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubecast_core::capture::{write_header, write_record, CaptureHeader, RecordKind};
use kubecast_core::Side;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One recorded exec/attach connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The request line, e.g. `GET /api/v1/namespaces/default/pods/demo/exec?… HTTP/1.1`.
    pub request_line: String,
    /// The capture file's bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Recording {
    start: Instant,
    bytes: Vec<u8>,
    /// The first bytes the client sent (to classify the connection).
    client_head: Vec<u8>,
}

impl Recording {
    fn record(&mut self, kind: RecordKind, bytes: &[u8]) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        write_record(micros, kind, bytes, &mut self.bytes);
        if kind == RecordKind::Data(Side::Client) && self.client_head.len() < 4096 {
            self.client_head.extend_from_slice(bytes);
        }
    }
}

/// The running relay; stops when dropped.
#[derive(Debug)]
pub struct CaptureRelay {
    addr: SocketAddr,
    captures: Arc<Mutex<Vec<Capture>>>,
    done: watch::Receiver<usize>,
    tasks: JoinSet<()>,
}

impl CaptureRelay {
    /// Listens on `127.0.0.1:0` and relays to `upstream`; `note` goes into
    /// every capture's header.
    pub async fn start(upstream: SocketAddr, note: &str) -> CaptureRelay {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the capture relay");
        let addr = listener.local_addr().expect("relay address");
        let captures = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = watch::channel(0usize);
        let done_tx = Arc::new(done_tx);
        let mut tasks = JoinSet::new();
        let note = note.to_string();
        let kept = captures.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                let (kept, note, done_tx) = (kept.clone(), note.clone(), done_tx.clone());
                connections.spawn(async move {
                    if let Some(capture) = relay(client, upstream, &note).await {
                        if let Ok(mut kept) = kept.lock() {
                            kept.push(capture);
                        }
                        done_tx.send_modify(|n| *n += 1);
                    }
                });
            }
        });
        CaptureRelay {
            addr,
            captures,
            done,
            tasks,
        }
    }

    /// `http://127.0.0.1:PORT`, for kubectl's kubeconfig.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The exec/attach connections that have ended, in the order they ended.
    pub fn captures(&self) -> Vec<Capture> {
        self.captures.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Waits until `n` exec/attach connections have ended (both directions
    /// closed), at most `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Capture> {
        let mut done = self.done.clone();
        let reached = matches!(
            tokio::time::timeout(timeout, done.wait_for(|&k| k >= n)).await,
            Ok(Ok(_))
        );
        match reached {
            true => self.captures(),
            false => panic!(
                "capture relay: {n} exec/attach connections expected to end within {timeout:?}, got {}",
                self.captures().len()
            ),
        }
    }
}

impl Drop for CaptureRelay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Relays one connection; returns its capture if it was an exec/attach.
async fn relay(client: TcpStream, upstream: SocketAddr, note: &str) -> Option<Capture> {
    let server = TcpStream::connect(upstream).await.ok()?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut bytes = Vec::new();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs());
    write_header(
        &CaptureHeader {
            timestamp,
            note: Some(note.to_string()),
            ..CaptureHeader::default()
        },
        &mut bytes,
    );
    let recording = Arc::new(Mutex::new(Recording {
        start: Instant::now(),
        bytes,
        client_head: Vec::new(),
    }));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, Side::Client, recording.clone());
    let down = pump(server_read, client_write, Side::Upstream, recording.clone());
    tokio::join!(up, down);
    let recording = recording.lock().ok()?;
    let head = String::from_utf8_lossy(&recording.client_head);
    let request_line = head.lines().next().unwrap_or("").to_string();
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let is_session = path.starts_with("/api/v1/namespaces/")
        && (path.ends_with("/exec") || path.ends_with("/attach"));
    is_session.then(|| Capture {
        request_line,
        bytes: recording.bytes.clone(),
    })
}

/// Copies one direction, recording each read before forwarding it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    side: Side,
    recording: Arc<Mutex<Recording>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if let Ok(mut r) = recording.lock() {
            if n == 0 {
                r.record(RecordKind::Eof(side), &[]);
            } else {
                r.record(RecordKind::Data(side), &buf[..n]);
            }
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            // The peer is gone; keep reading our side until it ends too.
            continue;
        }
    }
}
