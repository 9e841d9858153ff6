//! The recorder's side of the shared listener ([`crate::net`]): each
//! accepted connection is served by hyper with [`super::handle`].

use super::{Ctx, Peer};
use crate::net::{self, Accepted, H2Bulk, HttpOptions, ServeConn};
use hyper::service::service_fn;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

const H2_MAX_STREAMS: u32 = 100;

/// How far one upload may run ahead of what its writer has taken: as much
/// again as the writer's own queue, so a sync in progress does not stop
/// the sender.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// Uploads are long bodies: a cast chunk (one read of the session, up to
/// about 80 KiB once escaped) fits in one frame. Proxies carry many
/// sessions' uploads on one connection, and bytes a stalled upload has not
/// consumed hold the connection's window too; so the connection window
/// covers every stream's, and one slow recording cannot stall the others.
/// (A window is credit, not memory: what is buffered stays bounded by the
/// stream windows, as with one connection per upload.)
const H2_BULK: H2Bulk = H2Bulk {
    max_frame_size: 256 * 1024,
    stream_window: STREAM_WINDOW,
    connection_window: H2_MAX_STREAMS * STREAM_WINDOW,
};

/// Serves recorder connections.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub ctx: Arc<Ctx>,
    pub stop: watch::Receiver<bool>,
}

impl ServeConn for Recorder {
    async fn serve<I>(self, io: I, accepted: Accepted) -> Result<(), String>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = Peer {
            addr: accepted.addr,
            tls: accepted.tls,
        };
        let options = HttpOptions {
            header_timeout: self.ctx.limits.header_timeout,
            h2_max_streams: H2_MAX_STREAMS,
            h2_bulk: Some(H2_BULK),
        };
        let ctx = self.ctx;
        let service = service_fn(move |req| super::handle(ctx.clone(), peer, req));
        // Uploads are cut by the abort signal, not by dropping the connection.
        net::serve_http(io, accepted.h2, &options, service, self.stop, None).await
    }

    fn connection_error(&self, addr: Option<std::net::SocketAddr>, error: &str) {
        match addr {
            Some(addr) => eprintln!("kubecast recorder: connection from {addr}: {error}"),
            None => eprintln!("kubecast recorder: {error}"),
        }
    }
}
