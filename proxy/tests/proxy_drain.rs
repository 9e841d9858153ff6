//! SIGTERM drains `kubecast proxy` with real kubectl sessions open, over
//! WebSocket and SPDY: new connections are refused at once, open sessions
//! go on for the grace period (one that ends by itself is recorded as
//! usual), the ones still open when it runs out are ended, every recording
//! is finished (a complete, parseable cast) — in the local directory or
//! at a recorder — and the process exits 0. Without kubectl the tests skip
//! loudly, or fail when `CI` is set.

mod proxy_support;
mod recorder_support;

use std::path::Path;
use std::time::{Duration, Instant};

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::TestUpstream;
use proxy_support::*;
use tokio::net::TcpStream;

/// Every line of a cast parses: a header object, then `[time, code, data]`.
fn parse_cast(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {e}: {l:?}")))
        .collect();
    assert!(lines[0].is_object(), "{path:?}: a header first");
    for event in &lines[1..] {
        let event = event.as_array().expect("an event array");
        assert_eq!(event.len(), 3, "{event:?}");
        assert!(event[0].is_number() && event[1].is_string() && event[2].is_string());
    }
    lines
}

fn output(lines: &[serde_json::Value]) -> String {
    lines[1..]
        .iter()
        .filter(|e| e[1] == "o")
        .filter_map(|e| e[2].as_str())
        .collect()
}

/// Where the drained sessions are recorded.
enum To {
    Directory,
    Recorder,
}

async fn drain(transport: Transport, to: To) {
    let upstream = TestUpstream::start().await;
    let dir = Scratch::create("drain-casts");
    let casts_dir = path_str(dir.path());
    let url = upstream.url();
    let mut args = vec![
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--recordings-dir",
        &casts_dir,
        "--shutdown-grace",
        "3s",
    ];
    let recorder = match to {
        To::Directory => None,
        To::Recorder => Some(recorder_support::Server::start("drain", &[])),
    };
    let recorder_addr = recorder.as_ref().map(|r| r.addr.to_string());
    if let Some(addr) = &recorder_addr {
        args.extend(["--recorder", addr]);
    }
    let mut proxy = Proxy::start(&args);
    let Some(kubectl) = Kubectl::for_server(&format!("drain ({transport:?})"), &proxy.http_url())
    else {
        return;
    };
    let shell = ["exec", "-it", "demo", "--", "sh"];
    let mut finishing = kubectl.spawn_pty(transport, &shell, 80, 24).await;
    let mut lingering = kubectl.spawn_pty(transport, &shell, 80, 24).await;
    finishing.expect("$ ").await;
    lingering.expect("$ ").await;
    lingering.type_text("echo before\r").await;
    assert_eq!(lingering.expect("$ ").await, "\r\nbefore\r\n$ ");

    proxy.terminate();
    proxy.wait_log(&["SIGTERM", "draining"]).await;
    // No new clients: the listener is closed.
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(proxy.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Open sessions go on; one that ends within the grace is recorded as
    // usual.
    finishing.type_text("echo during\r").await;
    assert_eq!(finishing.expect("$ ").await, "\r\nduring\r\n$ ");
    finishing.type_text("exit 0\r").await;
    let out = finishing.wait().await;
    assert_eq!(
        out.code,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&out.transcript)
    );
    // The other one outlives the grace period and is ended with kubecast's
    // message on its error channel: kubectl prints it and fails.
    let out = lingering.wait().await;
    let transcript = String::from_utf8_lossy(&out.transcript).into_owned();
    assert_ne!(out.code, Some(0), "{transcript:?}");
    assert!(
        transcript.contains("the proxy is shutting down"),
        "{transcript:?}"
    );
    let status = proxy.wait_exit(STEP).await;
    assert!(status.success(), "{status:?}\n{}", proxy.log_text());
    let log = proxy.log_text();
    assert!(log.contains("grace period over"), "{log}");
    assert!(
        log.contains("session ended (recorded)") && log.contains("outcome=cut at shutdown"),
        "{log}"
    );

    // Both recordings are finished: two complete casts, every line valid.
    let found = match &recorder {
        Some(recorder) => casts(&recorder.dir),
        None => casts(dir.path()),
    };
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        !found
            .iter()
            .any(|p| p.to_string_lossy().contains("_incomplete")),
        "{found:?}"
    );
    let recorded: Vec<Vec<serde_json::Value>> = found.iter().map(|p| parse_cast(p)).collect();
    let ended = recorded
        .iter()
        .find(|c| output(c).contains("during"))
        .expect("the session that ended in the grace period");
    assert_eq!(ended.last().unwrap()[2], "exit 0", "{ended:?}");
    let cut = recorded
        .iter()
        .find(|c| output(c).contains("before"))
        .expect("the session cut at the end of the grace period");
    assert!(!output(cut).contains("during"), "{cut:?}");
    let last = cut.last().unwrap();
    assert_eq!(last[1], "m", "{cut:?}");
    assert!(
        last[2]
            .as_str()
            .unwrap()
            .starts_with("kubecast: session ended: kubecast: the proxy is shutting down"),
        "{last:?}"
    );
}

async fn sigterm_drains_local_recordings(transport: Transport) {
    drain(transport, To::Directory).await
}

async fn sigterm_drains_uploads_to_a_recorder(transport: Transport) {
    drain(transport, To::Recorder).await
}

kubecast_tests::over_both_transports!(
    sigterm_drains_local_recordings,
    sigterm_drains_uploads_to_a_recorder,
);
