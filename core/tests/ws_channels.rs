//! The Kubernetes channel protocols over WebSocket, as the decoder reports
//! them. Byte layouts follow apimachinery's `wsstream/conn.go` (raw channel
//! byte, or ASCII digit + base64, per message), client-go's v5
//! `remotecommand` (close signal `[255, channel]`, resize JSON from a
//! `json.Encoder`) and the kubelet/API server's error-channel Status.

mod ws_support;

use kubecast_core::exec::OwnedExecEvent;
use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{encode_close, encode_close_signal, Opcode, WsError};
use kubecast_core::{
    CloseCause, DataStream, ExitStatus, Side, StreamEnd, StreamKind, TerminalSize,
};
use ws_support::*;

const ALL: [WsProtocol; 5] = [
    WsProtocol::Channel,
    WsProtocol::Base64Channel,
    WsProtocol::V4Channel,
    WsProtocol::V4Base64Channel,
    WsProtocol::V5Channel,
];

fn size(width: u16, height: u16) -> OwnedExecEvent {
    OwnedExecEvent::Resize(TerminalSize { width, height })
}

#[test]
fn every_protocol_carries_the_three_data_streams() {
    for protocol in ALL {
        let steps = vec![
            (Side::Upstream, from_upstream(protocol, 1, b"")),
            (Side::Client, from_client(protocol, 0, b"echo hi\n")),
            (Side::Upstream, from_upstream(protocol, 1, b"hi\n")),
            (Side::Upstream, from_upstream(protocol, 2, b"warning\n")),
        ];
        let (events, result) = decode_both_ways(protocol, &steps);
        assert_eq!(result, Ok(()), "{protocol:?}");
        assert_eq!(
            events,
            vec![
                opened(StreamKind::Stdout, Side::Upstream),
                opened(StreamKind::Stdin, Side::Client),
                data(DataStream::Stdin, b"echo hi\n"),
                data(DataStream::Stdout, b"hi\n"),
                opened(StreamKind::Stderr, Side::Upstream),
                data(DataStream::Stderr, b"warning\n"),
            ],
            "{protocol:?}"
        );
    }
}

#[test]
fn the_initial_empty_message_opens_a_stream_without_data() {
    // Right after the handshake the server writes an empty message on the
    // lowest writable channel: [0x01] raw, "1" in base64.
    let (events, _) = decode_both_ways(
        WsProtocol::V5Channel,
        &[(Side::Upstream, vec![0x82, 0x01, 0x01])],
    );
    assert_eq!(events, vec![opened(StreamKind::Stdout, Side::Upstream)]);
    let (events, _) = decode_both_ways(
        WsProtocol::Base64Channel,
        &[(Side::Upstream, vec![0x81, 0x01, b'1'])],
    );
    assert_eq!(events, vec![opened(StreamKind::Stdout, Side::Upstream)]);
}

#[test]
fn base64_wsstream_doc_example() {
    // wsstream/conn.go's example session: "foo\n" sent on stdin as
    // "0Zm9vCgo=" (sic: that is "foo\n\n"), "\n" received as "1Cg==".
    let p = WsProtocol::Base64Channel;
    let steps = vec![
        (Side::Client, frame(Opcode::Text, true, true, b"0Zm9vCgo=")),
        (Side::Upstream, frame(Opcode::Text, true, false, b"1Cg==")),
    ];
    let (events, result) = decode_both_ways(p, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"foo\n\n"),
            opened(StreamKind::Stdout, Side::Upstream),
            data(DataStream::Stdout, b"\n"),
        ]
    );
}

#[test]
fn base64_groups_may_straddle_fragments() {
    // "foobar" = "Zm9vYmFy"; fragments cut inside the 4-character groups,
    // a ping between two of them. Both base64 variants, both directions.
    for p in [WsProtocol::Base64Channel, WsProtocol::V4Base64Channel] {
        for (side, digit, stream, masked) in [
            (Side::Upstream, b'1', DataStream::Stdout, false),
            (Side::Client, b'0', DataStream::Stdin, true),
        ] {
            let steps = vec![
                (
                    side,
                    frame(Opcode::Text, false, masked, &[digit, b'Z', b'm']),
                ),
                (side, frame(Opcode::Continuation, false, masked, b"9vY")),
                (side, frame(Opcode::Ping, true, masked, b"")),
                (side, frame(Opcode::Continuation, true, masked, b"mFy")),
            ];
            let (events, result) = decode_both_ways(p, &steps);
            assert_eq!(result, Ok(()), "{p:?} {side:?}");
            assert_eq!(
                events.last(),
                Some(&data(stream, b"foobar")),
                "{p:?} {side:?}"
            );
        }
    }
}

