//! `--auth noauth`: who the caller is, learned from the API server.
//!
//! In noauth mode the caller's own credentials go upstream and the proxy
//! authenticates nobody, so a recording would not say who ran the session.
//! When the caller sends a bearer token and the proxy has credentials of
//! its own (a token, or a client certificate, from `--upstream-token-file`,
//! the kubeconfig or the in-cluster service account), the proxy asks the
//! API server with an `authentication.k8s.io/v1` TokenReview: `POST
//! /apis/authentication.k8s.io/v1/tokenreviews` with `spec.token`, answered
//! with `status.authenticated` and `status.user` (`username`, `uid`,
//! `groups`). The RBAC for that is the `system:auth-delegator` ClusterRole
//! (`create` on `tokenreviews`).
//!
//! The answer is only information: it never blocks or fails a request. A
//! review has a deadline ([`REVIEW_TIMEOUT`]); a refused review (403: the
//! proxy may not create TokenReviews), an error or a token the API server
//! does not know leaves the user unknown, and the first failure of each
//! kind is logged once as a warning. Answers are cached per token (a
//! bounded map, [`MAX_CACHED`]): [`POSITIVE_TTL`] for a known user,
//! [`NEGATIVE_TTL`] for everything else — the same defaults as
//! kube-apiserver's webhook token authenticator.

use super::auth::{bearer_token, UserInfo};
use super::kubeconfig::UpstreamSettings;
use super::upstream::Upstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one TokenReview may take, connecting included.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a reviewed user is remembered.
pub const POSITIVE_TTL: Duration = Duration::from_secs(120);
/// How long "unknown" is remembered (unauthenticated, refused, failed).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Most tokens remembered at once.
pub const MAX_CACHED: usize = 4096;
/// Largest TokenReview answer read.
const MAX_ANSWER: usize = 64 * 1024;
const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// What a review said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The API server knows the token: this user.
    User(UserInfo),
    /// The API server does not know the token (or it expired).
    Unauthenticated,
    /// The proxy may not create TokenReviews (403).
    Forbidden(String),
    /// Anything else: unreachable, timed out, 5xx, an unreadable answer.
    Failed(String),
}

impl Verdict {
    fn user(&self) -> Option<UserInfo> {
        match self {
            Verdict::User(user) => Some(user.clone()),
            _ => None,
        }
    }

    fn ttl(&self) -> Duration {
        match self {
            Verdict::User(_) => POSITIVE_TTL,
            _ => NEGATIVE_TTL,
        }
    }

    /// For the metric.
    fn label(&self) -> &'static str {
        match self {
            Verdict::User(_) => "authenticated",
            Verdict::Unauthenticated => "unauthenticated",
            Verdict::Forbidden(_) => "forbidden",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// Asks the API server who bearer tokens belong to, with a cache.
#[derive(Debug)]
pub(crate) struct TokenReviewer {
    /// The upstream with the proxy's own credentials.
    upstream: Upstream,
    cache: Mutex<Cache>,
    warned_forbidden: AtomicBool,
    warned_failed: AtomicBool,
}

impl TokenReviewer {
    /// A reviewer when the proxy has credentials of its own for the
    /// upstream; `None` (logged) when it has none or cannot use them.
    pub fn new(settings: &UpstreamSettings, connect_timeout: Duration) -> Option<TokenReviewer> {
        if settings.token.is_none() && settings.client_cert.is_none() {
            tracing::info!(
                "noauth: the proxy has no upstream credentials of its own, so it cannot ask \
                 the API server who callers are (TokenReview); recordings name no user"
            );
            return None;
        }
        match Upstream::new(settings, true, connect_timeout) {
            Ok(upstream) => Some(TokenReviewer {
                upstream,
                cache: Mutex::new(Cache::default()),
                warned_forbidden: AtomicBool::new(false),
                warned_failed: AtomicBool::new(false),
            }),
            Err(e) => {
                tracing::warn!(error = %e,
                    "noauth: the proxy cannot use its upstream credentials for TokenReviews; \
                     recordings name no user");
                None
            }
        }
    }

    /// The user behind the bearer token in `headers`, if it has one and
    /// the API server says whose it is.
    pub async fn user(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let token = bearer_token(headers)?;
        let now = Instant::now();
        if let Some(verdict) = self.lock().get(&token, now) {
            return verdict.user();
        }
        let verdict = self.review(&token).await;
        super::metrics::token_review(verdict.label());
        self.warn_once(&verdict);
        self.lock().insert(token, verdict.clone(), Instant::now());
        verdict.user()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn warn_once(&self, verdict: &Verdict) {
        let (flag, why) = match verdict {
            Verdict::Forbidden(why) => (&self.warned_forbidden, why),
            Verdict::Failed(why) => (&self.warned_failed, why),
            Verdict::User(_) | Verdict::Unauthenticated => return,
        };
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, upstream = %self.upstream.describe,
                "noauth: TokenReview failed, so the caller's user is unknown \
                 (logged once; recordings name no user while this lasts)");
        } else {
            tracing::debug!(error = %why, "TokenReview failed");
        }
    }

    /// One TokenReview, bounded by [`REVIEW_TIMEOUT`].
    async fn review(&self, token: &str) -> Verdict {
        match tokio::time::timeout(REVIEW_TIMEOUT, self.post(token)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::Failed(format!("no answer within {REVIEW_TIMEOUT:?}")),
        }
    }

    async fn post(&self, token: &str) -> Verdict {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        })
        .to_string();
        let request = match self.request(body) {
            Ok(request) => request,
            Err(e) => return Verdict::Failed(e),
        };
        let response = match self.upstream.client.request(request).await {
            Ok(response) => response,
            Err(e) => return Verdict::Failed(super::forward::chain(&e)),
        };
        let status = response.status();
        let answer = match Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => return Verdict::Failed(format!("reading the answer: {e}")),
        };
        judge(status, &answer)
    }

    fn request(&self, body: String) -> Result<Request<super::Body>, String> {
        let uri = self.upstream.uri(Some(&PathAndQuery::from_static(PATH)))?;
        let body = Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(body)
            .map_err(|e| e.to_string())?;
        if let Some(authorization) = self.upstream.authorization()? {
            request.headers_mut().insert(AUTHORIZATION, authorization);
        }
        Ok(request)
    }
}

