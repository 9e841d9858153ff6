//! Recording through `kubecast proxy` with the real `kubectl`, over
//! WebSocket and SPDY: casts in `--recordings-dir`, casts at a spawned
//! `kubecast recorder`, fail-closed refusal before anything runs upstream,
//! a recorder lost mid-session (fail-closed ends the session with a
//! message, fail-open goes on), the rules file, and the token user in the
//! cast header. Without kubectl the tests skip loudly, or fail when `CI` is
//! set.

mod proxy_support;
mod recorder_support;

use std::path::Path;
use std::time::Duration;

use kubecast_tests::fixtures::tty_dialog;
use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{ContainerSpec, PodSpec, SessionExit, TestUpstream, UpstreamConfig};
use proxy_support::*;

/// Waits until `dir` holds `n` casts, then a little longer to see that no
/// other appears; returns each cast's lines.
async fn wait_casts(dir: &Path, n: usize) -> Vec<Vec<String>> {
    wait_for_casts(dir, n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = casts(dir);
    assert_eq!(found.len(), n, "{found:?}");
    found
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn header(lines: &[String]) -> serde_json::Value {
    serde_json::from_str(&lines[0]).expect("a JSON cast header")
}

/// The cast ends with the exit marker — or, with SPDY, with the core's
/// "connection ended inside a frame" marker when kubectl exits in the
/// middle of writing its last frame (a known core limit; see
/// runtime-tokio/README.md).
fn assert_ends_with_exit(lines: &[String], code: u8, transport: Transport) {
    let last = lines.last().unwrap();
    if last.ends_with(&format!(r#", "m", "exit {code}"]"#)) {
        return;
    }
    assert!(
        transport == Transport::Spdy && last.contains("connection ended inside a frame"),
        "the cast should end with the exit marker: {lines:#?}"
    );
    eprintln!("NOTE: kubectl cut its last SPDY frame at exit: {last}");
}

fn protocol(transport: Transport) -> &'static str {
    match transport {
        Transport::WebSocket => "websocket",
        Transport::Spdy => "spdy",
    }
}

/// An upstream, a proxy with `args` in front of it, kubectl; `None` to skip.
async fn setup(
    test: &str,
    transport: Transport,
    upstream: TestUpstream,
    args: &[&str],
) -> Option<(TestUpstream, Proxy, Kubectl)> {
    let url = upstream.url();
    let mut all = vec!["--auth", "noauth", "--upstream", &url];
    all.extend_from_slice(args);
    let proxy = Proxy::start(&all);
    let kubectl = Kubectl::for_server(&format!("{test} ({transport:?})"), &proxy.http_url())?;
    Some((upstream, proxy, kubectl))
}

async fn echo_is_recorded_to_the_directory(transport: Transport) {
    let dir = Scratch::create("casts");
    let d = path_str(dir.path());
    let upstream = TestUpstream::start().await;
    let Some((upstream, proxy, kubectl)) = setup(
        "echo_recorded",
        transport,
        upstream,
        &["--recordings-dir", &d],
    )
    .await
    else {
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
    let sessions = upstream.wait_finished(1, Duration::from_secs(10)).await;
    assert_eq!(sessions[0].exit, Some(SessionExit::Code(0)));
    let lines = wait_casts(dir.path(), 1).await.remove(0);
    let header = header(&lines);
    let k8s = &header["kubernetes"];
    assert_eq!(
        (&k8s["namespace"], &k8s["pod"], &k8s["resource"]),
        (&"default".into(), &"demo".into(), &"exec".into()),
        "{header}"
    );
    assert_eq!(k8s["protocol"], protocol(transport));
    // noauth: the proxy does not know the user, and the header says so by
    // leaving it out.
    assert!(k8s.get("user").is_none(), "{header}");
    assert_eq!(k8s["session_id"].as_str().map(str::len), Some(32));
    assert_eq!(header["command"], "echo hello");
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "o", "hello\n"]"#)),
        "{lines:#?}"
    );
    assert_ends_with_exit(&lines, 0, transport);
    proxy
        .wait_log(&["session ended (recorded)", "pod=\"demo\"", "user=-"])
        .await;
}

async fn a_failing_command_is_recorded_with_its_code(transport: Transport) {
    let dir = Scratch::create("casts");
    let d = path_str(dir.path());
    let upstream = TestUpstream::start().await;
    let Some((_upstream, _proxy, kubectl)) =
        setup("exit_code", transport, upstream, &["--recordings-dir", &d]).await
    else {
        return;
    };
    let args = ["exec", "demo", "--", "sh", "-c", "echo out; exit 3"];
    let out = kubectl.run(transport, &args, None).await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(3), "out\n".into()),
        "{out}"
    );
    let lines = wait_casts(dir.path(), 1).await.remove(0);
    assert!(
        lines.iter().any(|l| l.contains(r#""o", "out\n""#)),
        "{lines:#?}"
    );
    assert_ends_with_exit(&lines, 3, transport);
}

async fn a_tty_session_records_its_sizes(transport: Transport) {
    let upstream = TestUpstream::start().await;
    // The default ./recordings, in the proxy's working directory.
    let Some((_upstream, proxy, kubectl)) = setup("tty", transport, upstream, &[]).await else {
        return;
    };
    let tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty_dialog(tty).await;
    let lines = wait_casts(&proxy.home.join("recordings"), 1)
        .await
        .remove(0);
    let header = header(&lines);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(header["kubernetes"]["tty"], true);
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "r", "100x30"]"#)),
        "{lines:#?}"
    );
    assert_ends_with_exit(&lines, 0, transport);
}

