//! The recorder's side of the shared listener ([`crate::net`]): each
//! accepted connection is served by hyper with [`super::handle`].

use super::{Ctx, Peer};
use crate::net::{self, Accepted, HttpOptions, ServeConn};
use hyper::service::service_fn;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

const H2_MAX_STREAMS: u32 = 100;

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
