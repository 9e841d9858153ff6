//! The upgrade heads, as kubectl v1.32 and the Kubernetes servers write them.

use super::*;

/// A WebSocket `kubectl exec -it demo -- sh` request head as kubectl 1.32
/// sends it (client-go's `VersionedParams` sorts the query keys; kubectl
/// drops `stderr` when `tty` is set and offers only v5 over WebSocket).
const KUBECTL_WS: &str = "GET /api/v1/namespaces/default/pods/demo/exec?command=sh&container=main&stdin=true&stdout=true&tty=true HTTP/1.1\r\n\
Host: 127.0.0.1:6443\r\n\
User-Agent: kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-Websocket-Protocol: v5.channel.k8s.io\r\n\
Sec-Websocket-Version: 13\r\n\
Kubectl-Command: kubectl exec\r\n\
Kubectl-Session: 0b0a8f4e-7b57-4d2c-9f5f-1f1f2b3c4d5e\r\n\r\n";

/// The same command over SPDY: a POST with one `X-Stream-Protocol-Version`
/// line per offer, newest first (client-go `remotecommand.NewSPDYExecutor`).
const KUBECTL_SPDY: &str = "POST /api/v1/namespaces/kube-system/pods/web-0/exec?command=ls&command=-l&command=%2Ftmp&container=app&stderr=true&stdout=true HTTP/1.1\r\n\
Host: 127.0.0.1:6443\r\n\
Connection: Upgrade\r\n\
Upgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v5.channel.k8s.io\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\
X-Stream-Protocol-Version: v2.channel.k8s.io\r\n\
X-Stream-Protocol-Version: channel.k8s.io\r\n\
Content-Length: 0\r\n\r\n";

fn request(head: &str) -> UpgradeRequest {
    let parsed = parse_request(head.as_bytes()).unwrap().unwrap();
    assert_eq!(parsed.head_len, head.len());
    parsed.value
}

#[test]
fn kubectl_websocket_exec_request() {
    let r = request(KUBECTL_WS);
    assert_eq!(r.method, "GET");
    assert_eq!(r.resource, Resource::Exec);
    assert_eq!(r.namespace.as_deref(), Some("default"));
    assert_eq!(r.pod.as_deref(), Some("demo"));
    assert_eq!(r.container.as_deref(), Some("main"));
    assert_eq!(r.command, vec!["sh"]);
    assert!(r.stdin && r.stdout && r.tty && !r.stderr);
    assert_eq!(r.protocol, StreamProtocol::WebSocket);
    assert_eq!(r.offered, vec!["v5.channel.k8s.io"]);
    assert_eq!(r.kubectl_command.as_deref(), Some("kubectl exec"));
    assert!(r.user_agent.unwrap().starts_with("kubectl/"));
}

#[test]
fn kubectl_spdy_exec_request() {
    let r = request(KUBECTL_SPDY);
    assert_eq!(r.protocol, StreamProtocol::Spdy);
    assert_eq!(
        (r.namespace.as_deref(), r.pod.as_deref()),
        (Some("kube-system"), Some("web-0"))
    );
    assert_eq!(
        r.command,
        vec!["ls", "-l", "/tmp"],
        "repeated, percent-decoded, in order"
    );
    assert!(!r.stdin && r.stdout && r.stderr && !r.tty);
    assert_eq!(
        r.offered,
        vec![
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io"
        ]
    );
}

#[test]
fn comma_lists_and_bearer_subprotocols() {
    // kube-rs / the Python client offer "v5, v4" on one line; a browser may
    // carry a token as a subprotocol, which must never be kept.
    let head = KUBECTL_WS.replace(
        "Sec-Websocket-Protocol: v5.channel.k8s.io",
        "Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.c2VjcmV0, v5.channel.k8s.io,v4.channel.k8s.io",
    );
    let r = request(&head);
    assert_eq!(r.offered, vec!["v5.channel.k8s.io", "v4.channel.k8s.io"]);
    assert!(r.bearer_subprotocol);
    assert!(
        !format!("{r:?}").contains("c2VjcmV0"),
        "the token is not kept anywhere"
    );
}

#[test]
fn resources_are_classified() {
    for (path, resource) in [
        ("/api/v1/namespaces/ns/pods/p/exec", Resource::Exec),
        // The API server percent-decodes the path: these are exec/attach too.
        ("/api/v1/namespaces/ns/pods/p/%65xec", Resource::Exec),
        ("/api/v1/namespaces/ns/pods/p/%61ttach", Resource::Attach),
        ("/api/v1/namespaces/ns/pods/p/attach", Resource::Attach),
        (
            "/api/v1/namespaces/ns/pods/p/portforward",
            Resource::PortForward,
        ),
        ("/api/v1/namespaces/ns/pods/p/log", Resource::Other),
        ("/api/v1/namespaces/ns/services/s/proxy", Resource::Other),
        ("/apis/apps/v1/namespaces/ns/deployments/d", Resource::Other),
    ] {
        let head = KUBECTL_WS.replace("/api/v1/namespaces/default/pods/demo/exec", path);
        assert_eq!(request(&head).resource, resource, "{path}");
    }
}

