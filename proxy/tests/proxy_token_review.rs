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
    let casts = path_str(&pki.dir.path("casts"));
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
    let lines = cast_lines(&s.pki.dir.path("casts"), 1).await.remove(0);
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
    for lines in cast_lines(&s.pki.dir.path("casts"), 2).await {
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
