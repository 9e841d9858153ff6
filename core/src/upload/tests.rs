//! The upload machine as specifications: a fake clock (a base instant plus
//! offsets), inputs in, outputs checked one by one.

use super::*;
use proptest::prelude::*;

/// Any instant will do as the start: only differences matter.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

const A: &str = "http://rec-a:8080";
const B: &str = "https://rec-b.example";

struct Harness {
    up: Upload,
    t0: Instant,
}

impl Harness {
    fn new(config: UploadConfig) -> Self {
        let t0 = base_instant();
        let up = Upload::new(t0, config).unwrap();
        Harness { up, t0 }
    }

    fn with(recorders: &[&str]) -> Self {
        Harness::new(UploadConfig::with_recorders(recorders).unwrap())
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self) -> Vec<UploadOutput> {
        std::iter::from_fn(|| self.up.poll_output()).collect()
    }

    fn push(&mut self, ms: u64, bytes: &'static [u8]) {
        let now = self.at(ms);
        self.up.push_cast(now, Bytes::from_static(bytes));
    }

    /// Drives the current v2 attempt from `Connect` to open.
    fn open_v2(&mut self, ms: u64, attempt: AttemptId) -> Vec<UploadOutput> {
        let now = self.at(ms);
        self.up.handle_connected(now, attempt);
        self.up.handle_probe_response(now, attempt, 200, true);
        self.up.handle_v2_response_head(now, attempt, 200);
        self.drain()
    }

    /// Drives the current v1 attempt from `Connect` to open (via `100`).
    fn open_v1(&mut self, ms: u64, attempt: AttemptId) -> Vec<UploadOutput> {
        let now = self.at(ms);
        self.up.handle_connected(now, attempt);
        self.up
            .handle_v1_bytes(now, attempt, b"HTTP/1.1 100 Continue\r\n\r\n");
        self.drain()
    }
}

