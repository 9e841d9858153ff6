//! `kubectl run -i/-it` through the proxy: kubectl creates a pod, waits
//! (list + watch) for it to run, attaches to it, waits for it to complete,
//! and with `--rm` deletes it. Everything but the attach passes through
//! untouched; the attach is recorded as one.

mod proxy_support;

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{Subresource, TestUpstream};
use proxy_support::{path_str, wait_for_casts, Proxy, Scratch};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

struct Setup {
    upstream: TestUpstream,
    _proxy: Proxy,
    kubectl: Kubectl,
    casts: Scratch,
}

async fn setup(test: &str, transport: Transport) -> Option<Setup> {
    let upstream = TestUpstream::start().await;
    let casts = Scratch::create("run-casts");
    let url = upstream.url();
    let dir = path_str(casts.path());
    let proxy = Proxy::start(&[
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--recordings-dir",
        &dir,
    ]);
    let kubectl = Kubectl::for_server(&format!("{test} ({transport:?})"), &proxy.http_url())?;
    Some(Setup {
        upstream,
        _proxy: proxy,
        kubectl,
        casts,
    })
}

/// The one cast in `dir`: its header and its output text.
async fn the_cast(dir: &Path) -> (Value, String) {
    let files = wait_for_casts(dir, 1).await;
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let output = lines
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect();
    (header, output)
}

async fn run_rm_piped_is_recorded_as_an_attach(transport: Transport) {
    let Some(s) = setup("run_rm_piped", transport).await else {
        return;
    };
    let out = s
        .kubectl
        .run(
            transport,
            &[
                "run",
                "t1",
                "--rm",
                "-i",
                "--image=busybox",
                "--restart=Never",
                "--",
                "echo",
                "hi from run",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    assert!(out.stdout_str().contains("hi from run"), "{out:?}");
    assert!(out.stdout_str().contains("pod \"t1\" deleted"), "{out:?}");

    let sessions = s.upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions[0].subresource, Subresource::Attach);
    assert_eq!(sessions[0].command, ["echo", "hi from run"]);
    let methods: Vec<String> = s
        .upstream
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods") || r.path.ends_with("/pods/t1"))
        .map(|r| r.method.clone())
        .collect();
    assert!(methods.contains(&"POST".to_string()), "{methods:?}");
    assert!(methods.contains(&"DELETE".to_string()), "{methods:?}");
    assert!(s.upstream.pods().iter().all(|p| p.name != "t1"));

    let (header, output) = the_cast(s.casts.path()).await;
    assert_eq!(header["kubernetes"]["resource"], "attach");
    assert_eq!(header["kubernetes"]["pod"], "t1");
    assert_eq!(output, "hi from run\n");
}

async fn run_it_shell_is_recorded_as_a_tty_attach(transport: Transport) {
    let Some(s) = setup("run_it_shell", transport).await else {
        return;
    };
    let mut tty = s
        .kubectl
        .spawn_pty(
            transport,
            &[
                "run",
                "t2",
                "--rm",
                "-it",
                "--image=busybox",
                "--restart=Never",
                "--",
                "sh",
            ],
            80,
            24,
        )
        .await;
    tty.expect("$ ").await;
    tty.type_text("echo typed in t2\r").await;
    tty.expect("typed in t2\r\n$ ").await;
    tty.type_text("exit 0\r").await;
    let out = tty.wait().await;
    assert_eq!(
        out.code,
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.transcript)
    );

    let (header, output) = the_cast(s.casts.path()).await;
    assert_eq!(header["kubernetes"]["resource"], "attach");
    assert_eq!(header["kubernetes"]["tty"], true);
    assert!(output.contains("typed in t2"), "{output:?}");
}

kubecast_tests::over_both_transports!(
    run_rm_piped_is_recorded_as_an_attach,
    run_it_shell_is_recorded_as_a_tty_attach
);
