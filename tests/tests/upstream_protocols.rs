//! The test upstream's negotiation and framing where kubectl 1.32 does not
//! go: other WebSocket subprotocols (base64, `channel.k8s.io`), SPDY
//! versions before v4, refusals. A raw client written with the core's
//! encoders and readers speaks to it; each test cites the behaviour of the
//! real servers it imitates (apimachinery's `wsstream` and `httpstream`,
//! the kubelet's remotecommand server).

use std::time::Duration;

use kubecast_core::handshake::WsProtocol;
use kubecast_core::spdy::{rst_status, Frame, FrameReader, FrameWriter};
use kubecast_core::ws::{
    decode_channel_message, encode_channel_message, encode_close_signal, encode_ping, Message,
    MessageKind, MessageReader,
};
use kubecast_core::Limits;
use kubecast_tests::upstream::{Negotiated, SessionExit, TermSize, TestUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);
const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// A response head, and the connection with any bytes read past it.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    stream: TcpStream,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    async fn body_to_end(mut self) -> String {
        let _ = tokio::time::timeout(TIMEOUT, self.stream.read_to_end(&mut self.rest)).await;
        String::from_utf8_lossy(&self.rest).into_owned()
    }
}

/// Sends `method target` with `headers` and reads the response head.
async fn request(
    upstream: &TestUpstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Head {
    let mut stream = TcpStream::connect(upstream.addr()).await.expect("connect");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\n",
        upstream.addr()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the request");
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        let mut header_slots = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut header_slots);
        if let httparse::Status::Complete(len) =
            response.parse(&buf).expect("a valid response head")
        {
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            return Head {
                status: response.code.unwrap_or(0),
                headers,
                stream,
                rest: buf[len..].to_vec(),
            };
        }
    }
}

fn exec_target(pod: &str, command: &[&str], flags: &str) -> String {
    let mut target = format!("/api/v1/namespaces/default/pods/{pod}/exec?");
    for arg in command {
        target.push_str(&format!(
            "command={}&",
            arg.replace(' ', "+").replace(';', "%3B")
        ));
    }
    target.push_str(flags);
    target
}

async fn websocket(upstream: &TestUpstream, target: &str, protocols: Option<&str>) -> Head {
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        // RFC 6455 section 1.3's example key.
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    if let Some(p) = protocols {
        headers.push(("Sec-WebSocket-Protocol", p));
    }
    request(upstream, "GET", target, &headers).await
}

/// A WebSocket client on an upgraded connection.
struct WsClient {
    head: Head,
    reader: MessageReader,
    protocol: WsProtocol,
}

impl WsClient {
    fn new(head: Head, protocol: WsProtocol) -> WsClient {
        let mut reader = MessageReader::new(&Limits::default());
        reader.push(&head.rest);
        WsClient {
            head,
            reader,
            protocol,
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.head.stream.write_all(bytes).await.expect("send");
    }

    async fn send(&mut self, channel: u8, payload: &[u8]) {
        let mut out = Vec::new();
        encode_channel_message(&mut out, self.protocol, channel, payload, MASK);
        self.send_raw(&out).await;
    }

    async fn next(&mut self) -> Message {
        loop {
            if let Some(message) = self
                .reader
                .next_message()
                .expect("valid frames from the upstream")
            {
                return message;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, self.head.stream.read(&mut buf))
                .await
                .expect("a message in time")
                .expect("read");
            assert!(n > 0, "the upstream closed without a close frame");
            self.reader.push(&buf[..n]);
        }
    }

    /// The next data message as (channel, payload).
    async fn next_channel(&mut self) -> (u8, Vec<u8>) {
        let message = self.next().await;
        let expected_kind = if self.protocol.base64() {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        assert_eq!(message.kind, expected_kind, "{message:?}");
        decode_channel_message(self.protocol, &message.payload)
            .expect("a channel message")
            .unwrap_or_else(|| panic!("an empty message: {message:?}"))
    }

    async fn expect_close(&mut self) {
        let message = self.next().await;
        assert_eq!(
            (message.kind, message.close_code()),
            (MessageKind::Close, Some(1000))
        );
    }
}

#[tokio::test]
async fn websocket_takes_the_clients_first_served_offer_and_frames_base64_as_text() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["echo", "hi"], "stdout=true&stderr=true");
    let head = websocket(
        &upstream,
        &target,
        Some("x.bogus.k8s.io, v4.base64.channel.k8s.io, v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(head.status, 101);
    // RFC 6455 section 1.3.
    assert_eq!(
        head.header("sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert_eq!(
        head.header("sec-websocket-protocol"),
        ["v4.base64.channel.k8s.io"]
    );
    let mut ws = WsClient::new(head, WsProtocol::V4Base64Channel);
    // wsstream: an empty message on the lowest writable channel, as the
    // text "1" in base64 mode.
    let first = ws.next().await;
    assert_eq!(
        (first.kind, &first.payload[..]),
        (MessageKind::Text, &b"1"[..])
    );
    let stdout = ws.next().await;
    assert_eq!(stdout.payload, b"1aGkK", "'1' + base64(\"hi\\n\")");
    assert_eq!(
        ws.next_channel().await,
        (3, br#"{"metadata":{},"status":"Success"}"#.to_vec())
    );
    ws.expect_close().await;
    let session = upstream.wait_finished(1, TIMEOUT).await.remove(0);
    assert_eq!(
        session.negotiated,
        Negotiated::WebSocket("v4.base64.channel.k8s.io".into())
    );
}

#[tokio::test]
async fn websocket_channel_k8s_io_reports_failure_as_plain_text() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["exit", "3"], "stdout=true");
    let head = websocket(&upstream, &target, Some("channel.k8s.io")).await;
    assert_eq!(head.status, 101);
    let mut ws = WsClient::new(head, WsProtocol::Channel);
    assert_eq!(ws.next().await.payload, [1], "the empty stdout message");
    let (channel, text) = ws.next_channel().await;
    assert_eq!(channel, 3);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "command terminated with non-zero exit code: error executing command [exit 3], exit code 3"
    );
    ws.expect_close().await;
}

#[tokio::test]
async fn websocket_without_a_subprotocol_is_channel_k8s_io_and_success_writes_no_status() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["echo", "x"], "stderr=true");
    let head = websocket(&upstream, &target, None).await;
    assert_eq!(head.status, 101);
    assert!(head.header("sec-websocket-protocol").is_empty());
    let mut ws = WsClient::new(head, WsProtocol::Channel);
    assert_eq!(
        ws.next().await.payload,
        [2],
        "no stdout asked: stderr is the lowest writable channel"
    );
    ws.expect_close().await;
}

