//! An HTTPS upstream (rustls, ALPN h2/http/1.1, optional client
//! certificates) reached through a kubeconfig with inline `*-data`
//! credentials, `--upstream-ca` and `--upstream-insecure-skip-tls-verify`;
//! the proxy presents its client certificate only when it impersonates.

mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// What the HTTPS upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: hyper::Version,
    client_cert: bool,
    headers: Vec<(String, String)>,
}

struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstream {
    async fn start(pki: &Pki) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        log.lock().unwrap().push(Seen {
                            version: req.version(),
                            client_cert,
                            headers: req
                                .headers()
                                .iter()
                                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                        });
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"{\"gitVersion\":\"v1.32.4\"}",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsUpstream { addr, seen, task }
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

fn b64(path: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_inline_credentials() {
    let pki = Pki::new("tls-upstream");
    let upstream = TlsUpstream::start(&pki).await;
    let (cert, key) = pki.client("kubecast-proxy", None);
    let kubeconfig = pki.dir.write(
        "kubeconfig",
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\n\
             contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
             users:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            upstream.addr.port(),
            b64(&pki.ca),
            b64(&cert),
            b64(&key),
        ),
    );
    let tokens = pki.dir.write("tokens.csv", "alice-token,alice,,\"a,b\"\n");

    // Impersonating: the proxy's certificate, over HTTP/2 (ALPN).
    let proxy = Proxy::start(&[
        "--kubeconfig",
        &kubeconfig,
        "--auth",
        "token",
        "--token-auth-file",
        &tokens,
    ]);
    let r = http1(
        proxy.addr,
        "GET",
        "/version",
        &[("Authorization", "Bearer alice-token")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = upstream.last();
    assert_eq!(seen.version, hyper::Version::HTTP_2);
    assert!(
        seen.client_cert,
        "the proxy authenticates with its certificate"
    );
    assert_eq!(header_values(&seen.headers, "impersonate-user"), ["alice"]);
    assert_eq!(
        header_values(&seen.headers, "impersonate-group"),
        ["a", "b"]
    );
    assert!(header_values(&seen.headers, "impersonate-uid").is_empty());
    assert!(header_values(&seen.headers, "authorization").is_empty());
    drop(proxy);

    // noauth: the caller's credentials only; the proxy's certificate stays home.
    let proxy = Proxy::start(&["--kubeconfig", &kubeconfig]);
    let r = http1(
        proxy.addr,
        "GET",
        "/version",
        &[("Authorization", "Bearer callers-own")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = upstream.last();
    assert!(
        !seen.client_cert,
        "noauth must not present the proxy's certificate"
    );
    assert_eq!(
        header_values(&seen.headers, "authorization"),
        ["Bearer callers-own"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_ca_and_insecure_skip_verify() {
    let pki = Pki::new("tls-upstream-ca");
    let upstream = TlsUpstream::start(&pki).await;
    let url = format!("https://127.0.0.1:{}", upstream.addr.port());

    let proxy = Proxy::start(&["--upstream", &url, "--upstream-ca", &pki.ca]);
    assert_eq!(http1(proxy.addr, "GET", "/version", &[]).await.status, 200);

    // Without the CA the system roots do not know the test CA: 502.
    let proxy = Proxy::start(&["--upstream", &url]);
    let r = http1(proxy.addr, "GET", "/version", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{r:?}"
    );

    let proxy = Proxy::start(&["--upstream", &url, "--upstream-insecure-skip-tls-verify"]);
    assert_eq!(http1(proxy.addr, "GET", "/version", &[]).await.status, 200);
}