fn connect_id(outputs: &[UploadOutput]) -> AttemptId {
    outputs
        .iter()
        .find_map(|o| match o {
            UploadOutput::Connect { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("a Connect output")
}

fn sent_bytes(outputs: &[UploadOutput]) -> Vec<u8> {
    outputs
        .iter()
        .filter_map(|o| match o {
            UploadOutput::Send { bytes, .. } => Some(bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn failure(outputs: &[UploadOutput]) -> UploadFailure {
    outputs
        .iter()
        .find_map(|o| match o {
            UploadOutput::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .expect("a Failed output")
}

fn addr(s: &str) -> RecorderAddr {
    s.parse().unwrap()
}

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
fn connect_refused_fails_over_to_the_second_recorder() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connect_failed(h.at(3), a1, "connection refused");
    let out = h.drain();
    let a2 = connect_id(&out);
    assert_eq!(
        out,
        vec![
            UploadOutput::AttemptFailed(AttemptRecord {
                attempt: a1,
                recorder: addr(A),
                protocol: Protocol::V2,
                stage: Stage::Connect,
                error: AttemptError::Connect("connection refused".into()),
                started: h.at(0),
                failed: h.at(3),
                then: Then::NextRecorder,
            }),
            UploadOutput::Close { attempt: a1 },
            UploadOutput::Connect {
                attempt: a2,
                recorder: addr(B),
                protocol: Protocol::V2
            },
        ]
    );
    assert_eq!(h.up.timer(), Some((h.at(5_003), Timer::AttemptBudget)));
    let out = h.open_v2(10, a2);
    assert!(matches!(
        out.last(),
        Some(UploadOutput::Started { recorder, .. }) if *recorder == addr(B)
    ));
}

#[test]
fn attempt_budget_timeout_fails_over_to_the_second_recorder() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connected(h.at(100), a1);
    let _ = h.drain(); // probing, and the recorder never answers
    h.up.handle_timeout(h.at(4_999));
    assert!(h.drain().is_empty(), "spurious early timeouts are harmless");
    h.up.handle_timeout(h.at(5_000));
    let out = h.drain();
    let a2 = connect_id(&out);
    assert!(matches!(
        &out[0],
        UploadOutput::AttemptFailed(AttemptRecord {
            stage: Stage::Probe,
            error: AttemptError::TimedOut { budget: Budget::Attempt, limit },
            then: Then::NextRecorder,
            ..
        }) if *limit == Duration::from_secs(5)
    ));
    assert!(matches!(
        &out[2],
        UploadOutput::Connect { recorder, attempt, .. } if *recorder == addr(B) && *attempt == a2
    ));
}

#[test]
fn overall_budget_exhausted_reports_every_attempt() {
    let recorders: Vec<String> = (0..10).map(|i| format!("http://rec-{i}:80")).collect();
    let mut h = Harness::new(UploadConfig::with_recorders(&recorders).unwrap());
    let _ = h.drain();
    let t = loop {
        let (at, timer) = h.up.timer().unwrap();
        if timer == Timer::OverallBudget {
            break (at - h.t0).as_millis() as u64;
        }
        assert_eq!(timer, Timer::AttemptBudget);
        h.up.handle_timeout(at);
        let out = h.drain();
        assert!(matches!(out.last(), Some(UploadOutput::Connect { .. })));
    };
    // Six attempts of 5 s each reach the 30 s mark exactly.
    assert_eq!(t, 30_000);
    h.up.handle_timeout(h.at(t));
    let out = h.drain();
    let f = failure(&out);
    assert_eq!(f.reason, FailureReason::OverallBudgetExhausted);
    assert_eq!(f.attempts.len(), 6);
    let recorders: Vec<_> = f.attempts.iter().map(|a| a.recorder.host()).collect();
    assert_eq!(
        recorders,
        ["rec-0", "rec-1", "rec-2", "rec-3", "rec-4", "rec-5"]
    );
    assert!(matches!(
        f.attempts.last(),
        Some(AttemptRecord {
            error: AttemptError::TimedOut {
                budget: Budget::Overall,
                ..
            },
            then: Then::GaveUp,
            ..
        })
    ));
    assert_eq!(h.up.state(), UploadState::Failed);
    assert_eq!(h.up.poll_timeout(), None);
    let text = f.to_string();
    assert!(text.contains("overall budget"), "{text}");
    assert!(text.contains("http://rec-5:80"), "{text}");
}

#[test]
fn exhausting_the_list_fails_with_the_attempts() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_connect_failed(h.at(1), a1, "refused");
    let a2 = connect_id(&h.drain());
    h.up.handle_connected(h.at(2), a2);
    h.up.handle_probe_response(h.at(3), a2, 200, true);
    let _ = h.drain();
    h.up.handle_v2_response_head(h.at(4), a2, 401);
    let out = h.drain();
    assert_eq!(out[1], UploadOutput::Close { attempt: a2 });
    let f = failure(&out);
    assert_eq!(f.reason, FailureReason::NoRecorderAccepted);
    assert_eq!(f.attempts.len(), 2);
    assert_eq!(f.attempts[0].error, AttemptError::Connect("refused".into()));
    assert_eq!(f.attempts[1].stage, Stage::Start);
    assert_eq!(f.attempts[1].then, Then::GaveUp);
    assert_eq!(f.attempts, h.up.attempts());
    assert_eq!(h.up.read_budget(), usize::MAX, "nothing held back any more");
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
fn stale_inputs_for_an_old_attempt_are_ignored() {
    let mut h = Harness::with(&[A, B]);
    let a1 = connect_id(&h.drain());
    h.up.handle_timeout(h.at(5_000));
    let a2 = connect_id(&h.drain());
    // The abandoned connection of attempt 1 still talks.
    h.up.handle_connected(h.at(5_001), a1);
    h.up.handle_connect_failed(h.at(5_001), a1, "late");
    h.up.handle_probe_response(h.at(5_002), a1, 200, true);
    h.up.handle_v2_response_head(h.at(5_003), a1, 200);
    h.up.handle_v2_body(h.at(5_004), a1, b"{\"error\":\"x\"}\n");
    h.up.handle_v1_bytes(h.at(5_004), a1, b"HTTP/1.1 500 No\r\n\r\n");
    h.up.handle_stream_error(h.at(5_005), a1, "reset");
    h.up.handle_response_end(h.at(5_006), a1);
    assert!(h.drain().is_empty());
    assert_eq!(h.up.attempts().len(), 1);
    // Inputs out of order for the current attempt are ignored as well.
    h.up.handle_v2_response_head(h.at(5_007), a2, 200);
    h.up.handle_v1_bytes(h.at(5_007), a2, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(h.drain().is_empty());
    assert_eq!(h.up.state(), UploadState::Connecting);
    let out = h.open_v2(5_010, a2);
    assert!(matches!(out.last(), Some(UploadOutput::Started { .. })));
}

#[test]
fn bad_recorder_addresses_are_rejected() {
    let cases: &[(&str, AddrError)] = &[
        ("", AddrError::Empty),
        ("ftp://rec:21", AddrError::UnsupportedScheme("ftp".into())),
        (
            "http://rec/record",
            AddrError::HasPath("http://rec/record".into()),
        ),
        (
            "http://rec?x=1",
            AddrError::HasPath("http://rec?x=1".into()),
        ),
        ("http://user:pw@rec", AddrError::HasUserinfo),
        ("http://:80", AddrError::BadHost("".into())),
        ("http://re c:80", AddrError::BadHost("re c".into())),
        ("http://::1:80", AddrError::BadHost("::1:80".into())),
        ("http://[::1", AddrError::BadHost("[::1".into())),
        ("http://[nothex]:80", AddrError::BadHost("nothex".into())),
        ("http://rec:", AddrError::BadPort("".into())),
        ("http://rec:0", AddrError::BadPort("0".into())),
        ("http://rec:65536", AddrError::BadPort("65536".into())),
        ("http://rec:+80", AddrError::BadPort("+80".into())),
        (" http://rec", AddrError::UnsupportedScheme(" http".into())),
    ];
    for (input, want) in cases {
        assert_eq!(
            input.parse::<RecorderAddr>().as_ref(),
            Err(want),
            "{input:?}"
        );
    }
    let good = [
        ("http://Rec-A:8080", "http://rec-a:8080", "rec-a:8080"),
        (
            "https://rec.example/",
            "https://rec.example:443",
            "rec.example",
        ),
        ("HTTPS://rec:8443", "https://rec:8443", "rec:8443"),
        ("10.0.0.1:80", "http://10.0.0.1:80", "10.0.0.1"),
        ("http://[::1]", "http://[::1]:80", "[::1]"),
    ];
    for (input, display, authority) in good {
        let a: RecorderAddr = input.parse().unwrap();
        assert_eq!(a.to_string(), display);
        assert_eq!(a.authority(), authority);
    }
    assert!(matches!(
        UploadConfig::with_recorders([A, "gopher://x"]),
        Err(ConfigError::BadAddress { index: 1, .. })
    ));
}

#[test]
fn bad_configurations_are_rejected() {
    let t0 = base_instant();
    let base = UploadConfig::with_recorders([A]).unwrap();
    let check = |f: &dyn Fn(&mut UploadConfig), want: ConfigError| {
        let mut c = base.clone();
        f(&mut c);
        assert_eq!(Upload::new(t0, c).err(), Some(want));
    };
    check(&|c| c.recorders.clear(), ConfigError::NoRecorders);
    check(
        &|c| c.token = Some("a\r\nX-Evil: 1".into()),
        ConfigError::BadToken,
    );
    check(
        &|c| c.headers = vec![("Transfer-Encoding".into(), "x".into())],
        ConfigError::ReservedHeader("transfer-encoding".into()),
    );
    check(
        &|c| c.headers = vec![("x-a".into(), "1\r\n".into())],
        ConfigError::BadHeaderValue("x-a".into()),
    );
    check(
        &|c| c.headers = vec![("x a".into(), "1".into())],
        ConfigError::BadHeaderName("x a".into()),
    );
    check(
        &|c| c.ack_window = Duration::ZERO,
        ConfigError::Zero("the ack window"),
    );
    let debug = format!(
        "{:?}",
        UploadConfig {
            token: Some("s3cret".into()),
            ..base.clone()
        }
    );
    assert!(!debug.contains("s3cret"), "{debug}");
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