#[test]
fn booleans_follow_the_api_servers_conversion() {
    // apimachinery Convert_Slice_string_To_bool: absent, "0" and "false" (any
    // case) are false; anything else, even empty, is true; first value wins.
    for (query, stdin) in [
        ("stdin=true", true),
        ("stdin=1", true),
        ("stdin=", true),
        ("stdin", true),
        ("stdin=0", false),
        ("stdin=FALSE", false),
        ("stdin=false&stdin=true", false),
        ("stdout=true", false),
    ] {
        let head = KUBECTL_WS.replace(
            "command=sh&container=main&stdin=true&stdout=true&tty=true",
            query,
        );
        assert_eq!(request(&head).stdin, stdin, "{query}");
    }
}

#[test]
fn an_incomplete_head_asks_for_more_at_every_cut() {
    for cut in 0..KUBECTL_SPDY.len() {
        assert_eq!(
            parse_request(&KUBECTL_SPDY.as_bytes()[..cut]),
            Ok(None),
            "cut at {cut}"
        );
    }
}

#[test]
fn bytes_after_the_head_are_not_part_of_it() {
    let mut bytes = KUBECTL_SPDY.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x80, 0x03, 0x00, 0x01]);
    let parsed = parse_request(&bytes).unwrap().unwrap();
    assert_eq!(parsed.head_len, KUBECTL_SPDY.len());
}

#[test]
fn requests_that_are_not_upgrades_are_typed_errors() {
    let plain = "GET /api/v1/namespaces/default/pods/demo HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        parse_request(plain.as_bytes()),
        Err(HandshakeError::NotUpgrade("no `Connection: Upgrade`"))
    );
    let h2c = KUBECTL_WS.replace("Upgrade: websocket", "Upgrade: h2c");
    assert_eq!(
        parse_request(h2c.as_bytes()),
        Err(HandshakeError::UnknownProtocol("h2c".into()))
    );
    let no_key = KUBECTL_WS.replace("Sec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert!(matches!(
        parse_request(no_key.as_bytes()),
        Err(HandshakeError::NotUpgrade(_))
    ));
    let post_ws = KUBECTL_WS.replacen("GET", "POST", 1);
    assert!(matches!(
        parse_request(post_ws.as_bytes()),
        Err(HandshakeError::NotUpgrade(_))
    ));
    assert!(matches!(
        parse_request(b"\x16\x03\x01garbage\r\n\r\n"),
        Err(HandshakeError::Malformed(_))
    ));
    let bad_escape = KUBECTL_WS.replace("command=sh", "command=%zz");
    assert!(matches!(
        parse_request(bad_escape.as_bytes()),
        Err(HandshakeError::BadTarget(_))
    ));
}

#[test]
fn an_endless_head_is_refused() {
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(MAX_HEAD_LEN + 10, b'a');
    assert_eq!(parse_request(&head), Err(HandshakeError::HeadTooLarge));
}

fn response(req: &str, head: &str) -> Result<Option<Parsed<UpgradeResponse>>, HandshakeError> {
    parse_response(head.as_bytes(), &request(req))
}

#[test]
fn switching_protocols_gives_the_negotiated_version() {
    // The API server's stream translator answers kubectl's WebSocket offer.
    let ws = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
    let parsed = response(KUBECTL_WS, ws).unwrap().unwrap();
    assert_eq!(
        parsed.value,
        UpgradeResponse::Switched(Negotiated::WebSocket(WsProtocol::V5Channel))
    );
    assert_eq!(parsed.head_len, ws.len());

    // The kubelet picks v4 from kubectl's SPDY offers.
    let spdy = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
    assert_eq!(
        response(KUBECTL_SPDY, spdy).unwrap().unwrap().value,
        UpgradeResponse::Switched(Negotiated::Spdy(RemoteCommandVersion::V4))
    );
}

#[test]
fn missing_version_headers_mean_the_oldest_protocol() {
    let spdy =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
    assert_eq!(
        response(KUBECTL_SPDY, spdy).unwrap().unwrap().value,
        UpgradeResponse::Switched(Negotiated::Spdy(RemoteCommandVersion::V1))
    );
    let ws =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        response(KUBECTL_WS, ws).unwrap().unwrap().value,
        UpgradeResponse::Switched(Negotiated::WebSocket(WsProtocol::Channel))
    );
}

#[test]
fn a_refusal_is_an_answer_not_an_error() {
    // kubectl falls back from WebSocket to SPDY on any non-101.
    let forbidden = "HTTP/1.1 403 Forbidden\r\nX-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        response(KUBECTL_SPDY, forbidden).unwrap().unwrap().value,
        UpgradeResponse::Refused { status: 403 }
    );
}

#[test]
fn a_101_that_does_not_match_the_offer_is_an_error() {
    let other = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n";
    assert_eq!(
        response(KUBECTL_WS, other),
        Err(HandshakeError::NotOffered("v4.channel.k8s.io".into()))
    );
    let wrong =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(
        response(KUBECTL_WS, wrong),
        Err(HandshakeError::ResponseProtocolMismatch)
    );
    let unknown = KUBECTL_SPDY.replace("channel.k8s.io\r\nContent", "v9.channel.k8s.io\r\nContent");
    let v9 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\n\r\n";
    assert_eq!(
        response(&unknown, v9),
        Err(HandshakeError::UnknownVersion("v9.channel.k8s.io".into()))
    );
}

#[test]
fn an_incomplete_response_asks_for_more() {
    let spdy =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
    for cut in 0..spdy.len() {
        assert_eq!(
            response(KUBECTL_SPDY, &spdy[..cut]),
            Ok(None),
            "cut at {cut}"
        );
    }
}
