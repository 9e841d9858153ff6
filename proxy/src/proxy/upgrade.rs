//! Upgrade requests (`Connection: Upgrade`): exec, attach, port-forward and
//! any other.
//!
//! The request goes upstream over HTTP/1.1 (hyper's client with
//! `hyper::upgrade::on`); the upstream's response head is relayed to the
//! client whatever it is (kubectl falls back from WebSocket to SPDY on a
//! non-101). On `101 Switching Protocols` both upgraded byte streams are
//! handed to an [`UpgradeHandler`].
//!
//! # The recording hook point: [`UpgradeHandler`]
//!
//! Exec and attach upgrades go to the proxy's session handler; port-forward
//! and every other upgrade always go to [`RawRelay`]. A handler acts in two
//! steps, so that a fail-closed refusal happens before anything runs in the
//! container:
//!
//! 1. [`UpgradeHandler::admit`] sees the request ([`UpgradeRequestInfo`]:
//!    the client's head, the head sent upstream, the core's parse, the
//!    caller) **before** it goes upstream, and either refuses it (a
//!    [`Refusal`], answered as an HTTP `Status` response, nothing sent
//!    upstream) or returns an [`UpgradeSession`] — e.g. after connecting to
//!    a recorder.
//! 2. [`UpgradeSession::run`] gets the upgraded connection
//!    ([`UpgradedConnection`]: client and upstream byte streams, the
//!    upstream's 101 head, a shutdown signal) once both sides switched
//!    protocols, or [`UpgradeSession::not_upgraded`] if the upstream did not
//!    switch.
//!
//! # Raw heads
//!
//! hyper hands over parsed heads; the core's `Session` parses heads from the
//! byte stream. [`RequestHead::to_bytes`] and [`ResponseHead::to_bytes`]
//! serialise them back: request line (method, the request target exactly as
//! received, version) or status line (version, code, and the upstream's
//! reason phrase when it was not the canonical one — hyper keeps it as
//! `hyper::ext::ReasonPhrase`), then each header line, then the blank line.
//! Header values are byte-exact. Header names come out lowercase (hyper
//! lowercases them; HTTP names are case-insensitive and httparse-based
//! parsers treat them so), in the order of each name's first appearance,
//! with repeated names grouped at that position and their values in order —
//! for heads without interleaved repeats (kubectl's) this is the order sent.
//! Feed `client_head.to_bytes()` as the first client bytes and
//! `response_head.to_bytes()` as the first upstream bytes; the streams then
//! continue with [`UpgradedConnection::client`] and
//! [`UpgradedConnection::upstream`] (bytes hyper read past the heads are
//! inside those streams). The client head holds the caller's credentials
//! (`Authorization`, a bearer subprotocol): never log or store it as is.

use super::auth::Caller;
use super::forward;
use super::status::Refusal;
use super::{Body, ConnInfo, Ctx};
use crate::net::{until_set, Counted};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use kubecast_core::handshake::{self, HandshakeError, Resource, UpgradeRequest};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request head, re-serialisable (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as received (origin-form: path and query).
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
}

impl RequestHead {
    /// The head of `req` as the client sent it.
    pub fn of<B>(req: &Request<B>) -> RequestHead {
        RequestHead {
            method: req.method().clone(),
            target: req.uri().to_string(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    /// `METHOD TARGET HTTP/1.1\r\n`, the header lines, `\r\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.push(b' ');
        out.extend_from_slice(version_str(self.version).as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers(&mut out, &self.headers);
        out
    }
}

/// A response head, re-serialisable (see the module docs).
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub version: Version,
    pub status: StatusCode,
    /// The reason phrase when it was not the canonical one for `status`.
    pub reason: Option<Vec<u8>>,
    pub headers: HeaderMap,
}

impl ResponseHead {
    /// The head of `response` as the upstream sent it.
    pub fn of<B>(response: &Response<B>) -> ResponseHead {
        ResponseHead {
            version: response.version(),
            status: response.status(),
            reason: response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| r.as_bytes().to_vec()),
            headers: response.headers().clone(),
        }
    }

    /// `HTTP/1.1 101 Switching Protocols\r\n`, the header lines, `\r\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(version_str(self.version).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        match &self.reason {
            Some(reason) => out.extend_from_slice(reason),
            None => out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        write_headers(&mut out, &self.headers);
        out
    }
}

fn version_str(version: Version) -> &'static str {
    if version == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the proxy knows about an upgrade request before it goes upstream.
#[derive(Debug, Clone)]
pub struct UpgradeRequestInfo {
    /// The head as the client sent it (with its credentials).
    pub client_head: RequestHead,
    /// The head as it goes upstream (impersonation headers and the proxy's
    /// token in token/x509 mode; origin-form target with any server prefix),
    /// before the session handler narrows the protocol offer
    /// ([`UpgradeSession::upstream_offers`]).
    pub upstream_head: RequestHead,
    /// `kubecast_core::handshake::parse_request` of the client head.
    pub parsed: Result<UpgradeRequest, HandshakeError>,
    /// Exec, attach, port-forward or other: the core's verdict, or, when
    /// the head does not parse, the path's.
    pub resource: Resource,
    pub caller: Caller,
    pub peer: SocketAddr,
    /// The request's audit; its `ResponseComplete` goes out when the
    /// session (which holds this) ends.
    pub audit: Option<Arc<super::audit::Tracker>>,
}

