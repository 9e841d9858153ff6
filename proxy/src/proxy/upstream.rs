//! The connection to the upstream API server: two hyper clients over one
//! rustls config (one for ordinary requests, ALPN `h2`/`http/1.1`; one for
//! upgrades, HTTP/1.1 only, since exec/attach/port-forward upgrade over
//! HTTP/1.1), and the proxy's own credentials.

use super::kubeconfig::{Pem, Token, UpstreamSettings};
use super::Body;
use crate::net;
use hyper::header::HeaderValue;
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::Uri;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kubecast_tokio::tls::SkipServerVerification;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a token file is read again (service account tokens rotate).
const TOKEN_RELOAD: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The upstream, ready to send to.
#[derive(Debug)]
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: hyper::http::uri::Authority,
    /// The server URL's path, without a trailing `/` (usually empty).
    prefix: String,
    /// Ordinary requests.
    pub client: HttpClient,
    /// Upgrade requests (HTTP/1.1 only).
    pub upgrade_client: HttpClient,
    token: Option<TokenSource>,
    /// `server (source)`, for logs.
    pub describe: String,
}

impl Upstream {
    /// Builds the clients. The proxy's own credentials (client certificate,
    /// token) are used only when `with_credentials` (token/x509 auth): with
    /// `noauth` the caller's credentials go upstream, and presenting the
    /// proxy's certificate too would make the API server authenticate every
    /// caller as the proxy.
    pub fn new(
        settings: &UpstreamSettings,
        with_credentials: bool,
        connect_timeout: Duration,
    ) -> Result<Upstream, String> {
        let uri: Uri = settings
            .server
            .parse()
            .map_err(|e| format!("upstream server {:?}: {e}", settings.server))?;
        let scheme = uri
            .scheme()
            .cloned()
            .filter(|s| *s == Scheme::HTTP || *s == Scheme::HTTPS)
            .ok_or_else(|| format!("upstream server {:?}: not an http(s) URL", settings.server))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream server {:?}: no host", settings.server))?;
        let prefix = uri.path().trim_end_matches('/').to_string();

        if with_credentials {
            if let Some(why) = &settings.unsupported_credentials {
                return Err(why.clone());
            }
        }
        let token = match (&settings.token, with_credentials) {
            (Some(token), true) => Some(TokenSource::new(token.clone())?),
            _ => None,
        };
        let client_auth = match (
            &settings.client_cert,
            &settings.client_key,
            with_credentials,
        ) {
            (Some(cert), Some(key), true) => Some((
                read_certs(cert, "upstream client certificate")?,
                read_key(key, "upstream client key")?,
            )),
            _ => None,
        };
        // hyper-rustls sets ALPN itself: h2 and http/1.1 for ordinary
        // requests, none (HTTP/1.1) for upgrades.
        let tls = || -> Result<rustls::ClientConfig, String> {
            let auth = client_auth
                .as_ref()
                .map(|(certs, key)| (certs.clone(), key.clone_key()));
            client_tls(settings, auth)
        };
        let connector = |config: rustls::ClientConfig, h2: bool| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(connect_timeout));
            http.set_nodelay(true);
            http.set_keepalive(Some(Duration::from_secs(30)));
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http();
            let builder = match settings.tls_server_name.as_deref() {
                Some(name) => {
                    let name = ServerName::try_from(name.to_string())
                        .map_err(|e| format!("tls-server-name {name:?}: {e}"))?;
                    builder.with_server_name_resolver(FixedServerNameResolver::new(name))
                }
                None => builder,
            };
            Ok::<_, String>(if h2 {
                builder.enable_http1().enable_http2().wrap_connector(http)
            } else {
                builder.enable_http1().wrap_connector(http)
            })
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20));
        let client = builder.build(connector(tls()?, true)?);
        let upgrade_client = builder.build(connector(tls()?, false)?);
        Ok(Upstream {
            describe: format!("{} ({})", settings.server, settings.source),
            scheme,
            authority,
            prefix,
            client,
            upgrade_client,
            token,
        })
    }

    /// The upstream URI for a request's path and query.
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, String> {
        let pq = path_and_query.map(|p| p.as_str()).unwrap_or("/");
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.prefix))
            .build()
            .map_err(|e| e.to_string())
    }

    /// `Authorization` for the proxy's own token, if it has one.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, String> {
        let Some(source) = &self.token else {
            return Ok(None);
        };
        let token = source.get()?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map(|mut v| {
                v.set_sensitive(true);
                Some(v)
            })
            .map_err(|_| "the upstream token is not a valid header value".to_string())
    }

    /// Whether the proxy has credentials of its own for the upstream.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

fn read_pem(pem: &Pem) -> Result<(Vec<u8>, String), String> {
    match pem {
        Pem::File(path) => std::fs::read(path)
            .map(|b| (b, path.display().to_string()))
            .map_err(|e| format!("{}: {e}", path.display())),
        Pem::Data(bytes) => Ok((bytes.clone(), "inline data".into())),
    }
}

fn read_certs(pem: &Pem, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let (bytes, from) = read_pem(pem).map_err(|e| format!("{what}: {e}"))?;
    net::parse_certs(&bytes, &format!("{what} ({from})"))
}

fn read_key(pem: &Pem, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    let (bytes, from) = read_pem(pem).map_err(|e| format!("{what}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("{what} ({from}): {e}"))
}

/// The rustls client config: the given CA, else the system's roots; no
/// verification at all with `insecure-skip-tls-verify`.
fn client_tls(
    settings: &UpstreamSettings,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, String> {
    let provider = net::crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if settings.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipServerVerification::new(provider)))
    } else {
        let roots = match &settings.ca {
            Some(ca) => net::root_store(read_certs(ca, "upstream CA")?, "upstream CA")?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(found.certs);
                roots
            }
        };
        builder.with_root_certificates(roots)
    };
    match client_auth {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("upstream client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A bearer token; a token file is read again every [`TOKEN_RELOAD`].
#[derive(Debug)]
struct TokenSource {
    file: Option<PathBuf>,
    cached: Mutex<(Instant, String)>,
}

impl TokenSource {
    fn new(token: Token) -> Result<TokenSource, String> {
        match token {
            Token::Static(token) => Ok(TokenSource {
                file: None,
                cached: Mutex::new((Instant::now(), token)),
            }),
            Token::File(path) => {
                let token = read_token_file(&path)?;
                Ok(TokenSource {
                    file: Some(path),
                    cached: Mutex::new((Instant::now(), token)),
                })
            }
        }
    }

    fn get(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.file {
            if cached.0.elapsed() >= TOKEN_RELOAD {
                // Keep the last good token if the file is briefly unreadable
                // (the kubelet swaps it with a rename).
                if let Ok(token) = read_token_file(path) {
                    cached.1 = token;
                }
                cached.0 = Instant::now();
            }
        }
        Ok(cached.1.clone())
    }
}

fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("upstream token file {}: {e}", path.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(format!("upstream token file {}: empty", path.display()));
    }
    Ok(token.to_string())
}