#[test]
fn bad_base64_and_bad_digits_are_typed_errors() {
    let p = WsProtocol::V4Base64Channel;
    let (_, result) = decode_both_ways(
        p,
        &[(Side::Upstream, frame(Opcode::Text, true, false, b"1Zm9*"))],
    );
    assert_eq!(
        result,
        Err(WsError::Base64(
            kubecast_core::ws::base64::Base64Error::InvalidByte(b'*')
        ))
    );
    // A message ending inside a group.
    let (_, result) = decode_both_ways(
        p,
        &[(Side::Upstream, frame(Opcode::Text, true, false, b"1Zm9vY"))],
    );
    assert_eq!(
        result,
        Err(WsError::Base64(
            kubecast_core::ws::base64::Base64Error::Incomplete(1)
        ))
    );
    // The channel must be an ASCII digit (Go would wrap `b - '0'` and drop
    // the message as an unknown channel; we call it what it is).
    let (_, result) = decode_both_ways(
        p,
        &[(
            Side::Upstream,
            frame(Opcode::Text, true, false, b"\x01Cg=="),
        )],
    );
    assert_eq!(result, Err(WsError::BadChannelDigit(1)));
}

#[test]
fn v5_close_signal_half_closes_a_channel() {
    // client-go v5: stdin EOF is the binary message [255, 0].
    let p = WsProtocol::V5Channel;
    let mut signal = Vec::new();
    encode_close_signal(&mut signal, 0, Some(KEY));
    assert_eq!(signal, [0x82, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0xc8, 0xfa]);
    let steps = vec![
        (Side::Client, from_client(p, 0, b"data")),
        (Side::Client, signal),
    ];
    let (events, result) = decode_both_ways(p, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"data"),
            OwnedExecEvent::StreamClosed {
                stream: StreamKind::Stdin,
                by: Side::Client,
                how: StreamEnd::Fin
            },
        ]
    );
}

#[test]
fn v5_close_signal_of_any_other_length_is_an_error() {
    let p = WsProtocol::V5Channel;
    for (payload, len) in [
        (&b""[..], 0u64),
        (&b"\x00\x00"[..], 2),
        (&b"\x00\x01\x02"[..], 3),
    ] {
        let (events, result) = decode_both_ways(p, &[(Side::Client, from_client(p, 255, payload))]);
        assert_eq!(result, Err(WsError::BadCloseSignal { len }), "{payload:?}");
        assert!(events.is_empty());
    }
    // Split over fragments, the length is that of the whole message.
    let steps = vec![
        (Side::Client, frame(Opcode::Binary, false, true, &[255])),
        (Side::Client, frame(Opcode::Continuation, true, true, &[0])),
    ];
    let (events, result) = decode_both_ways(p, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(events.len(), 1);
}

#[test]
fn channel_255_before_v5_and_unknown_channels_are_ignored_and_counted() {
    for p in [WsProtocol::Channel, WsProtocol::V4Channel] {
        let mut run = Run::new(p);
        run.feed(Side::Client, &from_client(p, 255, &[0])).unwrap();
        run.feed(Side::Client, &from_client(p, 5, b"x")).unwrap();
        run.feed(Side::Upstream, &from_upstream(p, 254, b"y"))
            .unwrap();
        assert!(run.events.is_empty(), "{p:?}: {:?}", run.events);
        assert_eq!(run.decoder.ignored_messages(), 3);
    }
    // v5: a close signal naming no known channel.
    let mut run = Run::new(WsProtocol::V5Channel);
    run.feed(Side::Client, &from_client(WsProtocol::V5Channel, 255, &[9]))
        .unwrap();
    assert!(run.events.is_empty());
    assert_eq!(run.decoder.ignored_messages(), 1);
}

#[test]
fn channels_a_side_never_writes_and_empty_messages_are_ignored() {
    // wsstream drops client data on write-only channels (stdout, stderr,
    // error), and kubectl has no reader for stdin/resize data from the
    // server; neither is what the user saw. An empty message has no
    // channel byte and is skipped by the Go servers.
    let p = WsProtocol::V4Channel;
    let mut run = Run::new(p);
    run.feed(Side::Client, &from_client(p, 1, b"fake output"))
        .unwrap();
    run.feed(Side::Client, &from_client(p, 3, b"{}")).unwrap();
    run.feed(Side::Upstream, &from_upstream(p, 0, b"fake input"))
        .unwrap();
    run.feed(
        Side::Upstream,
        &from_upstream(p, 4, b"{\"Width\":1,\"Height\":1}"),
    )
    .unwrap();
    run.feed(Side::Upstream, &frame(Opcode::Binary, true, false, b""))
        .unwrap();
    assert!(run.events.is_empty(), "{:?}", run.events);
    assert_eq!(run.decoder.ignored_messages(), 5);
}

#[test]
fn a_stream_is_opened_once() {
    let p = WsProtocol::V5Channel;
    let steps = vec![
        (Side::Upstream, from_upstream(p, 1, b"")),
        (Side::Upstream, from_upstream(p, 1, b"a")),
        (Side::Upstream, from_upstream(p, 1, b"b")),
    ];
    let (events, _) = decode_both_ways(p, &steps);
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdout, Side::Upstream),
            data(DataStream::Stdout, b"ab")
        ]
    );
}