/// Turns true when the shutdown grace period is over: end the session now.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves when sessions must end.
    pub async fn wait(&mut self) {
        until_set(&mut self.0).await
    }
}

/// An upgraded connection, both sides switched.
#[derive(Debug)]
pub struct UpgradedConnection {
    pub info: Arc<UpgradeRequestInfo>,
    /// The upstream's 101 as received.
    pub response_head: ResponseHead,
    /// Bytes from and to the client.
    pub client: TokioIo<Upgraded>,
    /// Bytes from and to the upstream.
    pub upstream: TokioIo<Upgraded>,
    pub shutdown: Shutdown,
}

/// Decides about upgrade requests and runs the upgraded sessions (the
/// recording hook point; see the module docs).
pub trait UpgradeHandler: fmt::Debug + Send + Sync + 'static {
    /// Called before the request goes upstream: refuse it, or return the
    /// session that will run once both sides have switched protocols.
    fn admit<'a>(
        &'a self,
        info: &'a UpgradeRequestInfo,
    ) -> BoxFuture<'a, Result<Box<dyn UpgradeSession>, Refusal>>;
}

/// One admitted upgrade.
pub trait UpgradeSession: Send + 'static {
    /// Runs the upgraded connection to its end.
    fn run(self: Box<Self>, connection: UpgradedConnection) -> BoxFuture<'static, ()>;

    /// The upstream answered `status` instead of switching protocols (or
    /// could not be reached); the session never started.
    fn not_upgraded(self: Box<Self>, status: StatusCode) {
        let _ = status;
    }

    /// Whether this session is recorded (for the metrics).
    fn recorded(&self) -> bool {
        false
    }

    /// The protocol versions to offer upstream instead of the client's
    /// whole offer (a subset of it, in its order): the ones the session can
    /// decode ([`super::offers`]). `None`: the client's offer as sent.
    fn upstream_offers(&self) -> Option<&[String]> {
        None
    }
}

/// Relays raw bytes both ways (`tokio::io::copy_bidirectional`), nothing
/// decoded or recorded: port-forward, other upgrades, and exec/attach the
/// rules do not record.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRelay;

impl UpgradeHandler for RawRelay {
    fn admit<'a>(
        &'a self,
        _info: &'a UpgradeRequestInfo,
    ) -> BoxFuture<'a, Result<Box<dyn UpgradeSession>, Refusal>> {
        Box::pin(async { Ok(Box::new(RawRelay) as Box<dyn UpgradeSession>) })
    }
}

impl UpgradeSession for RawRelay {
    fn run(self: Box<Self>, mut conn: UpgradedConnection) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let started = Instant::now();
            let (outcome, up, down) = tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut conn.client, &mut conn.upstream) => match copied {
                    Ok((up, down)) => ("closed".to_string(), up, down),
                    Err(e) => (format!("broken: {e}"), 0, 0),
                },
                _ = conn.shutdown.wait() => ("cut at shutdown".to_string(), 0, 0),
            };
            let info = &conn.info;
            let parsed = info.parsed.as_ref().ok();
            tracing::info!(
                resource = ?info.resource,
                method = %info.client_head.method,
                path = info.upstream_head.target.split('?').next().unwrap_or(""),
                namespace = parsed.and_then(|r| r.namespace.as_deref()).unwrap_or("-"),
                pod = parsed.and_then(|r| r.pod.as_deref()).unwrap_or("-"),
                protocol = conn
                    .response_head
                    .headers
                    .get(header::UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-"),
                user = %info.caller,
                peer = %info.peer,
                duration = ?started.elapsed(),
                bytes_up = up,
                bytes_down = down,
                outcome = %outcome,
                "upgraded session ended (raw relay, not recorded)"
            );
        })
    }
}

/// `Connection: Upgrade` with an `Upgrade` header, over HTTP/1.x.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    let http1 = req.version() == Version::HTTP_11 || req.version() == Version::HTTP_10;
    http1
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The resource a path names, decoded as the API server decodes it: used
/// when the core cannot parse the head, so that an exec/attach the core
/// does not understand still goes to the session handler (which can refuse
/// it) rather than to the raw relay.
pub(super) fn resource_of_path(target: &str) -> Resource {
    let path = target.split('?').next().unwrap_or("");
    let decoded = percent_decode(path);
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "pods", _, "exec"] => Resource::Exec,
        [.., "pods", _, "attach"] => Resource::Attach,
        [.., "pods", _, "portforward"] => Resource::PortForward,
        _ => Resource::Other,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Proxies one upgrade request.
