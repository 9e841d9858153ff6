//! `kubecast decode`: print what the core sees in a captured connection.

use kubecast_core::capture::{CaptureReader, RecordKind};
use kubecast_core::exec::{push_coalesced, ConnectionDecoder, ConnectionEvent, OwnedExecEvent};
use kubecast_core::{Limits, Side};
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Decodes the capture at `path` and writes one line per event to stdout.
pub fn run(path: &Path, as_json: bool) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, records) =
        CaptureReader::new(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut decoder = ConnectionDecoder::new(Limits::default());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for record in records {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines = Vec::new();
        let mut events = Vec::new();
        let mut collect = |event: ConnectionEvent<'_>| match event {
            ConnectionEvent::Exec(e) => push_coalesced(&mut events, &e),
            ConnectionEvent::Request(r) => lines.push(json!({
                "request": {
                    "method": r.method, "resource": format!("{:?}", r.resource),
                    "namespace": r.namespace, "pod": r.pod, "container": r.container,
                    "command": r.command, "stdin": r.stdin, "stdout": r.stdout,
                    "stderr": r.stderr, "tty": r.tty, "offered": r.offered,
                }
            })),
            ConnectionEvent::Response(r) => lines.push(json!({"response": format!("{r:?}")})),
            ConnectionEvent::PassThrough(why) => {
                lines.push(json!({"pass_through": format!("{why:?}")}))
            }
        };
        let result = match record.kind {
            RecordKind::Data(side) => decoder.handle(side, record.bytes, &mut collect),
            RecordKind::Eof(side) => decoder.finish(side, &mut collect),
        };
        lines.extend(events.iter().map(event_json));
        let seconds = record.at_micros as f64 / 1e6;
        for line in lines {
            let written = if as_json {
                writeln!(out, "{}", json!({"t": seconds, "event": line}))
            } else {
                writeln!(out, "{seconds:10.6}  {line}")
            };
            written.map_err(|e| e.to_string())?;
        }
        result.map_err(|e| format!("at {seconds:.6}s: {e}"))?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Upstream => "upstream",
    }
}

fn event_json(event: &OwnedExecEvent) -> serde_json::Value {
    match event {
        OwnedExecEvent::StreamOpened { stream, by } => {
            json!({"opened": stream.as_str(), "by": side(*by)})
        }
        OwnedExecEvent::Data { stream, bytes } => json!({
            "data": kubecast_core::StreamKind::from(*stream).as_str(),
            "text": String::from_utf8_lossy(bytes),
        }),
        OwnedExecEvent::DataEnd { stream } => {
            json!({"data_end": kubecast_core::StreamKind::from(*stream).as_str()})
        }
        OwnedExecEvent::Resize(size) => {
            json!({"resize": format!("{}x{}", size.width, size.height)})
        }
        OwnedExecEvent::Exit(status) => {
            json!({"exit": status.code(), "status": format!("{status:?}")})
        }
        OwnedExecEvent::StreamClosed { stream, by, how } => {
            json!({"closed": stream.as_str(), "by": side(*by), "how": format!("{how:?}")})
        }
        OwnedExecEvent::ConnectionClosed { by, cause } => {
            json!({"connection_closed_by": side(*by), "cause": format!("{cause:?}")})
        }
    }
}
