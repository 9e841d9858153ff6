//! The audit webhook's address and credentials, read from a kubeconfig file
//! exactly as kube-apiserver reads `--audit-webhook-config-file`: the
//! current context's cluster (`server`, `certificate-authority[-data]`,
//! `insecure-skip-tls-verify`, `tls-server-name`) and user (`token` /
//! `tokenFile`, `client-certificate[-data]` + `client-key[-data]`,
//! `username` + `password`). Relative paths are relative to the file.

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
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

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Kubeconfig {
    clusters: Vec<Named<Cluster>>,
    contexts: Vec<Named<Context>>,
    users: Vec<Named<User>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: Option<T>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
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
        let config: Kubeconfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let name = &config.current_context;
        if name.is_empty() {
            return Err("no current-context".into());
        }
        let ctx = lookup(&config.contexts, "context", name, name)?;
        let cluster = lookup(&config.clusters, "cluster", &ctx.cluster, name)?;
        let user = match ctx.user.as_str() {
            "" => None,
            u => Some(lookup(&config.users, "user", u, name)?),
        };
        let uri =
            parse_server(&cluster.server).map_err(|e| format!("cluster {:?}: {e}", ctx.cluster))?;
        let path = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let pem = |file: &Option<PathBuf>, data: &Option<String>, field: &str| {
            pem_bytes(file.as_ref().map(&path), data.as_deref(), field)
        };
        let ca = pem(
            &cluster.certificate_authority,
            &cluster.certificate_authority_data,
            "certificate-authority",
        )?;
        if ca.is_some() && cluster.insecure_skip_tls_verify {
            return Err(format!(
                "cluster {:?}: certificate-authority and insecure-skip-tls-verify together \
                 are not allowed (as in kubectl)",
                ctx.cluster
            ));
        }
        let mut client = None;
        let mut auth = Auth::None;
        if let Some(u) = user {
            let who = &ctx.user;
            if u.exec.is_some() || u.auth_provider.is_some() {
                return Err(format!(
                    "user {who:?}: exec plugins and auth-providers are not supported; \
                     use a token, tokenFile or a client certificate"
                ));
            }
            let cert = pem(
                &u.client_certificate,
                &u.client_certificate_data,
                "client-certificate",
            )?;
            let key = pem(&u.client_key, &u.client_key_data, "client-key")?;
            client = match (cert, key) {
                (Some(c), Some(k)) => Some(client_identity(&c, &k)?),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "user {who:?}: client-certificate and client-key go together"
                    ))
                }
            };
            let token = u.token.clone().filter(|t| !t.is_empty());
            let file = u.token_file.as_ref().map(&path);
            if let Some(f) = &file {
                if token.is_none() {
                    std::fs::read_to_string(f)
                        .map_err(|e| format!("user {who:?}: tokenFile {}: {e}", f.display()))?;
                }
            }
            if token.is_some() || file.is_some() {
                auth = Auth::Bearer { token, file };
            } else if let Some(name) = u.username.as_deref().filter(|n| !n.is_empty()) {
                let pair = format!("{name}:{}", u.password.as_deref().unwrap_or(""));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                auth = Auth::Basic(format!("Basic {encoded}"));
            }
        }
        let tls = tls_for(
            &uri,
            ca,
            cluster.insecure_skip_tls_verify,
            client,
            cluster.tls_server_name.as_deref().filter(|s| !s.is_empty()),
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

/// The entry called `want`, referred to by context `ctx`.
fn lookup<'a, T>(list: &'a [Named<T>], what: &str, want: &str, ctx: &str) -> Result<&'a T, String> {
    let entry = list
        .iter()
        .find(|n| n.name == want)
        .ok_or_else(|| format!("{what} {want:?} (of context {ctx:?}) not found"))?;
    entry
        .value
        .as_ref()
        .ok_or_else(|| format!("{what} {want:?} has no {what} field"))
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

fn pem_bytes(
    file: Option<PathBuf>,
    data: Option<&str>,
    field: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        let compact: String = data.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(Some)
            .map_err(|e| format!("{field}-data: not base64: {e}"));
    }
    match file {
        Some(f) => std::fs::read(&f)
            .map(Some)
            .map_err(|e| format!("{field} {}: {e}", f.display())),
        None => Ok(None),
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
