//! Protocol versions the recorder cannot decode, offered by a raw client
//! (kubectl only offers versions kubecast records): enforced, nothing goes
//! upstream and the client gets a 403 `Status` naming the offer and what is
//! supported; fail-open, the request is relayed unrecorded with a warning;
//! an offer with some recordable versions goes upstream narrowed to those,
//! and the session is recorded.

mod proxy_support;

use std::net::SocketAddr;
use std::path::Path;

use kubecast_tests::upstream::TestUpstream;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EXEC: &str = "/api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&stdout=true";

/// A WebSocket exec upgrade head offering `protocols`.
fn websocket_head(protocols: &str) -> String {
    format!(
        "GET {EXEC} HTTP/1.1\r\nHost: kubecast\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    )
}

/// A SPDY exec upgrade head offering `versions`, one header line each.
fn spdy_head(versions: &[&str]) -> String {
    let mut head = format!(
        "POST {EXEC} HTTP/1.1\r\nHost: kubecast\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         Content-Length: 0\r\n"
    );
    for v in versions {
        head.push_str(&format!("X-Stream-Protocol-Version: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends `head` and reads the response head and its `Content-Length` body;
/// returns them with the stream (positioned after the body).
async fn send(addr: SocketAddr, head: &str) -> (RawResponse, TcpStream) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let split = loop {
            if let Some(at) = find(&raw, b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF before a response head: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = raw[split + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF inside the body");
            body.extend_from_slice(&buf[..n]);
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (RawResponse { status, head, body }, stream)
    };
    tokio::time::timeout(STEP, exchange)
        .await
        .expect("the proxy answered in time")
}

fn exec_requests(upstream: &TestUpstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/exec"))
        .count()
}

fn start(upstream: &TestUpstream, casts: &Path, enforce: bool) -> Proxy {
    let url = upstream.url();
    let dir = path_str(casts);
    let mut args = vec![
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--recordings-dir",
        &dir,
    ];
    if enforce {
        args.push("--enforce-recording");
    }
    Proxy::start(&args)
}

/// The `/metrics` text of a proxy started with `--metrics-listen`.
async fn metrics(proxy: &Proxy) -> String {
    let line = proxy.wait_log(&["serving /metrics"]).await;
    let addr: SocketAddr = line
        .split("metrics_addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the metrics address in the log");
    String::from_utf8(http1(addr, "GET", "/metrics", &[]).await.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_an_unrecordable_offer_is_refused_before_the_upstream() {
    let upstream = TestUpstream::start().await;
    let dir = Scratch::create("offers-enforced");
    let proxy = start(&upstream, dir.path(), true);
    let cases = [
        (
            websocket_head("v9.channel.k8s.io"),
            "WebSocket v9.channel.k8s.io",
            "v5.channel.k8s.io",
        ),
        (
            spdy_head(&["v9.channel.k8s.io", "v8.channel.k8s.io"]),
            "SPDY/3.1 v9.channel.k8s.io, v8.channel.k8s.io",
            "v4.channel.k8s.io",
        ),
    ];
    for (head, offered, supported) in cases {
        let (response, _stream) = send(proxy.addr, &head).await;
        assert_eq!(response.status, 403, "{response:?}");
        assert!(
            response.head.starts_with("HTTP/1.1 403"),
            "{}",
            response.head
        );
        let status = response.json();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(status["code"], 403);
        let message = status["message"].as_str().unwrap();
        assert!(message.contains("must be recorded"), "{message}");
        assert!(message.contains(offered), "names the offer: {message}");
        assert!(
            message.contains(supported),
            "names what is supported: {message}"
        );
        assert!(message.contains("before anything ran"), "{message}");
    }
    assert_eq!(exec_requests(&upstream), 0, "nothing went upstream");
    assert!(upstream.sessions().is_empty());
    proxy
        .wait_log(&["session refused: no offered protocol version can be recorded"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_an_unrecordable_offer_is_relayed_unrecorded() {
    let upstream = TestUpstream::start().await;
    let dir = Scratch::create("offers-open");
    let url = upstream.url();
    let casts = path_str(dir.path());
    let proxy = Proxy::start(&[
        "--auth",
        "noauth",
        "--upstream",
        &url,
        "--recordings-dir",
        &casts,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let (response, _stream) = send(proxy.addr, &websocket_head("v9.channel.k8s.io")).await;
    // The simulated API server does not speak v9 either: its own refusal
    // comes back through the proxy.
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        String::from_utf8_lossy(&response.body).contains("v9.channel.k8s.io"),
        "the upstream's answer: {response:?}"
    );
    let requests = upstream.requests();
    let exec = requests
        .iter()
        .find(|r| r.path.ends_with("/exec"))
        .expect("the request went upstream");
    assert_eq!(
        header_values(&exec.headers, "sec-websocket-protocol"),
        ["v9.channel.k8s.io"],
        "relayed as offered"
    );
    proxy
        .wait_log(&["relayed unrecorded (fail-open)", "v9.channel.k8s.io"])
        .await;
    let text = metrics(&proxy).await;
    assert!(
        text.contains(r#"kubecast_proxy_undecodable_offers_total{action="relayed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kubecast_proxy_sessions_total{outcome="unrecorded"} 1"#),
        "{text}"
    );
}

/// Reads until the peer closes (or `STEP` passes).
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_recordable_offer_goes_upstream_narrowed_and_is_recorded() {
    for (head, header, kept, negotiated) in [
        (
            websocket_head("v9.channel.k8s.io, v5.channel.k8s.io"),
            "sec-websocket-protocol",
            vec!["v5.channel.k8s.io"],
            "sec-websocket-protocol: v5.channel.k8s.io",
        ),
        (
            spdy_head(&[
                "v9.channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
            ]),
            "x-stream-protocol-version",
            vec!["v4.channel.k8s.io", "v3.channel.k8s.io"],
            "x-stream-protocol-version: v4.channel.k8s.io",
        ),
    ] {
        let upstream = TestUpstream::start().await;
        let dir = Scratch::create("offers-narrowed");
        let proxy = start(&upstream, dir.path(), true);
        let (response, mut stream) = send(proxy.addr, &head).await;
        assert_eq!(response.status, 101, "{response:?}");
        assert!(
            response.head.to_ascii_lowercase().contains(negotiated),
            "{}",
            response.head
        );
        let requests = upstream.requests();
        let exec = requests.iter().find(|r| r.path.ends_with("/exec")).unwrap();
        assert_eq!(
            header_values(&exec.headers, header).join(", "),
            kept.join(", ")
        );
        assert_eq!(upstream.sessions()[0].offered, kept);
        proxy
            .wait_log(&["offering upstream only the protocol versions that can be recorded"])
            .await;
        if header == "sec-websocket-protocol" {
            // WebSocket: the command's output arrives and the session is
            // recorded in the negotiated version. (SPDY needs the client to
            // open its streams first; the kubectl tests cover that.)
            // (Bytes read along with the head are in `body`.)
            let mut rest = response.body.clone();
            rest.extend(read_to_end(&mut stream).await);
            assert!(find(&rest, b"hi\n").is_some(), "{rest:?}");
            drop(stream);
            let found = wait_for_casts(dir.path(), 1).await;
            assert_eq!(found.len(), 1, "{found:?}");
            let cast = std::fs::read_to_string(&found[0]).unwrap();
            assert!(cast.contains(r#""o", "hi\n""#), "{cast}");
            assert!(cast.contains("v5.channel.k8s.io"), "{cast}");
        }
    }
}
