//! RFC 6455 framing as the WebSocket decoder sees it: length forms, masking,
//! fragmentation, control frames, bounds, errors and end of input.
//!
//! Every byte sequence is either copied from RFC 6455 §5.7 (adapted where a
//! channel byte is needed) or built with the crate's encoders, whose own
//! unit tests pin them to the RFC's examples.

mod ws_support;

use kubecast_core::exec::OwnedExecEvent;
use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{encode_close, encode_frame_header, encode_ping, Opcode, WsError};
use kubecast_core::{CloseCause, DataStream, Limits, Side, StreamKind};
use ws_support::*;

const V5: WsProtocol = WsProtocol::V5Channel;

#[test]
fn rfc_5_7_single_frames_masked_and_unmasked() {
    // §5.7 "A single-frame unmasked text message" with a channel byte (1,
    // stdout) in front of "Hello": the Python client and base64-less
    // servers may use text frames for raw channel messages.
    let upstream = [0x81, 0x06, 0x01, b'H', b'e', b'l', b'l', b'o'];
    // §5.7 "A single-frame masked text message", same key 37 fa 21 3d,
    // payload [0x00 (stdin), "Hello"], as a binary frame.
    let client = [
        0x82, 0x86, 0x37, 0xfa, 0x21, 0x3d, 0x37, 0xb2, 0x44, 0x51, 0x5b, 0x95,
    ];
    let (events, result) = decode_both_ways(
        V5,
        &[
            (Side::Upstream, upstream.to_vec()),
            (Side::Client, client.to_vec()),
        ],
    );
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdout, Side::Upstream),
            data(DataStream::Stdout, b"Hello"),
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"Hello"),
        ]
    );
}

#[test]
fn rfc_5_7_fragmented_message_channel_byte_in_first_fragment_only() {
    // §5.7 "A fragmented unmasked text message" ("Hel" + "lo"), preceded by
    // a first fragment that holds only the channel byte; the RFC's two
    // frames become continuations (0x01 → 0x00). Their payload starts with
    // 'H' and 'l': no channel byte is looked for there.
    let steps = vec![
        (Side::Upstream, vec![0x02, 0x01, 0x02]),
        (Side::Upstream, vec![0x00, 0x03, b'H', b'e', b'l']),
        (Side::Upstream, vec![0x80, 0x02, b'l', b'o']),
    ];
    let (events, result) = decode_both_ways(V5, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stderr, Side::Upstream),
            data(DataStream::Stderr, b"Hello")
        ]
    );
}

#[test]
fn rfc_5_7_masked_continuation_with_pings_between_fragments() {
    // kubectl pings every 5 s; §5.4 lets control frames sit between the
    // fragments of a message. §5.7's masked "Hello" frame is reused as the
    // final continuation (0x81 → 0x80) after a masked first fragment [0x00].
    let mut steps = vec![(Side::Client, frame(Opcode::Binary, false, true, &[0x00]))];
    let mut ping = Vec::new();
    encode_ping(&mut ping, b"keepalive", Some(KEY));
    steps.push((Side::Client, ping.clone()));
    steps.push((
        Side::Client,
        vec![
            0x80, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    ));
    // The upstream answers with a (§5.7) unmasked pong "Hello".
    steps.push((
        Side::Upstream,
        vec![0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
    ));
    let (events, result) = decode_both_ways(V5, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"Hello")
        ]
    );
}

#[test]
fn every_length_form_masked_and_unmasked() {
    // §5.2: 7-bit lengths up to 125, 16-bit (126) up to 65535, 64-bit (127)
    // beyond; payload + channel byte straddles each boundary.
    for len in [0usize, 124, 125, 126, 65534, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let client = from_client(V5, 0, &payload);
        let upstream = from_upstream(V5, 1, &payload);
        let (events, result) =
            decode_both_ways(V5, &[(Side::Client, client), (Side::Upstream, upstream)]);
        assert_eq!(result, Ok(()), "len {len}");
        let mut want = vec![opened(StreamKind::Stdin, Side::Client)];
        if len > 0 {
            want.push(data(DataStream::Stdin, &payload));
        }
        want.push(opened(StreamKind::Stdout, Side::Upstream));
        if len > 0 {
            want.push(data(DataStream::Stdout, &payload));
        }
        assert_eq!(events, want, "len {len}");
    }
}

