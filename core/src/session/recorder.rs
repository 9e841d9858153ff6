//! Turns decoded events into cast bytes and session outputs.

use super::output::{Output, RecordingStats, SessionEvent, Timer};
use super::{SessionConfig, SessionMeta};
use crate::cast::{CastHeader, CastWriter, KubernetesInfo};
use crate::exec::{ConnectionEvent, DataStream, ExecEvent};
use crate::handshake::{Negotiated, Resource, UpgradeRequest, UpgradeResponse};
use crate::TerminalSize;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Where the recording stands.
#[derive(Debug)]
enum State {
    /// Before the upgrade completed.
    NotStarted,
    /// Upgraded tty session waiting for its first resize; cast events are
    /// held until the header can be written.
    AwaitingSize { deadline: Instant, held: Vec<u8> },
    /// Header written; events go straight out.
    Recording,
    /// Nothing more will be written (finished, failed, or never recorded).
    Done,
}

#[derive(Debug)]
pub(super) struct Recorder {
    config: SessionConfig,
    meta: SessionMeta,
    request: Option<UpgradeRequest>,
    negotiated: Option<Negotiated>,
    cast: CastWriter,
    state: State,
    /// Cast bytes written since the last flush.
    pending: Vec<u8>,
    outputs: VecDeque<Output>,
    stats: RecordingStats,
}

impl Recorder {
    pub(super) fn new(config: SessionConfig, meta: SessionMeta) -> Self {
        Recorder {
            config,
            meta,
            request: None,
            negotiated: None,
            cast: CastWriter::new(),
            state: State::NotStarted,
            pending: Vec::new(),
            outputs: VecDeque::new(),
            stats: RecordingStats::default(),
        }
    }

