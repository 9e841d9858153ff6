//! The scripted exec session every adapter scenario plays: a WebSocket
//! `v5.channel.k8s.io` exec of `sh` (request, `101`, output, input, exit,
//! close both ways), the session and upload configs, and the cast a replay
//! of the driver's capture gives (what must reach the recorder).

use kubecast_core::handshake::WsProtocol;
use kubecast_core::recording::{Policy, Recording};
use kubecast_core::session::{SessionConfig, SessionMeta};
use kubecast_core::upload::UploadConfig;
use kubecast_core::ws::{encode_channel_message, encode_close_signal};
use std::time::Duration;

pub const REQUEST: &[u8] = b"GET /api/v1/namespaces/default/pods/web-0/exec?command=sh&container=main&stdin=true&stdout=true&stderr=true HTTP/1.1\r\n\
Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
pub const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
pub const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;
const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// A frame the upstream sends on `channel`.
pub fn from_upstream(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, None);
    out
}

/// A (masked) frame the client sends on `channel`.
pub fn from_client(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_channel_message(&mut out, WsProtocol::V5Channel, channel, payload, MASK);
    out
}

/// The client's v5 close signal for stdin.
pub fn client_close() -> Vec<u8> {
    let mut out = Vec::new();
    encode_close_signal(&mut out, 0, MASK);
    out
}

pub fn meta() -> SessionMeta {
    SessionMeta {
        user: Some("alice".into()),
        session_id: Some("s-1".into()),
        started_unix: Some(1_793_534_584),
        ..Default::default()
    }
}

/// The session config of every scenario: capture on, so the test can
/// replay exactly what the driver fed the core.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        capture: true,
        ..Default::default()
    }
}

/// An upload config for `recorders` with short test budgets.
pub fn upload_config(recorders: &[String]) -> UploadConfig {
    let mut config = UploadConfig::with_recorders(recorders).expect("recorder URLs");
    config.attempt_budget = Duration::from_secs(5);
    config.overall_budget = Duration::from_secs(15);
    config
}

/// A recording of the scripted session, its upload dialling now.
pub fn recording(upload: UploadConfig, policy: Policy) -> Recording {
    Recording::new(
        std::time::Instant::now(),
        session_config(),
        meta(),
        upload,
        policy,
    )
    .expect("a valid recording config")
}

/// The cast a replay of `capture` gives: what must arrive at the recorder.
pub fn replayed_cast(capture: &[u8]) -> Vec<u8> {
    kubecast_core::replay::replay(
        capture,
        SessionConfig::default(),
        meta(),
        std::time::Instant::now(),
        None,
    )
    .expect("the driver's capture replays")
    .cast
}
