//! Upload v2: the HEAD probe, h2c `POST /v2/record`, ack frames, the ack
//! window and back-pressure.

use super::*;

#[test]
fn v2_happy_path_with_acks_and_completion() {
    let mut config = UploadConfig::with_recorders([A]).unwrap();
    config.token = Some("s3cret".into());
    config.headers = vec![("X-Kubecast-Session".into(), "s-1".into())];
    let mut h = Harness::new(config);
    let first = h.drain();
    let a1 = connect_id(&first);
    assert_eq!(
        first,
        vec![UploadOutput::Connect {
            attempt: a1,
            recorder: addr(A),
            protocol: Protocol::V2
        }]
    );
    assert_eq!(h.up.state(), UploadState::Connecting);
    assert_eq!(h.up.timer(), Some((h.at(5_000), Timer::AttemptBudget)));

    // The cast header arrives before the recorder is connected.
    h.push(1, b"{\"version\":2}\n");
    assert!(h.drain().is_empty(), "buffered until the upload opens");

    h.up.handle_connected(h.at(10), a1);
    let request = |method| RequestHead {
        method,
        path: "/v2/record",
        authority: "rec-a:8080".into(),
        headers: [
            Some((
                "user-agent",
                concat!("kubecast/", env!("CARGO_PKG_VERSION")),
            )),
            (method == "POST").then_some(("content-type", "application/x-asciicast")),
            Some(("authorization", "Bearer s3cret")),
            Some(("x-kubecast-session", "s-1")),
        ]
        .into_iter()
        .flatten()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
    };
    assert_eq!(
        h.drain(),
        vec![UploadOutput::Probe {
            attempt: a1,
            request: request("HEAD")
        }]
    );
    h.up.handle_probe_response(h.at(20), a1, 200, true);
    assert_eq!(
        h.drain(),
        vec![UploadOutput::StartV2 {
            attempt: a1,
            request: request("POST")
        }]
    );
    h.up.handle_v2_response_head(h.at(30), a1, 200);
    assert_eq!(
        h.drain(),
        vec![
            UploadOutput::Started {
                attempt: a1,
                recorder: addr(A),
                protocol: Protocol::V2
            },
            UploadOutput::Send {
                attempt: a1,
                bytes: Bytes::from_static(b"{\"version\":2}\n")
            },
        ]
    );
    assert_eq!(h.up.state(), UploadState::Open);
    assert_eq!(h.up.timer(), Some((h.at(30_030), Timer::AckWindow)));

    h.push(40, b"[0.5,\"o\",\"hi\"]\n");
    assert_eq!(
        h.drain(),
        vec![UploadOutput::Send {
            attempt: a1,
            bytes: Bytes::from_static(b"[0.5,\"o\",\"hi\"]\n")
        }]
    );
    h.up.handle_v2_body(h.at(1_000), a1, b"{\"ack\":14}\n");
    assert!(h.drain().is_empty());
    assert_eq!(h.up.progress().acked, 14);
    assert_eq!(h.up.timer(), Some((h.at(31_000), Timer::AckWindow)));

    h.up.finish(h.at(2_000));
    assert_eq!(h.drain(), vec![UploadOutput::EndStream { attempt: a1 }]);
    assert_eq!(h.up.state(), UploadState::Finishing);
    h.up.handle_v2_body(h.at(2_100), a1, b"{\"ack\":29}\n");
    assert!(h.drain().is_empty(), "complete only when the response ends");
    h.up.handle_response_end(h.at(2_100), a1);
    assert_eq!(
        h.drain(),
        vec![
            UploadOutput::Close { attempt: a1 },
            UploadOutput::Completed { bytes: 29 }
        ]
    );
    assert_eq!(h.up.state(), UploadState::Completed);
    assert_eq!(h.up.poll_timeout(), None);
    assert!(h.up.attempts().is_empty());
    assert_eq!(
        h.up.progress(),
        Progress {
            accepted: 29,
            sent: 29,
            acked: 29,
            discarded: 0
        }
    );
}

#[test]
fn probe_404_falls_back_to_v1_on_the_same_recorder() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(10), a1);
    let _ = h.drain();
    h.up.handle_probe_response(h.at(20), a1, 404, true);
    let out = h.drain();
    let record = AttemptRecord {
        attempt: a1,
        recorder: addr(A),
        protocol: Protocol::V2,
        stage: Stage::Probe,
        error: AttemptError::Probe {
            status: 404,
            http2: true,
        },
        started: h.at(0),
        failed: h.at(20),
        then: Then::FallBackToV1,
    };
    let a2 = connect_id(&out);
    assert_ne!(a1, a2);
    assert_eq!(
        out,
        vec![
            UploadOutput::AttemptFailed(record.clone()),
            UploadOutput::Close { attempt: a1 },
            UploadOutput::Connect {
                attempt: a2,
                recorder: addr(A),
                protocol: Protocol::V1
            },
        ]
    );
    assert_eq!(h.up.attempts(), &[record]);
    assert_eq!(
        h.up.current().map(|(id, _, p)| (id, p)),
        Some((a2, Protocol::V1))
    );
}

