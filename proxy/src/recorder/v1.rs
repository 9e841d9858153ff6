//! v1: `POST /record` over HTTP/1.1 with `Expect: 100-continue`.
//!
//! hyper sends the `100 Continue` when the handler first polls the body, so a
//! request refused up front (bad token, declared length over the limit) is
//! answered before the client sends its body. The final status ends the
//! upload: `200` when the recording is stored complete, 4xx/5xx with a
//! plain-text message otherwise.

use super::ingest::ingest;
use super::{text, Body, Ctx, Peer};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

pub(crate) async fn record(ctx: Arc<Ctx>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > ctx.limits.max_recording_bytes) {
        eprintln!(
            "kubecast recorder: v1 rejected peer={} bytes=0 reason=\"Content-Length {len} exceeds the limit of {} bytes\"",
            peer.addr, ctx.limits.max_recording_bytes
        );
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the recording exceeds the recorder's limit of {} bytes",
                ctx.limits.max_recording_bytes
            ),
        );
    }
    let outcome = ingest(&ctx, "v1", peer, req.into_body(), None).await;
    match outcome.result {
        Ok(()) => {
            let name = outcome
                .file
                .as_ref()
                .and_then(|f| f.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            text(
                StatusCode::OK,
                format!("stored {} bytes as {name}", outcome.bytes),
            )
        }
        Err(failure) => text(failure.status(), failure.message()),
    }
}
