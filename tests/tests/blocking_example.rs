//! The core needs no async runtime: `core/examples/blocking_proxy.rs` (plain
//! `std::net` and threads) records a real `kubectl exec` through the same
//! `Session` the tokio adapter drives.

use kubecast_tests::kubectl::{Kubectl, TempDir, Transport};
use kubecast_tests::upstream::TestUpstream;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The example's binary: `cargo test --workspace` builds it beside the test
/// binaries; build it here when this crate's tests run alone.
fn example_binary() -> PathBuf {
    let debug = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let binary = debug.join("examples").join("blocking_proxy");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "kubecast-core",
                "--example",
                "blocking_proxy",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the example failed");
    }
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

async fn records_a_kubectl_session(transport: Transport) {
    let upstream = TestUpstream::start().await;
    let dir = TempDir::new("kubecast-blocking-example").unwrap();
    let cast = dir.path().join("session.cast");
    let mut proxy = Command::new(example_binary())
        .arg("127.0.0.1:0")
        .arg(upstream.addr().to_string())
        .arg(&cast)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listen line")
        .to_string();
    let Some(kubectl) = Kubectl::for_server("blocking example", &format!("http://{addr}")) else {
        proxy.kill().ok();
        proxy.wait().ok();
        return;
    };

    let out = kubectl
        .run(
            transport,
            &["exec", "demo", "--", "sh", "-c", "echo hello; exit 3"],
            None,
        )
        .await;
    assert_eq!(out.stdout_str(), "hello\n", "{}", out.stderr_str());
    assert_eq!(out.code, Some(3));

    // The example exits once it has recorded a session.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the example did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&cast).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["kubernetes"]["pod"], "demo");
    assert!(text.contains(r#""o", "hello\n""#), "{text}");
    assert!(text.trim_end().ends_with(r#""m", "exit 3"]"#), "{text}");
}

kubecast_tests::over_both_transports!(records_a_kubectl_session);