#[test]
fn probe_200_over_http1_or_a_broken_probe_falls_back_to_v1() {
    for how in ["http1", "stream error", "closed"] {
        let mut h = Harness::with(&[A]);
        let a1 = connect_id(&h.drain());
        h.up.handle_connected(h.at(10), a1);
        let _ = h.drain();
        match how {
            "http1" => h.up.handle_probe_response(h.at(20), a1, 200, false),
            "stream error" => {
                h.up.handle_stream_error(h.at(20), a1, "ALPN selected http/1.1")
            }
            _ => h.up.handle_response_end(h.at(20), a1),
        }
        let out = h.drain();
        assert!(
            matches!(
                out.as_slice(),
                [
                    UploadOutput::AttemptFailed(AttemptRecord {
                        then: Then::FallBackToV1,
                        ..
                    }),
                    UploadOutput::Close { .. },
                    UploadOutput::Connect {
                        protocol: Protocol::V1,
                        ..
                    }
                ]
            ),
            "{how}: {out:?}"
        );
    }
}

#[test]
fn ack_window_expires_and_acks_reset_it() {
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"0123456789");
    let _ = h.open_v2(0, a1);
    assert_eq!(h.up.timer(), Some((h.at(30_000), Timer::AckWindow)));
    // `{}` is an ack of 0: still a sign of life.
    h.up.handle_v2_body(h.at(20_000), a1, b"{}\n");
    assert_eq!(h.up.timer(), Some((h.at(50_000), Timer::AckWindow)));
    h.up.handle_v2_body(h.at(40_000), a1, b"{\"ack\":4}\n");
    assert_eq!(h.up.timer(), Some((h.at(70_000), Timer::AckWindow)));
    // A repeated (or smaller) ack is a heartbeat too; acks never go back.
    h.up.handle_v2_body(h.at(60_000), a1, b"{\"ack\":4}\n{}\n");
    assert_eq!(h.up.timer(), Some((h.at(90_000), Timer::AckWindow)));
    assert_eq!(h.up.progress().acked, 4);
    assert!(h.drain().is_empty());

    h.up.handle_timeout(h.at(89_999));
    assert!(h.drain().is_empty());
    h.up.handle_timeout(h.at(90_000));
    let out = h.drain();
    assert_eq!(out[1], UploadOutput::Close { attempt: a1 });
    let f = failure(&out);
    assert_eq!(
        f.reason,
        FailureReason::Interrupted {
            attempt: a1,
            recorder: addr(A),
            protocol: Protocol::V2,
            error: AttemptError::AckWindowExpired(Duration::from_secs(30)),
        }
    );
    assert_eq!((f.accepted, f.sent, f.acked), (10, 10, 4));
    assert!(f.to_string().contains("4 of 10 bytes"), "{f}");
}

#[test]
fn an_error_frame_mid_upload_fails_with_the_acked_count() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"abc");
    let _ = h.open_v2(0, a1);
    h.up.handle_v2_body(
        h.at(10),
        a1,
        b"{\"ack\":3}\n{\"error\":\"disk full\\u001b[2J\"}\n",
    );
    let f = failure(&h.drain());
    assert_eq!(f.acked, 3);
    let FailureReason::Interrupted { error, .. } = &f.reason else {
        panic!("{f:?}")
    };
    // Control characters never reach a terminal.
    assert_eq!(
        *error,
        AttemptError::Recorder("disk full\u{fffd}[2J".into())
    );
    // Late input for the dead attempt is ignored.
    h.up.handle_v2_body(h.at(20), a1, b"{\"ack\":3}\n");
    h.up.handle_response_end(h.at(20), a1);
    assert!(h.drain().is_empty());
}

#[test]
fn an_error_frame_before_any_data_fails_over() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    let _ = h.open_v2(0, a1);
    h.up.handle_v2_body(h.at(10), a1, b"{\"error\":\"read-only\"}\n");
    let out = h.drain();
    assert!(matches!(
        &out[0],
        UploadOutput::AttemptFailed(AttemptRecord {
            stage: Stage::Upload,
            error: AttemptError::Recorder(m),
            then: Then::NextRecorder,
            ..
        }) if m == "read-only"
    ));
    let a2 = connect_id(&out);
    h.push(20, b"xyz");
    let out = h.open_v2(30, a2);
    assert_eq!(sent_bytes(&out), b"xyz".to_vec());
}

