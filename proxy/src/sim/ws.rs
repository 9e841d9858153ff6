//! An exec/attach session over WebSocket, as the API server's v5 stream
//! translator and the kubelet serve it.
//!
//! Right after the `101`: an empty message on the lowest writable channel
//! (stdout, else stderr, else error). Then stdin (channel 0) and resize
//! (channel 4) from the client, stdout (1) and stderr (2) from the process,
//! one message per write; pings answered with pongs; under v5, `[255, 0]`
//! closes stdin. Under a tty the process starts when the first terminal size
//! has arrived (at most `FIRST_SIZE_TIMEOUT` later). At the end: the Status on the error channel (3) — a
//! `metav1.Status` for v4/v5, plain text on failure for `channel.k8s.io` —
//! then a close frame with status 1000 and the TCP close.

use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{
    decode_channel_message, encode_channel_message, encode_close, encode_pong, Message,
    MessageKind, MessageReader, CLOSE_SIGNAL_CHANNEL,
};
use kubecast_core::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::container::{Exit, Input, Output};
use super::http::ExecRequest;
use super::json::{exec_error_text, exec_status};
use super::session::{flush, linger, start_process, ResizeStream};
use super::{SessionExit, SessionHandle, FIRST_SIZE_TIMEOUT, SESSION_TIMEOUT};
use tokio::sync::mpsc;
use tokio::time::Instant;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

pub(crate) async fn serve<S>(
    mut io: S,
    protocol: WsProtocol,
    exec: ExecRequest,
    session: SessionHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exit = match tokio::time::timeout(SESSION_TIMEOUT, run(&mut io, protocol, &exec, &session))
        .await
    {
        Ok(exit) => exit,
        Err(_) => SessionExit::TimedOut,
    };
    session.finish(exit);
    linger(&mut io).await;
}

/// What a client message asks of the session.
enum Next {
    Continue,
    /// The client closed the connection (close frame) or broke the protocol.
    End,
}

struct Client<'a> {
    protocol: WsProtocol,
    session: &'a SessionHandle,
    reader: MessageReader,
    resize: ResizeStream,
    /// Input that arrived before the process started.
    early: Vec<Input>,
    input: Option<mpsc::UnboundedSender<Input>>,
}

impl Client<'_> {
    fn deliver(&mut self, input: Input) {
        match &self.input {
            Some(tx) => {
                let _ = tx.send(input);
            }
            None => self.early.push(input),
        }
    }

    /// Feeds bytes read from the client; handles every complete message.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Next {
        self.reader.push(bytes);
        loop {
            match self.reader.next_message() {
                Ok(Some(message)) => {
                    if let Next::End = self.handle(message, out) {
                        return Next::End;
                    }
                }
                Ok(None) => return Next::Continue,
                Err(_) => {
                    encode_close(out, Some(1002), "protocol error", None);
                    return Next::End;
                }
            }
        }
    }

    fn handle(&mut self, message: Message, out: &mut Vec<u8>) -> Next {
        match message.kind {
            MessageKind::Ping => {
                encode_pong(out, &message.payload, None);
                self.session.update(|r| r.pings += 1);
                Next::Continue
            }
            MessageKind::Pong => Next::Continue,
            MessageKind::Close => {
                encode_close(out, message.close_code().or(Some(1000)), "", None);
                Next::End
            }
            MessageKind::Text | MessageKind::Binary => {
                match decode_channel_message(self.protocol, &message.payload) {
                    Ok(None) => Next::Continue,
                    Ok(Some((channel, payload))) => self.channel(channel, payload, out),
                    Err(_) => {
                        encode_close(out, Some(1007), "bad channel message", None);
                        Next::End
                    }
                }
            }
        }
    }

    fn channel(&mut self, channel: u8, payload: Vec<u8>, out: &mut Vec<u8>) -> Next {
        match channel {
            STDIN if !payload.is_empty() => {
                self.session
                    .update(|r| r.stdin_bytes.extend_from_slice(&payload));
                self.deliver(Input::Stdin(payload));
            }
            RESIZE => {
                for size in self.resize.push(&payload) {
                    self.session.update(|r| r.resizes.push(size));
                    self.deliver(Input::Resize(size));
                }
            }
            CLOSE_SIGNAL_CHANNEL if self.protocol.close_signal() => {
                // The v5 close signal is exactly one channel byte; anything
                // else ends the connection, as in the API server.
                if payload.len() != 1 {
                    encode_close(out, Some(1002), "bad close signal", None);
                    return Next::End;
                }
                if payload.first() == Some(&STDIN) {
                    self.session.update(|r| r.stdin_closed = true);
                    self.deliver(Input::StdinEof);
                }
            }
            _ => {}
        }
        Next::Continue
    }
}

async fn run<S>(
    io: &mut S,
    protocol: WsProtocol,
    exec: &ExecRequest,
    session: &SessionHandle,
) -> SessionExit
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    let first = if exec.stdout {
        STDOUT
    } else if exec.stderr {
        STDERR
    } else {
        ERROR
    };
    encode_channel_message(&mut out, protocol, first, &[], None);
    if flush(io, &mut out).await.is_err() {
        return SessionExit::ClientGone;
    }

    let mut client = Client {
        protocol,
        session,
        reader: MessageReader::new(&Limits::default()),
        resize: ResizeStream::default(),
        early: Vec::new(),
        input: None,
    };
    let mut buf = vec![0u8; 64 * 1024];

    // Under a tty, the shell starts once it knows the terminal's size.
    if exec.tty {
        let deadline = Instant::now() + FIRST_SIZE_TIMEOUT;
        while !client.early.iter().any(|i| matches!(i, Input::Resize(_))) {
            let n = match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return SessionExit::ClientGone,
                Ok(Ok(n)) => n,
            };
            let next = client.feed(&buf[..n], &mut out);
            if flush(io, &mut out).await.is_err() || matches!(next, Next::End) {
                return SessionExit::ClientGone;
            }
        }
    }
    let mut process = start_process(exec, &mut client.early);
    client.input = Some(process.input.clone());
    loop {
        tokio::select! {
            read = io.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return SessionExit::ClientGone,
                    Ok(n) => n,
                };
                if let Next::End = client.feed(&buf[..n], &mut out) {
                    let _ = flush(io, &mut out).await;
                    return SessionExit::ClientGone;
                }
            }
            output = process.output.recv() => match output {
                Some(Output::Stdout(bytes)) if exec.stdout => {
                    encode_channel_message(&mut out, protocol, STDOUT, &bytes, None);
                }
                Some(Output::Stderr(bytes)) if exec.stderr => {
                    encode_channel_message(&mut out, protocol, STDERR, &bytes, None);
                }
                Some(_) => {}
                None => break,
            },
        }
        if flush(io, &mut out).await.is_err() {
            return SessionExit::ClientGone;
        }
    }

    let exit = (&mut process.exit)
        .await
        .unwrap_or_else(|_| Exit::StartFailed("the process panicked".into()));
    session.process_exited(&exit);
    let status = if protocol.status_json() {
        Some(exec_status(&exit, &exec.command).to_string())
    } else {
        exec_error_text(&exit, &exec.command)
    };
    if let Some(status) = status {
        encode_channel_message(&mut out, protocol, ERROR, status.as_bytes(), None);
    }
    encode_close(&mut out, Some(1000), "", None);
    let _ = flush(io, &mut out).await;
    match exit {
        Exit::Code(code) => SessionExit::Code(code),
        Exit::StartFailed(message) => SessionExit::StartFailed(message),
    }
}
