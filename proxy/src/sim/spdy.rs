//! An exec/attach session over SPDY/3.1, as the kubelet serves it (the API
//! server is a byte pipe for SPDY).
//!
//! The client creates one stream per role (`streamtype` header: `error`,
//! `stdin`, `stdout`, `stderr`, `resize`); each gets a SYN_REPLY with an
//! empty header block. Once every stream the query asks for exists (and,
//! under a tty, the first terminal size has arrived) the command runs: stdout/stderr as one DATA frame per write, stdin until an
//! empty DATA frame with FIN, resize JSON on its stream, PINGs echoed. At the
//! end: the Status (v4: `metav1.Status`; v1–v3: text on failure) on the
//! error stream, RST_STREAM(CANCEL) for every stream, GOAWAY, TCP close —
//! the order of apimachinery's `connection.Close` over spdystream.

use std::collections::HashMap;

use kubecast_core::spdy::{goaway_status, rst_status, Frame, FrameReader, FrameWriter};
use kubecast_core::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::container::{Exit, Input, Output};
use super::http::ExecRequest;
use super::json::{exec_error_text, exec_status};
use super::session::{flush, linger, start_process, ResizeStream};
use super::{
    SessionExit, SessionHandle, FIRST_SIZE_TIMEOUT, SESSION_TIMEOUT, STREAM_CREATION_TIMEOUT,
};

pub(crate) async fn serve<S>(mut io: S, version: String, exec: ExecRequest, session: SessionHandle)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exit = match tokio::time::timeout(SESSION_TIMEOUT, run(&mut io, &version, &exec, &session))
        .await
    {
        Ok(exit) => exit,
        Err(_) => SessionExit::TimedOut,
    };
    session.finish(exit);
    linger(&mut io).await;
}

/// The connection's state as the server sees it.
struct Conn<'a> {
    session: &'a SessionHandle,
    writer: FrameWriter,
    /// Stream id → `streamtype`, in creation order.
    streams: Vec<(u32, String)>,
    last_client_stream: u32,
    resize: ResizeStream,
    /// Input that arrived before the process started.
    early: Vec<Input>,
    input: Option<tokio::sync::mpsc::UnboundedSender<Input>>,
}

enum Next {
    Continue,
    /// The client went away (GOAWAY) or broke the protocol.
    End,
}

impl Conn<'_> {
    fn stream_id(&self, kind: &str) -> Option<u32> {
        self.streams
            .iter()
            .find(|(_, t)| t == kind)
            .map(|(id, _)| *id)
    }

    fn stream_type(&self, id: u32) -> Option<&str> {
        self.streams
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, t)| t.as_str())
    }

    fn deliver(&mut self, input: Input) {
        match &self.input {
            Some(tx) => {
                let _ = tx.send(input);
            }
            None => self.early.push(input),
        }
    }

    fn handle(&mut self, frame: Frame, out: &mut Vec<u8>) -> Next {
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let kind = headers.get("streamtype").unwrap_or("").to_string();
                if self.writer.syn_reply(out, stream_id, &[], false).is_err() {
                    return Next::End;
                }
                self.last_client_stream = self.last_client_stream.max(stream_id);
                self.session.update(|r| r.streams.push(kind.clone()));
                self.streams.push((stream_id, kind));
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => match self.stream_type(stream_id) {
                Some("stdin") => {
                    if !data.is_empty() {
                        self.session
                            .update(|r| r.stdin_bytes.extend_from_slice(&data));
                        self.deliver(Input::Stdin(data));
                    }
                    if fin {
                        self.session.update(|r| r.stdin_closed = true);
                        self.deliver(Input::StdinEof);
                    }
                }
                Some("resize") => {
                    for size in self.resize.push(&data) {
                        self.session.update(|r| r.resizes.push(size));
                        self.deliver(Input::Resize(size));
                    }
                }
                _ => {}
            },
            Frame::RstStream { stream_id, .. } => {
                if self.stream_type(stream_id) == Some("stdin") {
                    self.session.update(|r| r.stdin_closed = true);
                    self.deliver(Input::StdinEof);
                }
            }
            Frame::Ping { id } => {
                self.writer.ping(out, id);
                self.session.update(|r| r.pings += 1);
            }
            Frame::GoAway { .. } => return Next::End,
            Frame::SynReply { .. }
            | Frame::Settings { .. }
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
        Next::Continue
    }

    /// Feeds bytes; handles every complete frame.
    fn feed(&mut self, reader: &mut FrameReader, bytes: &[u8], out: &mut Vec<u8>) -> Next {
        reader.push(bytes);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    if let Next::End = self.handle(frame, out) {
                        return Next::End;
                    }
                }
                Ok(None) => return Next::Continue,
                Err(_) => return Next::End,
            }
        }
    }
}