#[test]
fn resize_with_and_without_newline_and_split_across_messages() {
    for p in ALL {
        let steps = vec![
            // client-go: json.Encoder, trailing "\n".
            (
                Side::Client,
                from_client(p, 4, b"{\"Width\":80,\"Height\":24}\n"),
            ),
            // kube-rs: no newline.
            (
                Side::Client,
                from_client(p, 4, b"{\"Width\":100,\"Height\":30}"),
            ),
            // One value split over two messages (the server reads a JSON stream).
            (Side::Client, from_client(p, 4, b"{\"width\":120,")),
            (Side::Client, from_client(p, 4, b"\"height\":40}\n")),
        ];
        let (events, result) = decode_both_ways(p, &steps);
        assert_eq!(result, Ok(()), "{p:?}");
        assert_eq!(
            events,
            vec![
                opened(StreamKind::Resize, Side::Client),
                size(80, 24),
                size(100, 30),
                size(120, 40)
            ],
            "{p:?}"
        );
    }
}

#[test]
fn a_bad_resize_is_a_typed_error() {
    let p = WsProtocol::V5Channel;
    let (_, result) = decode_both_ways(
        p,
        &[(
            Side::Client,
            from_client(p, 4, b"{\"Width\":-1,\"Height\":2}"),
        )],
    );
    assert!(matches!(result, Err(WsError::Resize(_))), "{result:?}");
}

#[test]
fn v4_status_success_and_non_zero_exit_code() {
    // The Status objects kubelet/apiserver write on the error channel (v4+).
    let success = br#"{"metadata":{},"status":"Success"}"#;
    let exit3 = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    for p in [
        WsProtocol::V4Channel,
        WsProtocol::V4Base64Channel,
        WsProtocol::V5Channel,
    ] {
        for (json, status) in [
            (&success[..], ExitStatus::Success),
            (&exit3[..], ExitStatus::ExitCode(3)),
        ] {
            let (events, result) =
                decode_both_ways(p, &[(Side::Upstream, from_upstream(p, 3, json))]);
            assert_eq!(result, Ok(()));
            assert_eq!(
                events,
                vec![
                    opened(StreamKind::Error, Side::Upstream),
                    OwnedExecEvent::Exit(status)
                ],
                "{p:?}"
            );
        }
    }
    // Split over fragments, the Status is reported once complete.
    let p = WsProtocol::V5Channel;
    let steps = vec![
        (
            Side::Upstream,
            frame(
                Opcode::Binary,
                false,
                false,
                &[&[3u8][..], &exit3[..50]].concat(),
            ),
        ),
        (
            Side::Upstream,
            frame(Opcode::Continuation, true, false, &exit3[50..]),
        ),
    ];
    let (events, _) = decode_both_ways(p, &steps);
    assert_eq!(
        events.last(),
        Some(&OwnedExecEvent::Exit(ExitStatus::ExitCode(3)))
    );
}

