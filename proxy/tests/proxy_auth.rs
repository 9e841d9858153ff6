//! Authentication and impersonation: `--auth token` (static token file) and
//! `--auth x509` (client certificates) over TLS with a throwaway CA, with
//! the real kubectl; the upstream must see the impersonation headers and
//! the proxy's own token, never the caller's credentials.

mod proxy_support;

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{RequestRecord, TestUpstream};
use proxy_support::*;

const TOKENS: &str = "alice-token,alice,uid-42,\"dev,ops\"\nbob-token,bob,uid-7\n";

fn assert_impersonated(request: &RequestRecord, user: &str, groups: &[&str], uid: Option<&str>) {
    let h = &request.headers;
    assert_eq!(header_values(h, "impersonate-user"), [user], "{request:?}");
    assert_eq!(header_values(h, "impersonate-group"), groups, "{request:?}");
    assert_eq!(
        header_values(h, "impersonate-uid"),
        uid.into_iter().collect::<Vec<_>>(),
        "{request:?}"
    );
    assert_eq!(
        header_values(h, "authorization"),
        ["Bearer proxy-token"],
        "the proxy's own token: {request:?}"
    );
}

/// kubectl global flags for a TLS proxy.
fn tls_flags(pki: &Pki, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![format!("--certificate-authority={}", pki.ca)];
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

async fn run(
    kubectl: &Kubectl,
    transport: Transport,
    flags: &[String],
    args: &[&str],
) -> kubecast_tests::kubectl::KubectlOutput {
    let mut all: Vec<String> = flags.to_vec();
    all.extend(args.iter().map(|s| s.to_string()));
    kubectl.run(transport, &all, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_impersonates_the_token_user() {
    let upstream = TestUpstream::start().await;
    let pki = Pki::new("token");
    let tokens = pki.dir.write("tokens.csv", TOKENS);
    let proxy_token = pki.dir.write("proxy-token", "proxy-token\n");
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
    ];
    let server_args = pki.server_args();
    args.extend(server_args.iter().map(String::as_str));
    let proxy = Proxy::start(&args);
    let Some(kubectl) = Kubectl::for_server("token_auth", &proxy.https_url()) else {
        return;
    };
    let alice = tls_flags(&pki, &["--token=alice-token"]);

    let out = run(
        &kubectl,
        Transport::WebSocket,
        &alice,
        &["get", "pod", "demo", "-o", "name"],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "pod/demo\n".into()),
        "{out}"
    );
    for transport in Transport::ALL {
        let out = run(
            &kubectl,
            transport,
            &alice,
            &["exec", "demo", "--", "echo", "hi"],
        )
        .await;
        assert_eq!(
            (out.code, out.stdout_str()),
            (Some(0), "hi\n".into()),
            "{transport:?}: {out}"
        );
    }
    let requests = upstream.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.path.ends_with("/exec"))
            .count()
            >= 2,
        "{requests:#?}"
    );
    for request in &requests {
        assert_impersonated(request, "alice", &["dev", "ops"], Some("uid-42"));
        assert!(
            !request
                .headers
                .iter()
                .any(|(_, v)| v.contains("alice-token")),
            "the caller's token must not reach the upstream: {request:?}"
        );
    }
    proxy
        .wait_log(&["request", "status=101", "user=alice"])
        .await;

    // A second user, no groups.
    let bob = tls_flags(&pki, &["--token=bob-token"]);
    let before = upstream.requests().len();
    let out = run(
        &kubectl,
        Transport::Spdy,
        &bob,
        &["get", "pod", "demo", "-o", "name"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    for request in &upstream.requests()[before..] {
        assert_impersonated(request, "bob", &[], Some("uid-7"));
    }

    // kubectl --as: refused with a message kubectl prints, nothing forwarded.
    let before = upstream.requests().len();
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &alice,
        &["--as=other", "get", "pod", "demo"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr_str().contains("impersonation is not allowed"),
        "{out}"
    );
    assert_eq!(
        upstream.requests().len(),
        before,
        "nothing reached the upstream"
    );

    // A wrong token: 401. No token: 401, on which kubectl asks for a
    // username (and gets EOF).
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &tls_flags(&pki, &["--token=nope"]),
        &["get", "pod", "demo"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr_str().contains("Unauthorized"), "{out}");
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &tls_flags(&pki, &[]),
        &["get", "pod", "demo"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout_str().contains("Username"),
        "kubectl saw a 401: {out}"
    );
    assert_eq!(
        upstream.requests().len(),
        before,
        "nothing reached the upstream"
    );
    proxy
        .wait_log(&["request", "status=403", "user=alice"])
        .await;
}

/// The proxy's own answers carry Kubernetes `Status` bodies (plain HTTP
/// here so a raw client can read them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_status_objects() {
    let upstream = TestUpstream::start().await;
    let dir = Scratch::create("status");
    let tokens = dir.write("tokens.csv", TOKENS);
    let proxy = Proxy::start(&[
        "--auth",
        "token",
        "--token-auth-file",
        &tokens,
        "--upstream",
        &upstream.url(),
    ]);

    let r = http1(proxy.addr, "GET", "/version", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    let status = r.json();
    assert_eq!(
        (
            status["kind"].as_str(),
            status["reason"].as_str(),
            status["code"].as_u64()
        ),
        (Some("Status"), Some("Unauthorized"), Some(401))
    );

    let r = http1(
        proxy.addr,
        "GET",
        "/version",
        &[
            ("Authorization", "Bearer alice-token"),
            ("Impersonate-Group", "system:masters"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let status = r.json();
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("impersonate-group"),
        "{status}"
    );

    let r = http1(
        proxy.addr,
        "GET",
        "/version",
        &[("Authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(upstream.requests().iter().all(|r| r.path == "/version"));
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the authenticated request went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_auth_uses_cn_and_o() {
    let upstream = TestUpstream::start().await;
    let pki = Pki::new("x509");
    let (cert, key) = pki.client("carol", Some("ops"));
    let proxy_token = pki.dir.write("proxy-token", "proxy-token");
    let url = upstream.url();
    let mut args = vec![
        "--auth",
        "x509",
        "--client-ca",
        &pki.ca,
        "--upstream",
        &url,
        "--upstream-token-file",
        &proxy_token,
    ];
    let server_args = pki.server_args();
    args.extend(server_args.iter().map(String::as_str));
    let proxy = Proxy::start(&args);
    let Some(kubectl) = Kubectl::for_server("x509_auth", &proxy.https_url()) else {
        return;
    };

    let carol = tls_flags(
        &pki,
        &[
            &format!("--client-certificate={cert}"),
            &format!("--client-key={key}"),
        ],
    );
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &carol,
        &["get", "pod", "demo", "-o", "name"],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "pod/demo\n".into()),
        "{out}"
    );
    let out = run(
        &kubectl,
        Transport::Spdy,
        &carol,
        &["exec", "demo", "--", "echo", "hi"],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "hi\n".into()),
        "{out}"
    );
    let requests = upstream.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_impersonated(request, "carol", &["ops"], None);
    }

    // A certificate from another CA: refused, nothing forwarded.
    let stranger = Pki::new("x509-stranger");
    let (bad_cert, bad_key) = stranger.client("mallory", Some("system:masters"));
    let before = upstream.requests().len();
    let mallory = tls_flags(
        &pki,
        &[
            &format!("--client-certificate={bad_cert}"),
            &format!("--client-key={bad_key}"),
        ],
    );
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &mallory,
        &["get", "pod", "demo"],
    )
    .await;
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(
        upstream.requests().len(),
        before,
        "nothing reached the upstream: {out}"
    );

    proxy
        .wait_log(&["connection failed", "UnknownIssuer"])
        .await;

    // No certificate at all: 401 (kubectl then asks for a username).
    let out = run(
        &kubectl,
        Transport::WebSocket,
        &tls_flags(&pki, &[]),
        &["get", "pod", "demo"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout_str().contains("Username"),
        "kubectl saw a 401: {out}"
    );
    assert_eq!(upstream.requests().len(), before);
    proxy.wait_log(&["request", "status=401", "user=-"]).await;
}

#[test]
fn bad_auth_configurations_are_refused_at_startup() {
    let dir = Scratch::create("bad-auth");
    let tokens = dir.write("tokens.csv", "t1,alice,1\nt2,\"bob\n");
    let err = Proxy::start_error(&[
        "--upstream",
        "http://127.0.0.1:1",
        "--auth",
        "token",
        "--token-auth-file",
        &tokens,
    ]);
    assert!(err.contains("line 2"), "{err}");
    let err = Proxy::start_error(&["--upstream", "http://127.0.0.1:1", "--auth", "token"]);
    assert!(err.contains("--token-auth-file"), "{err}");
    let err = Proxy::start_error(&[
        "--upstream",
        "http://127.0.0.1:1",
        "--auth",
        "x509",
        "--client-ca",
        &tokens,
    ]);
    assert!(err.contains("TLS"), "{err}");
}
