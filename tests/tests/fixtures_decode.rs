//! The core's decoders on real bytes: every capture in `tests/fixtures/`
//! (real kubectl 1.32 sessions with the test upstream, see
//! `tests/fixtures/README.md`) replayed through
//! `kubecast_core::handshake` and `kubecast_core::ExecDecoder`, each record
//! fed whole and then one byte at a time. Both feedings must give the same
//! coalesced events, and those events must be the session that was
//! recorded: streams opened, stdin, resizes, stdout/stderr, exit status and
//! a clean end.

use kubecast_core::capture::{CaptureReader, RecordKind};
use kubecast_core::exec::{push_coalesced, DecodeError, OwnedExecEvent};
use kubecast_core::handshake::{
    self, Negotiated, RemoteCommandVersion, Resource, UpgradeResponse, WsProtocol,
};
use kubecast_core::spdy::SpdyError;
use kubecast_core::{
    CloseCause, DataStream, ExecDecoder, ExitStatus, Limits, Side, StreamKind, TerminalSize,
};
use kubecast_tests::fixtures::record;
use kubecast_tests::fixtures::{
    fixtures_dir, Fixture, Scenario, BIGOUT_LEN, EXIT3_SCRIPT, FIXTURES, STDIN_INPUT, TTY_STDOUT,
    TTY_TYPED,
};
use kubecast_tests::kubectl::{kubectl_or_skip, Transport};
use kubecast_tests::upstream::{bigout_bytes, BIGOUT_CHUNK};

/// What one replay produced.
#[derive(Debug, PartialEq)]
struct Replay {
    request: handshake::UpgradeRequest,
    negotiated: Negotiated,
    events: Vec<OwnedExecEvent>,
}

/// Splits `bytes` into the pieces one record is fed as.
fn pieces(bytes: &[u8], byte_at_a_time: bool) -> Vec<&[u8]> {
    if byte_at_a_time {
        bytes.chunks(1).collect()
    } else {
        vec![bytes]
    }
}

/// Replays a capture: the HTTP heads through the handshake parser, the
/// bytes after them through an [`ExecDecoder`].
fn replay(capture: &[u8], byte_at_a_time: bool) -> Replay {
    let (_header, records) = CaptureReader::new(capture).expect("a capture file");
    let mut request_head = Vec::new();
    let mut response_head = Vec::new();
    let mut request: Option<handshake::UpgradeRequest> = None;
    let mut decoder: Option<(Negotiated, ExecDecoder)> = None;
    // Client bytes after the request head that arrive before the 101.
    let mut early_client = Vec::new();
    let mut events = Vec::new();

    for record in records {
        let record = record.expect("a well-formed record");
        match record.kind {
            RecordKind::Data(side) => {
                for piece in pieces(record.bytes, byte_at_a_time) {
                    match (&mut decoder, side) {
                        (Some((_, d)), side) => d
                            .decode(side, piece, |e| push_coalesced(&mut events, &e))
                            .unwrap_or_else(|e| panic!("decoding {side:?} bytes: {e}")),
                        (None, Side::Client) if request.is_none() => {
                            request_head.extend_from_slice(piece);
                            if let Some(parsed) = handshake::parse_request(&request_head)
                                .expect("a valid request head")
                            {
                                early_client.extend_from_slice(&request_head[parsed.head_len..]);
                                request = Some(parsed.value);
                            }
                        }
                        (None, Side::Client) => early_client.extend_from_slice(piece),
                        (None, Side::Upstream) => {
                            let req = request.as_ref().expect("the upstream answers a request");
                            response_head.extend_from_slice(piece);
                            let Some(parsed) = handshake::parse_response(&response_head, req)
                                .expect("a valid response head")
                            else {
                                continue;
                            };
                            let UpgradeResponse::Switched(negotiated) = parsed.value else {
                                panic!("the upstream refused the upgrade: {:?}", parsed.value);
                            };
                            let mut d = ExecDecoder::new(negotiated, &Limits::default());
                            let body = &response_head[parsed.head_len..];
                            d.decode(Side::Upstream, body, |e| push_coalesced(&mut events, &e))
                                .expect("decoding the upstream's first bytes");
                            d.decode(Side::Client, &early_client, |e| {
                                push_coalesced(&mut events, &e)
                            })
                            .expect("decoding the client's early bytes");
                            decoder = Some((negotiated, d));
                        }
                    }
                }
            }
            RecordKind::Eof(side) => {
                let (_, d) = decoder
                    .as_mut()
                    .expect("the connection was upgraded before it ended");
                match d.finish(side, |e| push_coalesced(&mut events, &e)) {
                    Ok(()) => {}
                    // kubectl's SPDY library (moby/spdystream) writes each
                    // field of a control frame with its own unbuffered write,
                    // and kubectl exits once it has the exit status, while a
                    // goroutine may still be writing its last RST_STREAM or
                    // GOAWAY: that frame can reach the wire cut (seen: its
                    // first 4 bytes, version and type). Only then, only from
                    // the client, and only after the exit status.
                    Err(DecodeError::Spdy {
                        side: Side::Client,
                        source: SpdyError::Truncated { .. },
                    }) if events.iter().any(|e| matches!(e, OwnedExecEvent::Exit(_))) => {}
                    Err(e) => panic!("{side:?} ended uncleanly: {e}"),
                }
            }
        }
    }
    let (negotiated, _) = decoder.expect("the connection was upgraded");
    Replay {
        request: request.expect("a request"),
        negotiated,
        events,
    }
}