#[test]
fn a_non_minimal_length_is_accepted() {
    // §5.2 asks for the minimal form; we observe and only bound lengths.
    let mut bytes = Vec::new();
    encode_frame_header(&mut bytes, Opcode::Binary, true, None, 3);
    bytes.truncate(1);
    bytes.extend_from_slice(&[0x7F, 0, 0, 0, 0, 0, 0, 0, 3, 1, b'o', b'k']);
    let (events, result) = decode_both_ways(V5, &[(Side::Upstream, bytes)]);
    assert_eq!(result, Ok(()));
    assert_eq!(events.last(), Some(&data(DataStream::Stdout, b"ok")));
}

#[test]
fn masking_is_not_policed_in_either_direction() {
    // A passive observer: an unmasked client frame or a masked server frame
    // is for the endpoints to reject (§5.1), not for us.
    let client = frame(Opcode::Binary, true, false, b"\x00in");
    let upstream = frame(Opcode::Binary, true, true, b"\x01out");
    let (events, result) =
        decode_both_ways(V5, &[(Side::Client, client), (Side::Upstream, upstream)]);
    assert_eq!(result, Ok(()));
    assert!(events.contains(&data(DataStream::Stdin, b"in")));
    assert!(events.contains(&data(DataStream::Stdout, b"out")));
}

#[test]
fn payload_is_streamed_before_its_frame_is_complete() {
    let payload = vec![b'x'; 100_000];
    let bytes = from_client(V5, 0, &payload);
    let mut run = Run::new(V5);
    run.feed(Side::Client, &bytes[..50_000]).unwrap();
    let streamed = match run.events.last() {
        Some(OwnedExecEvent::Data { bytes, .. }) => bytes.len(),
        other => panic!("no data yet: {other:?}"),
    };
    // 50 000 bytes fed, minus the 14-byte header and the channel byte.
    assert_eq!(streamed, 50_000 - 14 - 1);
    assert_eq!(run.decoder.partial_frame_len(Side::Client), 50_000);
    run.feed(Side::Client, &bytes[50_000..]).unwrap();
    assert_eq!(run.decoder.partial_frame_len(Side::Client), 0);
    assert_eq!(run.events.last(), Some(&data(DataStream::Stdin, &payload)));
}