/// The TokenReview answer as far as it matters here.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    status: AnswerStatus,
}

#[derive(Debug, Default, Deserialize)]
struct AnswerStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: AnswerUser,
}

#[derive(Debug, Default, Deserialize)]
struct AnswerUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// What an answer with `status` and `body` means.
fn judge(status: StatusCode, body: &[u8]) -> Verdict {
    let message = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
    };
    if status == StatusCode::FORBIDDEN {
        return Verdict::Forbidden(format!("403 Forbidden: {}", message()));
    }
    if !status.is_success() {
        return Verdict::Failed(format!("{status}: {}", message()));
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(answer) if answer.status.authenticated && !answer.status.user.username.is_empty() => {
            let user = answer.status.user;
            Verdict::User(UserInfo {
                name: user.username,
                uid: user.uid,
                groups: user.groups,
            })
        }
        Ok(_) => Verdict::Unauthenticated,
        Err(e) => Verdict::Failed(format!("not a TokenReview: {e}")),
    }
}

/// Verdicts by token, each until it expires; at most [`MAX_CACHED`].
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, (Instant, Verdict)>,
}

impl Cache {
    fn get(&mut self, token: &str, now: Instant) -> Option<Verdict> {
        match self.entries.get(token) {
            Some((expires, verdict)) if *expires > now => Some(verdict.clone()),
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, token: String, verdict: Verdict, now: Instant) {
        if self.entries.len() >= MAX_CACHED && !self.entries.contains_key(&token) {
            self.entries.retain(|_, (expires, _)| *expires > now);
            if self.entries.len() >= MAX_CACHED {
                // Still full of live entries: the one closest to expiring goes.
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(token, _)| token.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        let expires = now + verdict.ttl();
        self.entries.insert(token, (expires, verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: "42".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
        }
    }

    #[test]
    fn answers_are_judged_as_the_api_server_writes_them() {
        let known = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",
            "metadata":{"creationTimestamp":null},"spec":{"token":"t"},
            "status":{"authenticated":true,"user":{"username":"alice","uid":"42",
            "groups":["dev","system:authenticated"],"extra":{"x":["y"]}},"audiences":["api"]}}"#;
        assert_eq!(judge(StatusCode::CREATED, known), Verdict::User(alice()));
        let unknown = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",
            "metadata":{"creationTimestamp":null},"spec":{"token":"t"},
            "status":{"user":{},"error":"invalid bearer token"}}"#;
        assert_eq!(
            judge(StatusCode::CREATED, unknown),
            Verdict::Unauthenticated
        );
        let forbidden = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"tokenreviews.authentication.k8s.io is forbidden: User \"p\" cannot create resource","reason":"Forbidden","code":403}"#;
        assert!(matches!(
            judge(StatusCode::FORBIDDEN, forbidden),
            Verdict::Forbidden(m) if m.contains("cannot create resource")
        ));
        assert!(matches!(
            judge(StatusCode::INTERNAL_SERVER_ERROR, b"boom"),
            Verdict::Failed(m) if m.contains("boom")
        ));
        assert!(matches!(
            judge(StatusCode::OK, b"<html>"),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.insert("a".into(), Verdict::User(alice()), t0);
        cache.insert("b".into(), Verdict::Unauthenticated, t0);
        let later = t0 + NEGATIVE_TTL + Duration::from_secs(1);
        assert_eq!(cache.get("a", later), Some(Verdict::User(alice())));
        assert_eq!(
            cache.get("b", later),
            None,
            "negative answers expire sooner"
        );
        assert_eq!(cache.get("a", t0 + POSITIVE_TTL), None);

        let mut cache = Cache::default();
        for i in 0..MAX_CACHED {
            let at = t0 + Duration::from_millis(i as u64);
            cache.insert(format!("t{i}"), Verdict::Unauthenticated, at);
        }
        cache.insert("new".into(), Verdict::User(alice()), t0);
        assert_eq!(cache.entries.len(), MAX_CACHED);
        assert_eq!(cache.get("t0", t0), None, "the soonest to expire made room");
        assert!(cache.get("new", t0).is_some());
    }
}
