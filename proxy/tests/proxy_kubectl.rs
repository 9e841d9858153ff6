//! The real `kubectl` through `kubecast proxy --auth noauth` (plain HTTP)
//! in front of the test upstream, over WebSocket and over SPDY: output and
//! exit codes are what kubectl gives without the proxy, and the upstream
//! sees the same sessions. Without kubectl the tests skip loudly, or fail
//! when `CI` is set.

mod proxy_support;

use std::time::Duration;

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{Negotiated, SessionExit, Subresource, TermSize, TestUpstream};
use proxy_support::*;

/// A test upstream, a noauth proxy in front of it, and kubectl for the
/// proxy; `None` to skip.
async fn setup(test: &str, transport: Transport) -> Option<(TestUpstream, Proxy, Kubectl)> {
    let upstream = TestUpstream::start().await;
    let proxy = Proxy::start(&["--auth", "noauth", "--upstream", &upstream.url()]);
    let kubectl = Kubectl::for_server(&format!("{test} ({transport:?})"), &proxy.http_url())?;
    Some((upstream, proxy, kubectl))
}

fn negotiated(transport: Transport) -> Negotiated {
    match transport {
        Transport::WebSocket => Negotiated::WebSocket("v5.channel.k8s.io".into()),
        Transport::Spdy => Negotiated::Spdy("v4.channel.k8s.io".into()),
    }
}

async fn get_pod(transport: Transport) {
    let Some((upstream, proxy, kubectl)) = setup("get_pod", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["get", "pod", "demo", "-o", "name"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "pod/demo\n".into()),
        "{out}"
    );
    let out = kubectl
        .run(transport, &["get", "pod", "nosuch"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr_str().contains("pods \"nosuch\" not found"),
        "the upstream's Status reaches kubectl: {out}"
    );
    // Requests are logged with method, path, status and user.
    proxy
        .wait_log(&[
            "request",
            "method=GET",
            "path=/api/v1/namespaces/default/pods/demo",
            "status=200",
            "user=-",
        ])
        .await;
    // noauth: nothing impersonated, the proxy's peer address is forwarded.
    let requests = upstream.requests();
    let pod = requests
        .iter()
        .find(|r| r.path == "/api/v1/namespaces/default/pods/demo")
        .expect("the pod was read upstream");
    assert!(header_values(&pod.headers, "impersonate-user").is_empty());
    assert_eq!(
        header_values(&pod.headers, "x-forwarded-for"),
        ["127.0.0.1"]
    );
    assert_eq!(
        header_values(&pod.headers, "host"),
        [upstream.addr().to_string()],
        "Host names the upstream"
    );
}

async fn exec_echo(transport: Transport) {
    let Some((upstream, _proxy, kubectl)) = setup("exec_echo", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hi"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str(), out.stderr_str()),
        (Some(0), "hi\n".into(), "".into()),
        "{out}"
    );
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(sessions[0].negotiated, negotiated(transport));
    assert_eq!(sessions[0].subresource, Subresource::Exec);
    assert_eq!(sessions[0].command, ["echo", "hi"]);
}

async fn exec_exit_code_propagates(transport: Transport) {
    let Some((upstream, _proxy, kubectl)) = setup("exec_exit_code_propagates", transport).await
    else {
        return;
    };
    let out = kubectl
        .run(
            transport,
            &[
                "exec",
                "demo",
                "--",
                "sh",
                "-c",
                "echo out; stderr err; exit 3",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout_str(), "out\n", "{out}");
    assert!(out.stderr_str().starts_with("err\n"), "{out}");
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions[0].exit, Some(SessionExit::Code(3)));
}

async fn exec_stdin_round_trips(transport: Transport) {
    let Some((_upstream, _proxy, kubectl)) = setup("exec_stdin_round_trips", transport).await
    else {
        return;
    };
    let input: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let out = kubectl
        .run(
            transport,
            &["exec", "-i", "demo", "--", "cat"],
            Some(&input),
        )
        .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout == input,
        "stdout differs ({} bytes)",
        out.stdout.len()
    );
}

async fn tty_exec(transport: Transport) {
    let Some((upstream, _proxy, kubectl)) = setup("tty_exec", transport).await else {
        return;
    };
    let mut tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty.expect("$ ").await;
    tty.type_text("size\r").await;
    assert_eq!(tty.expect("$ ").await, "\r\n80x24\r\n$ ");
    tty.resize(100, 30).await;
    assert_eq!(tty.expect("$ ").await, "\r\n[resized to 100x30]\r\n$ ");
    tty.type_text("exit 4\r").await;
    let out = tty.wait().await;
    assert_eq!(
        out.code,
        Some(4),
        "{:?}",
        String::from_utf8_lossy(&out.transcript)
    );
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert!(sessions[0].tty);
    assert_eq!(
        sessions[0].resizes,
        [
            TermSize { cols: 80, rows: 24 },
            TermSize {
                cols: 100,
                rows: 30
            }
        ]
    );
}

async fn attach_piped(transport: Transport) {
    let Some((upstream, _proxy, kubectl)) = setup("attach_piped", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["attach", "-i", "worker"], Some(b"one\ntwo\n"))
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "one\ntwo\n".into()),
        "{out}"
    );
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions[0].subresource, Subresource::Attach);
}

kubecast_tests::over_both_transports!(
    get_pod,
    exec_echo,
    exec_exit_code_propagates,
    exec_stdin_round_trips,
    tty_exec,
    attach_piped,
);

/// `--enforce-recording` in a build that does not record yet refuses exec
/// before anything reaches the upstream, with a message kubectl prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_recording_refuses_unrecordable_sessions() {
    let upstream = TestUpstream::start().await;
    let proxy = Proxy::start(&[
        "--upstream",
        &upstream.url(),
        "--enforce-recording",
        "--recorder",
        "127.0.0.1:9",
    ]);
    let Some(kubectl) = Kubectl::for_server("enforce_recording_refuses", &proxy.http_url()) else {
        return;
    };
    let out = kubectl
        .run(Transport::Spdy, &["exec", "demo", "--", "echo", "hi"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr_str().contains("must be recorded"), "{out}");
    assert!(upstream.sessions().is_empty(), "nothing ran upstream");
    assert!(!upstream
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/exec")));
}