#[test]
fn partial_frame_len_counts_header_and_payload_bytes() {
    let bytes = from_client(V5, 0, b"abc"); // 6-byte header + 4 payload bytes
    let mut run = Run::new(V5);
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(run.decoder.partial_frame_len(Side::Client), i);
        run.feed(Side::Client, std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(run.decoder.partial_frame_len(Side::Client), 0);
    assert_eq!(run.decoder.partial_frame_len(Side::Upstream), 0);
}

#[test]
fn several_frames_in_one_read_are_all_processed() {
    let mut bytes = from_upstream(V5, 1, b"a");
    bytes.extend(from_upstream(V5, 2, b"b"));
    bytes.extend(from_upstream(V5, 1, b"c"));
    let mut run = Run::new(V5);
    run.feed(Side::Upstream, &bytes).unwrap();
    assert_eq!(
        run.events,
        vec![
            opened(StreamKind::Stdout, Side::Upstream),
            data(DataStream::Stdout, b"a"),
            opened(StreamKind::Stderr, Side::Upstream),
            data(DataStream::Stderr, b"b"),
            data(DataStream::Stdout, b"c"),
        ]
    );
}

#[test]
fn close_frame_with_and_without_code() {
    // §5.5.1: the body is empty, or a 2-byte code and a UTF-8 reason.
    let mut with_code = Vec::new();
    encode_close(&mut with_code, Some(1000), "done", None);
    let (events, result) = decode_both_ways(V5, &[(Side::Upstream, with_code)]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![OwnedExecEvent::ConnectionClosed {
            by: Side::Upstream,
            cause: CloseCause::WebSocketClose {
                code: Some(1000),
                reason: "done".into()
            },
        }]
    );

    let (events, result) =
        decode_both_ways(V5, &[(Side::Client, frame(Opcode::Close, true, true, &[]))]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![OwnedExecEvent::ConnectionClosed {
            by: Side::Client,
            cause: CloseCause::WebSocketClose {
                code: None,
                reason: String::new()
            },
        }]
    );

    // An invalid UTF-8 reason is reported lossily, not rejected.
    let (events, _) = decode_both_ways(
        V5,
        &[(
            Side::Upstream,
            frame(Opcode::Close, true, false, b"\x03\xe9\xff"),
        )],
    );
    assert_eq!(
        events,
        vec![OwnedExecEvent::ConnectionClosed {
            by: Side::Upstream,
            cause: CloseCause::WebSocketClose {
                code: Some(1001),
                reason: "\u{fffd}".into()
            },
        }]
    );
}

#[test]
fn a_one_byte_close_body_is_an_error() {
    let (_, result) = decode_both_ways(
        V5,
        &[(Side::Upstream, frame(Opcode::Close, true, false, &[3]))],
    );
    assert_eq!(result, Err(WsError::CloseBodyTooShort));
}

#[test]
fn data_after_close_is_an_error_but_a_pong_is_not() {
    let mut bytes = frame(Opcode::Close, true, false, &[0x03, 0xe8]);
    bytes.extend(frame(Opcode::Pong, true, false, b""));
    bytes.extend(frame(Opcode::Close, true, false, &[0x03, 0xe8]));
    let (events, result) = decode_both_ways(V5, &[(Side::Upstream, bytes.clone())]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events.len(),
        1,
        "a repeated close is reported once: {events:?}"
    );
    bytes.extend(from_upstream(V5, 1, b"late"));
    let (_, result) = decode_both_ways(V5, &[(Side::Upstream, bytes)]);
    assert_eq!(result, Err(WsError::DataAfterClose));
}

#[test]
fn framing_violations_are_typed_errors() {
    let cases: Vec<(&str, Vec<u8>, WsError)> = vec![
        (
            "RSV1 without permessage-deflate",
            vec![0xC2, 0x00],
            WsError::ReservedBits { bits: 0b100 },
        ),
        (
            "reserved data opcode 0x3",
            vec![0x83, 0x00],
            WsError::ReservedOpcode(3),
        ),
        (
            "reserved control opcode 0xB",
            vec![0x8B, 0x00],
            WsError::ReservedOpcode(0xB),
        ),
        (
            "ping without FIN",
            vec![0x09, 0x00],
            WsError::FragmentedControl(9),
        ),
        (
            "continuation without start",
            vec![0x80, 0x01, b'x'],
            WsError::ContinuationWithoutStart,
        ),
        (
            "new message inside a fragmented one",
            [
                frame(Opcode::Binary, false, false, b"\x01a"),
                frame(Opcode::Text, true, false, b"\x01b"),
            ]
            .concat(),
            WsError::NewMessageInFragmented,
        ),
        (
            "64-bit length with the top bit set",
            vec![0x82, 0x7F, 0xFF, 0, 0, 0, 0, 0, 0, 0],
            WsError::LengthOverflow(0xFF00_0000_0000_0000),
        ),
    ];
    for (what, bytes, want) in cases {
        let (_, result) = decode_both_ways(V5, &[(Side::Upstream, bytes)]);
        assert_eq!(result, Err(want), "{what}");
    }
}

#[test]
fn control_frames_are_bounded() {
    // §5.5: at most 125 bytes. A 126-byte ping needs the 16-bit form,
    // rejected as soon as its second byte is seen.
    let mut run = Run::new(V5);
    assert_eq!(
        run.feed(Side::Client, &[0x89, 0xFE]),
        Err(WsError::ControlTooLong {
            opcode: 9,
            len: 126,
            max: 125
        })
    );
    // A lower configured bound applies too.
    let limits = Limits {
        max_ws_control_payload: 4,
        ..Limits::default()
    };
    let mut run = Run::with_limits(V5, &limits);
    assert_eq!(
        run.feed(Side::Upstream, &frame(Opcode::Ping, true, false, b"12345")),
        Err(WsError::ControlTooLong {
            opcode: 9,
            len: 5,
            max: 4
        })
    );
}

#[test]
fn messages_are_bounded_across_fragments() {
    let limits = Limits {
        max_ws_message: 10,
        ..Limits::default()
    };
    let mut run = Run::with_limits(V5, &limits);
    run.feed(
        Side::Upstream,
        &frame(Opcode::Binary, false, false, b"\x01abcd"),
    )
    .unwrap();
    run.feed(
        Side::Upstream,
        &frame(Opcode::Continuation, false, false, b"efgh"),
    )
    .unwrap();
    // 9 bytes so far; a 2-byte fragment would make 11. The header alone
    // decides: nothing of the offending frame is emitted.
    let before = run.events.clone();
    assert_eq!(
        run.feed(
            Side::Upstream,
            &frame(Opcode::Continuation, true, false, b"ij")
        ),
        Err(WsError::MessageTooLarge { len: 11, max: 10 })
    );
    assert_eq!(run.events, before);
    // A single huge frame is refused by its header, before any payload.
    let mut run = Run::new(V5);
    let mut header = Vec::new();
    encode_frame_header(
        &mut header,
        Opcode::Binary,
        true,
        None,
        32 * 1024 * 1024 + 1,
    );
    assert_eq!(
        run.feed(Side::Upstream, &header),
        Err(WsError::MessageTooLarge {
            len: 32 * 1024 * 1024 + 1,
            max: 32 * 1024 * 1024
        })
    );
}

#[test]
fn errors_are_sticky() {
    let mut run = Run::new(V5);
    let err = run.feed(Side::Client, &[0xC2, 0x00]).unwrap_err();
    assert_eq!(
        run.feed(Side::Client, &from_client(V5, 0, b"x")),
        Err(err.clone())
    );
    assert_eq!(
        run.feed(Side::Upstream, &from_upstream(V5, 1, b"x")),
        Err(err.clone())
    );
    assert_eq!(run.finish(Side::Upstream), Err(err));
    assert!(run.events.is_empty());
}

#[test]
fn eof_at_a_frame_boundary_is_clean_inside_a_frame_is_not() {
    // kubectl ends by closing TCP without a close frame.
    let mut run = Run::new(V5);
    run.feed(Side::Client, &from_client(V5, 0, b"ls\n"))
        .unwrap();
    assert_eq!(run.finish(Side::Client), Ok(()));

    for cut in 1..9 {
        let bytes = from_client(V5, 0, b"ls\n");
        let mut run = Run::new(V5);
        run.feed(Side::Client, &bytes[..cut]).unwrap();
        assert_eq!(
            run.finish(Side::Client),
            Err(WsError::TruncatedFrame { have: cut }),
            "cut {cut}"
        );
    }

    // Between the fragments of a message: also an unclean end.
    let mut run = Run::new(V5);
    run.feed(
        Side::Upstream,
        &frame(Opcode::Binary, false, false, b"\x01par"),
    )
    .unwrap();
    assert_eq!(run.finish(Side::Upstream), Err(WsError::TruncatedMessage));
}

#[test]
fn directions_keep_independent_frame_state() {
    // Half a client frame, then a whole upstream frame, then the rest.
    let client = from_client(V5, 0, b"abc");
    let mut run = Run::new(V5);
    run.feed(Side::Client, &client[..3]).unwrap();
    run.feed(Side::Upstream, &from_upstream(V5, 1, b"xyz"))
        .unwrap();
    run.feed(Side::Client, &client[3..]).unwrap();
    assert_eq!(
        run.events,
        vec![
            opened(StreamKind::Stdout, Side::Upstream),
            data(DataStream::Stdout, b"xyz"),
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"abc"),
        ]
    );
}
