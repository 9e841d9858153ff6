//! Wire data from recorders never panics: bounds, malformed frames and
//! responses, random bytes, any chunking.

use super::*;
use proptest::prelude::*;

#[test]
fn oversized_wire_data_is_a_typed_error() {
    let mut config = UploadConfig::with_recorders([A, B]).unwrap();
    config.max_response_head = 64;
    config.max_frame_line = 32;
    let mut h = Harness::new(config);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.up.handle_connected(h.at(1), a2);
    let _ = h.drain();
    h.up.handle_v1_bytes(h.at(2), a2, b"HTTP/1.1 100 Continue\r\n");
    h.up.handle_v1_bytes(h.at(3), a2, &[b'x'; 100]);
    let out = h.drain();
    assert!(matches!(
        &out[0],
        UploadOutput::AttemptFailed(AttemptRecord {
            error: AttemptError::Protocol(ProtocolError::ResponseHeadTooLarge(64)),
            then: Then::NextRecorder,
            ..
        })
    ));
    let a3 = connect_id(&out);
    h.push(4, b"abc");
    let _ = h.open_v2(5, a3);
    h.up.handle_v2_body(h.at(6), a3, b"{\"ack\":1");
    h.up.handle_v2_body(h.at(7), a3, &[b' '; 40]);
    let f = failure(&h.drain());
    assert!(matches!(
        f.reason,
        FailureReason::Interrupted {
            error: AttemptError::Protocol(ProtocolError::FrameTooLong(32)),
            ..
        }
    ));
}

#[test]
fn malformed_frames_and_responses_fail_cleanly() {
    for frame in [
        &b"[1]\n"[..],
        b"{\"ack\":-1}\n",
        b"{\"ack\":1.5}\n",
        b"nope\n",
    ] {
        let mut h = Harness::with(&[A]);
        let a1 = connect_id(&h.drain());
        h.push(0, b"abc");
        let _ = h.open_v2(0, a1);
        h.up.handle_v2_body(h.at(1), a1, frame);
        let f = failure(&h.drain());
        assert!(
            matches!(
                f.reason,
                FailureReason::Interrupted {
                    error: AttemptError::Protocol(ProtocolError::BadFrame(_)),
                    ..
                }
            ),
            "{frame:?}: {f:?}"
        );
    }
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.up.handle_connected(h.at(1), a2);
    h.up.handle_v1_bytes(h.at(2), a2, b"SSH-2.0-OpenSSH\r\n\r\n");
    let f = failure(&h.drain());
    assert!(matches!(
        f.attempts.last().map(|a| &a.error),
        Some(AttemptError::Protocol(ProtocolError::BadResponse(_)))
    ));
}

/// Drives an upload to an open attempt of `protocol` with some bytes sent.
/// With v1, `continued` says whether the `100 Continue` came already.
fn opened(protocol: Protocol, continued: bool) -> (Harness, AttemptId) {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"0123456789");
    match protocol {
        Protocol::V2 => {
            let _ = h.open_v2(1, a1);
            (h, a1)
        }
        Protocol::V1 => {
            h.up.handle_connected(h.at(1), a1);
            h.up.handle_probe_response(h.at(1), a1, 404, false);
            let a2 = connect_id(&h.drain());
            h.up.handle_connected(h.at(2), a2);
            if continued {
                h.up.handle_v1_bytes(h.at(2), a2, b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let _ = h.drain();
            (h, a2)
        }
    }
}

proptest! {
    #[test]
    fn random_response_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
        v2 in any::<bool>(),
        finish in any::<bool>(),
        continued in any::<bool>(),
    ) {
        let protocol = if v2 { Protocol::V2 } else { Protocol::V1 };
        let (mut h, id) = opened(protocol, continued);
        if finish {
            h.up.finish(h.at(3));
        }
        for (i, c) in chunks.iter().enumerate() {
            let now = h.at(10 + i as u64);
            if v2 {
                h.up.handle_v2_body(now, id, c);
            } else {
                h.up.handle_v1_bytes(now, id, c);
            }
            let _ = h.drain();
            let p = h.up.progress();
            prop_assert!(p.acked <= p.sent && p.sent <= p.accepted);
        }
        h.up.handle_response_end(h.at(100), id);
        h.up.handle_timeout(h.at(100_000));
        let out = h.drain();
        let ended = matches!(h.up.state(), UploadState::Completed | UploadState::Failed);
        let moved_on = out.iter().any(|o| matches!(o, UploadOutput::Connect { .. }));
        prop_assert!(ended || moved_on);
    }

    #[test]
    fn ack_frames_are_chunking_invariant(
        acks in proptest::collection::vec(0u64..=10, 1..10),
        cuts in proptest::collection::vec(0usize..64, 0..10),
    ) {
        let mut acks = acks;
        acks.sort_unstable();
        let body: Vec<u8> = acks
            .iter()
            .flat_map(|a| if *a == 0 { "{}\n".to_string() } else { format!("{{\"ack\":{a}}}\n") }.into_bytes())
            .collect();
        let run = |pieces: Vec<&[u8]>| {
            let (mut h, id) = opened(Protocol::V2, true);
            for p in pieces {
                h.up.handle_v2_body(h.at(5), id, p);
            }
            let timer = h.up.timer().map(|(at, why)| (at - h.t0, why));
            (h.drain(), h.up.progress(), timer)
        };
        let mut pieces = Vec::new();
        let mut rest = body.as_slice();
        for cut in cuts {
            let (a, b) = rest.split_at(cut.min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        pieces.push(rest);
        prop_assert_eq!(run(vec![body.as_slice()]), run(pieces));
    }
}
