//! Where the upstream API server is and how to reach it: `--upstream`, a
//! kubeconfig (`--kubeconfig`/`--context`, `$KUBECONFIG`, `~/.kube/config`)
//! or the in-cluster service account.
//!
//! The kubeconfig is read with `serde_yaml_ng`, the maintained drop-in fork
//! of the archived `serde_yaml` (same API, same libyaml-based parser, so
//! the YAML 1.1 that `kubectl config` writes reads as kubectl reads it).
//! Only the fields that matter to a proxy are read; unknown ones are
//! ignored, as client-go does.

use super::Args;
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The in-cluster service account, mounted by the kubelet.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// PEM bytes from a file or from a kubeconfig `*-data` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pem {
    File(PathBuf),
    Data(Vec<u8>),
}

/// A bearer token, given or read from a file (re-read as it rotates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Static(String),
    File(PathBuf),
}

/// Everything needed to reach the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamSettings {
    /// `https://host:port[/prefix]` or `http://…`.
    pub server: String,
    /// Where these settings came from, for the startup log.
    pub source: String,
    pub ca: Option<Pem>,
    pub insecure_skip_tls_verify: bool,
    /// Name to verify the server certificate against instead of the host.
    pub tls_server_name: Option<String>,
    pub client_cert: Option<Pem>,
    pub client_key: Option<Pem>,
    pub token: Option<Token>,
    /// Credentials in the kubeconfig this proxy cannot use (exec plugins,
    /// auth providers, basic auth): an error only when credentials are needed.
    pub unsupported_credentials: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Kubeconfig {
    clusters: Vec<NamedCluster>,
    contexts: Vec<NamedContext>,
    users: Vec<NamedUser>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Cluster,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Context,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
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
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
    username: Option<String>,
}

/// Resolves the upstream from the command line and the environment.
pub(crate) fn resolve(args: &Args) -> Result<UpstreamSettings, String> {
    if let Some(url) = &args.upstream {
        return Ok(UpstreamSettings {
            server: url.clone(),
            source: "--upstream".into(),
            ca: args.upstream_ca.clone().map(Pem::File),
            insecure_skip_tls_verify: args.upstream_insecure_skip_tls_verify,
            tls_server_name: None,
            client_cert: None,
            client_key: None,
            token: args.upstream_token_file.clone().map(Token::File),
            unsupported_credentials: None,
        });
    }
    if let Some(path) = &args.kubeconfig {
        return from_file(path, args.context.as_deref());
    }
    if args.context.is_none() {
        if let Some(host) = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .filter(|h| !h.is_empty())
        {
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            return Ok(in_cluster(&host, &port, Path::new(SERVICE_ACCOUNT_DIR)));
        }
    }
    let path = default_kubeconfig()?;
    from_file(&path, args.context.as_deref())
}

/// The in-cluster service account's settings.
pub(crate) fn in_cluster(host: &str, port: &str, dir: &Path) -> UpstreamSettings {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    UpstreamSettings {
        server: format!("https://{host}:{port}"),
        source: format!("in-cluster service account ({})", dir.display()),
        ca: Some(Pem::File(dir.join("ca.crt"))),
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        client_cert: None,
        client_key: None,
        token: Some(Token::File(dir.join("token"))),
        unsupported_credentials: None,
    }
}

/// `$KUBECONFIG` (one file) or `~/.kube/config`.
fn default_kubeconfig() -> Result<PathBuf, String> {
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&value).collect();
        if paths.len() != 1 {
            return Err(format!(
                "$KUBECONFIG lists {} files; kubecast reads one kubeconfig: pass it with --kubeconfig",
                paths.len()
            ));
        }
        return Ok(paths.into_iter().next().unwrap_or_default());
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        "no upstream: pass --upstream or --kubeconfig (no KUBERNETES_SERVICE_HOST, no $HOME)"
            .to_string()
    })?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// Reads a kubeconfig file and picks `context` (or its current context).
pub(crate) fn from_file(path: &Path, context: Option<&str>) -> Result<UpstreamSettings, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str(&text, base, context).map_err(|e| format!("kubeconfig {}: {e}", path.display()))
}

