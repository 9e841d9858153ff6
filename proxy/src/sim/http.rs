//! The HTTP side: routing, the Pod and discovery documents, TokenReviews,
//! and the exec/attach upgrade negotiation (hyper 1, `hyper::upgrade::on`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubecast_core::handshake::{WsProtocol, BEARER_SUBPROTOCOL_PREFIX};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use super::{
    json as docs, Negotiated, PodSpec, RequestRecord, SessionRecord, State, Subresource,
    TokenReviews,
};

/// Every response body: whole documents, or a watch's event stream.
type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// The WebSocket subprotocols served, in no particular order: the client's
/// order decides (the first offer that is served wins).
pub(crate) const WS_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "base64.channel.k8s.io",
    "channel.k8s.io",
];

/// The remotecommand versions served over SPDY: the kubelet's list (it has
/// no v5 over SPDY).
pub(crate) const SPDY_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// Where TokenReviews are created.
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// Largest request body read (a TokenReview is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// RFC 6455 section 1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The query of an exec/attach request, validated.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    pub(crate) container: String,
    pub(crate) command: Vec<String>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

/// Serves one TCP connection: HTTP/1.1 with upgrades.
pub(crate) async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1".into());
    let service = hyper::service::service_fn(move |req| {
        let (state, local) = (state.clone(), local.clone());
        async move { Ok::<_, Infallible>(route(req, &state, &local).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn route(req: Request<Incoming>, state: &Arc<State>, local: &str) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    let response = if path == TOKEN_REVIEWS {
        token_review(req, state).await
    } else if let (&Method::POST, ["api", "v1", "namespaces", ns, "pods"]) =
        (&method, segments(&path).as_slice())
    {
        create_pod(req, state, ns).await
    } else {
        dispatch(req, state, local)
    };
    state.log_request(RequestRecord {
        method: method.to_string(),
        path,
        query,
        status: response.status().as_u16(),
        headers,
    });
    response
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn dispatch(req: Request<Incoming>, state: &Arc<State>, local: &str) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let get = req.method() == Method::GET;
    match segments(&path).as_slice() {
        ["version"] if get => json_response(StatusCode::OK, &docs::version(&state.config)),
        ["api"] if get => json_response(StatusCode::OK, &docs::api_versions(local)),
        ["apis"] if get => json_response(StatusCode::OK, &docs::api_group_list()),
        ["api", "v1"] if get => json_response(StatusCode::OK, &docs::api_resource_list()),
        ["api", "v1", "namespaces", ns, "pods"] if get => {
            let watching = query
                .split('&')
                .any(|pair| pair == "watch=true" || pair == "watch=1");
            if watching {
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::TRANSFER_ENCODING, "chunked")
                    .body(state.pods.watch(ns, &query).boxed_unsync())
                    .unwrap_or_default()
            } else {
                json_response(StatusCode::OK, &state.pods.list(ns, &query))
            }
        }
        ["api", "v1", "namespaces", ns, "pods", name] if get => match state.pods.get(ns, name) {
            Some(pod) => json_response(StatusCode::OK, &docs::pod(&pod)),
            None => pod_not_found(name),
        },
        ["api", "v1", "namespaces", ns, "pods", name] if req.method() == Method::DELETE => {
            match state.pods.delete(ns, name) {
                Some(pod) => json_response(StatusCode::OK, &pod),
                None => pod_not_found(name),
            }
        }
        ["api", "v1", "namespaces", ns, "pods", name, sub @ ("exec" | "attach")] => {
            if req.method() != Method::GET && req.method() != Method::POST {
                return method_not_allowed();
            }
            let subresource = if *sub == "exec" {
                Subresource::Exec
            } else {
                Subresource::Attach
            };
            let (ns, name) = (ns.to_string(), name.to_string());
            exec_or_attach(req, state, &ns, &name, subresource)
        }
        ["version"]
        | ["api"]
        | ["apis"]
        | ["api", "v1"]
        | ["api", "v1", "namespaces", _, "pods", ..] => method_not_allowed(),
        _ => not_found("the server could not find the requested resource", None),
    }
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`, as the API server's
/// tokenreview storage answers it: authorization first (403 when
/// [`TokenReviews::Forbidden`]), then the body (a TokenReview with a
/// `spec.token`, else 400), then `201 Created` with the review and its
/// status.
async fn token_review(req: Request<Incoming>, state: &State) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed();
    }
    let table = match state.token_reviews() {
        TokenReviews::Table(table) => table,
        TokenReviews::Forbidden { caller } => {
            let message = format!(
                "tokenreviews.authentication.k8s.io is forbidden: User \"{caller}\" cannot create \
                 resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
            );
            let details = json!({"group": "authentication.k8s.io", "kind": "tokenreviews"});
            return json_response(
                StatusCode::FORBIDDEN,
                &docs::status_failure(403, "Forbidden", &message, Some(details)),
            );
        }
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return bad_request("the request body could not be read"),
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => return bad_request(&format!("couldn't get version/kind; json parse error: {e}")),
    };
    if review["kind"] != "TokenReview" || review["apiVersion"] != "authentication.k8s.io/v1" {
        return bad_request("not a TokenReview");
    }
    let token = review["spec"]["token"].as_str().unwrap_or("");
    if token.is_empty() {
        return bad_request("token is required for TokenReview in authentication");
    }
    let user = table.iter().find(|(t, _)| t == token).map(|(_, u)| u);
    json_response(StatusCode::CREATED, &docs::token_review(token, user))
}

/// `POST /api/v1/namespaces/{ns}/pods` (what `kubectl run` sends): `201
/// Created` with the pod, running at once.
async fn create_pod(req: Request<Incoming>, state: &State, ns: &str) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return bad_request("the request body could not be read"),
    };
    let pod: Value = match serde_json::from_slice(&body) {
        Ok(pod) => pod,
        Err(e) => return bad_request(&format!("couldn't get version/kind; json parse error: {e}")),
    };
    match state.pods.create(ns, &pod) {
        Ok(created) => json_response(StatusCode::CREATED, &created),
        Err((code, message)) => {
            let reason = if code == 409 {
                "AlreadyExists"
            } else {
                "Invalid"
            };
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            json_response(status, &docs::status_failure(code, reason, &message, None))
        }
    }
}

/// The API server's 404 for a missing pod.
fn pod_not_found(name: &str) -> Response<Body> {
    not_found(
        &format!("pods \"{name}\" not found"),
        Some(json!({"name": name, "kind": "pods"})),
    )
}

fn exec_or_attach(
    mut req: Request<Incoming>,
    state: &Arc<State>,
    ns: &str,
    name: &str,
    subresource: Subresource,
) -> Response<Body> {
    let Some(pod) = state.pods.get(ns, name) else {
        return pod_not_found(name);
    };
    let exec = match validate(&pod, req.uri().query().unwrap_or(""), subresource) {
        Ok(exec) => exec,
        Err(message) => return bad_request(&message),
    };
    let headers = req.headers();
    let upgrade = header_tokens(headers, header::UPGRADE);
    let connection_upgrade = header_tokens(headers, header::CONNECTION)
        .iter()
        .any(|t| t.eq_ignore_ascii_case("upgrade"));
    let wants = |p: &str| upgrade.iter().any(|t| t.eq_ignore_ascii_case(p));
    if !connection_upgrade || !(wants("websocket") || wants("SPDY/3.1")) {
        return bad_request("Upgrade request required");
    }
    let record = |offered: Vec<String>, negotiated: Negotiated| SessionRecord {
        subresource,
        namespace: ns.to_string(),
        pod: name.to_string(),
        container: exec.container.clone(),
        command: exec.command.clone(),
        stdin: exec.stdin,
        stdout: exec.stdout,
        stderr: exec.stderr,
        tty: exec.tty,
        offered,
        negotiated,
        streams: Vec::new(),
        stdin_bytes: Vec::new(),
        stdin_closed: false,
        resizes: Vec::new(),
        pings: 0,
        exit: None,
        finished: false,
    };

    if wants("websocket") {
        if req.method() != Method::GET {
            return bad_request("WebSocket upgrades must use GET");
        }
        let Some(key) = headers
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
        else {
            return bad_request("missing Sec-WebSocket-Key");
        };
        if headers
            .get("sec-websocket-version")
            .and_then(|v| v.to_str().ok())
            != Some("13")
        {
            let mut response = bad_request("unsupported Sec-WebSocket-Version");
            response
                .headers_mut()
                .insert("sec-websocket-version", HeaderValue::from_static("13"));
            return response;
        }
        let offered: Vec<String> = header_tokens(headers, "sec-websocket-protocol")
            .into_iter()
            .filter(|p| !p.starts_with(BEARER_SUBPROTOCOL_PREFIX))
            .collect();
        // No offer at all is the kubelet's "" protocol (channel.k8s.io).
        let chosen = if offered.is_empty() {
            Some(String::new())
        } else {
            offered
                .iter()
                .find(|o| WS_PROTOCOLS.contains(&o.as_str()))
                .cloned()
        };
        let Some(chosen) = chosen else {
            return bad_request(&format!(
                "requested protocol(s) are not supported: {offered:?}; supports {WS_PROTOCOLS:?}"
            ));
        };
        let Some(protocol) = WsProtocol::parse(&chosen) else {
            return bad_request("unsupported protocol");
        };
        let accept = websocket_accept(key);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let session = state.new_session(record(offered, Negotiated::WebSocket(chosen.clone())));
        state.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    super::ws::serve(TokioIo::new(upgraded), protocol, exec, session).await
                }
                Err(_) => session.finish(super::SessionExit::ClientGone),
            }
        });
        let mut builder = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header("sec-websocket-accept", accept);
        if !chosen.is_empty() {
            builder = builder.header("sec-websocket-protocol", chosen);
        }
        return builder.body(Body::default()).unwrap_or_default();
    }

    // SPDY/3.1.
    if req.method() != Method::POST {
        return bad_request("SPDY upgrades must use POST");
    }
    let offered = header_tokens(headers, "x-stream-protocol-version");
    let chosen = if offered.is_empty() {
        // httpstream.Handshake: no offer is the legacy protocol.
        Some(String::new())
    } else {
        offered
            .iter()
            .find(|o| SPDY_PROTOCOLS.contains(&o.as_str()))
            .cloned()
    };
    let Some(chosen) = chosen else {
        let message = format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {SPDY_PROTOCOLS:?}"
        );
        let mut response = text_response(StatusCode::FORBIDDEN, &message);
        for p in SPDY_PROTOCOLS {
            response.headers_mut().append(
                "x-accepted-stream-protocol-versions",
                HeaderValue::from_static(p),
            );
        }
        return response;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let session = state.new_session(record(offered, Negotiated::Spdy(chosen.clone())));
    let version = if chosen.is_empty() {
        "channel.k8s.io".to_string()
    } else {
        chosen.clone()
    };
    state.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                super::spdy::serve(TokioIo::new(upgraded), version, exec, session).await
            }
            Err(_) => session.finish(super::SessionExit::ClientGone),
        }
    });
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    if !chosen.is_empty() {
        builder = builder.header("x-stream-protocol-version", chosen);
    }
    builder.body(Body::default()).unwrap_or_default()
}