#[test]
fn back_pressure_cap_is_reached_and_released_by_acks() {
    let mut config = UploadConfig::with_recorders([A]).unwrap();
    config.max_unacked = 100;
    let mut h = Harness::new(config);
    let a1 = connect_id(&h.drain());
    assert_eq!(h.up.read_budget(), 100);
    h.push(0, &[b'x'; 60]);
    assert_eq!(h.up.read_budget(), 40);
    h.push(1, &[b'y'; 60]);
    assert_eq!(h.up.read_budget(), 0, "stop reading the upstream");
    assert_eq!(h.up.progress().accepted, 120, "nothing is refused");
    let out = h.open_v2(2, a1);
    assert_eq!(sent_bytes(&out).len(), 120);
    assert_eq!(h.up.read_budget(), 0, "sent but not acked still counts");
    h.up.handle_v2_body(h.at(3), a1, b"{\"ack\":50}\n");
    assert_eq!(h.up.read_budget(), 30);
    h.up.handle_v2_body(h.at(4), a1, b"{\"ack\":120}\n");
    assert_eq!(h.up.read_budget(), 100);
}

#[test]
fn bytes_pushed_before_connect_are_sent_in_order_after() {
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"one ");
    h.push(1, b"");
    h.push(2, b"two ");
    h.up.handle_connected(h.at(3), a1);
    h.push(4, b"three ");
    h.up.handle_probe_response(h.at(5), a1, 200, true);
    h.push(6, b"four");
    h.up.finish(h.at(7));
    assert!(h
        .drain()
        .iter()
        .all(|o| !matches!(o, UploadOutput::Send { .. })));
    h.up.handle_v2_response_head(h.at(8), a1, 200);
    let out = h.drain();
    assert_eq!(sent_bytes(&out), b"one two three four".to_vec());
    assert_eq!(out.len(), 6, "Started, four Sends, EndStream: {out:?}");
    assert_eq!(out[5], UploadOutput::EndStream { attempt: a1 });
    h.push(9, b"late");
    assert_eq!(h.up.progress().discarded, 4);
    h.up.handle_v2_body(h.at(10), a1, b"{\"ack\":18}\n");
    h.up.handle_response_end(h.at(10), a1);
    assert_eq!(
        h.drain().last(),
        Some(&UploadOutput::Completed { bytes: 18 })
    );
}

#[test]
fn ack_frames_split_across_reads_give_the_same_result() {
    let body: &[u8] = b"{}\r\n{\"ack\":3}\n\n{\"ack\" : 7, \"extra\":[1,2]}\n{\"ack\":10}\n";
    let run = |chunks: Vec<&[u8]>| {
        let mut h = Harness::with(&[A]);
        let a1 = connect_id(&h.drain());
        h.push(0, b"0123456789");
        let _ = h.open_v2(0, a1);
        let mut acks = Vec::new();
        for (i, c) in chunks.into_iter().enumerate() {
            h.up.handle_v2_body(h.at(i as u64), a1, c);
            acks.push(h.up.progress().acked);
        }
        acks.dedup();
        (acks, h.drain(), h.up.state())
    };
    let whole = run(vec![body]);
    let bytewise = run(body.chunks(1).collect());
    assert_eq!(whole.0, vec![10]);
    assert_eq!(bytewise.0, vec![0, 3, 7, 10]);
    assert_eq!(whole.1, bytewise.1);
    assert_eq!(whole.2, UploadState::Open);
    assert_eq!(bytewise.2, UploadState::Open);
}

#[test]
fn v2_response_end_without_the_final_ack_is_a_failure() {
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"0123456789");
    let _ = h.open_v2(0, a1);
    h.up.finish(h.at(1));
    h.up.handle_v2_body(h.at(2), a1, b"{\"ack\":6}\n");
    h.up.handle_response_end(h.at(3), a1);
    let out = h.drain();
    let f = failure(&out);
    assert!(matches!(
        f.reason,
        FailureReason::Interrupted {
            error: AttemptError::Incomplete { acked: 6, sent: 10 },
            ..
        }
    ));
    assert_eq!(f.attempts[0].stage, Stage::Finish);
}

#[test]
fn v2_ack_beyond_what_was_sent_is_a_protocol_error() {
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.push(0, b"abc");
    let _ = h.open_v2(0, a1);
    h.up.handle_v2_body(h.at(1), a1, b"{\"ack\":4}\n");
    let f = failure(&h.drain());
    assert!(matches!(
        f.reason,
        FailureReason::Interrupted {
            error: AttemptError::Protocol(ProtocolError::AckBeyondSent { ack: 4, sent: 3 }),
            ..
        }
    ));
}
