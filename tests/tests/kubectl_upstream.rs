//! The real `kubectl` (v1.32, on the PATH) directly against the test
//! upstream, over WebSocket (kubectl's default) and over SPDY/3.1
//! (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`): what kubectl prints and
//! its exit code must be what a real cluster would give, and the upstream
//! must have seen the protocol kubectl 1.32 negotiates with a real API
//! server (WebSocket `v5.channel.k8s.io`, SPDY `v4.channel.k8s.io`).
//!
//! Every test runs once per transport (modules `websocket` and `spdy`).
//! Without kubectl the tests skip loudly, or fail when `CI` is set.

use std::time::Duration;

use kubecast_tests::fixtures::{stdin_sample, tty_dialog};
use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{
    bigout_bytes, Negotiated, SessionExit, SessionRecord, Subresource, TermSize, TestUpstream,
};

/// A fresh upstream and a kubectl configured for it; `None` to skip.
async fn setup(test: &str, transport: Transport) -> Option<(TestUpstream, Kubectl)> {
    let upstream = TestUpstream::start().await;
    let kubectl = Kubectl::for_server(&format!("{test} ({transport:?})"), &upstream.url())?;
    Some((upstream, kubectl))
}

/// What kubectl 1.32 negotiates with a real API server.
fn negotiated(transport: Transport) -> Negotiated {
    match transport {
        Transport::WebSocket => Negotiated::WebSocket("v5.channel.k8s.io".into()),
        Transport::Spdy => Negotiated::Spdy("v4.channel.k8s.io".into()),
    }
}

/// The only session the upstream saw, once it has finished.
async fn only_session(upstream: &TestUpstream, transport: Transport) -> SessionRecord {
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions.len(), 1, "exactly one session: {sessions:#?}");
    let session = sessions
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!());
    assert_eq!(session.negotiated, negotiated(transport), "{session:#?}");
    session
}

async fn echo_prints_its_arguments(transport: Transport) {
    let Some((upstream, kubectl)) = setup("echo_prints_its_arguments", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hello"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str(), out.stderr_str()),
        (Some(0), "hello\n".into(), "".into()),
        "{out}"
    );

    let session = only_session(&upstream, transport).await;
    assert_eq!(session.subresource, Subresource::Exec);
    assert_eq!(
        (session.namespace.as_str(), session.pod.as_str()),
        ("default", "demo")
    );
    assert_eq!(
        session.container, "main",
        "kubectl picks the only container"
    );
    assert_eq!(session.command, ["echo", "hello"]);
    assert_eq!(
        (session.stdin, session.stdout, session.stderr, session.tty),
        (false, true, true, false)
    );
    assert_eq!(session.exit, Some(SessionExit::Code(0)));
    if transport == Transport::Spdy {
        assert_eq!(
            session.streams,
            ["error", "stdout", "stderr"],
            "kubectl's stream order"
        );
        assert_eq!(
            session.offered,
            [
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io"
            ]
        );
    } else {
        assert_eq!(session.offered, ["v5.channel.k8s.io"]);
    }
    // What kubectl asked before streaming.
    let paths: Vec<String> = upstream.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/api/v1/namespaces/default/pods/demo".to_string()),
        "kubectl reads the pod first: {paths:?}"
    );
}

async fn cat_round_trips_piped_stdin(transport: Transport) {
    let Some((upstream, kubectl)) = setup("cat_round_trips_piped_stdin", transport).await else {
        return;
    };
    // More than kubectl's 32 KiB stdin chunk, every byte value, and UTF-8.
    let input = stdin_sample(70_000);
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
        "stdout differs from stdin ({} vs {} bytes)",
        out.stdout.len(),
        input.len()
    );

    let session = only_session(&upstream, transport).await;
    assert!(session.stdin && !session.tty);
    assert!(
        session.stdin_bytes == input,
        "the upstream received stdin intact"
    );
    assert!(session.stdin_closed, "kubectl closes stdin at end of input");
}

async fn exit_status_becomes_kubectls_exit_code(transport: Transport) {
    let Some((upstream, kubectl)) =
        setup("exit_status_becomes_kubectls_exit_code", transport).await
    else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "exit", "3"], None)
        .await;
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout_str(), "");
    assert_eq!(out.stderr_str(), "command terminated with exit code 3\n");
    assert_eq!(
        only_session(&upstream, transport).await.exit,
        Some(SessionExit::Code(3))
    );
}

async fn stderr_lands_on_kubectls_stderr(transport: Transport) {
    let Some((upstream, kubectl)) = setup("stderr_lands_on_kubectls_stderr", transport).await
    else {
        return;
    };
    let args = [
        "exec",
        "demo",
        "--",
        "sh",
        "-c",
        "echo out; stderr oops; exit 4",
    ];
    let out = kubectl.run(transport, &args, None).await;
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(
        out.stderr_str(),
        "oops\ncommand terminated with exit code 4\n"
    );
    assert_eq!(
        only_session(&upstream, transport).await.command,
        ["sh", "-c", "echo out; stderr oops; exit 4"]
    );
}

