//! One reader of kubeconfig files, for everything kubecast points at with
//! one: the proxy's upstream (`--kubeconfig`, `~/.kube/config`) and the
//! audit webhook (`--audit-webhook-config-file`, which kube-apiserver also
//! reads as a kubeconfig).
//!
//! The file is parsed with `serde_yaml_ng` (the maintained fork of the
//! archived `serde_yaml`: the YAML 1.1 that `kubectl config` writes reads as
//! kubectl reads it). Only the fields that say where a server is and how to
//! authenticate are read; unknown ones are ignored, as client-go does. What
//! a caller does with credentials it cannot use (exec plugins,
//! auth-providers, basic authentication) is its own decision: the reader
//! reports them in [`Resolved`] rather than refusing.
//!
//! Semantics follow client-go: relative paths are relative to the file,
//! `*-data` fields win over the file fields, `tokenFile` wins over `token`
//! (which stays as the fallback while the file cannot be read), and a CA
//! together with `insecure-skip-tls-verify` is an error.

use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// PEM bytes from a file or from a kubeconfig `*-data` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Data(Vec<u8>),
}

impl Pem {
    /// The PEM bytes (reads the file now).
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::File(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
            Pem::Data(bytes) => Ok(bytes.clone()),
        }
    }
}

/// Credentials in a kubeconfig user that kubecast does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// `user.exec`: a credential plugin command.
    Exec,
    /// `user.auth-provider`: gcp, azure, oidc… (removed from kubectl).
    AuthProvider,
}

impl Plugin {
    /// What the plugin is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Plugin::Exec => "an exec credential plugin",
            Plugin::AuthProvider => "an auth-provider",
        }
    }
}

/// The selected context of a kubeconfig: its cluster and user, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The context's name.
    pub context: String,
    /// The cluster's name (for messages).
    pub cluster: String,
    /// The user's name (empty when the context names none).
    pub user: String,
    /// `https://host:port[/prefix]` or `http://…`, never empty.
    pub server: String,
    pub ca: Option<Pem>,
    pub insecure_skip_tls_verify: bool,
    /// Name to verify the server certificate against instead of the host.
    pub tls_server_name: Option<String>,
    /// Client certificate and key; both or neither.
    pub client_cert: Option<Pem>,
    pub client_key: Option<Pem>,
    /// `token` (non-empty).
    pub token: Option<String>,
    /// `tokenFile`, made absolute; takes precedence over `token`.
    pub token_file: Option<PathBuf>,
    /// `username` and `password` (basic authentication).
    pub basic: Option<(String, String)>,
    /// A credential plugin the user names, which kubecast does not run.
    pub plugin: Option<Plugin>,
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

/// Reads the kubeconfig at `path` and resolves `context` (default: its
/// `current-context`). Errors name the file.
pub fn from_file(path: &Path, context: Option<&str>) -> Result<Resolved, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str(&text, base, context).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses kubeconfig text and resolves `context` (default: its
/// `current-context`); relative paths are relative to `base`.
pub fn from_str(text: &str, base: &Path, context: Option<&str>) -> Result<Resolved, String> {
    let config: Kubeconfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let name = match context {
        Some(name) => name,
        None if config.current_context.is_empty() => return Err("no current-context".into()),
        None => config.current_context.as_str(),
    };
    let ctx = lookup(&config.contexts, "context", name, name)?;
    let cluster = lookup(&config.clusters, "cluster", &ctx.cluster, name)?;
    let user = match ctx.user.as_str() {
        "" => None,
        u => Some(lookup(&config.users, "user", u, name)?),
    };
    if cluster.server.is_empty() {
        return Err(format!("cluster {:?} has no server", ctx.cluster));
    }
    let absolute = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let pem = |file: &Option<PathBuf>, data: &Option<String>, field: &str| {
        if let Some(data) = data.as_deref().filter(|d| !d.is_empty()) {
            let compact: String = data.split_whitespace().collect();
            return base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|bytes| Some(Pem::Data(bytes)))
                .map_err(|e| format!("{field}-data: not base64: {e}"));
        }
        Ok(file.as_ref().map(|p| Pem::File(absolute(p))))
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
    let mut resolved = Resolved {
        context: name.to_string(),
        cluster: ctx.cluster.clone(),
        user: ctx.user.clone(),
        server: cluster.server.clone(),
        ca,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
        tls_server_name: cluster.tls_server_name.clone().filter(|s| !s.is_empty()),
        client_cert: None,
        client_key: None,
        token: None,
        token_file: None,
        basic: None,
        plugin: None,
    };
    if let Some(u) = user {
        resolved.client_cert = pem(
            &u.client_certificate,
            &u.client_certificate_data,
            "client-certificate",
        )?;
        resolved.client_key = pem(&u.client_key, &u.client_key_data, "client-key")?;
        if resolved.client_cert.is_some() != resolved.client_key.is_some() {
            return Err(format!(
                "user {:?}: client-certificate and client-key go together",
                ctx.user
            ));
        }
        resolved.token = u.token.clone().filter(|t| !t.is_empty());
        resolved.token_file = u.token_file.as_ref().map(absolute);
        resolved.basic = u
            .username
            .clone()
            .filter(|n| !n.is_empty())
            .map(|name| (name, u.password.clone().unwrap_or_default()));
        resolved.plugin = if u.exec.is_some() {
            Some(Plugin::Exec)
        } else if u.auth_provider.is_some() {
            Some(Plugin::AuthProvider)
        } else {
            None
        };
    }
    Ok(resolved)
}

/// The entry called `want`, referred to by context `ctx`.
fn lookup<'a, T>(list: &'a [Named<T>], what: &str, want: &str, ctx: &str) -> Result<&'a T, String> {
    let entry = list
        .iter()
        .find(|n| n.name == want)
        .ok_or_else(|| match what {
            "context" => format!("context {want:?} not found"),
            _ => format!("{what} {want:?} (of context {ctx:?}) not found"),
        })?;
    entry
        .value
        .as_ref()
        .ok_or_else(|| format!("{what} {want:?} has no {what} field"))
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
    certificate-authority-data: LS0tLS1CRUdJTi
      BDRVJUSUZJQ0FURS0tLS0t
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: default}
- name: two
  context:
    cluster: c2
    user: u2
