//! POSTs an `EventList` body to the webhook: HTTP/1.1 over TCP, rustls for
//! `https://`, keep-alive connections kept in a small idle pool. It turns
//! the outcome into the core's `Result<(), DeliveryError>`; the caller
//! bounds it with the core's send timeout.

use super::webhook::{Auth, WebhookConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use kubecast_core::audit::DeliveryError;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

/// Idle keep-alive connections kept for the next send.
const IDLE: usize = 4;
/// Most of a response body read (an error's message; the rest is dropped).
const BODY_LIMIT: usize = 64 * 1024;
/// Most of an error body quoted in a `DeliveryError`.
const MESSAGE_LIMIT: usize = 512;

type Sender = SendRequest<Full<Bytes>>;

#[derive(Debug, Clone)]
pub(super) struct Poster {
    webhook: WebhookConfig,
    idle: Arc<Mutex<Vec<Sender>>>,
}

impl Poster {
    pub(super) fn new(webhook: WebhookConfig) -> Self {
        Poster {
            webhook,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// One POST. A kept-alive connection the webhook closed meanwhile is
    /// retried once on a fresh one.
    pub(super) async fn post(&self, body: Bytes) -> Result<(), DeliveryError> {
        if let Some(sender) = self.take_idle() {
            match self.post_on(sender, body.clone()).await {
                Err(Attempt::Stale(_)) => {}
                Err(Attempt::Failed(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
        let sender = self.connect().await?;
        self.post_on(sender, body)
            .await
            .map_err(Attempt::into_error)
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, DeliveryError> {
        let uri = &self.webhook.uri;
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| transport(format!("connect {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.webhook.tls {
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| transport(format!("TLS with {host}:{port}: {e}")))?;
                handshake(TokioIo::new(tls)).await
            }
            None => handshake(TokioIo::new(tcp)).await,
        }
    }

    async fn post_on(&self, mut sender: Sender, body: Bytes) -> Result<(), Attempt> {
        sender
            .ready()
            .await
            .map_err(|e| Attempt::Stale(transport(e.to_string())))?;
        let request = self.request(body).await.map_err(Attempt::Failed)?;
        let response = sender.send_request(request).await.map_err(|e| {
            // Nothing of the request reached a server that had closed.
            if e.is_canceled() || e.is_incomplete_message() {
                Attempt::Stale(transport(e.to_string()))
            } else {
                Attempt::Failed(transport(e.to_string()))
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes());
        let keep = body.is_ok();
        if status.is_success() {
            if keep {
                self.put_idle(sender);
            }
            return Ok(());
        }
        let text = body.unwrap_or_default();
        let text = String::from_utf8_lossy(&text[..text.len().min(MESSAGE_LIMIT)]);
        Err(Attempt::Failed(DeliveryError::Status {
            code: status.as_u16(),
            message: text.trim().to_string(),
        }))
    }

    async fn request(&self, body: Bytes) -> Result<hyper::Request<Full<Bytes>>, DeliveryError> {
        let uri = &self.webhook.uri;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = hyper::Request::post(path)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, */*")
            .header(USER_AGENT, concat!("kubecast/", env!("CARGO_PKG_VERSION")));
        if let Some(authority) = uri.authority() {
            req = req.header(HOST, authority.as_str());
        }
        let auth = match &self.webhook.auth {
            Auth::Bearer { .. } => self.webhook.bearer().await.map(|t| format!("Bearer {t}")),
            Auth::Basic(v) => Some(v.clone()),
            Auth::None => None,
        };
        if let Some(v) = auth {
            let mut v = HeaderValue::from_str(&v)
                .map_err(|_| transport("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        req.body(Full::new(body))
            .map_err(|e| transport(format!("request: {e}")))
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Sender, DeliveryError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| transport(format!("HTTP/1.1: {e}")))?;
    // The connection lives as long as a sender does (the pool or a send).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn transport(message: String) -> DeliveryError {
    DeliveryError::Transport(message)
}

/// A send on a reused connection that never reached the webhook is
/// `Stale` (tried again on a new connection).
enum Attempt {
    Stale(DeliveryError),
    Failed(DeliveryError),
}

impl Attempt {
    fn into_error(self) -> DeliveryError {
        match self {
            Attempt::Stale(e) | Attempt::Failed(e) => e,
        }
    }
}