/// Parses kubeconfig text; relative paths are relative to `base`.
pub(crate) fn from_str(
    text: &str,
    base: &Path,
    context: Option<&str>,
) -> Result<UpstreamSettings, String> {
    let config: Kubeconfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let name = match context {
        Some(name) => name.to_string(),
        None => config
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or("no current-context; pick one with --context")?,
    };
    let ctx = &config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("context {name:?} not found"))?
        .context;
    let cluster = &config
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| format!("cluster {:?} (of context {name:?}) not found", ctx.cluster))?
        .cluster;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("cluster {:?} has no server", ctx.cluster))?;
    let user = if ctx.user.is_empty() {
        None
    } else {
        Some(
            &config
                .users
                .iter()
                .find(|u| u.name == ctx.user)
                .ok_or_else(|| format!("user {:?} (of context {name:?}) not found", ctx.user))?
                .user,
        )
    };
    let resolve_path = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let pem = |file: &Option<PathBuf>, data: &Option<String>, field: &str| -> Result<_, String> {
        if let Some(data) = data.as_deref().filter(|d| !d.is_empty()) {
            let compact: String = data.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| format!("{field}-data: {e}"))?;
            return Ok(Some(Pem::Data(bytes)));
        }
        Ok(file.as_ref().map(|p| Pem::File(resolve_path(p))))
    };
    let mut settings = UpstreamSettings {
        server,
        source: format!("kubeconfig context {name:?}"),
        ca: pem(
            &cluster.certificate_authority,
            &cluster.certificate_authority_data,
            "certificate-authority",
        )?,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        tls_server_name: cluster.tls_server_name.clone().filter(|s| !s.is_empty()),
        client_cert: None,
        client_key: None,
        token: None,
        unsupported_credentials: None,
    };
    if let Some(user) = user {
        settings.client_cert = pem(
            &user.client_certificate,
            &user.client_certificate_data,
            "client-certificate",
        )?;
        settings.client_key = pem(&user.client_key, &user.client_key_data, "client-key")?;
        if settings.client_cert.is_some() != settings.client_key.is_some() {
            return Err(format!(
                "user {:?}: client-certificate and client-key go together",
                ctx.user
            ));
        }
        settings.token = match (&user.token, &user.token_file) {
            (Some(token), _) if !token.is_empty() => Some(Token::Static(token.clone())),
            (_, Some(file)) => Some(Token::File(resolve_path(file))),
            _ => None,
        };
        let unsupported = if user.exec.is_some() {
            Some("an exec credential plugin")
        } else if user.auth_provider.is_some() {
            Some("an auth-provider")
        } else if user.username.is_some() {
            Some("basic authentication")
        } else {
            None
        };
        settings.unsupported_credentials = unsupported.map(|what| {
            format!(
                "user {:?} authenticates with {what}, which kubecast does not run; \
                 give the proxy a token (token/tokenFile) or a client certificate",
                ctx.user
            )
        });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster:
    server: https://one.example:6443
    certificate-authority: ca.pem
- name: c2
  cluster:
    server: http://127.0.0.1:8080
    insecure-skip-tls-verify: true
    certificate-authority-data: LS0tLS1CRUdJTi
      BDRVJUSUZJQ0FURS0tLS0t
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: default}
- name: two
  context:
    cluster: c2
    user: u2
users:
- name: u1
  user:
    token: s3cret
- name: u2
  user:
    tokenFile: /run/token
    client-certificate: /pki/client.crt
    client-key: key.pem
"#;

    #[test]
    fn current_context_and_relative_paths() {
        let s = from_str(CONFIG, Path::new("/home/k/.kube"), None).unwrap();
        assert_eq!(s.server, "https://one.example:6443");
        assert_eq!(s.ca, Some(Pem::File(PathBuf::from("/home/k/.kube/ca.pem"))));
        assert_eq!(s.token, Some(Token::Static("s3cret".into())));
        assert_eq!(s.client_cert, None);
    }

    #[test]
    fn context_selects() {
        let s = from_str(CONFIG, Path::new("/k"), Some("two")).unwrap();
        assert_eq!(s.server, "http://127.0.0.1:8080");
        assert!(s.insecure_skip_tls_verify);
        assert_eq!(
            s.ca,
            Some(Pem::Data(b"-----BEGIN CERTIFICATE-----".to_vec()))
        );
        assert_eq!(s.token, Some(Token::File("/run/token".into())));
        assert_eq!(s.client_key, Some(Pem::File(PathBuf::from("/k/key.pem"))));
        let err = from_str(CONFIG, Path::new("/k"), Some("three")).unwrap_err();
        assert!(err.contains("\"three\" not found"), "{err}");
    }

    #[test]
    fn exec_plugins_are_flagged_not_run() {
        let text = "current-context: x\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n\
                    contexts: [{name: x, context: {cluster: c, user: u}}]\n\
                    users: [{name: u, user: {exec: {command: aws}}}]\n";
        let s = from_str(text, Path::new("/"), None).unwrap();
        assert!(s
            .unsupported_credentials
            .unwrap()
            .contains("exec credential plugin"));
    }

    #[test]
    fn in_cluster_uses_the_service_account() {
        let s = in_cluster("10.0.0.1", "443", Path::new("/sa"));
        assert_eq!(s.server, "https://10.0.0.1:443");
        assert_eq!(s.token, Some(Token::File("/sa/token".into())));
        assert_eq!(
            in_cluster("fd00::1", "6443", Path::new("/sa")).server,
            "https://[fd00::1]:6443"
        );
    }
}