- name: three
  context: {cluster: c1, user: u3}
users:
- name: u1
  user:
    token: s3cret
- name: u2
  user:
    token: fallback
    tokenFile: token
    client-certificate: /pki/client.crt
    client-key: key.pem
- name: u3
  user: {username: admin, password: pw, exec: {command: aws}}
"#;

    #[test]
    fn the_current_context_with_paths_relative_to_the_file() {
        let r = from_str(CONFIG, Path::new("/home/k/.kube"), None).unwrap();
        assert_eq!(r.context, "one");
        assert_eq!(r.server, "https://one.example:6443");
        assert_eq!(r.ca, Some(Pem::File("/home/k/.kube/ca.pem".into())));
        assert_eq!(r.token.as_deref(), Some("s3cret"));
        assert_eq!((r.client_cert, r.token_file, r.plugin), (None, None, None));
    }

    #[test]
    fn a_named_context_with_inline_data_and_both_token_kinds() {
        let r = from_str(CONFIG, Path::new("/k"), Some("two")).unwrap();
        assert_eq!(r.server, "http://127.0.0.1:8080");
        assert_eq!(
            r.ca,
            Some(Pem::Data(b"-----BEGIN CERTIFICATE-----".to_vec()))
        );
        assert_eq!(r.token.as_deref(), Some("fallback"));
        assert_eq!(r.token_file, Some(PathBuf::from("/k/token")));
        assert_eq!(r.client_cert, Some(Pem::File("/pki/client.crt".into())));
        assert_eq!(r.client_key, Some(Pem::File("/k/key.pem".into())));
    }

    #[test]
    fn plugins_and_basic_auth_are_reported_not_refused() {
        let r = from_str(CONFIG, Path::new("/k"), Some("three")).unwrap();
        assert_eq!(r.plugin, Some(Plugin::Exec));
        assert_eq!(r.basic, Some(("admin".into(), "pw".into())));
    }

    #[test]
    fn what_is_refused_names_the_problem() {
        let err = |text: &str, ctx: Option<&str>| from_str(text, Path::new("/"), ctx).unwrap_err();
        assert!(err(CONFIG, Some("four")).contains("context \"four\""));
        assert!(err("clusters: []", None).contains("no current-context"));
        let header = "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n";
        let no_user =
            format!("{header}clusters: [{{name: c, cluster: {{server: 'https://h'}}}}]\n");
        assert!(err(&no_user, None).contains("user \"u\" (of context \"x\") not found"));
        let no_server = format!(
            "{header}clusters: [{{name: c, cluster: {{}}}}]\nusers: [{{name: u, user: {{}}}}]\n"
        );
        assert!(err(&no_server, None).contains("no server"));
        let half_identity = format!(
            "{header}clusters: [{{name: c, cluster: {{server: 'https://h'}}}}]\n\
             users: [{{name: u, user: {{client-key: k.pem}}}}]\n"
        );
        assert!(err(&half_identity, None).contains("go together"));
        let ca_and_insecure = format!(
            "{header}clusters: [{{name: c, cluster: {{server: 'https://h', \
             certificate-authority: ca.pem, insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n"
        );
        assert!(err(&ca_and_insecure, None).contains("not allowed"));
        let bad_base64 = format!(
            "{header}clusters: [{{name: c, cluster: {{server: 'https://h', \
             certificate-authority-data: '!!'}}}}]\nusers: [{{name: u, user: {{}}}}]\n"
        );
        assert!(err(&bad_base64, None).contains("not base64"));
    }
}