/// Checks the query the way the API server does for `PodExecOptions` /
/// `PodAttachOptions`.
fn validate(pod: &PodSpec, query: &str, subresource: Subresource) -> Result<ExecRequest, String> {
    let mut container = None;
    let mut command = Vec::new();
    let (mut stdin, mut stdout, mut stderr, mut tty) = (false, false, false, false);
    for (key, value) in parse_query(query) {
        let flag = matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True");
        match key.as_str() {
            "container" => container = Some(value),
            "command" => command.push(value),
            "stdin" => stdin = flag,
            "stdout" => stdout = flag,
            "stderr" => stderr = flag,
            "tty" => tty = flag,
            _ => {}
        }
    }
    let container = match container {
        Some(c) => c,
        None if pod.containers.len() == 1 => pod.containers[0].name.clone(),
        None => {
            let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                pod.name,
                names.join(" ")
            ));
        }
    };
    let Some(spec) = pod.containers.iter().find(|c| c.name == container) else {
        return Err(format!(
            "container {container} is not valid for pod {}",
            pod.name
        ));
    };
    if pod.phase != "Running" {
        return Err(format!(
            "pod {} is not running (phase {})",
            pod.name, pod.phase
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err("you must specify at least one of stdin, stdout, stderr".into());
    }
    let command = match subresource {
        Subresource::Exec if command.is_empty() => {
            return Err("you must specify at least 1 command".into())
        }
        Subresource::Exec => command,
        Subresource::Attach => spec.main.clone(),
    };
    Ok(ExecRequest {
        container,
        command,
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// `key=value&…` with `+` and `%XX` decoded, as Go's `url.ParseQuery`.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every comma-separated token of every `name` header line, trimmed.
fn header_tokens(headers: &HeaderMap, name: impl header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 section 4.2.2).
pub(crate) fn websocket_accept(key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.trim().as_bytes())
        .chain_update(WS_GUID.as_bytes())
        .finalize();
    let mut out = Vec::new();
    kubecast_core::ws::base64::encode_into(&digest, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("cache-control", "no-cache, private")
        .body(full(value.to_string()))
        .unwrap_or_default()
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("{text}\n")))
        .unwrap_or_default()
}

fn not_found(message: &str, details: Option<Value>) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &docs::status_failure(404, "NotFound", message, details),
    )
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &docs::status_failure(400, "BadRequest", message, None),
    )
}

fn method_not_allowed() -> Response<Body> {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &docs::status_failure(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_accept_matches_rfc_6455_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn queries_decode_like_go() {
        assert_eq!(
            parse_query("command=sh&command=-c&command=echo+a%3Bb&stdin=true&x=%zz"),
            vec![
                ("command".to_string(), "sh".to_string()),
                ("command".to_string(), "-c".to_string()),
                ("command".to_string(), "echo a;b".to_string()),
                ("stdin".to_string(), "true".to_string()),
                ("x".to_string(), "%zz".to_string()),
            ]
        );
    }
}
