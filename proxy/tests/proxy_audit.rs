//! Audit events of `kubecast proxy` (`--audit-*`): a test webhook receiver
//! (hyper, shared with the kubecast-tokio audit tests) records every
//! `EventList`; the real kubectl goes through the proxy over WebSocket and
//! SPDY. Each request's events arrive exactly once, stages in order, with
//! the verb, objectRef, user and status kube-apiserver would write, the
//! exec's `ResponseComplete` carries the recording annotations, and the
//! upstream saw the same `Audit-ID`. A receiver outage and a proxy restart
//! with the receiver down lose nothing; the webhook config is accepted by
//! `kubectl config view`; a policy with `level: None` for `get` silences
//! the gets only. Without kubectl the kubectl tests skip loudly, or fail
//! when `CI` is set.

#[path = "../../runtime-tokio/tests/audit_support/mod.rs"]
mod audit_support;
mod proxy_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use audit_support::Receiver;
use kubecast_core::audit::{Event, Stage};
use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::TestUpstream;
use proxy_support::*;

/// The webhook kubeconfig for `server`, as kube-apiserver reads it.
fn webhook_config(dir: &Scratch, server: &str) -> String {
    dir.write(
        "audit-webhook.kubeconfig",
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: audit-receiver
  cluster:
    server: {server}
contexts:
- name: webhook
  context:
    cluster: audit-receiver
    user: kube-apiserver
current-context: webhook
users:
- name: kube-apiserver
  user:
    token: audit-test-token
"
        ),
    )
}

/// A noauth proxy in front of `upstream` auditing to `receiver`, with short
/// waits and backoffs, spilling into `spill`.
fn audit_proxy(
    upstream: &TestUpstream,
    receiver: &Receiver,
    files: &Scratch,
    spill: &str,
    extra: &[&str],
) -> Proxy {
    let config = webhook_config(files, &receiver.url());
    let url = upstream.url();
    let auth: &[&str] = if extra.contains(&"--auth") {
        &[]
    } else {
        &["--auth", "noauth"]
    };
    let mut args = auth.to_vec();
    args.extend_from_slice(&[
        "--upstream",
        &url,
        "--audit-webhook-config-file",
        &config,
        "--audit-webhook-batch-max-wait",
        "100ms",
        "--audit-webhook-batch-throttle-qps",
        "0",
        "--audit-webhook-initial-backoff",
        "200ms",
        "--audit-spill-dir",
        spill,
        "--shutdown-grace",
        "2s",
    ]);
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

/// Every event the receiver accepted, in arrival order.
fn accepted(receiver: &Receiver) -> Vec<Event> {
    receiver
        .log()
        .into_iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| r.list.map(|l| l.items).unwrap_or_default())
        .collect()
}

