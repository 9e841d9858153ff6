//! Failover over the ordered recorder list, the attempt and overall
//! budgets, stale inputs, and configuration checks.

use super::*;

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
