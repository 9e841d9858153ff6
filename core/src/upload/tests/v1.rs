//! Upload v1: HTTP/1.1 `POST /record` with `Expect: 100-continue`, chunked
//! body, the final response.

use super::*;

#[test]
fn v1_happy_path_exact_head_chunks_continue_and_final_200() {
    let mut config = UploadConfig::with_recorders(["https://[::1]:9443/"]).unwrap();
    config.token = Some("tok".into());
    config.user_agent = "kubecast/test".into();
    config.headers = vec![("X-Kubecast-User".into(), "alice".into())];
    let mut h = Harness::new(config);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(5), a1);
    let _ = h.drain();
    h.up.handle_probe_response(h.at(6), a1, 404, false);
    let a2 = connect_id(&h.drain());

    h.push(7, b"{\"version\":2}\n");
    h.push(8, b"[0.1,\"o\",\"a\"]\n");
    h.up.handle_connected(h.at(10), a2);
    let head: &[u8] = b"POST /record HTTP/1.1\r\n\
Host: [::1]:9443\r\n\
User-Agent: kubecast/test\r\n\
Content-Type: application/x-asciicast\r\n\
Transfer-Encoding: chunked\r\n\
Expect: 100-continue\r\n\
Authorization: Bearer tok\r\n\
x-kubecast-user: alice\r\n\
\r\n";
    assert_eq!(
        h.drain(),
        vec![UploadOutput::StartV1 {
            attempt: a2,
            head: Bytes::from_static(head)
        }]
    );
    assert_eq!(h.up.timer(), Some((h.at(1_010), Timer::ContinueWait)));
    assert_eq!(h.up.state(), UploadState::Connecting);

    // The interim response, split across reads.
    h.up.handle_v1_bytes(h.at(20), a2, b"HTTP/1.1 100 Con");
    assert!(h.drain().is_empty());
    h.up.handle_v1_bytes(h.at(21), a2, b"tinue\r\n\r\n");
    let out = h.drain();
    assert_eq!(
        out,
        vec![
            UploadOutput::Started {
                attempt: a2,
                recorder: addr("https://[::1]:9443"),
                protocol: Protocol::V1
            },
            UploadOutput::Send {
                attempt: a2,
                bytes: Bytes::from_static(b"1c\r\n{\"version\":2}\n[0.1,\"o\",\"a\"]\n\r\n")
            },
        ]
    );
    assert_eq!(h.up.poll_timeout(), None, "v1 streams without a deadline");
    assert_eq!(h.up.read_budget(), 8 * 1024 * 1024);

    h.push(30, b"[0.2,\"o\",\"b\"]\n");
    assert_eq!(
        sent_bytes(&h.drain()),
        b"e\r\n[0.2,\"o\",\"b\"]\n\r\n".to_vec()
    );
    h.up.finish(h.at(40));
    assert_eq!(
        h.drain(),
        vec![
            UploadOutput::Send {
                attempt: a2,
                bytes: Bytes::from_static(b"0\r\n\r\n")
            },
            UploadOutput::EndStream { attempt: a2 },
        ]
    );
    assert_eq!(h.up.timer(), Some((h.at(30_040), Timer::FinalResponse)));
    h.up.handle_v1_bytes(
        h.at(50),
        a2,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(
        h.drain(),
        vec![
            UploadOutput::Close { attempt: a2 },
            UploadOutput::Completed { bytes: 42 }
        ]
    );
    assert_eq!(h.up.progress().acked, 42);
}

#[test]
fn debug_output_never_shows_the_token() {
    let mut config = UploadConfig::with_recorders([A]).unwrap();
    config.token = Some("s3cret".into());
    let mut h = Harness::new(config);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a2);
    let mut out = h.drain();
    let v1 = format!("{out:?}");
    assert!(v1.contains("Authorization: <redacted>"), "{v1}");
    let mut h = Harness::new(h.up.config().clone());
    let a1 = connect_id(&h.drain());
    out.extend(h.open_v2(0, a1));
    let all = format!("{out:?}");
    assert!(!all.contains("s3cret"), "{all}");
    assert!(all.contains("StartV2"), "{all}");
}

