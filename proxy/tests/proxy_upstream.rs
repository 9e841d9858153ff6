//! The proxy's upstream side: kubeconfig resolution (`--kubeconfig`,
//! `--context`, `~/.kube/config`), streaming responses, upgrades other than
//! exec/attach (port-forward and a generic one), the upstream's non-101
//! answers, errors and deadlines (502, 504), HTTP/2 clients, and SIGTERM.
//!
//! The test upstream serves exec/attach only (no port-forward, no watch),
//! so these tests use a tiny custom upstream ([`Custom`]): `GET /watch`
//! streams an event every 50 ms and never ends by itself, `GET /slow` never
//! answers, and upgrades to `echo` (or SPDY/3.1 on a `portforward` path)
//! switch protocols and echo bytes back upper-cased.

mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubecast_tests::kubectl::{Kubectl, Transport};
use kubecast_tests::upstream::TestUpstream;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, Infallible>;

/// A body fed from a channel: each message is one chunk.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// The custom upstream (aborted on drop).
struct Custom {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Custom {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Custom {
    async fn start() -> Custom {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        Ok::<_, Infallible>(custom_route(req))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Custom { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn custom_route(mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (req.uri().path(), upgrade.as_deref()) {
        ("/watch", None) => {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for i in 0..600 {
                    if tx.send(Bytes::from(format!("event {i}\n"))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            Response::new(ChannelBody(rx).boxed())
        }
        (path, Some(protocol))
            if protocol == "echo" || (protocol == "SPDY/3.1" && path.ends_with("/portforward")) =>
        {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
            let mut response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "Upgrade")
                .header("upgrade", protocol)
                .header("x-echo", "yes")
                .body(Empty::new().boxed())
                .unwrap();
            response
                .extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b"Echo Ahead"));
            response
        }
        (_, Some(_)) => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"no such upgrade here")).boxed())
            .unwrap(),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Empty::new().boxed())
            .unwrap(),
    }
}

