//! Sessions as specifications: wire bytes in, cast out.

use super::*;
use crate::handshake::WsProtocol;
use crate::ws::{encode_channel_message, encode_close_signal};
use crate::ExitStatus;

const WS_TTY_REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=sh&container=main&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const WS_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// Any instant will do as the start: only differences are recorded.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

fn upstream(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, None);
    out
}

fn client(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, MASK);
    out
}

/// Drains a session: the cast text and the events.
fn drain(session: &mut Session, cast: &mut Vec<u8>, events: &mut Vec<SessionEvent>) {
    while let Some(output) = session.poll_output() {
        match output {
            Output::Cast(bytes) => cast.extend_from_slice(&bytes),
            Output::Event(e) => events.push(e),
            Output::Capture(_) => panic!("capture is off by default"),
            Output::Inject { .. } => panic!("these sessions are never ended by the core"),
        }
    }
}

fn meta() -> SessionMeta {
    SessionMeta {
        user: Some("alice".into()),
        groups: vec!["dev".into()],
        session_id: Some("s-1".into()),
        started_unix: Some(1_700_000_000),
        ..Default::default()
    }
}

#[test]
fn a_tty_session_becomes_a_cast() {
    let t0 = base_instant();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(at(0), WS_TTY_REQUEST);
    s.handle_upstream_bytes(at(10), WS_101);
    s.handle_upstream_bytes(at(10), &upstream(1, b""));
    s.handle_upstream_bytes(at(20), &upstream(1, b"$ "));
    drain(&mut s, &mut cast, &mut events);
    assert!(cast.is_empty(), "held until the first resize");
    assert_eq!(
        s.timer(),
        Some((at(10) + Duration::from_secs(1), Timer::FirstResize))
    );

    s.handle_client_bytes(at(30), &client(4, b"{\"Width\":100,\"Height\":30}\n"));
    s.handle_client_bytes(at(40), &client(0, b"exit\r"));
    s.handle_upstream_bytes(at(50), &upstream(1, "exit\r\nbye €\r\n".as_bytes()));
    s.handle_client_bytes(at(60), &client(4, b"{\"Width\":120,\"Height\":40}\n"));
    s.handle_upstream_bytes(
        at(70),
        &upstream(3, br#"{"metadata":{},"status":"Success"}"#),
    );
    s.handle_eof(at(80), Side::Upstream);
    s.handle_eof(at(80), Side::Client);
    drain(&mut s, &mut cast, &mut events);

    let text = String::from_utf8(cast).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(100), Some(30))
    );
    assert_eq!(header["timestamp"], 1_700_000_000);
    assert_eq!(header["command"], "sh");
    assert_eq!(header["kubernetes"]["user"], "alice");
    assert_eq!(header["kubernetes"]["protocol"], "websocket");
    assert_eq!(
        header["kubernetes"]["protocol_version"],
        "v5.channel.k8s.io"
    );
    assert_eq!(
        &lines[1..],
        [
            r#"[0.020000, "o", "$ "]"#,
            r#"[0.050000, "o", "exit\r\nbye €\r\n"]"#,
            r#"[0.060000, "r", "120x40"]"#,
            r#"[0.080000, "m", "exit 0"]"#,
        ],
        "stdin is not recorded by default"
    );
    assert!(events.contains(&SessionEvent::Exit(ExitStatus::Success)));
    assert!(
        matches!(events.last(), Some(SessionEvent::RecordingFinished(stats)) if stats.stdin_bytes == 5 && stats.stdout_bytes == 17)
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn without_a_resize_the_header_waits_at_most_resize_wait() {
    let t0 = base_instant();
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, WS_TTY_REQUEST);
    s.handle_upstream_bytes(t0, WS_101);
    s.handle_upstream_bytes(t0, &upstream(1, b"hello"));
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline - Duration::from_millis(1));
    drain(&mut s, &mut cast, &mut events);
    assert!(cast.is_empty(), "a spurious wake-up changes nothing");
    s.handle_timeout(deadline);
    drain(&mut s, &mut cast, &mut events);
    let text = String::from_utf8(cast).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(text.lines().nth(1), Some(r#"[0.000000, "o", "hello"]"#));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn stdin_is_recorded_only_when_enabled() {
    let t0 = base_instant();
    let config = SessionConfig {
        record_stdin: true,
        ..Default::default()
    };
    let mut s = Session::new(config, meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, WS_TTY_REQUEST);
    s.handle_upstream_bytes(t0, WS_101);
    s.handle_client_bytes(t0, &client(4, b"{\"Width\":80,\"Height\":24}"));
    s.handle_client_bytes(t0, &client(0, b"ls\r"));
    let mut close = Vec::new();
    encode_close_signal(&mut close, 0, MASK);
    s.handle_client_bytes(t0, &close);
    drain(&mut s, &mut cast, &mut events);
    let text = String::from_utf8(cast).unwrap();
    assert_eq!(text.lines().nth(1), Some(r#"[0.000000, "i", "ls\r"]"#));
}

#[test]
fn port_forward_is_passed_through_unrecorded() {
    let t0 = base_instant();
    let request = b"POST /api/v1/namespaces/default/pods/demo/portforward HTTP/1.1\r\nHost: x\r\n\
Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n";
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, request);
    s.handle_upstream_bytes(
        t0,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x80\x03\x00\x01anything",
    );
    s.handle_client_bytes(t0, b"\xff\xff arbitrary bytes");
    s.handle_eof(t0, Side::Client);
    s.handle_eof(t0, Side::Upstream);
    drain(&mut s, &mut cast, &mut events);
    assert!(cast.is_empty());
    assert!(events.contains(&SessionEvent::PassThrough(
        crate::exec::PassThrough::PortForward
    )));
}

#[test]
fn an_ordinary_http_request_is_passed_through() {
    // kubectl's discovery GETs on a kept-alive connection.
    let t0 = base_instant();
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, b"GET /api?timeout=32s HTTP/1.1\r\nHost: x\r\n\r\n");
    s.handle_upstream_bytes(t0, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    s.handle_eof(t0, Side::Client);
    s.handle_eof(t0, Side::Upstream);
    drain(&mut s, &mut cast, &mut events);
    assert!(cast.is_empty());
    assert!(events.contains(&SessionEvent::PassThrough(
        crate::exec::PassThrough::NotUpgrade
    )));
    assert!(!events
        .iter()
        .any(|e| matches!(e, SessionEvent::DecodeFailed { .. })));
}

/// A session that got its exit status, then met `cut` (the bytes of an
/// unfinished frame) from `side`, then both ends closed.
fn cut_after_exit(side: Side, cut: &[u8]) -> (String, Vec<SessionEvent>) {
    let t0 = base_instant();
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, WS_TTY_REQUEST);
    s.handle_upstream_bytes(t0, WS_101);
    s.handle_upstream_bytes(t0, &upstream(1, b"bye"));
    s.handle_upstream_bytes(t0, &upstream(3, br#"{"metadata":{},"status":"Success"}"#));
    match side {
        Side::Client => s.handle_client_bytes(t0, cut),
        Side::Upstream => s.handle_upstream_bytes(t0, cut),
    }
    s.handle_eof(t0, side);
    s.handle_eof(t0, side.peer());
    drain(&mut s, &mut cast, &mut events);
    (String::from_utf8(cast).unwrap(), events)
}

#[test]
fn a_client_that_cuts_its_last_frame_after_the_exit_status_ends_the_cast_cleanly() {
    // kubectl over SPDY exits as soon as it has the exit status, sometimes
    // between the writes of one frame: nothing it was still sending can
    // reach the process, so nothing was lost.
    let (text, events) = cut_after_exit(Side::Client, &client(0, b"x")[..3]);
    assert!(!text.contains("recording stopped"), "{text}");
    assert!(text.contains(r#""o", "bye"]"#), "{text}");
    assert!(text.trim_end().ends_with(r#""m", "exit 0"]"#), "{text}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, SessionEvent::ClientCutAfterExit { .. }))
            .count(),
        1,
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SessionEvent::DecodeFailed { .. })),
        "not a decode failure: {events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(SessionEvent::RecordingFinished(stats)) if stats.exit.is_some()
    ));
}

#[test]
fn an_upstream_that_cuts_a_frame_after_the_exit_status_still_stops_the_recording() {
    // Only the client's cut is understood to be harmless; the exit status
    // seen before it still ends the cast.
    let (text, events) = cut_after_exit(Side::Upstream, &upstream(1, b"more")[..3]);
    assert!(text.contains("kubecast: recording stopped"), "{text}");
    assert!(text.trim_end().ends_with(r#""m", "exit 0"]"#), "{text}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, SessionEvent::DecodeFailed { .. }))
            .count(),
        1,
        "reported once, though the decoder repeats it: {events:?}"
    );
}

#[test]
fn a_client_that_cuts_a_frame_before_the_exit_status_stops_the_recording() {
    let t0 = base_instant();
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, WS_TTY_REQUEST);
    s.handle_upstream_bytes(t0, WS_101);
    s.handle_client_bytes(t0, &client(0, b"x")[..3]);
    s.handle_eof(t0, Side::Client);
    s.handle_eof(t0, Side::Upstream);
    drain(&mut s, &mut cast, &mut events);
    let text = String::from_utf8(cast).unwrap();
    assert!(text.contains("kubecast: recording stopped"), "{text}");
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::DecodeFailed { .. })));
}

