//! The driver as a specification, run by the smallest possible adapter:
//! in-memory wires, no async, one clock value per step.

use super::*;
use crate::handshake::WsProtocol;
use crate::session::{Session, SessionConfig, SessionMeta};
use crate::ws::encode_channel_message;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=sh&container=main&stdout=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";

#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

/// One side's connection: what its peer sent (for the driver to read) and
/// what the driver wrote to it.
#[derive(Default)]
struct Wire {
    sent: VecDeque<u8>,
    sent_eof: bool,
    received: Vec<u8>,
    shut_down: bool,
}

/// Moves a pump on against two wires; `None` when it would block.
fn step(
    pump: &mut Pump,
    may_read: bool,
    from: &mut Wire,
    to: &mut Wire,
    now: Instant,
) -> Option<PumpStep> {
    loop {
        let result = match pump.io(may_read) {
            PumpIo::Wait => return None,
            PumpIo::Read(_) if from.sent.is_empty() && !from.sent_eof => return None,
            PumpIo::Read(buf) => {
                let n = buf.len().min(from.sent.len());
                for (slot, byte) in buf.iter_mut().zip(from.sent.drain(..n)) {
                    *slot = byte;
                }
                Ok(n)
            }
            PumpIo::Write(bytes) => {
                to.received.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            PumpIo::Flush => Ok(0),
            PumpIo::Shutdown => {
                to.shut_down = true;
                Ok(0)
            }
        };
        if let Some(step) = pump.done(now, result) {
            return Some(step);
        }
    }
}

/// Runs the loop until it ends or would block; the cast goes to `cast`.
fn run(
    driver: &mut Driver,
    machine: &mut impl Machine,
    wires: &mut [Wire; 2],
    now: Instant,
    cast: &mut Vec<u8>,
) -> Option<Result<(), DriveErrorKind>> {
    loop {
        match driver.poll(now, machine) {
            Next::End(result) => return Some(result),
            Next::Drain => {
                while let Some(item) = machine.poll_item() {
                    if let SinkItem::Cast(bytes) = item {
                        cast.extend_from_slice(&bytes);
                    }
                }
            }
            Next::Wait { .. } => {
                let mut moved = None;
                for i in driver.order() {
                    let (pump, may_read) = driver.pump(i);
                    let [client, upstream] = &mut *wires;
                    let (from, to) = if i == 0 {
                        (client, upstream)
                    } else {
                        (upstream, client)
                    };
                    if let Some(s) = step(pump, may_read, from, to, now) {
                        moved = Some((i, s));
                        break;
                    }
                }
                let (i, s) = moved?;
                driver.on_pump(now, machine, i, s);
            }
        }
    }
}

fn output(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, 1, payload, None);
    out
}

#[test]
fn a_read_is_forwarded_only_after_its_outputs_are_drained() {
    let now = start();
    let mut session = Session::new(SessionConfig::default(), SessionMeta::default());
    let mut machine = SessionMachine::new(&mut session);
    let mut driver = Driver::new(&DriveOptions::default(), now);
    driver.start(now, &mut machine);
    assert!(
        matches!(driver.poll(now, &mut machine), Next::Drain),
        "what came before goes first"
    );
    let mut wires: [Wire; 2] = Default::default();
    wires[0].sent.extend(REQUEST);
    let mut cast = Vec::new();
    assert!(run(&mut driver, &mut machine, &mut wires, now, &mut cast).is_none());
    assert_eq!(wires[1].received, REQUEST);

    // A read is held until the next poll has drained its outputs.
    let mut down = SWITCHED.to_vec();
    down.extend(output(b"hello\r\n"));
    wires[1].sent.extend(&down);
    let (pump, may_read) = driver.pump(1);
    let read = step(pump, may_read, &mut wires[1], &mut Wire::default(), now);
    assert!(matches!(read, Some(PumpStep::Read(n)) if n == down.len()));
    driver.on_pump(now, &mut machine, 1, read.unwrap());
    assert_eq!(driver.pump(1).0.state(), PumpState::Held);
    assert!(matches!(driver.poll(now, &mut machine), Next::Drain));
    assert!(matches!(machine.poll_item(), Some(SinkItem::Event(_))));
    while machine.poll_item().is_some() {}
    assert!(matches!(driver.poll(now, &mut machine), Next::Wait { .. }));
    assert_eq!(
        driver.pump(1).0.state(),
        PumpState::Writing {
            pos: 0,
            end: down.len()
        }
    );

    // Both ends close: the session is over, every byte went through once.
    wires[1].sent_eof = true;
    wires[0].sent_eof = true;
    let end = run(&mut driver, &mut machine, &mut wires, now, &mut cast);
    assert!(matches!(end, Some(Ok(()))), "{end:?}");
    assert_eq!(wires[0].received, down);
    assert!(wires[0].shut_down && wires[1].shut_down);
    let summary = driver.end(now, Ok(())).unwrap();
    assert_eq!(summary.client_bytes, REQUEST.len() as u64);
    assert_eq!(summary.upstream_bytes, down.len() as u64);
    assert!(summary.client_eof && summary.upstream_eof);
}