#[tokio::test]
async fn websocket_v5_answers_pings_takes_resizes_and_the_close_signal_ends_stdin() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["cat"], "stdin=true&stdout=true&stderr=true");
    let head = websocket(&upstream, &target, Some("v5.channel.k8s.io")).await;
    let mut ws = WsClient::new(head, WsProtocol::V5Channel);
    assert_eq!(ws.next().await.payload, [1]);
    let mut ping = Vec::new();
    encode_ping(&mut ping, b"are you there", MASK);
    ws.send_raw(&ping).await;
    let pong = ws.next().await;
    assert_eq!(
        (pong.kind, &pong.payload[..]),
        (MessageKind::Pong, &b"are you there"[..])
    );
    // client-go writes the size with a trailing newline; the upstream reads
    // a JSON stream, so one object may come in pieces.
    ws.send(4, b"{\"Width\":120,").await;
    ws.send(4, b"\"Height\":40}\n").await;
    ws.send(0, b"abc").await;
    assert_eq!(ws.next_channel().await, (1, b"abc".to_vec()));
    let mut close_stdin = Vec::new();
    encode_close_signal(&mut close_stdin, 0, MASK);
    ws.send_raw(&close_stdin).await;
    assert_eq!(
        ws.next_channel().await,
        (3, br#"{"metadata":{},"status":"Success"}"#.to_vec())
    );
    ws.expect_close().await;
    let session = upstream.wait_finished(1, TIMEOUT).await.remove(0);
    assert_eq!(
        session.resizes,
        [TermSize {
            cols: 120,
            rows: 40
        }]
    );
    assert_eq!(
        (session.stdin_bytes.as_slice(), session.stdin_closed),
        (&b"abc"[..], true)
    );
    assert_eq!(
        (session.pings, session.exit),
        (1, Some(SessionExit::Code(0)))
    );
}

#[tokio::test]
async fn websocket_without_a_served_subprotocol_is_refused() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["echo"], "stdout=true");
    let head = websocket(&upstream, &target, Some("v9.channel.k8s.io")).await;
    assert_eq!(head.status, 400);
    assert!(upstream.sessions().is_empty());
}

#[tokio::test]
async fn spdy_without_a_common_version_is_forbidden_with_the_accepted_list() {
    let upstream = TestUpstream::start().await;
    let target = exec_target("demo", &["echo"], "stdout=true");
    let headers = [
        ("Upgrade", "SPDY/3.1"),
        ("Connection", "Upgrade"),
        ("X-Stream-Protocol-Version", "v5.channel.k8s.io"),
    ];
    let head = request(&upstream, "POST", &target, &headers).await;
    assert_eq!(head.status, 403);
    assert_eq!(
        head.header("x-accepted-stream-protocol-versions"),
        [
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io"
        ]
    );
}

