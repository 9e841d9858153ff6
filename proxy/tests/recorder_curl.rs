//! Interop with a client nobody here wrote: curl (h2c prior knowledge for the
//! v2 probe; HTTP/1.1 with `Expect: 100-continue` for a v1 upload).
//!
//! Without curl the tests fail when `CI` is set, and are skipped loudly
//! otherwise.

mod recorder_support;

use recorder_support::*;
use std::process::{Command, Output};
use std::time::Duration;

fn curl_available() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("curl is not installed, and CI is set: install curl");
        }
        eprintln!("SKIPPED: curl is not installed (set CI to make this a failure)");
    }
    found
}

/// Runs curl with bounded time (curl's own --max-time, and a kill after that).
async fn curl(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "15"])
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("curl timed out")
        .expect("run curl")
}

#[tokio::test]
async fn curl_http2_prior_knowledge_head_v2_record_is_200() {
    if !curl_available() {
        return;
    }
    let server = Server::start("curl-head", &[]);
    let url = format!("http://{}/v2/record", server.addr);
    let out = curl(&["--http2-prior-knowledge", "-I", &url]).await;
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    // The same probe over HTTP/1.1 is not a 200, so a prober falls back to v1.
    let out = curl(&["--http1.1", "-I", &url]).await;
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[tokio::test]
async fn curl_http1_upload_with_expect_100_continue_is_stored() {
    if !curl_available() {
        return;
    }
    let server = Server::start("curl-upload", &[]);
    let scratch = Scratch::create("curl-upload-src");
    let file = scratch.join("session.cast");
    let data = cast("default", "web-0", "alice", 100);
    std::fs::write(&file, &data).unwrap();
    let url = format!("http://{}/record", server.addr);
    let out = curl(&[
        "--http1.1",
        "--verbose",
        "-H",
        "Expect: 100-continue",
        "-H",
        "Content-Type: application/x-asciicast",
        "--data-binary",
        &format!("@{}", file.display()),
        "--write-out",
        "%{http_code}",
        &url,
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.ends_with("200"), "{stdout}");
    assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
    let name = format!("{}.cast", stem("default", "web-0", "alice"));
    assert_eq!(server.files(), vec![name.clone()]);
    assert_eq!(server.read(&name), data);
}