fn load(fixture: &Fixture) -> Vec<u8> {
    let path = fixtures_dir().join(fixture.file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() < 200 * 1024, "{} is kept small", fixture.file);
    bytes
}

/// The concatenated bytes of one data stream.
fn data(events: &[OwnedExecEvent], stream: DataStream) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            OwnedExecEvent::Data { stream: s, bytes } if *s == stream => Some(bytes.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

fn opened(events: &[OwnedExecEvent]) -> Vec<StreamKind> {
    let mut kinds: Vec<StreamKind> = events
        .iter()
        .filter_map(|e| match e {
            OwnedExecEvent::StreamOpened { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    kinds.sort();
    kinds
}

fn resizes(events: &[OwnedExecEvent]) -> Vec<TerminalSize> {
    events
        .iter()
        .filter_map(|e| match e {
            OwnedExecEvent::Resize(size) => Some(*size),
            _ => None,
        })
        .collect()
}

fn exits(events: &[OwnedExecEvent]) -> Vec<ExitStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            OwnedExecEvent::Exit(status) => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn stdin_closed(events: &[OwnedExecEvent]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            OwnedExecEvent::StreamClosed {
                stream: StreamKind::Stdin,
                by: Side::Client,
                ..
            }
        )
    })
}

/// The upstream announced the end the way the real servers do: GOAWAY(OK)
/// for SPDY, a close frame with 1000 for WebSocket. Nothing follows the
/// exit status on the data streams.
fn assert_clean_end(fixture: &Fixture, events: &[OwnedExecEvent]) {
    let closed_by_upstream: Vec<&CloseCause> = events
        .iter()
        .filter_map(|e| match e {
            OwnedExecEvent::ConnectionClosed {
                by: Side::Upstream,
                cause,
            } => Some(cause),
            _ => None,
        })
        .collect();
    match fixture.transport {
        Transport::Spdy => {
            assert!(
                matches!(
                    closed_by_upstream.as_slice(),
                    [CloseCause::GoAway { status: 0, .. }]
                ),
                "{}: {closed_by_upstream:?}",
                fixture.file
            );
            for stream in events.iter().filter_map(|e| match e {
                OwnedExecEvent::StreamOpened { stream, .. } => Some(*stream),
                _ => None,
            }) {
                assert!(
                    events.iter().any(|e| matches!(e, OwnedExecEvent::StreamClosed { stream: s, by: Side::Upstream, .. } if *s == stream)),
                    "{}: the upstream ends the {stream:?} stream",
                    fixture.file
                );
            }
        }
        Transport::WebSocket => assert!(
            matches!(
                closed_by_upstream.as_slice(),
                [CloseCause::WebSocketClose {
                    code: Some(1000),
                    ..
                }]
            ),
            "{}: {closed_by_upstream:?}",
            fixture.file
        ),
    }
    let exit_at = events
        .iter()
        .position(|e| matches!(e, OwnedExecEvent::Exit(_)));
    let last_output = events.iter().rposition(|e| {
        matches!(
            e,
            OwnedExecEvent::Data {
                stream: DataStream::Stdout | DataStream::Stderr,
                ..
            }
        )
    });
    assert!(
        exit_at.is_some() && last_output.is_none_or(|o| o < exit_at.unwrap_or(0)),
        "{}: the exit status comes after all output",
        fixture.file
    );
}

fn check(fixture: &Fixture, replay: &Replay) {
    let file = fixture.file;
    let events = &replay.events;
    let expected_negotiation = match fixture.transport {
        Transport::WebSocket => Negotiated::WebSocket(WsProtocol::V5Channel),
        Transport::Spdy => Negotiated::Spdy(RemoteCommandVersion::V4),
    };
    assert_eq!(replay.negotiated, expected_negotiation, "{file}");
    let request = &replay.request;
    assert_eq!(request.namespace.as_deref(), Some("default"), "{file}");
    assert_clean_end(fixture, events);

    match fixture.scenario {
        Scenario::Tty => {
            assert_eq!(request.resource, Resource::Exec, "{file}");
            assert_eq!(request.command, ["sh"], "{file}");
            assert!(
                request.tty && request.stdin && !request.stderr,
                "{file}: {request:?}"
            );
            assert_eq!(
                opened(events),
                [
                    StreamKind::Error,
                    StreamKind::Stdin,
                    StreamKind::Stdout,
                    StreamKind::Resize
                ],
                "{file}"
            );
            assert_eq!(
                data(events, DataStream::Stdin),
                TTY_TYPED,
                "{file}: what was typed"
            );
            assert_eq!(
                resizes(events),
                [
                    TerminalSize {
                        width: 80,
                        height: 24
                    },
                    TerminalSize {
                        width: 100,
                        height: 30
                    }
                ],
                "{file}"
            );
            assert_eq!(
                String::from_utf8_lossy(&data(events, DataStream::Stdout)),
                String::from_utf8_lossy(TTY_STDOUT),
                "{file}: what the terminal showed"
            );
            assert!(
                data(events, DataStream::Stderr).is_empty(),
                "{file}: no stderr under a tty"
            );
            assert_eq!(exits(events), [ExitStatus::Success], "{file}");
        }
        Scenario::Stdin | Scenario::AttachStdin => {
            if fixture.scenario == Scenario::Stdin {
                assert_eq!(
                    (request.resource, &request.command[..]),
                    (Resource::Exec, &["cat".to_string()][..]),
                    "{file}"
                );
            } else {
                assert_eq!(
                    (request.resource, request.pod.as_deref()),
                    (Resource::Attach, Some("worker")),
                    "{file}"
                );
            }
            assert!(request.stdin && !request.tty, "{file}");
            assert!(opened(events).contains(&StreamKind::Stdin), "{file}");
            assert_eq!(data(events, DataStream::Stdin), STDIN_INPUT, "{file}");
            assert!(
                stdin_closed(events),
                "{file}: kubectl closes stdin at end of input"
            );
            assert_eq!(
                data(events, DataStream::Stdout),
                STDIN_INPUT,
                "{file}: cat echoes stdin"
            );
            assert!(resizes(events).is_empty(), "{file}");
            assert_eq!(exits(events), [ExitStatus::Success], "{file}");
        }
        Scenario::Exit3 => {
            assert_eq!(request.command, ["sh", "-c", EXIT3_SCRIPT], "{file}");
            assert!(!request.stdin && !request.tty && request.stderr, "{file}");
            assert_eq!(data(events, DataStream::Stdout), b"out\n", "{file}");
            assert_eq!(data(events, DataStream::Stderr), b"oops\n", "{file}");
            assert!(data(events, DataStream::Stdin).is_empty(), "{file}");
            assert_eq!(exits(events), [ExitStatus::ExitCode(3)], "{file}");
            assert_eq!(
                opened(events),
                [StreamKind::Error, StreamKind::Stdout, StreamKind::Stderr],
                "{file}"
            );
        }
        Scenario::Bigout => {
            assert_eq!(
                request.command,
                ["bigout", &BIGOUT_LEN.to_string()],
                "{file}"
            );
            assert!(
                data(events, DataStream::Stdout) == bigout_bytes(BIGOUT_LEN),
                "{file}: bigout's bytes, in order and complete"
            );
            assert_eq!(exits(events), [ExitStatus::Success], "{file}");
        }
    }
}

#[test]
fn every_fixture_decodes_to_its_session_whole_and_byte_by_byte() {
    for fixture in FIXTURES {
        let capture = load(fixture);
        let whole = replay(&capture, false);
        check(fixture, &whole);
        let byte_by_byte = replay(&capture, true);
        assert_eq!(
            whole, byte_by_byte,
            "{}: chunking must not change the events",
            fixture.file
        );
    }
}

#[test]
fn the_fixture_list_matches_the_directory() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cap"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|f| f.file.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every capture is listed in kubecast_tests::fixtures::FIXTURES"
    );
}

