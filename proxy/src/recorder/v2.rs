//! v2: `POST /v2/record` over HTTP/2.
//!
//! The `200` goes out at once; its body is a stream of newline-delimited JSON
//! frames: `{"ack":N}` (N = bytes of the cast written and fsync'd so far) at
//! least every [`ACK_INTERVAL`](super::ACK_INTERVAL) and shortly after
//! progress, then either a final ack of the whole recording followed by the
//! end of the stream, or one `{"error":"…"}` frame and the end.

use super::ingest::{ack_frame, error_frame, ingest};
use super::{Body, Ctx, Peer, FINAL_FRAME_TIMEOUT};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Frames queued for a client that is slow to read them.
const FRAME_QUEUE: usize = 16;

pub(crate) fn record(ctx: Arc<Ctx>, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let (tx, rx) = mpsc::channel(FRAME_QUEUE);
    let body = req.into_body();
    tokio::spawn(async move {
        let outcome = ingest(&ctx, "v2", peer, body, Some(&tx)).await;
        let last = match outcome.result {
            Ok(()) => ack_frame(outcome.bytes),
            Err(failure) => error_frame(&failure.message()),
        };
        let _ = tokio::time::timeout(FINAL_FRAME_TIMEOUT, tx.send(last)).await;
        // Dropping `tx` ends the response body.
    });
    let mut response = Response::new(Frames(rx).boxed());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The response body: frames from the upload task until it drops its sender.
#[derive(Debug)]
struct Frames(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
