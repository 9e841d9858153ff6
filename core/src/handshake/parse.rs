//! Parsing the request and response heads with `httparse`.

use super::*;

/// Parses an upgrade request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (feed more bytes and call
/// again), and the request with the head's length once it is complete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Parsed<UpgradeRequest>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(head_len) = complete_head(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let headers = Headers(req.headers);

    if !headers.has_token("connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade("no `Connection: Upgrade`"));
    }
    let upgrade = headers
        .get("upgrade")
        .ok_or(HandshakeError::NotUpgrade("no `Upgrade` header"))?;
    let protocol = if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        StreamProtocol::Spdy
    } else if upgrade.eq_ignore_ascii_case("websocket") {
        StreamProtocol::WebSocket
    } else {
        return Err(HandshakeError::UnknownProtocol(upgrade.to_string()));
    };

    let offer_header = match protocol {
        StreamProtocol::Spdy => "x-stream-protocol-version",
        StreamProtocol::WebSocket => {
            if method != "GET" {
                return Err(HandshakeError::NotUpgrade(
                    "a WebSocket upgrade must be a GET",
                ));
            }
            if headers.get("sec-websocket-key").is_none() {
                return Err(HandshakeError::NotUpgrade("no `Sec-WebSocket-Key`"));
            }
            "sec-websocket-protocol"
        }
    };
    let mut offered = Vec::new();
    let mut bearer_subprotocol = false;
    for offer in headers.comma_list(offer_header) {
        if offer.starts_with(BEARER_SUBPROTOCOL_PREFIX) {
            bearer_subprotocol = true;
        } else {
            offered.push(offer.to_string());
        }
    }

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target.as_str(), ""),
    };
    let (resource, namespace, pod) = classify_path(path)?;
    let mut request = UpgradeRequest {
        method,
        target: target.clone(),
        resource,
        namespace,
        pod,
        container: None,
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
        protocol,
        offered,
        bearer_subprotocol,
        kubectl_command: headers.get("kubectl-command").map(str::to_string),
        kubectl_session: headers.get("kubectl-session").map(str::to_string),
        user_agent: headers.get("user-agent").map(str::to_string),
    };
    apply_query(&mut request, query)?;
    Ok(Some(Parsed {
        value: request,
        head_len,
    }))
}

/// Parses the upstream's answer to `request` from the start of `buf`.
///
/// `Ok(None)` while incomplete. A non-101 status is a valid answer
/// ([`UpgradeResponse::Refused`]); a 101 that does not match what the client
/// asked for is an error.
pub fn parse_response(
    buf: &[u8],
    request: &UpgradeRequest,
) -> Result<Option<Parsed<UpgradeResponse>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(head_len) = complete_head(resp.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let status = resp.code.unwrap_or_default();
    if status != 101 {
        return Ok(Some(Parsed {
            value: UpgradeResponse::Refused { status },
            head_len,
        }));
    }
    let headers = Headers(resp.headers);
    let upgrade = headers.get("upgrade").unwrap_or_default();
    let expected = match request.protocol {
        StreamProtocol::Spdy => "SPDY/3.1",
        StreamProtocol::WebSocket => "websocket",
    };
    if !upgrade.eq_ignore_ascii_case(expected) {
        return Err(HandshakeError::ResponseProtocolMismatch);
    }
    let chosen = match request.protocol {
        StreamProtocol::Spdy => headers.get("x-stream-protocol-version"),
        StreamProtocol::WebSocket => headers.get("sec-websocket-protocol"),
    }
    .unwrap_or_default();
    if !chosen.is_empty() && !request.offered.iter().any(|o| o == chosen) {
        return Err(HandshakeError::NotOffered(chosen.to_string()));
    }
    let negotiated = match request.protocol {
        // client-go treats a missing version header as the original protocol.
        StreamProtocol::Spdy if chosen.is_empty() => Negotiated::Spdy(RemoteCommandVersion::V1),
        StreamProtocol::Spdy => Negotiated::Spdy(
            RemoteCommandVersion::parse(chosen)
                .ok_or_else(|| HandshakeError::UnknownVersion(chosen.to_string()))?,
        ),
        StreamProtocol::WebSocket => Negotiated::WebSocket(
            WsProtocol::parse(chosen)
                .ok_or_else(|| HandshakeError::UnknownVersion(chosen.to_string()))?,
        ),
    };
    Ok(Some(Parsed {
        value: UpgradeResponse::Switched(negotiated),
        head_len,
    }))
}