    /// Queues an output produced outside the recorder, after everything
    /// queued so far.
    pub(super) fn push_output(&mut self, output: Output) {
        self.flush();
        self.outputs.push_back(output);
    }

    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub(super) fn timer(&self) -> Option<(Instant, Timer)> {
        match &self.state {
            State::AwaitingSize { deadline, .. } => Some((*deadline, Timer::FirstResize)),
            _ => None,
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if let State::AwaitingSize { deadline, .. } = &self.state {
            if now >= *deadline {
                self.write_header(None);
            }
        }
        self.flush();
    }

    /// Moves the cast bytes written so far into an output.
    /// Makes room for the cast of `len` upstream bytes about to be decoded:
    /// one allocation of about the right size (escapes add a little) instead
    /// of growing, and copying, the buffer event by event. Only while
    /// recording, so an idle or unrecorded session keeps no spare capacity.
    pub(super) fn expect_output(&mut self, len: usize) {
        if matches!(self.state, State::Recording) {
            self.pending.reserve(len + len / 8 + 64);
        }
    }

    pub(super) fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.stats.cast_bytes += self.pending.len() as u64;
            let bytes = Bytes::from(std::mem::take(&mut self.pending));
            self.outputs.push_back(Output::Cast(bytes));
        }
    }

    pub(super) fn on_event(&mut self, now: Instant, at: Duration, event: ConnectionEvent<'_>) {
        match event {
            ConnectionEvent::Request(r) => {
                self.event(SessionEvent::Request {
                    resource: r.resource,
                    namespace: r.namespace.clone(),
                    pod: r.pod.clone(),
                    container: r.container.clone(),
                    command: r.command.clone(),
                    tty: r.tty,
                });
                self.request = Some(r.clone());
            }
            ConnectionEvent::Response(UpgradeResponse::Switched(negotiated)) => {
                self.negotiated = Some(*negotiated);
                self.event(SessionEvent::Upgraded(*negotiated));
                let tty = self.request.as_ref().is_some_and(|r| r.tty);
                self.state = State::AwaitingSize {
                    deadline: now + self.config.resize_wait,
                    held: Vec::new(),
                };
                if !tty {
                    self.write_header(None);
                }
            }
            ConnectionEvent::Response(UpgradeResponse::Refused { .. }) => {}
            ConnectionEvent::PassThrough(why) => {
                self.state = State::Done;
                self.event(SessionEvent::PassThrough(why));
            }
            ConnectionEvent::Exec(e) => self.exec_event(at, e),
        }
    }

    fn exec_event(&mut self, at: Duration, event: ExecEvent<'_>) {
        match event {
            ExecEvent::Data { stream, bytes } => {
                let counter = match stream {
                    DataStream::Stdin => &mut self.stats.stdin_bytes,
                    DataStream::Stdout => &mut self.stats.stdout_bytes,
                    DataStream::Stderr => &mut self.stats.stderr_bytes,
                };
                *counter += bytes.len() as u64;
                if stream == DataStream::Stdin && !self.config.record_stdin {
                    return;
                }
                if let Some(out) = cast_buffer(&mut self.state, &mut self.pending) {
                    self.cast.data(at, stream, bytes, false, out);
                }
                self.check_held();
            }
            ExecEvent::DataEnd { stream } => {
                if let Some(out) = cast_buffer(&mut self.state, &mut self.pending) {
                    self.cast.data_end(stream, out);
                }
            }
            ExecEvent::Resize(size) => {
                self.event(SessionEvent::Resize(size));
                if matches!(self.state, State::AwaitingSize { .. }) {
                    // The first size goes into the header, not an event.
                    self.write_header(Some(size));
                } else if let Some(out) = cast_buffer(&mut self.state, &mut self.pending) {
                    self.cast.resize(at, size, out);
                }
            }
            ExecEvent::Exit(status) => {
                self.stats.exit = Some(status.clone());
                self.event(SessionEvent::Exit(status));
            }
            ExecEvent::StreamOpened { stream, by } => {
                self.event(SessionEvent::StreamOpened { stream, by })
            }
            ExecEvent::StreamClosed { stream, by, how } => {
                self.event(SessionEvent::StreamClosed { stream, by, how })
            }
            ExecEvent::ConnectionClosed { by, cause } => {
                self.event(SessionEvent::ConnectionClosed { by, cause })
            }
        }
    }

    /// The core ended the session: say why in the cast, then complete it.
    pub(super) fn end_session(&mut self, at: Duration, message: &str) {
        if matches!(self.state, State::AwaitingSize { .. }) {
            self.write_header(None);
        }
        if matches!(self.state, State::Recording) {
            let label = format!("kubecast: session ended: {message}");
            self.cast.marker(at, &label, &mut self.pending);
        }
        self.finish(at);
    }

    /// Both sides are done: complete the cast.
    pub(super) fn finish(&mut self, at: Duration) {
        if matches!(self.state, State::AwaitingSize { .. }) {
            self.write_header(None);
        }
        if !matches!(self.state, State::Recording) {
            return;
        }
        let exit = self.stats.exit.clone();
        self.cast.finish(at, exit.as_ref(), &mut self.pending);
        self.end();
    }

    /// Whether the exit status has been seen.
    pub(super) fn exit_seen(&self) -> bool {
        self.stats.exit.is_some()
    }

    /// The client ended inside a frame after the exit status (see
    /// [`SessionEvent::ClientCutAfterExit`]): the session is over and the
    /// cast complete. Reported once, though the decoder repeats its error.
    pub(super) fn client_cut_after_exit(&mut self, at: Duration, message: &str) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.event(SessionEvent::ClientCutAfterExit {
            message: message.to_string(),
        });
        self.finish(at);
    }

    /// Decoding failed: mark the cast and stop recording. A failure after
    /// the cast was completed changes nothing and is not reported: the
    /// decoder repeats its first error on every later call.
    pub(super) fn fail(&mut self, at: Duration, message: &str) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.event(SessionEvent::DecodeFailed {
            message: message.to_string(),
        });
        if matches!(self.state, State::AwaitingSize { .. }) {
            self.write_header(None);
        }
        if matches!(self.state, State::Recording) {
            let label = format!("kubecast: recording stopped: {message}");
            self.cast.marker(at, &label, &mut self.pending);
            // What was learned before the failure still counts: an exit
            // status seen before a peer cut its last frame is the exit.
            let exit = self.stats.exit.clone();
            self.cast.finish(at, exit.as_ref(), &mut self.pending);
            self.end();
        } else {
            self.state = State::Done;
        }
    }

    fn end(&mut self) {
        self.state = State::Done;
        self.flush();
        self.stats.replaced = self.cast.replaced();
        let stats = self.stats.clone();
        self.event(SessionEvent::RecordingFinished(stats));
    }

    fn event(&mut self, event: SessionEvent) {
        // Events and cast bytes stay in wire order.
        self.flush();
        self.outputs.push_back(Output::Event(event));
    }

    /// Held output past its cap: stop waiting for a resize.
    fn check_held(&mut self) {
        if let State::AwaitingSize { held, .. } = &self.state {
            if held.len() > self.config.max_held_cast {
                self.write_header(None);
            }
        }
    }

    /// Writes the header (with `size`, or the default) and releases held events.
    fn write_header(&mut self, size: Option<TerminalSize>) {
        let held = match std::mem::replace(&mut self.state, State::Recording) {
            State::AwaitingSize { held, .. } => held,
            other => {
                self.state = other;
                return;
            }
        };
        let size = size.unwrap_or(self.config.default_size);
        let header = self.header(size);
        self.cast.header(&header, &mut self.pending);
        self.pending.extend_from_slice(&held);
    }

    fn header(&self, size: TerminalSize) -> CastHeader {
        let request = self.request.as_ref();
        let (protocol, protocol_version) = match self.negotiated {
            Some(Negotiated::Spdy(v)) => ("spdy", v.as_str()),
            Some(Negotiated::WebSocket(p)) => ("websocket", p.as_str()),
            None => ("unknown", ""),
        };
        let mut env = BTreeMap::new();
        if let Some(term) = &self.meta.term {
            env.insert("TERM".to_string(), term.clone());
        }
        let command = request
            .map(|r| r.command.join(" "))
            .filter(|c| !c.is_empty());
        let pod = request.and_then(|r| r.pod.clone()).unwrap_or_default();
        CastHeader {
            version: 2,
            width: size.width,
            height: size.height,
            timestamp: self.meta.started_unix,
            title: Some(format!(
                "{} {}/{}{}",
                match request.map(|r| r.resource) {
                    Some(Resource::Attach) => "attach",
                    _ => "exec",
                },
                request
                    .and_then(|r| r.namespace.clone())
                    .unwrap_or_default(),
                pod,
                command
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default(),
            )),
            command,
            env,
            kubernetes: KubernetesInfo {
                cluster: self.config.cluster.clone(),
                namespace: request
                    .and_then(|r| r.namespace.clone())
                    .unwrap_or_default(),
                pod,
                container: request.and_then(|r| r.container.clone()),
                resource: match request.map(|r| r.resource) {
                    Some(Resource::Attach) => "attach".into(),
                    _ => "exec".into(),
                },
                user: self.meta.user.clone(),
                uid: self.meta.uid.clone(),
                groups: self.meta.groups.clone(),
                protocol: protocol.into(),
                protocol_version: protocol_version.into(),
                tty: request.is_some_and(|r| r.tty),
                stdin: request.is_some_and(|r| r.stdin),
                session_id: self.meta.session_id.clone(),
            },
        }
    }
}

/// Where cast events go right now, if anywhere.
fn cast_buffer<'a>(state: &'a mut State, pending: &'a mut Vec<u8>) -> Option<&'a mut Vec<u8>> {
    match state {
        State::AwaitingSize { held, .. } => Some(held),
        State::Recording => Some(pending),
        State::NotStarted | State::Done => None,
    }
}