/// The streams the server waits for before it runs the command.
fn expected_streams(version: &str, exec: &ExecRequest) -> Vec<&'static str> {
    let mut expected = vec!["error"];
    if exec.stdin {
        expected.push("stdin");
    }
    if exec.stdout {
        expected.push("stdout");
    }
    if exec.stderr && !exec.tty {
        expected.push("stderr");
    }
    // The resize stream exists from v3 on.
    if exec.tty && matches!(version, "v3.channel.k8s.io" | "v4.channel.k8s.io") {
        expected.push("resize");
    }
    expected
}

async fn run<S>(
    io: &mut S,
    version: &str,
    exec: &ExecRequest,
    session: &SessionHandle,
) -> SessionExit
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = Limits::default();
    let mut reader = FrameReader::new(&limits);
    let mut conn = Conn {
        session,
        writer: FrameWriter::new(),
        streams: Vec::new(),
        last_client_stream: 0,
        resize: ResizeStream::default(),
        early: Vec::new(),
        input: None,
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];

    // 1. Wait for the client's streams.
    let expected = expected_streams(version, exec);
    let deadline = Instant::now() + STREAM_CREATION_TIMEOUT;
    while !expected.iter().all(|t| conn.stream_id(t).is_some()) {
        let n = match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Err(_) => {
                let message =
                    format!("timed out waiting for the client to create streams {expected:?}");
                conn.writer
                    .goaway(&mut out, conn.last_client_stream, goaway_status::OK);
                let _ = flush(io, &mut out).await;
                return SessionExit::StartFailed(message);
            }
            Ok(Ok(0)) | Ok(Err(_)) => return SessionExit::ClientGone,
            Ok(Ok(n)) => n,
        };
        let next = conn.feed(&mut reader, &buf[..n], &mut out);
        if flush(io, &mut out).await.is_err() {
            return SessionExit::ClientGone;
        }
        if let Next::End = next {
            return SessionExit::ClientGone;
        }
    }
    let ids: HashMap<&str, u32> = expected
        .iter()
        .filter_map(|t| conn.stream_id(t).map(|id| (*t, id)))
        .collect();

    // 2. Under a tty, the shell starts once it knows the terminal's size.
    if ids.contains_key("resize") {
        let deadline = Instant::now() + FIRST_SIZE_TIMEOUT;
        while !conn.early.iter().any(|i| matches!(i, Input::Resize(_))) {
            let n = match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return SessionExit::ClientGone,
                Ok(Ok(n)) => n,
            };
            let next = conn.feed(&mut reader, &buf[..n], &mut out);
            if flush(io, &mut out).await.is_err() || matches!(next, Next::End) {
                return SessionExit::ClientGone;
            }
        }
    }

    // 3. Run the command.
    let mut process = start_process(exec, &mut conn.early);
    conn.input = Some(process.input.clone());
    loop {
        tokio::select! {
            read = io.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return SessionExit::ClientGone,
                    Ok(n) => n,
                };
                if let Next::End = conn.feed(&mut reader, &buf[..n], &mut out) {
                    let _ = flush(io, &mut out).await;
                    return SessionExit::ClientGone;
                }
            }
            output = process.output.recv() => match output {
                Some(Output::Stdout(bytes)) => {
                    if let Some(&id) = ids.get("stdout") {
                        conn.writer.data(&mut out, id, &bytes, false);
                    }
                }
                Some(Output::Stderr(bytes)) => {
                    if let Some(&id) = ids.get("stderr") {
                        conn.writer.data(&mut out, id, &bytes, false);
                    }
                }
                None => break,
            },
        }
        if flush(io, &mut out).await.is_err() {
            return SessionExit::ClientGone;
        }
    }

    // 4. Report and tear down.
    let exit = (&mut process.exit)
        .await
        .unwrap_or_else(|_| Exit::StartFailed("the process panicked".into()));
    conn.session.process_exited(&exit);
    let status = if version == "v4.channel.k8s.io" {
        Some(exec_status(&exit, &exec.command).to_string())
    } else {
        exec_error_text(&exit, &exec.command)
    };
    if let (Some(status), Some(&id)) = (status, ids.get("error")) {
        conn.writer.data(&mut out, id, status.as_bytes(), false);
    }
    for (id, _) in &conn.streams {
        conn.writer.rst_stream(&mut out, *id, rst_status::CANCEL);
    }
    conn.writer
        .goaway(&mut out, conn.last_client_stream, goaway_status::OK);
    let _ = flush(io, &mut out).await;
    match exit {
        Exit::Code(code) => SessionExit::Code(code),
        Exit::StartFailed(message) => SessionExit::StartFailed(message),
    }
}