/// The bigout captures are only useful if multi-byte characters really are
/// split across frames/messages on the wire: at each of the first chunk
/// boundaries, the bytes before it on the wire are followed by a frame or
/// message header, not by the rest of the character.
#[test]
fn bigout_captures_split_characters_across_frames() {
    let expected = bigout_bytes(BIGOUT_LEN);
    for fixture in FIXTURES.iter().filter(|f| f.scenario == Scenario::Bigout) {
        let capture = load(fixture);
        let (_, records) = CaptureReader::new(&capture).expect("a capture");
        let wire: Vec<u8> = records
            .filter_map(Result::ok)
            .filter(|r| r.kind == RecordKind::Data(Side::Upstream))
            .flat_map(|r| r.bytes.to_vec())
            .collect();
        for boundary in [BIGOUT_CHUNK, 2 * BIGOUT_CHUNK, 3 * BIGOUT_CHUNK] {
            assert!(
                std::str::from_utf8(&expected[..boundary]).is_err(),
                "a character straddles byte {boundary} of bigout"
            );
            let before = &expected[boundary - 16..boundary];
            let at = wire
                .windows(before.len())
                .position(|w| w == before)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: bigout bytes before {boundary} on the wire",
                        fixture.file
                    )
                });
            // (Four bytes: a WebSocket binary header starts with 0x82, which
            // is also the second byte of "€".)
            assert_ne!(
                wire.get(at + before.len()..at + before.len() + 4),
                expected.get(boundary..boundary + 4),
                "{}: a frame boundary at byte {boundary} of bigout",
                fixture.file
            );
        }
    }
}

/// The relay and the decoders agree on sessions recorded right now with the
/// kubectl on this machine, not only on the committed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_captures_through_the_relay_decode_the_same_way() {
    let Some(kubectl) = kubectl_or_skip("fresh_captures_through_the_relay_decode_the_same_way")
    else {
        return;
    };
    for fixture in FIXTURES {
        let capture = record(&kubectl, fixture).await;
        let whole = replay(&capture, false);
        check(fixture, &whole);
        assert_eq!(
            whole,
            replay(&capture, true),
            "{}: chunking must not change the events",
            fixture.file
        );
    }
}