/// The length of a complete head, `None` while more bytes may complete it,
/// or why it never will.
fn complete_head(
    parsed: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, HandshakeError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_LEN => Ok(Some(n)),
        Ok(httparse::Status::Complete(_)) => Err(HandshakeError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buffered > MAX_HEAD_LEN => {
            Err(HandshakeError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
    }
}

/// Header lookup over httparse's parsed headers (names are case-insensitive).
struct Headers<'h, 'b>(&'h [httparse::Header<'b>]);

impl Headers<'_, '_> {
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    }

    fn get<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        self.all(name).next()
    }

    /// Every comma-separated element of every line of `name`, trimmed.
    fn comma_list<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.comma_list(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// `/api/v1/namespaces/{ns}/pods/{pod}/{exec|attach|portforward}`. Every
/// segment is percent-decoded first, as the API server does, so
/// `…/pods/p/%65xec` is an exec too (and cannot slip past the recorder).
fn classify_path(path: &str) -> Result<(Resource, Option<String>, Option<String>), HandshakeError> {
    let segments = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect::<Result<Vec<String>, _>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let ["api", "v1", "namespaces", ns, "pods", pod, sub] = segments.as_slice() {
        let resource = match *sub {
            "exec" => Resource::Exec,
            "attach" => Resource::Attach,
            "portforward" => Resource::PortForward,
            _ => return Ok((Resource::Other, None, None)),
        };
        if ns.is_empty() || pod.is_empty() {
            return Err(HandshakeError::BadTarget(path.to_string()));
        }
        return Ok((resource, Some(ns.to_string()), Some(pod.to_string())));
    }
    Ok((Resource::Other, None, None))
}

/// Applies the exec/attach query parameters, as the API server decodes them
/// into `PodExecOptions` (apimachinery's `Convert_Slice_string_To_bool`):
/// repeated `command`; for booleans the first value counts, `0` and `false`
/// (any case) mean false and any other value — even an empty one — true.
fn apply_query(request: &mut UpgradeRequest, query: &str) -> Result<(), HandshakeError> {
    let mut seen_bool = [false; 4];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true)?;
        let value = percent_decode(value, true)?;
        let flag = |v: &str| !(v == "0" || v.eq_ignore_ascii_case("false"));
        let slot = match key.as_str() {
            "command" => {
                if request.command.len() >= MAX_COMMAND_ARGS {
                    return Err(HandshakeError::BadTarget(
                        "too many command arguments".into(),
                    ));
                }
                request.command.push(value);
                continue;
            }
            "container" => {
                if request.container.is_none() {
                    request.container = Some(value);
                }
                continue;
            }
            "stdin" => (0, &mut request.stdin),
            "stdout" => (1, &mut request.stdout),
            "stderr" => (2, &mut request.stderr),
            "tty" => (3, &mut request.tty),
            _ => continue,
        };
        // The first value of a repeated key wins, as in url.Values.Get.
        let (index, field) = slot;
        if let Some(seen) = seen_bool.get_mut(index) {
            if !*seen {
                *seen = true;
                *field = flag(&value);
            }
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes (and `+` as space in query strings).
fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, HandshakeError> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_string());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
                match (hex(bytes.next()), hex(bytes.next())) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(HandshakeError::BadTarget(format!("bad escape in {s:?}"))),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| HandshakeError::BadTarget(format!("{s:?} is not UTF-8")))
}