/// Waits until `done` holds for the accepted events, then a little longer
/// (late duplicates would show), and returns them.
async fn wait_events(
    receiver: &Receiver,
    what: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + STEP;
    loop {
        let events = accepted(receiver);
        if done(&events) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return accepted(receiver);
        }
        assert!(
            Instant::now() < deadline,
            "the receiver never saw {what}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events by `auditID`, each request's in arrival order; asserts each
/// (auditID, stage) arrived exactly once and stages are in order.
fn by_request(events: &[Event]) -> BTreeMap<String, Vec<Event>> {
    let mut map: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in events {
        map.entry(e.audit_id.clone()).or_default().push(e.clone());
    }
    for (id, events) in &map {
        let stages: Vec<Stage> = events.iter().map(|e| e.stage).collect();
        let long_running = stages.contains(&Stage::ResponseStarted);
        let expected = if long_running {
            vec![
                Stage::RequestReceived,
                Stage::ResponseStarted,
                Stage::ResponseComplete,
            ]
        } else {
            vec![Stage::RequestReceived, Stage::ResponseComplete]
        };
        assert_eq!(stages, expected, "stages of {id}: {events:#?}");
        let first = &events[0];
        for e in events {
            assert_eq!(
                (
                    &e.verb,
                    &e.request_uri,
                    &e.object_ref,
                    e.request_received_timestamp
                ),
                (
                    &first.verb,
                    &first.request_uri,
                    &first.object_ref,
                    first.request_received_timestamp
                ),
                "one request, one description: {events:#?}"
            );
            assert!(e.stage_timestamp >= e.request_received_timestamp);
        }
    }
    map
}

fn is_pod_get(e: &Event) -> bool {
    e.verb == "get"
        && e.object_ref
            .as_ref()
            .is_some_and(|o| o.resource == "pods" && o.name == "demo" && o.subresource.is_empty())
}

fn is_exec(e: &Event) -> bool {
    e.object_ref
        .as_ref()
        .is_some_and(|o| o.subresource == "exec")
}

fn complete(events: &[Event], pick: fn(&Event) -> bool) -> usize {
    events
        .iter()
        .filter(|e| pick(e) && e.stage == Stage::ResponseComplete)
        .count()
}

async fn get_and_exec_are_audited(transport: Transport) {
    let files = Scratch::create("audit-files");
    let spill = path_str(&files.join("spill"));
    let upstream = TestUpstream::start().await;
    let receiver = Receiver::start().await;
    let proxy = audit_proxy(&upstream, &receiver, &files, &spill, &[]);
    let Some(kubectl) = Kubectl::for_server(
        &format!("audit get/exec ({transport:?})"),
        &proxy.http_url(),
    ) else {
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
        .run(transport, &["exec", "demo", "--", "echo", "hi"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );

    let events = wait_events(&receiver, "the exec's ResponseComplete", |e| {
        complete(e, is_exec) == 1 && complete(e, is_pod_get) >= 2
    })
    .await;
    let requests = by_request(&events);

    // The webhook got EventLists with the config's bearer token.
    for r in receiver.log() {
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer audit-test-token"));
    }

    // `kubectl get pod demo` (and the exec's own look-up of the pod).
    let gets: Vec<&Vec<Event>> = requests.values().filter(|r| is_pod_get(&r[0])).collect();
    assert_eq!(gets.len(), 2, "{requests:#?}");
    for get in &gets {
        let done = &get[1];
        let o = done.object_ref.as_ref().unwrap();
        assert_eq!(
            (&*o.namespace, &*o.api_version, &*o.api_group),
            ("default", "v1", "")
        );
        assert_eq!(done.response_status.as_ref().map(|s| s.code), Some(200));
        assert!(done
            .request_uri
            .starts_with("/api/v1/namespaces/default/pods/demo"));
        assert_eq!(done.level, kubecast_core::audit::Level::Metadata);
        // noauth: the proxy does not know the caller.
        assert_eq!(done.user.username, "");
        assert!(done.impersonated_user.is_none());
        assert!(done.annotations.contains_key("kubecast.io/user-unknown"));
        assert_eq!(done.source_ips, vec!["127.0.0.1".to_string()]);
        assert!(done.user_agent.starts_with("kubectl"), "{done:?}");
    }

    // The exec: create pods/exec, 101, started and completed, annotated.
    let exec = requests.values().find(|r| is_exec(&r[0])).unwrap();
    assert_eq!(exec.len(), 3, "{exec:#?}");
    assert_eq!(exec[0].verb, "create");
    let o = exec[0].object_ref.as_ref().unwrap();
    assert_eq!(
        (&*o.resource, &*o.name, &*o.namespace),
        ("pods", "demo", "default")
    );
    assert!(exec[0].response_status.is_none());
    assert_eq!(exec[1].response_status.as_ref().map(|s| s.code), Some(101));
    let done = &exec[2];
    assert_eq!(done.response_status.as_ref().map(|s| s.code), Some(101));
    let a = &done.annotations;
    assert_eq!(
        a.get("kubecast.io/recorded").map(String::as_str),
        Some("true"),
        "{a:?}"
    );
    assert_eq!(
        a.get("kubecast.io/recorder").map(String::as_str),
        Some("local"),
        "{a:?}"
    );
    assert_eq!(
        a.get("kubecast.io/session-id").map(String::len),
        Some(32),
        "{a:?}"
    );
    assert!(
        a.get("kubecast.io/recording")
            .is_some_and(|p| p.ends_with(".cast")),
        "{a:?}"
    );
    assert!(!a.contains_key("kubecast.io/unrecorded"), "{a:?}");
    eprintln!(
        "the exec's ResponseComplete: {}",
        serde_json::to_string(done).unwrap()
    );

    // The upstream saw the same Audit-IDs, every one a UUID v4.
    let upstream_ids: Vec<String> = upstream
        .requests()
        .iter()
        .flat_map(|r| header_values(&r.headers, "audit-id"))
        .collect();
    assert_eq!(upstream_ids.len(), upstream.requests().len());
    for id in requests.keys() {
        assert!(
            upstream_ids.contains(id),
            "{id} not seen upstream: {upstream_ids:?}"
        );
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
    assert!(upstream_ids.contains(&exec[0].audit_id));
    drop(proxy);
}

kubecast_tests::over_both_transports!(get_and_exec_are_audited);

/// Sends `n` GETs of the pod through the proxy.
async fn some_gets(proxy: &Proxy, n: usize) {
    for _ in 0..n {
        let r = http1(
            proxy.addr,
            "GET",
            "/api/v1/namespaces/default/pods/demo",
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_loses_nothing() {
    let files = Scratch::create("audit-outage");
    let spill = path_str(&files.join("spill"));
    let upstream = TestUpstream::start().await;
    let mut receiver = Receiver::start().await;
    let proxy = audit_proxy(&upstream, &receiver, &files, &spill, &[]);
    some_gets(&proxy, 1).await;
    wait_events(&receiver, "the first request", |e| e.len() == 2).await;

    receiver.down();
    some_gets(&proxy, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(accepted(&receiver).len(), 2, "nothing accepted while down");
    receiver.up().await;
    let events = wait_events(&receiver, "all 4 requests", |e| e.len() >= 8).await;
    let requests = by_request(&events);
    assert_eq!(requests.len(), 4, "{requests:#?}");
    assert_eq!(events.len(), 8, "each event exactly once: {events:#?}");
    assert!(requests.values().all(|r| is_pod_get(&r[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_spilled_at_shutdown_arrive_after_a_restart() {
    let files = Scratch::create("audit-restart");
    let spill = path_str(&files.join("spill"));
    let upstream = TestUpstream::start().await;
    let mut receiver = Receiver::start().await;
    receiver.down();

    let mut first = audit_proxy(&upstream, &receiver, &files, &spill, &[]);
    some_gets(&first, 3).await;
    first.terminate();
    let status = first.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    first.wait_log(&["audit drained", "persisted=6"]).await;
    assert!(accepted(&receiver).is_empty());
    let sent: Vec<String> = upstream
        .requests()
        .iter()
        .flat_map(|r| header_values(&r.headers, "audit-id"))
        .collect();
    assert_eq!(sent.len(), 3);

    receiver.up().await;
    let second = audit_proxy(&upstream, &receiver, &files, &spill, &[]);
    let events = wait_events(&receiver, "the spilled events", |e| e.len() >= 6).await;
    let requests = by_request(&events);
    assert_eq!(events.len(), 6, "each event exactly once: {events:#?}");
    assert_eq!(requests.keys().cloned().collect::<Vec<_>>(), {
        let mut s = sent.clone();
        s.sort();
        s
    });
    // In order: the three requests as they were made.
    let order: Vec<&String> = events
        .iter()
        .filter(|e| e.stage == Stage::RequestReceived)
        .map(|e| &e.audit_id)
        .collect();
    assert_eq!(order, sent.iter().collect::<Vec<_>>());
    // The new run's own events follow.
    some_gets(&second, 1).await;
    wait_events(&receiver, "the new run's request", |e| e.len() >= 8).await;
}

#[tokio::test]
async fn kubectl_accepts_the_webhook_config() {
    let files = Scratch::create("audit-config");
    let file = webhook_config(&files, "http://127.0.0.1:9/audit");
    let Some(kubectl) = kubecast_tests::kubectl::kubectl_or_skip("audit webhook config") else {
        return;
    };
    let out = tokio::process::Command::new(kubectl)
        .args(["config", "view", "--kubeconfig", &file, "-o"])
        .arg("jsonpath={.clusters[0].cluster.server} {.current-context}")
        .output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("kubectl timed out")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "http://127.0.0.1:9/audit webhook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_level_none_for_get_silences_gets_only() {
    let files = Scratch::create("audit-policy");
    let spill = path_str(&files.join("spill"));
    let policy = files.write(
        "policy.yaml",
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: []
rules:
- level: None
  verbs: [\"get\"]
- level: Metadata
",
    );
    let upstream = TestUpstream::start().await;
    let receiver = Receiver::start().await;
    let proxy = audit_proxy(
        &upstream,
        &receiver,
        &files,
        &spill,
        &["--audit-policy-file", &policy],
    );
    let transport = Transport::WebSocket;
    let Some(kubectl) = Kubectl::for_server("audit policy", &proxy.http_url()) else {
        return;
    };
    let out = kubectl
        .run(transport, &["get", "pod", "demo", "-o", "name"], None)
        .await;
    assert_eq!(out.code, Some(0), "{out}");
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hi"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );
    let events = wait_events(&receiver, "the exec", |e| complete(e, is_exec) == 1).await;
    by_request(&events);
    assert!(events.iter().all(|e| e.verb != "get"), "{events:#?}");
    assert_eq!(events.iter().filter(|e| is_exec(e)).count(), 3);
}

#[tokio::test]
async fn a_bad_policy_file_is_refused_at_startup() {
    let files = Scratch::create("audit-bad-policy");
    let config = webhook_config(&files, "http://127.0.0.1:9");
    let policy = files.write("policy.yaml", "apiVersion: v1\nkind: Policy\nrules: []\n");
    let err = Proxy::start_error(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--audit-webhook-config-file",
        &config,
        "--audit-policy-file",
        &policy,
    ]);
    assert!(err.contains("--audit-policy-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_names_the_user_and_the_impersonated_user() {
    let files = Scratch::create("audit-token");
    let spill = path_str(&files.join("spill"));
    let tokens = files.write("tokens.csv", "alice-token,alice,uid-1,\"dev,ops\"\n");
    let upstream = TestUpstream::start().await;
    let receiver = Receiver::start().await;
    let proxy = audit_proxy(
        &upstream,
        &receiver,
        &files,
        &spill,
        &["--auth", "token", "--token-auth-file", &tokens],
    );
    let path = "/api/v1/namespaces/default/pods/demo";
    let ok = http1(
        proxy.addr,
        "GET",
        path,
        &[
            ("Authorization", "Bearer alice-token"),
            ("Audit-ID", "forged"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    let refused = http1(proxy.addr, "GET", path, &[("Authorization", "Bearer nope")]).await;
    assert_eq!(refused.status, 401);
    let events = wait_events(&receiver, "both requests", |e| e.len() >= 4).await;
    let requests = by_request(&events);
    assert_eq!(requests.len(), 2);
    let alice = requests
        .values()
        .find(|r| r[0].user.username == "alice")
        .expect("alice's request");
    let user = &alice[1].user;
    assert_eq!(
        (&*user.uid, &user.groups[..]),
        ("uid-1", &["dev".to_string(), "ops".to_string()][..])
    );
    assert_eq!(alice[1].impersonated_user.as_ref(), Some(user));
    assert_eq!(alice[1].response_status.as_ref().map(|s| s.code), Some(200));
    assert!(ok
        .head
        .to_ascii_lowercase()
        .contains(&format!("audit-id: {}", alice[0].audit_id)));
    // The client's own Audit-ID is replaced; the upstream saw ours.
    let upstream_ids: Vec<String> = upstream
        .requests()
        .iter()
        .flat_map(|r| header_values(&r.headers, "audit-id"))
        .collect();
    assert_eq!(upstream_ids, vec![alice[0].audit_id.clone()]);
    let anonymous = requests
        .values()
        .find(|r| r[0].user.username.is_empty())
        .expect("the refused request");
    let status = anonymous[1].response_status.as_ref().unwrap();
    assert_eq!((status.code, &*status.status), (401, "Failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_mode_waits_for_the_webhook_and_can_fail_closed() {
    let files = Scratch::create("audit-blocking");
    let spill = path_str(&files.join("spill"));
    let upstream = TestUpstream::start().await;
    let receiver = Receiver::start().await;
    let path = "/api/v1/namespaces/default/pods/demo";
    {
        let proxy = audit_proxy(
            &upstream,
            &receiver,
            &files,
            &spill,
            &["--audit-webhook-mode", "blocking"],
        );
        let r = http1(proxy.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 200);
        // Blocking: both events were delivered before the response.
        assert_eq!(accepted(&receiver).len(), 2);
        // A failed delivery is logged and counted; the request is served.
        receiver.answer(audit_support::Answer::Status(500));
        let r = http1(proxy.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 200);
        proxy.wait_log(&["audit event not recorded"]).await;
    }
    let proxy = audit_proxy(
        &upstream,
        &receiver,
        &files,
        &spill,
        &[
            "--audit-webhook-mode",
            "blocking",
            "--audit-webhook-blocking-fail-closed",
        ],
    );
    let before = upstream.requests().len();
    let r = http1(proxy.addr, "GET", path, &[]).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        upstream.requests().len(),
        before,
        "refused before going upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_open_loss_is_annotated_as_unrecorded() {
    let files = Scratch::create("audit-fail-open");
    let spill = path_str(&files.join("spill"));
    let upstream = TestUpstream::start().await;
    let receiver = Receiver::start().await;
    let proxy = audit_proxy(
        &upstream,
        &receiver,
        &files,
        &spill,
        &["--recorder", "127.0.0.1:1"],
    );
    let transport = Transport::WebSocket;
    let Some(kubectl) = Kubectl::for_server("audit fail-open", &proxy.http_url()) else {
        return;
    };
    let out = kubectl
        .run(transport, &["exec", "demo", "--", "echo", "hi"], None)
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );
    let events = wait_events(&receiver, "the exec", |e| complete(e, is_exec) == 1).await;
    let done = events
        .iter()
        .find(|e| is_exec(e) && e.stage == Stage::ResponseComplete)
        .unwrap();
    let a = &done.annotations;
    assert_eq!(
        a.get("kubecast.io/recorded").map(String::as_str),
        Some("false"),
        "{a:?}"
    );
    assert!(a.contains_key("kubecast.io/unrecorded"), "{a:?}");
    assert!(
        a.get("kubecast.io/failed-attempts")
            .is_some_and(|f| f.contains("127.0.0.1:1")),
        "{a:?}"
    );
    assert!(
        a.get("kubecast.io/recorder")
            .is_some_and(|r| r.contains("127.0.0.1:1")),
        "{a:?}"
    );
}

/// An upstream that answers every request with a chunked watch stream:
/// one event, then the end after `hold`.
async fn watch_upstream(hold: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while find(&head, b"\r\n\r\n").is_none() {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let event = br#"{"type":"ADDED","object":{"kind":"Pod"}}"#;
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
                out.extend_from_slice(event);
                out.extend_from_slice(b"\r\n");
                let _ = tcp.write_all(&out).await;
                tokio::time::sleep(hold).await;
                let _ = tcp.write_all(b"0\r\n\r\n").await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_is_started_and_completes_when_its_body_ends() {
    let files = Scratch::create("audit-watch");
    let spill = path_str(&files.join("spill"));
    let receiver = Receiver::start().await;
    let config = webhook_config(&files, &receiver.url());
    let upstream = watch_upstream(Duration::from_millis(500)).await;
    let proxy = Proxy::start(&[
        "--auth",
        "noauth",
        "--upstream",
        &upstream,
        "--audit-webhook-config-file",
        &config,
        "--audit-webhook-batch-max-wait",
        "100ms",
        "--audit-webhook-batch-throttle-qps",
        "0",
        "--audit-spill-dir",
        &spill,
    ]);
    let r = http1(
        proxy.addr,
        "GET",
        "/api/v1/namespaces/default/pods?watch=true",
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("ADDED"));
    let events = wait_events(&receiver, "the watch's completion", |e| e.len() >= 3).await;
    let requests = by_request(&events);
    let watch = requests.values().next().unwrap();
    assert_eq!(watch.len(), 3, "{watch:#?}");
    assert_eq!(watch[0].verb, "watch");
    assert_eq!(watch[0].object_ref.as_ref().unwrap().resource, "pods");
    for e in &watch[1..] {
        assert_eq!(e.response_status.as_ref().map(|s| s.code), Some(200));
    }
    let open = watch[2].stage_timestamp.unix_micros() - watch[1].stage_timestamp.unix_micros();
    assert!(
        open >= 400_000,
        "completed only when the body ended: {open} µs"
    );
}
