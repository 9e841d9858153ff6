//! A recorded session driven by `kubecast-tokio` arrives complete at the
//! real `kubecast recorder` — over v2 (h2c), over v1 (behind an
//! HTTP/1.1-only front), after failing over from a dead address, and over
//! TLS with a private CA — byte-identical to a replay of the same bytes.

mod recorder_support;
mod upload_support;

use kubecast_core::recording::Policy;
use kubecast_core::upload::{AttemptError, Protocol, Stage, Then};
use kubecast_tokio::{start_recording, DriveOptions, UploadEvent, UploadTls};
use upload_support::*;

const PIPE: usize = 64 * 1024;

/// Drives the scripted session with `recorders` and checks the outcome:
/// completed, the recorder's file equals the replayed cast. Returns the
/// upload log.
async fn record_to(server: &Server, recorders: &[String], tls: UploadTls) -> Vec<UploadEvent> {
    let recording = recording(upload_config(recorders), Policy::FailClosed);
    // Fail-closed: the recorder is there before anything goes upstream.
    let handle = tokio::time::timeout(STEP, start_recording(recording, tls))
        .await
        .expect("the upload opens in time")
        .expect("a recorder accepts the upload");
    let mut h = start(handle, DriveOptions::default(), PIPE);
    play_whole_session(&mut h).await;
    let (result, handle, got) = tokio::time::timeout(STEP, h.driven)
        .await
        .expect("the session ends in time")
        .unwrap();
    let summary = result.expect("a clean end");
    assert!(got.finished);
    assert!(
        got.cast.is_empty(),
        "the cast goes to the recorder, not the sink"
    );
    let expected = replayed_cast(&got.capture);
    assert_eq!(summary.upload_completed, Some(expected.len() as u64));
    assert!(summary.upload_failure.is_none(), "{summary:?}");
    assert_eq!(
        handle.recording().upload().progress().acked,
        expected.len() as u64
    );
    let stored = stored(server).await;
    assert_eq!(
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(stored, expected);
    assert!(matches!(
        got.upload.last(),
        Some(UploadEvent::Completed { bytes }) if *bytes == expected.len() as u64
    ));
    got.upload
}

#[tokio::test]
async fn a_session_arrives_complete_over_v2() {
    let server = Server::start("upload-v2", &[]);
    let log = record_to(
        &server,
        &[format!("http://{}", server.addr)],
        UploadTls::default(),
    )
    .await;
    assert!(
        matches!(
            started(&log),
            Some(UploadEvent::Started {
                protocol: Protocol::V2,
                ..
            })
        ),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|e| matches!(e, UploadEvent::AttemptFailed(_))),
        "{log:?}"
    );
    server.wait_log("v2 complete", 1).await;
}

#[tokio::test]
async fn a_session_arrives_complete_over_v1_behind_an_http1_only_front() {
    let server = Server::start("upload-v1", &[]);
    let front = h1_only_front(server.addr).await;
    let log = record_to(&server, &[format!("http://{front}")], UploadTls::default()).await;
    // The probe failed on the front (it closed the h2c connection) ...
    let UploadEvent::AttemptFailed(probe) = &log[0] else {
        panic!("expected the failed probe first: {log:?}");
    };
    assert_eq!(
        (probe.protocol, probe.stage, probe.then),
        (Protocol::V2, Stage::Probe, Then::FallBackToV1),
        "{probe}"
    );
    // ... and v1 went through to the real recorder.
    assert!(
        matches!(
            started(&log),
            Some(UploadEvent::Started {
                protocol: Protocol::V1,
                ..
            })
        ),
        "{log:?}"
    );
    server.wait_log("v1 complete", 1).await;
}

#[tokio::test]
async fn a_refused_recorder_fails_over_to_the_next() {
    let server = Server::start("upload-failover", &[]);
    let dead = refused_addr().await;
    let log = record_to(
        &server,
        &[format!("http://{dead}"), format!("http://{}", server.addr)],
        UploadTls::default(),
    )
    .await;
    let UploadEvent::AttemptFailed(first) = &log[0] else {
        panic!("expected the refused attempt first: {log:?}");
    };
    assert_eq!(first.recorder.port(), dead.port());
    assert_eq!(
        (first.stage, first.then),
        (Stage::Connect, Then::NextRecorder)
    );
    assert!(
        matches!(&first.error, AttemptError::Connect(m) if m.to_lowercase().contains("refused")),
        "{first}"
    );
    let Some(UploadEvent::Started {
        recorder, protocol, ..
    }) = started(&log)
    else {
        panic!("no start: {log:?}");
    };
    assert_eq!(
        (recorder.port(), *protocol),
        (server.addr.port(), Protocol::V2)
    );
}

#[tokio::test]
async fn tls_with_a_private_ca_negotiates_h2_and_uploads_v2() {
    let scratch = Scratch::new("upload-tls-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecast upload test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file, ca_file) = (
        scratch.0.join("tls.crt"),
        scratch.0.join("tls.key"),
        scratch.0.join("ca.crt"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let server = Server::start(
        "upload-tls",
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    let url = format!("https://localhost:{}", server.addr.port());

    // Without the CA the certificate is not trusted: every attempt fails.
    let recording = recording(
        upload_config(std::slice::from_ref(&url)),
        Policy::FailClosed,
    );
    let failure = tokio::time::timeout(STEP, start_recording(recording, UploadTls::default()))
        .await
        .expect("the upload gives up in time")
        .expect_err("an untrusted certificate");
    assert!(
        failure
            .attempts
            .iter()
            .all(|a| matches!(&a.error, AttemptError::Connect(m) if m.contains("certificate"))),
        "{failure}"
    );

    // With it: ALPN h2, so v2.
    let tls = UploadTls::from_ca_file(&ca_file).unwrap();
    let log = record_to(&server, &[url], tls).await;
    assert!(
        matches!(
            started(&log),
            Some(UploadEvent::Started {
                protocol: Protocol::V2,
                ..
            })
        ),
        "{log:?}"
    );
    let line = server.wait_log("v2 complete", 1).await;
    assert!(line[0].contains(" tls "), "{line:?}");
}
