//! The webhook kubeconfig: parsed by us and accepted by the real
//! `kubectl config view`; a TLS webhook with a private CA and a bearer
//! token; clear errors.

mod audit_support;

use audit_support::{bounded, ev, fast_config, ids, scratch, Receiver};
use base64::Engine;
use kubecast_tokio::{AuditSink, WebhookConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Pki {
    ca_pem: String,
    server: tokio_rustls::TlsAcceptor,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecast audit test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

fn kubeconfig(server: &str, ca_pem: &str, user: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
current-context: webhook
clusters:
- name: audit-sink
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: webhook
  context:
    cluster: audit-sink
    user: kube-apiserver
users:
- name: kube-apiserver
  user:
{user}
"
    )
}

/// `kubectl config view --kubeconfig F` accepts the file; skips loudly
/// without kubectl (fails when `CI` is set).
async fn kubectl_accepts(file: &Path, server: &str) {
    let Some(kubectl) = kubecast_tests::kubectl::kubectl_or_skip("audit webhook kubeconfig") else {
        return;
    };
    let out = tokio::process::Command::new(kubectl)
        .arg("config")
        .arg("view")
        .arg("--kubeconfig")
        .arg(file)
        .arg("-o")
        .arg(
            "jsonpath={.clusters[0].cluster.server} {.contexts[0].context.user} {.current-context}",
        )
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("kubectl timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl config view rejected the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("{server} kube-apiserver webhook"));
}

#[tokio::test]
async fn tls_webhook_with_a_private_ca_and_a_bearer_token() {
    bounded(async {
        let pki = pki();
        let r = Receiver::start_with(Some(pki.server)).await;
        let server = format!("https://localhost:{}/audit/events", r.addr.port());
        let dir = scratch("tls");
        let file = dir.path().join("webhook.kubeconfig");
        std::fs::write(
            &file,
            kubeconfig(&server, &pki.ca_pem, "    token: s3cret-token"),
        )
        .unwrap();
        kubectl_accepts(&file, &server).await;

        let webhook = WebhookConfig::from_file(&file).unwrap();
        assert_eq!(webhook.server().to_string(), server);
        let (audit, _task) = AuditSink::start(fast_config(), webhook, dir.path()).unwrap();
        for n in 1..=3 {
            audit.record(ev(n)).await.unwrap();
        }
        assert_eq!(r.wait_for(3, Duration::from_secs(20)).await, ids(1..=3));
        let log = r.log();
        assert!(log
            .iter()
            .all(|x| x.authorization.as_deref() == Some("Bearer s3cret-token")));
        audit.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn token_file_is_relative_to_the_kubeconfig_and_reread() {
    bounded(async {
        let pki = pki();
        let r = Receiver::start_with(Some(pki.server)).await;
        let server = format!("https://127.0.0.1:{}/", r.addr.port());
        let dir = scratch("tokenfile");
        let file = dir.path().join("webhook.kubeconfig");
        std::fs::write(dir.path().join("token"), "first\n").unwrap();
        std::fs::write(
            &file,
            kubeconfig(&server, &pki.ca_pem, "    tokenFile: token"),
        )
        .unwrap();
        kubectl_accepts(&file, &server).await;
        let webhook = WebhookConfig::from_file(&file).unwrap();
        let config = kubecast_core::audit::AuditConfig {
            mode: kubecast_core::audit::Mode::Blocking,
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook, dir.path()).unwrap();
        audit.record(ev(1)).await.unwrap();
        std::fs::write(dir.path().join("token"), "second").unwrap();
        audit.record(ev(2)).await.unwrap();
        let auth: Vec<_> = r.log().into_iter().map(|x| x.authorization).collect();
        assert_eq!(
            auth,
            [
                Some("Bearer first".to_string()),
                Some("Bearer second".to_string())
            ]
        );
        audit.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn without_the_ca_the_webhook_is_not_trusted() {
    bounded(async {
        let pki = pki();
        let r = Receiver::start_with(Some(pki.server)).await;
        let server = format!("https://localhost:{}/", r.addr.port());
        let other = pki_ca_only();
        let dir = scratch("untrusted");
        let text = kubeconfig(&server, &other, "    token: t");
        let webhook = WebhookConfig::from_kubeconfig_str(&text, dir.path()).unwrap();
        let config = kubecast_core::audit::AuditConfig {
            mode: kubecast_core::audit::Mode::Blocking,
            ..fast_config()
        };
        let (audit, _task) = AuditSink::start(config, webhook, dir.path()).unwrap();
        let err = audit.record(ev(1)).await.unwrap_err().to_string();
        assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
        assert!(r.log().is_empty());
        audit.shutdown().await.unwrap();
    })
    .await;
}

fn pki_ca_only() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn clear_errors() {
    let base = Path::new("/nonexistent");
    let err = |text: &str| {
        WebhookConfig::from_kubeconfig_str(text, base)
            .unwrap_err()
            .to_string()
    };
    assert!(err("clusters: []\n").contains("no current-context"));
    let no_cluster = "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n";
    assert!(err(no_cluster).contains("cluster \"c\" (of context \"a\") not found"));
    let base_cfg = "current-context: a
contexts:
- name: a
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster: {server: 'https://example.invalid:8443/audit', certificate-authority-data: '!!'}
users:
- name: u
  user: {token: t}
";
    assert!(err(base_cfg).contains("certificate-authority-data: not base64"));
    let no_key = base_cfg
        .replace(", certificate-authority-data: '!!'", "")
        .replace("{token: t}", "{client-certificate: c.pem}");
    assert!(
        err(&no_key).contains("client-certificate"),
        "{}",
        err(&no_key)
    );
    let exec = base_cfg
        .replace(", certificate-authority-data: '!!'", "")
        .replace("{token: t}", "{exec: {command: x}}");
    assert!(err(&exec).contains("exec credential plugin is not supported"));
    let ftp = base_cfg
        .replace(", certificate-authority-data: '!!'", "")
        .replace("https://example.invalid:8443/audit", "ftp://x");
    assert!(err(&ftp).contains("want http://"));
    let insecure = base_cfg
        .replace("'!!'", "'aGVsbG8='")
        .replace("}\nusers", ", insecure-skip-tls-verify: true}\nusers");
    assert!(
        err(&insecure).contains("insecure-skip-tls-verify"),
        "{}",
        err(&insecure)
    );
    let ok = base_cfg.replace(
        ", certificate-authority-data: '!!'",
        ", insecure-skip-tls-verify: true",
    );
    let webhook = WebhookConfig::from_kubeconfig_str(&ok, base).unwrap();
    assert_eq!(
        webhook.server().to_string(),
        "https://example.invalid:8443/audit"
    );
    let missing_file = WebhookConfig::from_file("/nonexistent/webhook.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        missing_file.contains("/nonexistent/webhook.yaml"),
        "{missing_file}"
    );
}