#[test]
fn the_idle_timeout_is_a_deadline_to_sleep_until() {
    let now = start();
    let limit = Duration::from_secs(5);
    let mut session = Session::new(SessionConfig::default(), SessionMeta::default());
    let mut machine = SessionMachine::new(&mut session);
    let options = DriveOptions {
        idle_timeout: Some(limit),
        ..DriveOptions::default()
    };
    let mut driver = Driver::new(&options, now);
    driver.start(now, &mut machine);
    assert!(matches!(driver.poll(now, &mut machine), Next::Drain));
    let Next::Wait { wake, changed } = driver.poll(now, &mut machine) else {
        panic!("nothing to do yet")
    };
    assert_eq!((wake, changed), (Some(now + limit), true));
    assert!(matches!(
        driver.poll(now, &mut machine),
        Next::Wait { changed: false, .. }
    ));
    let Next::End(Err(DriveErrorKind::Idle(d))) = driver.poll(now + limit, &mut machine) else {
        panic!("idle")
    };
    assert_eq!(d, limit);
}

/// Runs `test` on a live session: the request forwarded, the upstream
/// switched and printed `hello`. `test` gets how many bytes the client had
/// received by then.
fn on_a_live_session(
    test: impl FnOnce(&mut Driver, &mut SessionMachine<'_>, &mut [Wire; 2], usize),
) {
    let now = start();
    let mut session = Session::new(SessionConfig::default(), SessionMeta::default());
    let mut machine = SessionMachine::new(&mut session);
    let mut driver = Driver::new(&DriveOptions::default(), now);
    let mut wires: [Wire; 2] = Default::default();
    driver.start(now, &mut machine);
    let mut cast = Vec::new();
    wires[0].sent.extend(REQUEST);
    assert!(run(&mut driver, &mut machine, &mut wires, now, &mut cast).is_none());
    let mut down = SWITCHED.to_vec();
    down.extend(output(b"hello\r\n"));
    wires[1].sent.extend(&down);
    assert!(run(&mut driver, &mut machine, &mut wires, now, &mut cast).is_none());
    assert_eq!(wires[0].received, down);
    test(&mut driver, &mut machine, &mut wires, down.len());
}

#[test]
fn a_stop_with_a_message_ends_the_session_with_the_cores_farewell() {
    on_a_live_session(|driver, machine, wires, before| {
        let now = start();
        driver.on_stop(now, machine, Some("the proxy is shutting down"));
        // Nothing more from the client goes upstream.
        wires[0].sent.extend(b"typed after the end");
        let mut cast = Vec::new();
        let end = run(driver, machine, wires, now, &mut cast);
        assert!(matches!(end, Some(Ok(()))), "{end:?}");
        assert_eq!(wires[1].received, REQUEST);
        // The farewell: a Status on the error channel (3), after what was
        // already forwarded.
        let farewell = wires[0].received.get(before..).unwrap_or_default();
        assert_eq!(farewell.get(2), Some(&3), "{farewell:?}");
        let text = String::from_utf8_lossy(farewell);
        assert!(text.contains("the proxy is shutting down"), "{text:?}");
        let cast = String::from_utf8_lossy(&cast);
        assert!(
            cast.contains("session ended: the proxy is shutting down"),
            "{cast}"
        );
    });
}

#[test]
fn a_stop_without_a_message_cuts_the_session() {
    on_a_live_session(|driver, machine, wires, before| {
        let now = start();
        driver.on_stop(now, machine, None);
        let end = driver.poll(now, machine);
        assert!(
            matches!(end, Next::End(Err(DriveErrorKind::Stopped))),
            "{end:?}"
        );
        assert_eq!(wires[0].received.len(), before, "no farewell");
    });
}