pub(crate) async fn upgrade(
    ctx: Arc<Ctx>,
    conn: &ConnInfo,
    caller: Caller,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let client_head = RequestHead::of(&req);
    let parsed = match handshake::parse_request(&client_head.to_bytes()) {
        Ok(Some(parsed)) => Ok(parsed.value),
        Ok(None) => Err(HandshakeError::Malformed("incomplete head".into())),
        Err(e) => Err(e),
    };
    let path_resource = resource_of_path(&client_head.target);
    let resource = match &parsed {
        Ok(request) => request.resource,
        Err(_) => path_resource,
    };
    let recorded = |r: Resource| matches!(r, Resource::Exec | Resource::Attach);
    let handler = if recorded(resource) || recorded(path_resource) {
        ctx.sessions.clone()
    } else {
        Arc::new(RawRelay) as Arc<dyn UpgradeHandler>
    };

    let upgrade_value = req.headers().get(header::UPGRADE).cloned();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    if let Err(refusal) = forward::prepare(&ctx, conn, &caller, &mut parts, upgrade_value) {
        return refusal.into_response();
    }
    let upstream_head = RequestHead {
        method: parts.method.clone(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        version: Version::HTTP_11,
        headers: parts.headers.clone(),
    };
    let info = Arc::new(UpgradeRequestInfo {
        client_head,
        upstream_head,
        parsed,
        resource,
        caller,
        peer: conn.addr,
        audit: parts.extensions.remove::<Arc<super::audit::Tracker>>(),
    });
    let session = match handler.admit(&info).await {
        Ok(session) => session,
        Err(refusal) => return refusal.into_response(),
    };
    if let (Some(keep), Ok(request)) = (session.upstream_offers(), &info.parsed) {
        super::offers::narrow(&mut parts.headers, request.protocol, keep);
    }

    let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    let mut response = match forward::send(
        &ctx.upstream.upgrade_client,
        req,
        ctx.header_timeout,
        &ctx.upstream.describe,
    )
    .await
    {
        Ok(response) => response,
        Err(refusal) => {
            session.not_upgraded(refusal.code);
            return refusal.into_response();
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        session.not_upgraded(response.status());
        return forward::client_response(response);
    }

    let response_head = ResponseHead::of(&response);
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let mut to_client = Response::new(Empty::new().map_err(|e| match e {}).boxed());
    *to_client.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *to_client.headers_mut() = response.headers().clone();
    if let Some(reason) = response.extensions().get::<hyper::ext::ReasonPhrase>() {
        to_client.extensions_mut().insert(reason.clone());
    }

    let shutdown = Shutdown(ctx.abort.clone());
    let header_timeout = ctx.header_timeout;
    tokio::spawn(async move {
        let _active = Counted::new(&ctx.active_sessions);
        let switched = tokio::time::timeout(header_timeout, async {
            tokio::try_join!(client_upgrade, upstream_upgrade)
        })
        .await;
        match switched {
            Ok(Ok((client, upstream))) => {
                session
                    .run(UpgradedConnection {
                        info,
                        response_head,
                        client: TokioIo::new(client),
                        upstream: TokioIo::new(upstream),
                        shutdown,
                    })
                    .await
            }
            Ok(Err(e)) => tracing::warn!(
                user = %info.caller,
                error = %forward::chain(&e),
                "upgrade failed after the 101"
            ),
            Err(_) => tracing::warn!(user = %info.caller, "upgrade did not complete in time"),
        }
    });
    to_client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_serialise_faithfully() {
        let req = Request::post(
            "/api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&stdout=true",
        )
        .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
        .header("X-Stream-Protocol-Version", "v3.channel.k8s.io")
        .header("Connection", "Upgrade")
        .header("Upgrade", "SPDY/3.1")
        .body(())
        .unwrap();
        let head = RequestHead::of(&req);
        assert_eq!(
            String::from_utf8(head.to_bytes()).unwrap(),
            "POST /api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&stdout=true HTTP/1.1\r\n\
             x-stream-protocol-version: v4.channel.k8s.io\r\n\
             x-stream-protocol-version: v3.channel.k8s.io\r\n\
             connection: Upgrade\r\nupgrade: SPDY/3.1\r\n\r\n"
        );
        let parsed = handshake::parse_request(&head.to_bytes()).unwrap().unwrap();
        assert_eq!(parsed.value.resource, Resource::Exec);
        assert_eq!(parsed.value.command, ["echo", "hi"]);

        let response = Response::builder()
            .status(101)
            .header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .body(())
            .unwrap();
        let head = ResponseHead::of(&response);
        assert_eq!(
            String::from_utf8(head.to_bytes()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: SPDY/3.1\r\n\
             x-stream-protocol-version: v4.channel.k8s.io\r\n\r\n"
        );
    }

    #[test]
    fn paths_are_classified_decoded() {
        assert_eq!(
            resource_of_path("/api/v1/namespaces/a/pods/b/%65xec?x"),
            Resource::Exec
        );
        assert_eq!(
            resource_of_path("/api/v1/namespaces/a/pods/b/attach"),
            Resource::Attach
        );
        assert_eq!(
            resource_of_path("/api/v1/namespaces/a/pods/b/portforward"),
            Resource::PortForward
        );
        assert_eq!(
            resource_of_path("/api/v1/namespaces/a/pods/b/proxy/"),
            Resource::Other
        );
    }
}