/// A SPDY client: creates streams like client-go and reads frames.
struct SpdyClient {
    head: Head,
    reader: FrameReader,
    writer: FrameWriter,
}

impl SpdyClient {
    async fn send(&mut self, out: Vec<u8>) {
        self.head.stream.write_all(&out).await.expect("send");
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(frame) = self
                .reader
                .next_frame()
                .expect("valid frames from the upstream")
            {
                return frame;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, self.head.stream.read(&mut buf))
                .await
                .expect("a frame in time")
                .expect("read");
            assert!(n > 0, "the upstream closed before GOAWAY");
            self.reader.push(&buf[..n]);
        }
    }

    async fn open(&mut self, id: u32, kind: &str) {
        let mut out = Vec::new();
        self.writer
            .syn_stream(&mut out, id, 0, 0, &[("streamtype", kind)], false)
            .expect("encode SYN_STREAM");
        self.send(out).await;
        match self.next().await {
            Frame::SynReply {
                stream_id, headers, ..
            } => assert_eq!(
                (stream_id, headers.is_empty()),
                (id, true),
                "spdystream replies with no headers"
            ),
            other => panic!("expected SYN_REPLY for {kind}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn spdy_v3_reports_failure_as_text_then_resets_every_stream_and_goes_away() {
    let upstream = TestUpstream::start().await;
    let target = exec_target(
        "demo",
        &["sh", "-c", "stderr e; exit 3"],
        "stdout=true&stderr=true",
    );
    let headers = [
        ("Upgrade", "SPDY/3.1"),
        ("Connection", "Upgrade"),
        // One header line may hold a list, like several lines.
        (
            "X-Stream-Protocol-Version",
            "v5.channel.k8s.io, v3.channel.k8s.io",
        ),
        ("X-Stream-Protocol-Version", "v2.channel.k8s.io"),
    ];
    let head = request(&upstream, "POST", &target, &headers).await;
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("x-stream-protocol-version"),
        ["v3.channel.k8s.io"]
    );
    let mut reader = FrameReader::new(&Limits::default());
    reader.push(&head.rest);
    let mut client = SpdyClient {
        head,
        reader,
        writer: FrameWriter::new(),
    };
    client.open(1, "error").await;
    // spdystream echoes PINGs.
    let mut ping = Vec::new();
    client.writer.ping(&mut ping, 7);
    client.send(ping).await;
    assert_eq!(client.next().await, Frame::Ping { id: 7 });
    client.open(3, "stdout").await;
    client.open(5, "stderr").await;

    let mut frames = Vec::new();
    loop {
        let frame = client.next().await;
        let last = matches!(frame, Frame::GoAway { .. });
        frames.push(frame);
        if last {
            break;
        }
    }
    let text = "command terminated with non-zero exit code: error executing command [sh -c stderr e; exit 3], exit code 3";
    let data = |stream_id: u32, bytes: &[u8]| Frame::Data {
        stream_id,
        fin: false,
        data: bytes.to_vec(),
    };
    let rst = |stream_id| Frame::RstStream {
        stream_id,
        status: rst_status::CANCEL,
    };
    assert_eq!(
        frames,
        [
            data(5, b"e\n"),
            data(1, text.as_bytes()),
            rst(1),
            rst(3),
            rst(5),
            Frame::GoAway {
                last_good_stream: 5,
                status: 0
            },
        ]
    );
}

#[tokio::test]
async fn exec_requests_are_validated_like_the_api_server() {
    let upstream = TestUpstream::start().await;
    let cases = [
        (
            exec_target("demo", &["echo"], "stdout=true"),
            400,
            "Upgrade request required",
        ),
        (
            exec_target("demo", &[], "stdout=true"),
            400,
            "you must specify at least 1 command",
        ),
        (
            exec_target("demo", &["echo"], ""),
            400,
            "you must specify at least one of stdin, stdout, stderr",
        ),
        (
            exec_target("demo", &["echo"], "stdout=true&container=nope"),
            400,
            "container nope is not valid for pod demo",
        ),
        (
            exec_target("nopod", &["echo"], "stdout=true"),
            404,
            "pods \\\"nopod\\\" not found",
        ),
    ];
    for (target, status, message) in cases {
        let head = request(&upstream, "GET", &target, &[("Connection", "close")]).await;
        assert_eq!(head.status, status, "{target}");
        assert_eq!(head.header("content-type"), ["application/json"]);
        let body = head.body_to_end().await;
        assert!(
            body.contains(message) && body.contains("\"kind\":\"Status\""),
            "{target}: {body}"
        );
    }
}
