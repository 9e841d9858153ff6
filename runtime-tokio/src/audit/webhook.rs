//! The audit webhook's address and credentials, read from a kubeconfig file
//! exactly as kube-apiserver reads `--audit-webhook-config-file`: the
//! current context's cluster (`server`, `certificate-authority[-data]`,
//! `insecure-skip-tls-verify`, `tls-server-name`) and user (`token` /
//! `tokenFile`, `client-certificate[-data]` + `client-key[-data]`,
//! `username` + `password`). Relative paths are relative to the file. The
//! file is read by [`crate::kubeconfig`], as the proxy's upstream is.

use crate::kubeconfig::{self, Pem};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a webhook kubeconfig was rejected. The message names the file and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit webhook config {source_name}: {message}")]
pub struct WebhookConfigError {
    source_name: String,
    message: String,
}

/// Where the webhook is and how to authenticate to it. Cheap to clone.
#[derive(Clone)]
pub struct WebhookConfig {
    pub(crate) uri: hyper::Uri,
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub(crate) auth: Auth,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    /// `token`, or `tokenFile` (re-read for every request, the static
    /// token as fallback when it cannot be read — as client-go does).
    Bearer {
        token: Option<String>,
        file: Option<PathBuf>,
    },
    /// `Authorization: Basic …`, ready to send.
    Basic(String),
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Bearer { file: Some(_), .. } => "bearer token file",
            Auth::Bearer { .. } => "bearer token",
            Auth::Basic(_) => "basic",
        };
        f.debug_struct("WebhookConfig")
            .field("server", &self.uri)
            .field("tls", &self.tls.is_some())
            .field("auth", &auth)
            .finish()
    }
}

impl WebhookConfig {
    /// A webhook without credentials (`http://` or `https://` with the
    /// system's roots).
    pub fn from_url(url: &str) -> Result<Self, WebhookConfigError> {
        let err = |message: String| WebhookConfigError {
            source_name: url.to_string(),
            message,
        };
        let uri = parse_server(url).map_err(err)?;
        let tls = tls_for(&uri, None, false, None, None).map_err(err)?;
        Ok(WebhookConfig {
            uri,
            tls,
            auth: Auth::None,
        })
    }

    /// Reads `--audit-webhook-config-file`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, WebhookConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| WebhookConfigError {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| WebhookConfigError {
            source_name: path.display().to_string(),
            message,
        })
    }

    /// Parses kubeconfig text; relative paths are relative to `base`.
    pub fn from_kubeconfig_str(text: &str, base: &Path) -> Result<Self, WebhookConfigError> {
        Self::parse(text, base).map_err(|message| WebhookConfigError {
            source_name: "(inline)".into(),
            message,
        })
    }

    /// The URL events are POSTed to.
    pub fn server(&self) -> &hyper::Uri {
        &self.uri
    }

    fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let config = kubeconfig::from_str(text, base, None)?;
        let uri = parse_server(&config.server)
            .map_err(|e| format!("cluster {:?}: {e}", config.cluster))?;
        let who = &config.user;
        if let Some(plugin) = config.plugin {
            return Err(format!(
                "user {who:?}: {} is not supported; use a token, tokenFile or a client certificate",
                plugin.describe()
            ));
        }
        let ca = config
            .ca
            .as_ref()
            .map(Pem::read)
            .transpose()
            .map_err(|e| format!("certificate-authority {e}"))?;
        let client = match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let cert = cert.read().map_err(|e| format!("client-certificate {e}"))?;
                let key = key.read().map_err(|e| format!("client-key {e}"))?;
                Some(client_identity(&cert, &key)?)
            }
            _ => None,
        };
        let auth = if config.token.is_some() || config.token_file.is_some() {
            if let (None, Some(f)) = (&config.token, &config.token_file) {
                std::fs::read_to_string(f)
                    .map_err(|e| format!("user {who:?}: tokenFile {}: {e}", f.display()))?;
            }
            Auth::Bearer {
                token: config.token,
                file: config.token_file,
            }
        } else if let Some((name, password)) = &config.basic {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
            Auth::Basic(format!("Basic {encoded}"))
        } else {
            Auth::None
        };
        let tls = tls_for(
            &uri,
            ca,
            config.insecure_skip_tls_verify,
            client,
            config.tls_server_name.as_deref(),
        )?;
        Ok(WebhookConfig { uri, tls, auth })
    }

    /// The bearer token for the next request (`tokenFile` is re-read).
    pub(crate) async fn bearer(&self) -> Option<String> {
        let Auth::Bearer { token, file } = &self.auth else {
            return None;
        };
        if let Some(f) = file {
            if let Ok(t) = tokio::fs::read_to_string(f).await {
                let t = t.trim();
                if !t.is_empty() {
                    return Some(t.to_string());
                }
            }
        }
        token.clone()
    }
}

fn parse_server(server: &str) -> Result<hyper::Uri, String> {
    if server.is_empty() {
        return Err("no server".into());
    }
    let uri: hyper::Uri = server
        .parse()
        .map_err(|e| format!("server {server:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(format!(
            "server {server:?}: want http://host[:port][/path] or https://…"
        )),
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &[u8], key: &[u8]) -> Result<Identity, String> {
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client-certificate: {e}"))?;
    if certs.is_empty() {
        return Err("client-certificate: no PEM certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client-key: {e}"))?;
    Ok((certs, key))
}

fn tls_for(
    uri: &hyper::Uri,
    ca: Option<Vec<u8>>,
    insecure: bool,
    client: Option<Identity>,
    server_name: Option<&str>,
) -> Result<Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>, String> {
    if uri.scheme_str() != Some("https") {
        return Ok(None);
    }
    let host = server_name.or(uri.host()).unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| format!("server name {host:?}: {e}"))?;
    let config = super::tls::client_config(ca.as_deref(), insecure, client)?;
    Ok(Some((config, name)))
}
