//! An exec client: WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and
//! SPDY/3.1 remotecommand v4, as `kubectl exec` speaks them, without
//! kubectl's own cost.
//!
//! It writes frames with the core's encoders and reads the upstream's bytes
//! through the core's [`ConnectionDecoder`] — the decoder the proxy records
//! with — fed with both directions (its own bytes too, so the SPDY stream
//! roles are known). Terminal payload is borrowed from the read buffer, so
//! the client copies nothing it receives. Every wait has a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use kubecast_core::exec::{
    ConnectionDecoder, ConnectionEvent, DataStream, ExecEvent, ExitStatus, Side,
};
use kubecast_core::handshake::{UpgradeResponse, WsProtocol};
use kubecast_core::spdy::FrameWriter;
use kubecast_core::ws::{encode_channel_message, encode_close};
use kubecast_core::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single wait on the peer may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// A client's frames must be masked (RFC 6455 §5.3); the key is arbitrary.
const MASK: Option<[u8; 4]> = Some([0x5a, 0x17, 0xc3, 0x8e]);
/// Bytes per socket read (the kubelet's and kubectl's copy buffers are 32 KiB).
const READ_BUF: usize = 64 * 1024;

/// The exec protocols the load tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    WsV5,
    WsV4,
    Spdy,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::WsV5, Protocol::WsV4, Protocol::Spdy];

    /// The short name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::WsV5 => "ws-v5",
            Protocol::WsV4 => "ws-v4",
            Protocol::Spdy => "spdy-v4",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == s)
    }

    fn ws(self) -> Option<WsProtocol> {
        match self {
            Protocol::WsV5 => Some(WsProtocol::V5Channel),
            Protocol::WsV4 => Some(WsProtocol::V4Channel),
            Protocol::Spdy => None,
        }
    }
}

/// What to run: `argv` in container `main` of `pod` (namespace `default`).
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    pub pod: &'a str,
    pub argv: &'a [&'a str],
    pub tty: bool,
}

/// SPDY stream ids, in kubectl's order of creation.
#[derive(Debug)]
struct SpdyStreams {
    writer: FrameWriter,
    stdin: u32,
    resize: Option<u32>,
}

/// One open exec session.
#[derive(Debug)]
pub struct Exec {
    stream: TcpStream,
    protocol: Protocol,
    decoder: ConnectionDecoder,
    spdy: Option<SpdyStreams>,
    buf: Box<[u8]>,
    out: Vec<u8>,
    /// Terminal bytes that arrived with the upgrade response.
    early: Vec<u8>,
    exit: Option<ExitStatus>,
    over: bool,
}

impl Exec {
    /// Connects to `addr`, upgrades, and (SPDY) creates the streams.
    pub async fn open(
        addr: SocketAddr,
        protocol: Protocol,
        cmd: Command<'_>,
    ) -> Result<Exec, String> {
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        // Keystrokes go out at once, as kubectl's do.
        let _ = stream.set_nodelay(true);
        let mut exec = Exec {
            stream,
            protocol,
            decoder: ConnectionDecoder::new(Limits::default()),
            spdy: None,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            early: Vec::new(),
            exit: None,
            over: false,
        };
        exec.out = request_head(addr, protocol, cmd).into_bytes();
        exec.send().await?;
        while exec.decoder.negotiated().is_none() {
            let mut early = std::mem::take(&mut exec.early);
            let open = exec.read(|bytes| early.extend_from_slice(bytes)).await?;
            exec.early = early;
            if !open {
                return Err("the connection ended during the upgrade".into());
            }
        }
        if protocol == Protocol::Spdy {
            exec.create_spdy_streams(cmd.tty)?;
            exec.send().await?;
        }
        Ok(exec)
    }