#[test]
fn a_decode_error_stops_the_recording_with_a_marker() {
    let t0 = base_instant();
    let mut s = Session::new(SessionConfig::default(), meta());
    let (mut cast, mut events) = (Vec::new(), Vec::new());
    s.handle_client_bytes(t0, WS_TTY_REQUEST);
    s.handle_upstream_bytes(t0, WS_101);
    s.handle_upstream_bytes(t0, &upstream(1, b"ok"));
    // RSV bits set on an unextended connection: RFC 6455 §5.2 says fail.
    s.handle_upstream_bytes(t0, &[0xf2, 0x01, 0x01]);
    drain(&mut s, &mut cast, &mut events);
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::DecodeFailed { .. })));
    let text = String::from_utf8(cast).unwrap();
    assert!(
        text.contains(r#""o", "ok""#),
        "what was seen is kept: {text}"
    );
    assert!(text.contains("kubecast: recording stopped"), "{text}");
    assert!(matches!(
        events.last(),
        Some(SessionEvent::RecordingFinished(_))
    ));
}

#[test]
fn the_opt_in_raw_capture_replays_to_the_same_cast() {
    let t0 = base_instant();
    let at = |ms| t0 + Duration::from_millis(ms);
    let config = SessionConfig {
        capture: true,
        ..Default::default()
    };
    let mut s = Session::new(config, meta());
    let (mut cast, mut capture) = (Vec::new(), Vec::new());
    let inputs: Vec<(u64, Side, Vec<u8>)> = vec![
        (0, Side::Client, WS_TTY_REQUEST.to_vec()),
        (5, Side::Upstream, WS_101.to_vec()),
        (6, Side::Client, client(4, b"{\"Width\":90,\"Height\":20}")),
        (7, Side::Upstream, upstream(1, b"\xff binary \xfe")),
        (
            9,
            Side::Upstream,
            upstream(3, br#"{"metadata":{},"status":"Success"}"#),
        ),
    ];
    for (ms, side, bytes) in &inputs {
        match side {
            Side::Client => s.handle_client_bytes(at(*ms), bytes),
            Side::Upstream => s.handle_upstream_bytes(at(*ms), bytes),
        }
    }
    s.handle_eof(at(10), Side::Upstream);
    s.handle_eof(at(10), Side::Client);
    while let Some(output) = s.poll_output() {
        match output {
            Output::Cast(bytes) => cast.extend_from_slice(&bytes),
            Output::Capture(bytes) => capture.extend_from_slice(&bytes),
            Output::Event(_) | Output::Inject { .. } => {}
        }
    }
    // The capture keeps the binary bytes the cast had to replace ...
    assert!(capture.windows(8).any(|w| w == b"\xff binary"));
    assert!(String::from_utf8(cast.clone())
        .unwrap()
        .contains("\u{fffd} binary \u{fffd}"));
    // ... and replays to exactly the cast recorded live.
    let replayed = crate::replay::replay(
        &capture,
        SessionConfig::default(),
        SessionMeta::default(),
        t0,
        None,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(replayed.cast).unwrap(),
        String::from_utf8(cast).unwrap()
    );
}

proptest::proptest! {
    /// The cast does not depend on how the bytes were cut into reads.
    #[test]
    fn any_chunking_gives_the_same_cast(cuts in proptest::collection::vec(1usize..40, 1..20)) {
        let t0 = base_instant();
        let mut client_bytes = WS_TTY_REQUEST.to_vec();
        client_bytes.extend(client(4, b"{\"Width\":90,\"Height\":20}\n"));
        client_bytes.extend(client(0, "héllo\r".as_bytes()));
        let mut upstream_bytes = WS_101.to_vec();
        upstream_bytes.extend(upstream(1, b""));
        upstream_bytes.extend(upstream(1, "h\u{e9}llo 😀 \x1b[1mbold\x1b[0m\r\n".as_bytes()));
        upstream_bytes.extend(upstream(3, br#"{"metadata":{},"status":"Success"}"#));

        let run = |cuts: &[usize]| {
            let mut s = Session::new(SessionConfig::default(), meta());
            let (mut cast, mut events) = (Vec::new(), Vec::new());
            s.handle_client_bytes(t0, &client_bytes[..WS_TTY_REQUEST.len()]);
            let (mut c, mut u) = (&client_bytes[WS_TTY_REQUEST.len()..], &upstream_bytes[..]);
            let mut i = 0;
            while !c.is_empty() || !u.is_empty() {
                let n = cuts[i % cuts.len()];
                i += 1;
                // Upstream first until its 101 is through, then alternate.
                if !u.is_empty() && (i % 2 == 0 || c.is_empty() || s.negotiated().is_none()) {
                    let (a, b) = u.split_at(n.min(u.len()));
                    s.handle_upstream_bytes(t0, a);
                    u = b;
                } else {
                    let (a, b) = c.split_at(n.min(c.len()));
                    s.handle_client_bytes(t0, a);
                    c = b;
                }
            }
            s.handle_eof(t0, Side::Client);
            s.handle_eof(t0, Side::Upstream);
            drain(&mut s, &mut cast, &mut events);
            cast
        };
        let whole = {
            let mut s = Session::new(SessionConfig::default(), meta());
            let (mut cast, mut events) = (Vec::new(), Vec::new());
            s.handle_client_bytes(t0, WS_TTY_REQUEST);
            s.handle_upstream_bytes(t0, &upstream_bytes);
            s.handle_client_bytes(t0, &client_bytes[WS_TTY_REQUEST.len()..]);
            s.handle_eof(t0, Side::Client);
            s.handle_eof(t0, Side::Upstream);
            drain(&mut s, &mut cast, &mut events);
            cast
        };
        proptest::prop_assert_eq!(String::from_utf8(run(&cuts)).unwrap(), String::from_utf8(whole).unwrap());
    }
}

mod farewell {
    //! Ending a session from our side: kubectl must be told why, in its
    //! protocol, without a byte of it landing inside a frame.
    use super::*;
    use crate::exec::{push_coalesced, ExecDecoder, OwnedExecEvent};
    use crate::handshake::{Negotiated, RemoteCommandVersion};
    use crate::spdy::{write_data, FrameWriter};

    /// What kubectl would decode from the upstream→client bytes it got.
    fn client_view(negotiated: Negotiated, setup: &[u8], bytes: &[u8]) -> Vec<OwnedExecEvent> {
        let mut d = ExecDecoder::new(negotiated, &crate::Limits::default());
        let mut events = Vec::new();
        d.decode(Side::Client, setup, |e| push_coalesced(&mut events, &e))
            .unwrap();
        d.decode(Side::Upstream, bytes, |e| push_coalesced(&mut events, &e))
            .unwrap();
        events
    }

    fn ended_with(events: &[OwnedExecEvent], text: &str) -> bool {
        events.iter().any(|e| matches!(e, OwnedExecEvent::Exit(ExitStatus::Failure { message, .. }) if message.contains(text)))
    }

    fn inject(s: &mut Session) -> Option<(usize, Vec<u8>)> {
        std::iter::from_fn(|| s.poll_output()).find_map(|o| match o {
            Output::Inject { forward, bytes } => Some((forward, bytes.to_vec())),
            _ => None,
        })
    }

    #[test]
    fn at_a_boundary_the_message_goes_out_at_once_on_the_error_channel() {
        let t0 = base_instant();
        let mut s = Session::new(SessionConfig::default(), meta());
        s.handle_client_bytes(t0, WS_TTY_REQUEST);
        s.handle_upstream_bytes(t0, WS_101);
        s.handle_upstream_bytes(t0, &upstream(1, b"$ "));
        s.end_with_message(t0, "recording lost");
        let (forward, bytes) = inject(&mut s).expect("an injection");
        assert_eq!(forward, 0);
        let events = client_view(Negotiated::WebSocket(WsProtocol::V5Channel), &[], &bytes);
        assert!(ended_with(&events, "recording lost"), "{events:?}");
        assert!(matches!(
            events.last(),
            Some(OwnedExecEvent::ConnectionClosed { .. })
        ));
        // Nothing more is taken from the client.
        s.handle_client_bytes(t0, &client(0, b"rm -rf /\r"));
        assert!(s.poll_output().is_none());
    }

    #[test]
    fn inside_a_frame_it_waits_for_the_frame_to_end() {
        let t0 = base_instant();
        let mut s = Session::new(SessionConfig::default(), meta());
        s.handle_client_bytes(t0, WS_TTY_REQUEST);
        s.handle_upstream_bytes(t0, WS_101);
        s.handle_client_bytes(t0, &client(4, b"{\"Width\":80,\"Height\":24}"));
        let first = upstream(1, b"first frame");
        let second = upstream(1, b"second");
        s.handle_upstream_bytes(t0, &first[..5]);
        std::iter::from_fn(|| s.poll_output()).for_each(drop);
        s.end_with_message(t0, "recording lost");
        assert_eq!(inject(&mut s), None, "not inside a frame");
        assert_eq!(s.timer().map(|(_, t)| t), Some(Timer::Farewell));
        // The rest of the frame and the next one arrive in one read.
        let mut read = first[5..].to_vec();
        read.extend_from_slice(&second);
        s.handle_upstream_bytes(t0, &read);
        let (forward, bytes) = inject(&mut s).expect("an injection at the boundary");
        assert_eq!(
            forward,
            first.len() - 5,
            "only the first frame's rest is forwarded"
        );
        let mut seen = first[..5].to_vec();
        seen.extend_from_slice(&read[..forward]);
        seen.extend_from_slice(&bytes);
        let events = client_view(Negotiated::WebSocket(WsProtocol::V5Channel), &[], &seen);
        assert!(ended_with(&events, "recording lost"), "{events:?}");
        let stdout: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, OwnedExecEvent::Data { .. }))
            .collect();
        assert_eq!(
            stdout.len(),
            1,
            "the second frame was not forwarded: {events:?}"
        );
    }

    #[test]
    fn a_frame_that_never_ends_closes_without_a_message() {
        let t0 = base_instant();
        let mut s = Session::new(SessionConfig::default(), meta());
        s.handle_client_bytes(t0, WS_TTY_REQUEST);
        s.handle_upstream_bytes(t0, WS_101);
        s.handle_client_bytes(t0, &client(4, b"{\"Width\":80,\"Height\":24}"));
        s.handle_upstream_bytes(t0, &upstream(1, b"never finished")[..4]);
        s.end_with_message(t0, "recording lost");
        let (deadline, timer) = s.timer().unwrap();
        assert_eq!(timer, Timer::Farewell);
        s.handle_timeout(deadline);
        assert_eq!(inject(&mut s), Some((0, Vec::new())));
    }

    #[test]
    fn over_spdy_the_status_goes_on_the_error_stream() {
        let t0 = base_instant();
        let request = b"POST /api/v1/namespaces/default/pods/demo/exec?command=sh&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
        let switched =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
        let mut setup = Vec::new();
        let mut writer = FrameWriter::new();
        for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
            writer
                .syn_stream(&mut setup, id, 0, 0, &[("streamtype", kind)], false)
                .unwrap();
        }
        let mut s = Session::new(SessionConfig::default(), meta());
        s.handle_client_bytes(t0, request);
        s.handle_upstream_bytes(t0, switched);
        s.handle_client_bytes(t0, &setup);
        let mut out = Vec::new();
        write_data(&mut out, 5, b"$ ", false);
        s.handle_upstream_bytes(t0, &out);
        s.end_with_message(t0, "recording lost");
        let (_, bytes) = inject(&mut s).expect("an injection");
        let events = client_view(Negotiated::Spdy(RemoteCommandVersion::V4), &setup, &bytes);
        assert!(ended_with(&events, "recording lost"), "{events:?}");
    }

    #[test]
    fn the_cast_says_why_it_ends() {
        let t0 = base_instant();
        let mut s = Session::new(SessionConfig::default(), meta());
        let (mut cast, mut events) = (Vec::new(), Vec::new());
        s.handle_client_bytes(t0, WS_TTY_REQUEST);
        s.handle_upstream_bytes(t0, WS_101);
        s.handle_client_bytes(t0, &client(4, b"{\"Width\":80,\"Height\":24}"));
        s.end_with_message(t0, "recording lost");
        while let Some(o) = s.poll_output() {
            match o {
                Output::Cast(b) => cast.extend_from_slice(&b),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        let text = String::from_utf8(cast).unwrap();
        assert!(
            text.contains("kubecast: session ended: recording lost"),
            "{text}"
        );
        assert!(matches!(
            events.last(),
            Some(SessionEvent::RecordingFinished(_))
        ));
    }
}