async fn sessions_are_uploaded_to_the_recorder(transport: Transport) {
    let recorder = recorder_support::Server::start("proxy-recorder", &[]);
    let addr = recorder.addr.to_string();
    let dir = Scratch::create("unused");
    let d = path_str(dir.path());
    let upstream = TestUpstream::start().await;
    let args = ["--recorder", &addr, "--recordings-dir", &d];
    let Some((_upstream, proxy, kubectl)) = setup("to_recorder", transport, upstream, &args).await
    else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hello"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hello\n".into()),
        "{out}"
    );
    let lines = wait_casts(&recorder.dir, 1).await.remove(0);
    assert_eq!(header(&lines)["kubernetes"]["pod"], "demo");
    assert!(
        lines.iter().any(|l| l.ends_with(r#", "o", "hello\n"]"#)),
        "{lines:#?}"
    );
    assert_ends_with_exit(&lines, 0, transport);
    assert!(casts(dir.path()).is_empty(), "nothing stored locally");
    proxy
        .wait_log(&[
            "session ended (recorded)",
            &format!("recording=http://{addr}"),
        ])
        .await;
}

async fn enforced_without_a_recorder_nothing_runs(transport: Transport) {
    let upstream = TestUpstream::start().await;
    let args = ["--enforce-recording", "--recorder", "127.0.0.1:1"];
    let Some((upstream, _proxy, kubectl)) = setup("enforce", transport, upstream, &args).await
    else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hello"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out}");
    let stderr = out.stderr_str();
    assert!(stderr.contains("must be recorded"), "{out}");
    assert!(
        stderr.contains("127.0.0.1:1"),
        "the attempts are named: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert!(upstream.sessions().is_empty(), "nothing ran upstream");
    assert!(
        !upstream
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/exec")),
        "no exec request reached the upstream"
    );
}

/// A tty `sh` through the proxy to a recorder that is SIGKILLed while the
/// session is open.
async fn recorder_killed(transport: Transport, enforce: bool) {
    let mut recorder = recorder_support::Server::start("killed", &[]);
    let addr = recorder.addr.to_string();
    let upstream = TestUpstream::start().await;
    let mut args = vec!["--recorder", &addr, "--recorder-ack-timeout", "2s"];
    if enforce {
        args.push("--enforce-recording");
    }
    let Some((_upstream, proxy, kubectl)) = setup("killed", transport, upstream, &args).await
    else {
        return;
    };
    let mut tty = kubectl
        .spawn_pty(transport, &["exec", "-it", "demo", "--", "sh"], 80, 24)
        .await;
    tty.expect("$ ").await;
    tty.type_text("echo before\r").await;
    assert_eq!(tty.expect("$ ").await, "\r\nbefore\r\n$ ");
    recorder.signal_and_wait("KILL");
    if enforce {
        // The session ends by itself, with kubecast's message.
        let out = tty.wait().await;
        let transcript = String::from_utf8_lossy(&out.transcript).into_owned();
        assert_ne!(out.code, Some(0), "{transcript:?}");
        assert!(
            transcript.contains("must be recorded and the recording was lost"),
            "{transcript:?}"
        );
        proxy
            .wait_log(&["session ended (recorded)", "enforce=true", "upload failed"])
            .await;
    } else {
        tty.type_text("echo after\r").await;
        assert_eq!(tty.expect("$ ").await, "\r\nafter\r\n$ ");
        tty.type_text("exit 0\r").await;
        let out = tty.wait().await;
        assert_eq!(
            out.code,
            Some(0),
            "{:?}",
            String::from_utf8_lossy(&out.transcript)
        );
        proxy
            .wait_log(&["session ended (recorded)", "enforce=false", "upload failed"])
            .await;
    }
}

async fn recorder_killed_fail_closed(transport: Transport) {
    recorder_killed(transport, true).await
}

async fn recorder_killed_fail_open(transport: Transport) {
    recorder_killed(transport, false).await
}

async fn rules_can_skip_recording(transport: Transport) {
    let config = UpstreamConfig {
        pods: vec![
            PodSpec::new(
                "default",
                "demo",
                vec![ContainerSpec::new("main", &["sh"], true)],
            ),
            PodSpec::new(
                "kube-system",
                "coredns-1",
                vec![ContainerSpec::new("main", &["sh"], false)],
            ),
        ],
        ..Default::default()
    };
    let upstream = TestUpstream::start_with(config).await;
    let dir = Scratch::create("rules");
    let rules = dir.write(
        "rules.yaml",
        "rules:\n- namespaces: [\"kube-*\"]\n  pods: [\"coredns-?\"]\n  record: false\n",
    );
    let casts_dir = dir.join("casts");
    let c = path_str(&casts_dir);
    let args = ["--config", &rules, "--recordings-dir", &c];
    let Some((_upstream, proxy, kubectl)) = setup("rules", transport, upstream, &args).await else {
        return;
    };
    let args = [
        "exec",
        "-n",
        "kube-system",
        "coredns-1",
        "--",
        "echo",
        "dns",
    ];
    let out = kubectl.run(transport, &args, None).await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "dns\n".into()),
        "{out}"
    );
    proxy
        .wait_log(&["raw relay, not recorded", "pod=\"coredns-1\""])
        .await;
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "app"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "app\n".into()),
        "{out}"
    );
    let lines = wait_casts(&casts_dir, 1).await.remove(0);
    assert_eq!(header(&lines)["kubernetes"]["pod"], "demo");
}

