//! Where the upstream API server is and how to reach it: `--upstream`, a
//! kubeconfig (`--kubeconfig`/`--context`, `$KUBECONFIG`, `~/.kube/config`)
//! or the in-cluster service account.
//!
//! The kubeconfig is read by [`kubecast_tokio::kubeconfig`], the reader the
//! audit webhook's config goes through too; this module decides what the
//! proxy does with what it finds.

use super::Args;
use kubecast_tokio::kubeconfig;
pub(crate) use kubecast_tokio::kubeconfig::Pem;
use std::path::{Path, PathBuf};

/// The in-cluster service account, mounted by the kubelet.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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
    let config = kubeconfig::from_str(text, base, context).map_err(|e| match context {
        None if e == "no current-context" => "no current-context; pick one with --context".into(),
        _ => e,
    })?;
    let unsupported = match (config.plugin, &config.basic) {
        (Some(plugin), _) => Some(plugin.describe()),
        (None, Some(_)) => Some("basic authentication"),
        (None, None) => None,
    };
    Ok(UpstreamSettings {
        server: config.server,
        source: format!("kubeconfig context {:?}", config.context),
        ca: config.ca,
        insecure_skip_tls_verify: config.insecure_skip_tls_verify,
        tls_server_name: config.tls_server_name,
        client_cert: config.client_cert,
        client_key: config.client_key,
        // tokenFile wins over token, as in client-go.
        token: match (config.token_file, config.token) {
            (Some(file), _) => Some(Token::File(file)),
            (None, Some(token)) => Some(Token::Static(token)),
            (None, None) => None,
        },
        unsupported_credentials: unsupported.map(|what| {
            format!(
                "user {:?} authenticates with {what}, which kubecast does not run; \
                 give the proxy a token (token/tokenFile) or a client certificate",
                config.user
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsing itself is specified in `kubecast_tokio::kubeconfig`;
    /// these say what the proxy makes of it.
    fn settings(user: &str) -> Result<UpstreamSettings, String> {
        let text = format!(
            "current-context: x\n\
             clusters: [{{name: c, cluster: {{server: 'https://h:6443', certificate-authority: ca.pem}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
             users: [{{name: u, user: {user}}}]\n"
        );
        from_str(&text, Path::new("/home/k/.kube"), None)
    }

    #[test]
    fn the_context_becomes_the_upstream() {
        let s = settings("{token: s3cret}").unwrap();
        assert_eq!(s.server, "https://h:6443");
        assert_eq!(s.ca, Some(Pem::File(PathBuf::from("/home/k/.kube/ca.pem"))));
        assert_eq!(s.token, Some(Token::Static("s3cret".into())));
        assert_eq!(s.source, "kubeconfig context \"x\"");
    }

    #[test]
    fn token_file_wins_over_token_as_in_client_go() {
        let s = settings("{token: old, tokenFile: token}").unwrap();
        assert_eq!(s.token, Some(Token::File("/home/k/.kube/token".into())));
    }

    #[test]
    fn plugins_and_basic_auth_are_flagged_not_run() {
        let exec = settings("{exec: {command: aws}}").unwrap();
        assert!(exec
            .unsupported_credentials
            .unwrap()
            .contains("exec credential plugin"));
        let basic = settings("{username: admin, password: pw}").unwrap();
        assert!(basic
            .unsupported_credentials
            .unwrap()
            .contains("basic authentication"));
        assert_eq!(settings("{}").unwrap().unsupported_credentials, None);
    }

    #[test]
    fn no_current_context_says_how_to_pick_one() {
        let err = from_str("clusters: []", Path::new("/"), None).unwrap_err();
        assert!(err.contains("--context"), "{err}");
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
