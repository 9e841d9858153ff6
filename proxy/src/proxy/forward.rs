//! Ordinary requests: reverse-proxied with streaming bodies both ways
//! (a watch flows chunk by chunk; nothing is buffered), and the header
//! handling both kinds of request share.

use super::auth::{rewrite_headers, Caller};
use super::status::Refusal;
use super::{Body, ConnInfo, Ctx};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, Version};
use std::error::Error as StdError;
use std::time::Duration;

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus the legacy ones):
/// they describe one connection and are never forwarded as such.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes the hop-by-hop headers: the fixed set, `Upgrade`, and every
/// header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Turns a client's request head into the upstream's: the upstream URI,
/// HTTP/1.1 (the client picks h2 when the upstream offers it), no
/// hop-by-hop headers (an upgrade keeps `Connection: Upgrade` and its
/// `Upgrade`), `Host` from the upstream, `X-Forwarded-For`, and in
/// token/x509 mode the caller's identity and the proxy's credentials.
pub(crate) fn prepare(
    ctx: &Ctx,
    conn: &ConnInfo,
    caller: &Caller,
    parts: &mut Parts,
    upgrade: Option<HeaderValue>,
) -> Result<(), Refusal> {
    parts.uri = ctx
        .upstream
        .uri(parts.uri.path_and_query())
        .map_err(|e| Refusal::bad_request(format!("bad request target: {e}")))?;
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    let peer_ip = conn.addr.ip().to_string();
    match caller {
        Caller::Passthrough(_) => {
            // The caller's own credentials go upstream; so may its own
            // X-Forwarded-For, with the peer appended.
            let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {peer_ip}"),
                None => peer_ip,
            };
            if let Ok(value) = HeaderValue::from_str(&forwarded) {
                headers.insert("x-forwarded-for", value);
            }
        }
        Caller::User(user) => {
            rewrite_headers(headers, user)?;
            // The proxy is the trust boundary: what the caller claims about
            // its address does not reach the audit log.
            if let Ok(value) = HeaderValue::from_str(&peer_ip) {
                headers.insert("x-forwarded-for", value);
            }
            let authorization = ctx.upstream.authorization().map_err(|e| {
                tracing::error!(error = %e, "cannot read the upstream token");
                Refusal::internal("the proxy cannot read its upstream credentials")
            })?;
            if let Some(value) = authorization {
                headers.insert(header::AUTHORIZATION, value);
            }
        }
    }
    Ok(())
}

/// Sends a request upstream and waits at most `timeout` for its response
/// head (connecting and the TLS handshake included).
pub(crate) async fn send(
    client: &super::upstream::HttpClient,
    req: Request<Body>,
    timeout: Duration,
    upstream: &str,
) -> Result<Response<Incoming>, Refusal> {
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => {
            let detail = chain(&e);
            tracing::warn!(upstream, error = %detail, "upstream request failed");
            Err(Refusal::bad_gateway(format!(
                "kubecast proxy: the upstream API server {upstream} is unreachable or failed: {detail}"
            )))
        }
        Err(_) => {
            tracing::warn!(upstream, ?timeout, "upstream response head timed out");
            Err(Refusal::gateway_timeout(format!(
                "kubecast proxy: the upstream API server {upstream} did not answer within {timeout:?}"
            )))
        }
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The upstream's response for the client: hop-by-hop headers removed,
/// the body streamed as it arrives.
pub(crate) fn client_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::default();
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

/// Proxies one ordinary request.
pub(crate) async fn forward(
    ctx: &Ctx,
    conn: &ConnInfo,
    caller: &Caller,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    if let Err(refusal) = prepare(ctx, conn, caller, &mut parts, None) {
        return refusal.into_response();
    }
    let req = Request::from_parts(parts, body.map_err(Into::into).boxed());
    match send(
        &ctx.upstream.client,
        req,
        ctx.header_timeout,
        &ctx.upstream.describe,
    )
    .await
    {
        Ok(response) => client_response(response),
        Err(refusal) => refusal.into_response(),
    }
}