async fn bigout_arrives_byte_exact(transport: Transport) {
    let Some((upstream, kubectl)) = setup("bigout_arrives_byte_exact", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "bigout", "100000"], None)
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    assert!(
        out.stdout == bigout_bytes(100_000),
        "bigout output differs ({} bytes)",
        out.stdout.len()
    );
    only_session(&upstream, transport).await;
}

async fn seq_prints_lines(transport: Transport) {
    let Some((_upstream, kubectl)) = setup("seq_prints_lines", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "seq", "1000"], None)
        .await;
    let expected: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), expected),
        "{}",
        out.stderr_str()
    );
}

async fn a_missing_executable_is_an_internal_error(transport: Transport) {
    let Some((upstream, kubectl)) =
        setup("a_missing_executable_is_an_internal_error", transport).await
    else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "nosuch", "arg"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr_str()
            .starts_with("error: Internal error occurred: ")
            && out
                .stderr_str()
                .contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{out}"
    );
    assert!(matches!(
        only_session(&upstream, transport).await.exit,
        Some(SessionExit::StartFailed(_))
    ));
}

async fn an_unknown_pod_is_not_found(transport: Transport) {
    let Some((upstream, kubectl)) = setup("an_unknown_pod_is_not_found", transport).await else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "nopod", "--", "echo", "hi"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.stderr_str(),
        "Error from server (NotFound): pods \"nopod\" not found\n"
    );
    assert!(upstream.sessions().is_empty());
}

async fn tty_shell_prompts_echoes_and_follows_resizes(transport: Transport) {
    let Some((upstream, kubectl)) =
        setup("tty_shell_prompts_echoes_and_follows_resizes", transport).await
    else {
        return;
    };
    let tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty_dialog(tty).await;

    let session = only_session(&upstream, transport).await;
    assert_eq!(
        (session.stdin, session.stdout, session.stderr, session.tty),
        (true, true, false, true),
        "kubectl drops stderr under a tty"
    );
    if transport == Transport::Spdy {
        assert_eq!(session.streams, ["error", "stdin", "stdout", "resize"]);
    }
    assert_eq!(
        session.resizes,
        [
            TermSize { cols: 80, rows: 24 },
            TermSize {
                cols: 100,
                rows: 30
            }
        ]
    );
    assert_eq!(session.stdin_bytes, b"echo hello\rsize\rsize\rexit 0\r");
    assert_eq!(session.exit, Some(SessionExit::Code(0)));
}

async fn tty_exit_status_becomes_kubectls_exit_code(transport: Transport) {
    let Some((_upstream, kubectl)) =
        setup("tty_exit_status_becomes_kubectls_exit_code", transport).await
    else {
        return;
    };
    let mut tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty.expect("$ ").await;
    tty.type_text("nosuch\r").await;
    tty.expect("sh: nosuch: not found\r\n$ ").await;
    tty.type_text("exit 7\r").await;
    let out = tty.wait().await;
    assert_eq!(
        out.code,
        Some(7),
        "{:?}",
        String::from_utf8_lossy(&out.transcript)
    );
    assert!(String::from_utf8_lossy(&out.transcript)
        .ends_with("command terminated with exit code 7\r\n"));
}

async fn attach_with_a_tty_reaches_the_main_shell(transport: Transport) {
    let Some((upstream, kubectl)) =
        setup("attach_with_a_tty_reaches_the_main_shell", transport).await
    else {
        return;
    };
    let mut tty = kubectl
        .spawn_pty(transport, &["attach", "-it", "demo"], 80, 24)
        .await;
    tty.expect("If you don't see a command prompt, try pressing enter.")
        .await;
    tty.send(b"\r").await;
    tty.expect("\r\n$ ").await;
    tty.type_text("echo attached\r").await;
    tty.expect("attached\r\n$ ").await;
    tty.type_text("exit 0\r").await;
    let out = tty.wait().await;
    assert_eq!(
        out.code,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&out.transcript)
    );

    let session = only_session(&upstream, transport).await;
    assert_eq!(session.subresource, Subresource::Attach);
    assert_eq!(
        session.command,
        ["sh"],
        "attach reaches the container's main process"
    );
    assert!(session.tty && session.stdin);
    assert_eq!(
        session.resizes.last(),
        Some(&TermSize { cols: 80, rows: 24 })
    );
}

async fn attach_with_piped_stdin(transport: Transport) {
    let Some((upstream, kubectl)) = setup("attach_with_piped_stdin", transport).await else {
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
    let session = only_session(&upstream, transport).await;
    assert_eq!(
        (session.subresource, session.pod.as_str()),
        (Subresource::Attach, "worker")
    );
    assert_eq!(session.command, ["cat"]);
}

kubecast_tests::over_both_transports!(
    echo_prints_its_arguments,
    cat_round_trips_piped_stdin,
    exit_status_becomes_kubectls_exit_code,
    stderr_lands_on_kubectls_stderr,
    bigout_arrives_byte_exact,
    seq_prints_lines,
    a_missing_executable_is_an_internal_error,
    an_unknown_pod_is_not_found,
    tty_shell_prompts_echoes_and_follows_resizes,
    tty_exit_status_becomes_kubectls_exit_code,
    attach_with_a_tty_reaches_the_main_shell,
    attach_with_piped_stdin,
);