kubecast_tests::over_both_transports!(
    echo_is_recorded_to_the_directory,
    a_failing_command_is_recorded_with_its_code,
    a_tty_session_records_its_sizes,
    sessions_are_uploaded_to_the_recorder,
    enforced_without_a_recorder_nothing_runs,
    recorder_killed_fail_closed,
    recorder_killed_fail_open,
    rules_can_skip_recording,
);

/// `--auth token` over TLS: the cast header names the token's user, uid
/// and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_user_is_in_the_cast_header() {
    let upstream = TestUpstream::start().await;
    let pki = Pki::new("token-cast");
    let tokens = pki
        .dir
        .write("tokens.csv", "alice-token,alice,uid-42,\"dev,ops\"\n");
    let proxy_token = pki.dir.write("proxy-token", "proxy-token\n");
    let casts_dir = pki.dir.join("casts");
    let c = path_str(&casts_dir);
    let url = upstream.url();
    let mut args = vec![
        "--auth",
        "token",
        "--token-auth-file",
        &tokens,
        "--upstream",
        &url,
        "--upstream-token-file",
        &proxy_token,
        "--recordings-dir",
        &c,
    ];
    let server_args = pki.server_args();
    args.extend(server_args.iter().map(String::as_str));
    let proxy = Proxy::start(&args);
    let Some(kubectl) = Kubectl::for_server("token_cast", &proxy.https_url()) else {
        return;
    };
    let ca = format!("--certificate-authority={}", pki.ca);
    let all = [
        ca.as_str(),
        "--token=alice-token",
        "exec",
        "demo",
        "--",
        "echo",
        "hi",
    ];
    let out = kubectl.run(Transport::WebSocket, &all, None).await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );
    let lines = wait_casts(&casts_dir, 1).await.remove(0);
    let header = header(&lines);
    let k8s = &header["kubernetes"];
    assert_eq!(k8s["user"], "alice", "{header}");
    assert_eq!(k8s["uid"], "uid-42", "{header}");
    assert_eq!(k8s["groups"], serde_json::json!(["dev", "ops"]), "{header}");
    assert!(
        !lines.iter().any(|l| l.contains("alice-token")),
        "the caller's token is not recorded"
    );
    proxy
        .wait_log(&["session ended (recorded)", "user=alice"])
        .await;
}

/// An invalid rules file stops the proxy at startup with a clear message.
#[test]
fn an_invalid_rules_file_is_a_startup_error() {
    let dir = Scratch::create("bad-rules");
    let rules = dir.write("rules.yaml", "rules:\n- namespace: [x]\n");
    let err = Proxy::start_error(&["--upstream", "http://127.0.0.1:1", "--config", &rules]);
    assert!(err.contains("rules.yaml"), "{err}");
    assert!(err.contains("unknown field `namespace`"), "{err}");
    let rules = dir.write("rules2.yaml", "rules:\n- recorders: [\"no port\"]\n");
    let err = Proxy::start_error(&["--upstream", "http://127.0.0.1:1", "--config", &rules]);
    assert!(err.contains("rules[0]: recorder"), "{err}");
}
