//! The owned message reader an endpoint (the test upstream) uses, and the
//! encoders' output read back through it.

use kubecast_core::handshake::WsProtocol;
use kubecast_core::ws::{
    decode_channel_message, encode_channel_message, encode_close, encode_close_signal,
    encode_frame, encode_ping, Message, MessageKind, MessageReader, Opcode, WsError,
};
use kubecast_core::Limits;

fn read_all(chunks: &[&[u8]]) -> Result<Vec<Message>, WsError> {
    let mut reader = MessageReader::new(&Limits::default());
    let mut out = Vec::new();
    for chunk in chunks {
        reader.push(chunk);
        while let Some(m) = reader.next_message()? {
            out.push(m);
        }
    }
    Ok(out)
}

fn msg(kind: MessageKind, payload: &[u8]) -> Message {
    Message {
        kind,
        payload: payload.to_vec(),
    }
}

#[test]
fn rfc_5_7_examples() {
    // §5.7: unmasked "Hello", masked "Hello", fragmented "Hel"+"lo",
    // unmasked ping "Hello", masked pong "Hello".
    let wire: Vec<u8> = [
        &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..],
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
        &[0x01, 0x03, 0x48, 0x65, 0x6c],
        &[0x80, 0x02, 0x6c, 0x6f],
        &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        &[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    ]
    .concat();
    let want = vec![
        msg(MessageKind::Text, b"Hello"),
        msg(MessageKind::Text, b"Hello"),
        msg(MessageKind::Text, b"Hello"),
        msg(MessageKind::Ping, b"Hello"),
        msg(MessageKind::Pong, b"Hello"),
    ];
    assert_eq!(read_all(&[&wire]), Ok(want.clone()));
    let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(read_all(&bytewise), Ok(want));
}

#[test]
fn a_ping_between_fragments_comes_out_first() {
    let key = Some([1, 2, 3, 4]);
    let mut wire = Vec::new();
    encode_frame(&mut wire, Opcode::Binary, false, key, b"\x00first ");
    encode_ping(&mut wire, b"p", key);
    encode_frame(&mut wire, Opcode::Continuation, true, key, b"second");
    assert_eq!(
        read_all(&[&wire]),
        Ok(vec![
            msg(MessageKind::Ping, b"p"),
            msg(MessageKind::Binary, b"\x00first second")
        ])
    );
}

#[test]
fn close_message_code_and_reason() {
    let mut wire = Vec::new();
    encode_close(&mut wire, Some(1000), "bye", Some([9, 9, 9, 9]));
    let messages = read_all(&[&wire]).unwrap();
    assert_eq!(messages[0].kind, MessageKind::Close);
    assert_eq!(messages[0].close_code(), Some(1000));
    assert_eq!(messages[0].close_reason(), "bye");
}

#[test]
fn incomplete_input_waits_and_errors_are_sticky() {
    let mut reader = MessageReader::new(&Limits::default());
    reader.push(&[0x82, 0x03, 0x01]);
    assert_eq!(reader.next_message(), Ok(None));
    assert!(!reader.at_boundary());
    reader.push(b"ok");
    assert_eq!(
        reader.next_message(),
        Ok(Some(msg(MessageKind::Binary, b"\x01ok")))
    );
    assert!(reader.at_boundary());
    reader.push(&[0x80, 0x00]);
    assert_eq!(
        reader.next_message(),
        Err(WsError::ContinuationWithoutStart)
    );
    reader.push(&[0x82, 0x00]);
    assert_eq!(
        reader.next_message(),
        Err(WsError::ContinuationWithoutStart)
    );
}

#[test]
fn the_message_bound_applies() {
    let limits = Limits {
        max_ws_message: 4,
        ..Limits::default()
    };
    let mut reader = MessageReader::new(&limits);
    let mut wire = Vec::new();
    encode_frame(&mut wire, Opcode::Binary, true, None, b"12345");
    reader.push(&wire);
    assert_eq!(
        reader.next_message(),
        Err(WsError::MessageTooLarge { len: 5, max: 4 })
    );
}

#[test]
fn channel_messages_round_trip_for_every_protocol() {
    let payload: Vec<u8> = (0..=255u8).collect();
    for protocol in [
        WsProtocol::Channel,
        WsProtocol::Base64Channel,
        WsProtocol::V4Channel,
        WsProtocol::V4Base64Channel,
        WsProtocol::V5Channel,
    ] {
        for mask in [None, Some([0xde, 0xad, 0xbe, 0xef])] {
            for len in [0, 1, 2, 3, 200, 256] {
                let mut wire = Vec::new();
                encode_channel_message(&mut wire, protocol, 2, &payload[..len], mask);
                let messages = read_all(&[&wire]).unwrap();
                let kind = if protocol.base64() {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                assert_eq!(messages[0].kind, kind);
                assert_eq!(
                    decode_channel_message(protocol, &messages[0].payload),
                    Ok(Some((2, payload[..len].to_vec()))),
                    "{protocol:?} {mask:?} {len}"
                );
            }
        }
    }
}

#[test]
fn decode_channel_message_edge_cases() {
    assert_eq!(decode_channel_message(WsProtocol::V5Channel, b""), Ok(None));
    assert_eq!(
        decode_channel_message(WsProtocol::Base64Channel, b"x"),
        Err(WsError::BadChannelDigit(b'x'))
    );
    let mut wire = Vec::new();
    encode_close_signal(&mut wire, 0, None);
    let m = read_all(&[&wire]).unwrap().remove(0);
    assert_eq!(
        decode_channel_message(WsProtocol::V5Channel, &m.payload),
        Ok(Some((255, vec![0])))
    );
}