#[test]
fn v1_sends_the_body_after_the_continue_wait_without_100() {
    let mut config = UploadConfig::with_recorders([A]).unwrap();
    config.continue_wait = Duration::from_millis(300);
    let mut h = Harness::new(config);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 405, false);
    let a2 = connect_id(&h.drain());
    h.push(1, b"hdr\n");
    h.up.handle_connected(h.at(10), a2);
    let _ = h.drain();
    h.up.handle_timeout(h.at(309)); // early: nothing happens
    assert!(h.drain().is_empty());
    assert_eq!(h.up.timer(), Some((h.at(310), Timer::ContinueWait)));
    h.up.handle_timeout(h.at(310));
    let out = h.drain();
    assert!(matches!(out.first(), Some(UploadOutput::Started { .. })));
    assert_eq!(sent_bytes(&out), b"4\r\nhdr\n\r\n".to_vec());
    // A late `100 Continue` is harmless; the final response still counts.
    h.up.handle_v1_bytes(h.at(400), a2, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(h.drain().is_empty());
    h.up.finish(h.at(500));
    let _ = h.drain();
    h.up.handle_v1_bytes(h.at(600), a2, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(
        h.drain().last(),
        Some(&UploadOutput::Completed { bytes: 4 })
    );
}

#[test]
fn v1_417_retries_without_expect() {
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.up.handle_connected(h.at(1), a2);
    let _ = h.drain();
    h.up.handle_v1_bytes(
        h.at(2),
        a2,
        b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
    );
    let out = h.drain();
    let a3 = connect_id(&out);
    assert!(matches!(
        out.first(),
        Some(UploadOutput::AttemptFailed(AttemptRecord {
            error: AttemptError::Status { status: 417, .. },
            then: Then::RetryWithoutExpect,
            ..
        }))
    ));
    h.up.handle_connected(h.at(3), a3);
    let out = h.drain();
    let UploadOutput::StartV1 { head, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(!head.windows(6).any(|w| w == b"Expect"));
    assert!(
        matches!(out[1], UploadOutput::Started { .. }),
        "no 100 to wait for"
    );
}

#[test]
fn v1_failure_mid_upload_reports_what_was_sent() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.push(1, b"hello");
    let _ = h.open_v1(2, a2);
    h.up.handle_v1_bytes(
        h.at(3),
        a2,
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo big\r\n",
    );
    let out = h.drain();
    let f = failure(&out);
    assert_eq!((f.accepted, f.sent, f.acked), (5, 5, 0));
    assert!(matches!(
        &f.reason,
        FailureReason::Interrupted {
            error: AttemptError::Status { status: 413, message },
            protocol: Protocol::V1,
            ..
        } if message == "Payload Too Large: too big"
    ));
    assert!(
        !out.iter()
            .any(|o| matches!(o, UploadOutput::Connect { .. })),
        "a started upload is not restarted elsewhere"
    );
}

#[test]
fn v1_eof_and_final_response_timeout() {
    // EOF before the final response.
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.push(1, b"x");
    let _ = h.open_v1(2, a2);
    h.up.finish(h.at(3));
    h.up.handle_response_end(h.at(4), a2);
    let f = failure(&h.drain());
    assert!(matches!(
        f.reason,
        FailureReason::Interrupted {
            error: AttemptError::EndedEarly("connection"),
            ..
        }
    ));

    // No final response at all.
    let mut h = Harness::with(&[A]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(0), a1);
    h.up.handle_probe_response(h.at(0), a1, 404, false);
    let a2 = connect_id(&h.drain());
    h.push(1, b"x");
    let _ = h.open_v1(2, a2);
    h.up.finish(h.at(3));
    let _ = h.drain();
    h.up.handle_timeout(h.at(30_003));
    let f = failure(&h.drain());
    assert!(matches!(
        f.reason,
        FailureReason::Interrupted {
            error: AttemptError::FinalResponseTimeout(_),
            ..
        }
    ));
}