    fn create_spdy_streams(&mut self, tty: bool) -> Result<(), String> {
        let mut writer = FrameWriter::new();
        let roles: &[&str] = if tty {
            &["error", "stdin", "stdout", "resize"]
        } else {
            &["error", "stdin", "stdout", "stderr"]
        };
        let mut resize = None;
        for (i, role) in roles.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            writer
                .syn_stream(&mut self.out, id, 0, 0, &[("streamtype", role)], false)
                .map_err(|e| format!("encoding SYN_STREAM: {e}"))?;
            if *role == "resize" {
                resize = Some(id);
            }
        }
        self.spdy = Some(SpdyStreams {
            writer,
            stdin: 3,
            resize,
        });
        Ok(())
    }

    /// Writes `self.out` (and shows it to the decoder as the client's bytes).
    async fn send(&mut self) -> Result<(), String> {
        let result = self
            .decoder
            .handle(Side::Client, &self.out, |_| {})
            .map_err(|e| format!("own bytes undecodable: {e}"));
        let written = tokio::time::timeout(STEP_TIMEOUT, self.stream.write_all(&self.out)).await;
        self.out.clear();
        result?;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("write timed out".into()),
        }
    }

    /// Sends `bytes` on stdin.
    pub async fn stdin(&mut self, bytes: &[u8]) -> Result<(), String> {
        match (&self.spdy, self.protocol.ws()) {
            (Some(spdy), _) => spdy.writer.data(&mut self.out, spdy.stdin, bytes, false),
            (None, Some(ws)) => encode_channel_message(&mut self.out, ws, 0, bytes, MASK),
            (None, None) => return Err("SPDY streams were not created".into()),
        }
        self.send().await
    }

    /// Sends a terminal size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), String> {
        let json = format!("{{\"Width\":{cols},\"Height\":{rows}}}");
        match (&self.spdy, self.protocol.ws()) {
            (Some(spdy), _) => {
                let id = spdy.resize.ok_or("no resize stream without a tty")?;
                spdy.writer.data(&mut self.out, id, json.as_bytes(), false)
            }
            (None, Some(ws)) => encode_channel_message(&mut self.out, ws, 4, json.as_bytes(), MASK),
            (None, None) => return Err("SPDY streams were not created".into()),
        }
        self.send().await
    }

    /// Reads once from the socket and hands every stdout/stderr byte to
    /// `on_output`. Returns `false` once the session is over (the upstream
    /// closed the connection or announced its end).
    pub async fn read(&mut self, mut on_output: impl FnMut(&[u8])) -> Result<bool, String> {
        if !self.early.is_empty() {
            on_output(&std::mem::take(&mut self.early));
            return Ok(true);
        }
        if self.over {
            return Ok(false);
        }
        let n = tokio::time::timeout(STEP_TIMEOUT, self.stream.read(&mut self.buf))
            .await
            .map_err(|_| format!("no bytes from the upstream for {STEP_TIMEOUT:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        let mut exit = None;
        let mut ended = n == 0;
        let mut refused = None;
        let mut sink = |event: ConnectionEvent<'_>| match event {
            ConnectionEvent::Exec(ExecEvent::Data {
                stream: DataStream::Stdout | DataStream::Stderr,
                bytes,
            }) => on_output(bytes),
            ConnectionEvent::Exec(ExecEvent::Exit(status)) => exit = Some(status),
            ConnectionEvent::Exec(ExecEvent::ConnectionClosed {
                by: Side::Upstream, ..
            }) => ended = true,
            ConnectionEvent::Response(UpgradeResponse::Refused { status }) => {
                refused = Some(*status)
            }
            _ => {}
        };
        let decoded = if n == 0 {
            self.decoder.finish(Side::Upstream, &mut sink)
        } else {
            self.decoder
                .handle(Side::Upstream, &self.buf[..n], &mut sink)
        };
        if let Some(status) = refused {
            return Err(format!(
                "the upstream refused the upgrade with HTTP {status}"
            ));
        }
        decoded.map_err(|e| format!("undecodable bytes from the upstream: {e}"))?;
        if exit.is_some() {
            self.exit = exit;
        }
        if ended && !self.over {
            self.over = true;
            if self.protocol.ws().is_some() {
                // Answer the close frame, as a WebSocket client must.
                encode_close(&mut self.out, Some(1000), "", MASK);
                let _ = self.send().await;
            }
        }
        Ok(!self.over)
    }

    /// Reads to the end of the session; returns the exit code it reported.
    pub async fn wait_exit(&mut self) -> Result<u8, String> {
        while self.read(|_| {}).await? {}
        self.exit
            .as_ref()
            .map(ExitStatus::code)
            .ok_or_else(|| "the session ended without an exit status".to_string())
    }

    /// The exit status, once reported.
    pub fn exit(&self) -> Option<&ExitStatus> {
        self.exit.as_ref()
    }
}

/// The upgrade request kubectl would send, offering only `protocol`.
fn request_head(addr: SocketAddr, protocol: Protocol, cmd: Command<'_>) -> String {
    let mut target = format!("/api/v1/namespaces/default/pods/{}/exec?", cmd.pod);
    for arg in cmd.argv {
        target.push_str("command=");
        target.push_str(&arg.replace(' ', "%20"));
        target.push('&');
    }
    target.push_str("container=main&stdin=true&stdout=true");
    target.push_str(if cmd.tty { "&tty=true" } else { "&stderr=true" });
    match protocol.ws() {
        Some(ws) => format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kubecast-load\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
            ws.as_str()
        ),
        None => format!(
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kubecast-load\r\n\
             Upgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\
             X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        ),
    }
}