/// Reads from `stream` until `needle` shows up (at most [`STEP`]).
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8]) {
    let deadline = Instant::now() + STEP;
    while find(seen, needle).is_none() {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{needle:?} not seen; got {:?}",
                    String::from_utf8_lossy(seen)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "EOF before {needle:?}; got {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

async fn send_head(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_stream_incrementally() {
    let custom = Custom::start().await;
    let proxy = Proxy::start(&["--upstream", &custom.url()]);
    let started = Instant::now();
    let mut stream = send_head(proxy.addr, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"event 0\n").await;
    let first = started.elapsed();
    read_until(&mut stream, &mut seen, b"event 3\n").await;
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // The response never ends; events arrive as they are produced.
    assert!(
        first < Duration::from_secs(5),
        "first event after {first:?}"
    );
    assert!(!head.contains("event 20\n"), "not buffered: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_and_port_forward_upgrades_are_relayed_raw() {
    let custom = Custom::start().await;
    let proxy = Proxy::start(&["--upstream", &custom.url()]);
    for (path, protocol) in [
        ("/custom/tunnel", "echo"),
        (
            "/api/v1/namespaces/default/pods/demo/portforward",
            "SPDY/3.1",
        ),
    ] {
        let mut stream = send_head(
            proxy.addr,
            &format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"),
        )
        .await;
        let mut seen = Vec::new();
        read_until(&mut stream, &mut seen, b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&seen).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101 Echo Ahead\r\n"),
            "the upstream's status line: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("upgrade: {}", protocol.to_ascii_lowercase())),
            "{head}"
        );
        assert!(head.contains("x-echo: yes"), "{head}");
        stream.write_all(b"hello through the tunnel").await.unwrap();
        let mut echoed = Vec::new();
        read_until(&mut stream, &mut echoed, b"HELLO THROUGH THE TUNNEL").await;
        drop(stream);
    }
    proxy
        .wait_log(&["raw relay", "resource=Other", "bytes_up=24"])
        .await;
    proxy
        .wait_log(&["raw relay", "resource=PortForward", "bytes_up=24"])
        .await;

    // An upgrade the upstream does not switch to: its answer is relayed.
    let r = http1(
        proxy.addr,
        "GET",
        "/custom",
        &[("Connection", "Upgrade"), ("Upgrade", "nope")],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (400, &b"no such upgrade here"[..]),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_upgrade_reaches_the_upstream() {
    // kubectl port-forward needs the pod and a port-forward endpoint; the
    // test upstream has no port-forward, so this only checks that the
    // upgrade goes through the proxy and the upstream's refusal reaches
    // kubectl (the raw relay itself is covered above).
    let upstream = TestUpstream::start().await;
    let proxy = Proxy::start(&["--upstream", &upstream.url()]);
    let Some(kubectl) = Kubectl::for_server("port_forward", &proxy.http_url()) else {
        return;
    };
    let out = kubectl
        .run(
            Transport::Spdy,
            &[
                "port-forward",
                "pod/demo",
                "0:80",
                "--pod-running-timeout=5s",
            ],
            None,
        )
        .await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        upstream
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/portforward")),
        "the port-forward request reached the upstream: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_slow_upstreams_get_status_errors() {
    let proxy = Proxy::start(&[
        "--upstream",
        "http://127.0.0.1:1",
        "--connect-timeout",
        "2s",
    ]);
    let r = http1(proxy.addr, "GET", "/version", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    let status = r.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 502);
    assert!(
        status["message"].as_str().unwrap().contains("127.0.0.1:1"),
        "{status}"
    );

    let custom = Custom::start().await;
    let proxy = Proxy::start(&["--upstream", &custom.url(), "--header-timeout", "1s"]);
    let started = Instant::now();
    let r = http1(proxy.addr, "GET", "/slow", &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.json()["reason"], "Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_upstream_and_context() {
    let upstream = TestUpstream::start().await;
    let home = Scratch::create("kubeconfig-home");
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    let config = |current: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {current}\n\
             clusters:\n\
             - name: good\n  cluster:\n    server: {}\n\
             - name: broken\n  cluster:\n    server: http://127.0.0.1:1\n\
             contexts:\n\
             - name: good\n  context:\n    cluster: good\n    user: proxy\n\
             - name: broken\n  context: {{cluster: broken, user: proxy}}\n\
             users:\n\
             - name: proxy\n  user:\n    token: proxy-token\n",
            upstream.url()
        )
    };
    let file = home.write("config.yaml", config("broken"));
    let tokens = home.write("tokens.csv", "alice-token,alice,1,admins\n");
    std::fs::write(home.join(".kube/config"), config("good")).unwrap();

    // --kubeconfig with its current context (broken): 502.
    let proxy = Proxy::start(&["--kubeconfig", &file]);
    let r = http1(proxy.addr, "GET", "/version", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");

    // --context selects the good cluster; its user's token is the proxy's.
    let proxy = Proxy::start(&[
        "--kubeconfig",
        &file,
        "--context",
        "good",
        "--auth",
        "token",
        "--token-auth-file",
        &tokens,
    ]);
    let r = http1(
        proxy.addr,
        "GET",
        "/version",
        &[("Authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = upstream.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        header_values(&last.headers, "authorization"),
        ["Bearer proxy-token"]
    );
    assert_eq!(header_values(&last.headers, "impersonate-user"), ["alice"]);
    drop(proxy);

    // No flags: ~/.kube/config's current context; kubectl works through it.
    let proxy = Proxy::start_with_home(home, &[]);
    proxy
        .wait_log(&["listening", "kubeconfig context \"good\""])
        .await;
    let Some(kubectl) = Kubectl::for_server("kubeconfig_upstream", &proxy.http_url()) else {
        return;
    };
    let out = kubectl
        .run(
            Transport::WebSocket,
            &["get", "pod", "demo", "-o", "name"],
            None,
        )
        .await;
    assert_eq!(
        (out.code, out.stdout_str()),
        (Some(0), "pod/demo\n".into()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served() {
    let upstream = TestUpstream::start().await;
    let proxy = Proxy::start(&["--upstream", &upstream.url()]);
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/version", "/api/v1/namespaces/default/pods/demo"] {
        let req = Request::get(format!("http://{}{path}", proxy.addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"{"), "{body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_cuts_and_exits() {
    let custom = Custom::start().await;
    let mut proxy = Proxy::start(&["--upstream", &custom.url(), "--shutdown-grace", "1s"]);
    let mut stream = send_head(proxy.addr, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"event 1\n").await;
    let started = Instant::now();
    proxy.terminate();
    proxy.wait_log(&["SIGTERM", "draining"]).await;
    let status = proxy.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the grace period was given"
    );
    assert!(
        proxy.log_text().contains("grace period over"),
        "{}",
        proxy.log_text()
    );
    // The watch was cut: EOF (or reset) after the last events.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
        .await
        .expect("the watch ends");
}
