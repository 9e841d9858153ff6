//! `DriveOptions::preamble`: a proxy whose HTTP layer already relayed the
//! upgrade request and the 101 hands the driver streams that start after
//! the heads. The heads are fed to the core first — not forwarded — and
//! the cast is the one a driver that saw the whole streams writes.

use std::time::Duration;

use bytes::Bytes;
use kubecast_core::handshake::WsProtocol;
use kubecast_core::session::{Session, SessionConfig, SessionMeta};
use kubecast_core::ws::{encode_channel_message, encode_close_signal};
use kubecast_core::ExitStatus;
use kubecast_tokio::{drive, ChannelSink, DriveOptions, Preamble, SinkItem};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/demo/exec?command=echo&command=hi&container=main&stdout=true&stderr=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;

async fn read_to_eof(stream: &mut DuplexStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("end of file within 10 s")
        .expect("read");
    buf
}

/// Runs one echo session; `preamble` decides whether the heads come
/// through the streams or the preamble. Returns (cast, bytes the client
/// got, bytes the upstream got, summary's byte counts).
async fn session(preamble: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>, (u64, u64)) {
    let (mut client, client_proxy) = duplex(64 * 1024);
    let (upstream_proxy, mut upstream) = duplex(64 * 1024);
    let (mut sink, mut rx) = ChannelSink::new(64);
    let options = DriveOptions {
        preamble: if preamble {
            Preamble {
                client: Bytes::from_static(REQUEST),
                upstream: Bytes::from_static(RESPONSE),
            }
        } else {
            Preamble::default()
        },
        ..Default::default()
    };
    let driven = tokio::spawn(async move {
        let meta = SessionMeta {
            user: Some("alice".into()),
            started_unix: Some(1_700_000_000),
            ..Default::default()
        };
        let mut session = Session::new(SessionConfig::default(), meta);
        drive(
            &mut session,
            client_proxy,
            upstream_proxy,
            &mut sink,
            &options,
        )
        .await
    });
    if !preamble {
        // In order: the core reads the request head before the response.
        client.write_all(REQUEST).await.unwrap();
        let mut head = vec![0; REQUEST.len()];
        upstream.read_exact(&mut head).await.unwrap();
        upstream.write_all(RESPONSE).await.unwrap();
        let mut head = vec![0; RESPONSE.len()];
        client.read_exact(&mut head).await.unwrap();
    }
    let mut down = Vec::new();
    encode_channel_message(&mut down, WsProtocol::V5Channel, 1, b"hi\n", None);
    encode_channel_message(&mut down, WsProtocol::V5Channel, 3, SUCCESS, None);
    upstream.write_all(&down).await.unwrap();
    upstream.shutdown().await.unwrap();
    let got_down = read_to_eof(&mut client).await;
    let mut close = Vec::new();
    encode_close_signal(&mut close, 0, Some([1, 2, 3, 4]));
    client.write_all(&close).await.unwrap();
    client.shutdown().await.unwrap();
    let got_up = read_to_eof(&mut upstream).await;
    let summary = driven.await.unwrap().expect("a clean end");
    assert_eq!(
        summary.recording.and_then(|r| r.exit),
        Some(ExitStatus::Success)
    );
    let mut cast = Vec::new();
    while let Some(item) = rx.recv().await {
        if let SinkItem::Cast(b) = item {
            cast.extend_from_slice(&b);
        }
    }
    (
        cast,
        got_down,
        got_up,
        (summary.client_bytes, summary.upstream_bytes),
    )
}

#[tokio::test(start_paused = true)]
async fn the_preamble_is_fed_not_forwarded() {
    let (cast, down, up, (client_bytes, upstream_bytes)) = session(true).await;
    // Nothing of the heads went anywhere: only the frames after them.
    assert!(!down.starts_with(b"HTTP/1.1"), "{down:?}");
    assert!(!up.starts_with(b"GET "), "{up:?}");
    assert_eq!(upstream_bytes, down.len() as u64);
    assert_eq!(client_bytes, up.len() as u64);

    // The same cast as when the heads come through the streams.
    let (whole, ..) = session(false).await;
    assert_eq!(
        String::from_utf8(cast).unwrap(),
        String::from_utf8(whole).unwrap()
    );
}
