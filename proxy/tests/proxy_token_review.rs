//! `--auth noauth` with credentials of the proxy's own: the caller's
//! bearer token is reviewed (`authentication.k8s.io/v1` TokenReview, with
//! the proxy's token) so the recording names the user; a refused review
//! leaves the user unknown, is logged once, and never fails a session.
//! Real kubectl over TLS (it sends bearer tokens to https servers only).
//! Without kubectl the tests skip loudly, or fail when `CI` is set.

mod proxy_support;

use std::path::Path;

use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::{ReviewedUser, TestUpstream, TokenReviews};
use proxy_support::*;

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The casts in `dir`, each as its lines, once `n` are there.
async fn cast_lines(dir: &Path, n: usize) -> Vec<Vec<String>> {
    wait_for_casts(dir, n)
        .await
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_string).collect()
        })
        .collect()
}

fn cast_header(lines: &[String]) -> serde_json::Value {
    serde_json::from_str(&lines[0]).expect("a JSON cast header")
}

/// A TLS proxy in noauth mode with its own upstream token, recording into
/// a directory; kubectl for it (`None`: skip).
struct Setup {
    upstream: TestUpstream,
    proxy: Proxy,
    kubectl: Kubectl,
    pki: Pki,
}

async fn setup(test: &str, reviews: TokenReviews) -> Option<Setup> {
    let upstream = TestUpstream::start().await;
    upstream.set_token_reviews(reviews);
    let pki = Pki::new(test);
    let proxy_token = pki.dir.write("proxy-token", "proxy-token\n");
    let casts = path_str(&pki.dir.join("casts"));
    let url = upstream.url();
    let mut args = vec![
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--upstream-token-file",
        &proxy_token,
        "--recordings-dir",
        &casts,
    ];
    let server_args = pki.server_args();
    args.extend(server_args.iter().map(String::as_str));
    let proxy = Proxy::start(&args);
    let kubectl = Kubectl::for_server(test, &proxy.https_url())?;
    Some(Setup {
        upstream,
        proxy,
        kubectl,
        pki,
    })
}

impl Setup {
    async fn echo(&self, transport: Transport, token: &str) {
        let ca = format!("--certificate-authority={}", self.pki.ca);
        let token = format!("--token={token}");
        let args = [&ca, &token, "exec", "demo", "--", "echo", "hi"];
        let out = self.kubectl.run(transport, &args, None).await;
        assert_eq!(
            (out.code, out.stdout_str()),
            (Some(0), "hi\n".into()),
            "{out}"
        );
    }

    fn reviews(&self) -> Vec<kubecast_tests::upstream::RequestRecord> {
        self.upstream
            .requests()
            .into_iter()
            .filter(|r| r.path == REVIEWS)
            .collect()
    }
}

async fn the_cast_names_the_reviewed_user(transport: Transport) {
    let alice = ReviewedUser::new("alice", "uid-42", &["dev", "system:authenticated"]);
    let table = TokenReviews::Table(vec![("alice-token".into(), alice)]);
    let Some(s) = setup("review-user", table).await else {
        return;
    };
    s.echo(transport, "alice-token").await;
    let lines = cast_lines(&s.pki.dir.join("casts"), 1).await.remove(0);
    let k8s = &cast_header(&lines)["kubernetes"];
    assert_eq!(k8s["user"], "alice", "{k8s}");
    assert_eq!(k8s["uid"], "uid-42", "{k8s}");
    assert_eq!(
        k8s["groups"],
        serde_json::json!(["dev", "system:authenticated"]),
        "{k8s}"
    );
    assert!(!lines.iter().any(|l| l.contains("alice-token")));

    // kubectl sent several requests (the pod, then the exec): one review,
    // with the proxy's own token; the caller's requests went upstream with
    // the caller's token, nothing impersonated.
    let reviews = s.reviews();
    assert_eq!(reviews.len(), 1, "answers are cached: {reviews:#?}");
    assert_eq!(reviews[0].method, "POST");
    assert_eq!(reviews[0].status, 201);
    assert_eq!(
        header_values(&reviews[0].headers, "authorization"),
        ["Bearer proxy-token"]
    );
    let requests = s.upstream.requests();
    let exec = requests.iter().find(|r| r.path.ends_with("/exec")).unwrap();
    assert_eq!(
        header_values(&exec.headers, "authorization"),
        ["Bearer alice-token"]
    );
    assert!(!exec
        .headers
        .iter()
        .any(|(n, _)| n.starts_with("impersonate-")));
    s.proxy
        .wait_log(&["session ended (recorded)", "user=alice"])
        .await;
}

async fn a_refused_review_leaves_the_user_unknown(transport: Transport) {
    let refused = TokenReviews::Forbidden {
        caller: "system:serviceaccount:kubecast:kubecast-proxy".into(),
    };
    let Some(s) = setup("review-refused", refused).await else {
        return;
    };
    // Two callers, two reviews, both refused: the sessions run, the casts
    // name no user, and the refusal is logged once.
    s.echo(transport, "alice-token").await;
    s.echo(transport, "bob-token").await;
    for lines in cast_lines(&s.pki.dir.join("casts"), 2).await {
        let k8s = &cast_header(&lines)["kubernetes"];
        assert!(k8s.get("user").is_none(), "no user: {k8s}");
    }
    assert_eq!(s.reviews().len(), 2);
    assert!(s.reviews().iter().all(|r| r.status == 403));
    s.proxy
        .wait_log(&["session ended (recorded)", "user=-"])
        .await;
    let log = s.proxy.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("TokenReview failed"))
        .count();
    assert_eq!(warnings, 1, "logged once:\n{log}");
    assert!(
        log.contains(r#"cannot create resource "tokenreviews""#),
        "the API server's reason is in the log:\n{log}"
    );
}

kubecast_tests::over_both_transports!(
    the_cast_names_the_reviewed_user,
    a_refused_review_leaves_the_user_unknown,
);

/// The simulated API server answers TokenReviews in the real API's shape:
/// `201 Created` with the review posted (its `spec.token` included) and
/// its status; `400` for a review without a token.
/// POSTs `body` to the TokenReview endpoint at `addr`; the response head
/// and its JSON body.
async fn post_review(addr: std::net::SocketAddr, body: String) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {REVIEWS} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = find(&raw, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let json = serde_json::from_slice(&raw[split + 4..]).unwrap();
    (head, json)
}

#[tokio::test]
async fn the_simulated_api_server_answers_token_reviews_faithfully() {
    let upstream = TestUpstream::start().await;
    let bob = ReviewedUser::new("bob", "7", &["system:authenticated"]);
    upstream.set_token_reviews(TokenReviews::Table(vec![("bob-token".into(), bob)]));
    let review = |token: &str| {
        serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        })
        .to_string()
    };

    let (head, known) = post_review(upstream.addr(), review("bob-token")).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert_eq!(known["kind"], "TokenReview");
    assert_eq!(known["spec"]["token"], "bob-token");
    assert_eq!(known["status"]["authenticated"], true);
    assert_eq!(known["status"]["user"]["username"], "bob");
    assert_eq!(known["status"]["user"]["uid"], "7");

    let (head, unknown) = post_review(upstream.addr(), review("stranger")).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert_eq!(unknown["status"], serde_json::json!({"user": {}}));

    let (head, status) = post_review(upstream.addr(), review("")).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        status["message"],
        "token is required for TokenReview in authentication"
    );
}