#[test]
fn v1_plain_text_error_is_reported_when_the_connection_ends() {
    let text = b"error: unable to upgrade connection: container not found (\"app\")\n";
    let failure = OwnedExecEvent::Exit(ExitStatus::Failure {
        reason: None,
        message: "error: unable to upgrade connection: container not found (\"app\")".into(),
    });
    for p in [WsProtocol::Channel, WsProtocol::Base64Channel] {
        // Flushed by the upstream's close frame, before the close itself.
        let mut close = Vec::new();
        encode_close(&mut close, Some(1000), "", None);
        let steps = vec![
            (Side::Upstream, from_upstream(p, 3, text)),
            (Side::Upstream, close),
        ];
        let (events, result) = decode_both_ways(p, &steps);
        assert_eq!(result, Ok(()));
        assert_eq!(
            events,
            vec![
                opened(StreamKind::Error, Side::Upstream),
                failure.clone(),
                OwnedExecEvent::ConnectionClosed {
                    by: Side::Upstream,
                    cause: CloseCause::WebSocketClose {
                        code: Some(1000),
                        reason: String::new()
                    },
                },
            ],
            "{p:?}"
        );
        // Or by the upstream's end of file.
        let mut run = Run::new(p);
        run.feed(Side::Upstream, &from_upstream(p, 3, text))
            .unwrap();
        assert_eq!(run.events, vec![opened(StreamKind::Error, Side::Upstream)]);
        run.finish(Side::Client).unwrap();
        assert_eq!(
            run.events.len(),
            1,
            "the client's EOF does not end the error channel"
        );
        run.finish(Side::Upstream).unwrap();
        assert_eq!(run.events.last(), Some(&failure));
        // Reported once.
        run.finish(Side::Upstream).unwrap();
        assert_eq!(run.events.len(), 2);
    }
}

#[test]
fn a_kubectl_v5_tty_session() {
    // The shape of `kubectl exec -it pod -- sh` over v5.channel.k8s.io:
    // initial empty stdout message, resize, keystrokes, echo, pings, the
    // close signal, the Status and the server's close 1000; kubectl then
    // drops TCP without a close frame.
    let p = WsProtocol::V5Channel;
    let mut close = Vec::new();
    encode_close(&mut close, Some(1000), "", None);
    let steps = vec![
        (Side::Upstream, vec![0x82, 0x01, 0x01]),
        (
            Side::Client,
            from_client(p, 4, b"{\"Width\":80,\"Height\":24}\n"),
        ),
        (Side::Upstream, from_upstream(p, 1, b"/ # ")),
        (Side::Client, from_client(p, 0, b"e")),
        (Side::Upstream, from_upstream(p, 1, b"e")),
        (Side::Client, frame(Opcode::Ping, true, true, b"")),
        (Side::Upstream, frame(Opcode::Pong, true, false, b"")),
        (Side::Client, from_client(p, 0, b"xit 7\r")),
        (
            Side::Upstream,
            from_upstream(p, 1, "xit 7\r\n→\r\n".as_bytes()),
        ),
        (Side::Client, from_client(p, 255, &[0])),
        (
            Side::Upstream,
            from_upstream(p, 3, ExitStatus::ExitCode(7).to_status_json().as_bytes()),
        ),
        (Side::Upstream, close),
    ];
    let (events, result) = decode_both_ways(p, &steps);
    assert_eq!(result, Ok(()));
    assert_eq!(
        events,
        vec![
            opened(StreamKind::Stdout, Side::Upstream),
            opened(StreamKind::Resize, Side::Client),
            size(80, 24),
            data(DataStream::Stdout, b"/ # "),
            opened(StreamKind::Stdin, Side::Client),
            data(DataStream::Stdin, b"e"),
            data(DataStream::Stdout, b"e"),
            data(DataStream::Stdin, b"xit 7\r"),
            data(DataStream::Stdout, "xit 7\r\n→\r\n".as_bytes()),
            OwnedExecEvent::StreamClosed {
                stream: StreamKind::Stdin,
                by: Side::Client,
                how: StreamEnd::Fin
            },
            opened(StreamKind::Error, Side::Upstream),
            OwnedExecEvent::Exit(ExitStatus::ExitCode(7)),
            OwnedExecEvent::ConnectionClosed {
                by: Side::Upstream,
                cause: CloseCause::WebSocketClose {
                    code: Some(1000),
                    reason: String::new()
                },
            },
        ]
    );
}
