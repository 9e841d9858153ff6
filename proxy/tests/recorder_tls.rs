//! `kubecast recorder` over TLS with a throwaway CA (rcgen): ALPN `h2`
//! serves v2, ALPN `http/1.1` serves v1.

mod recorder_support;

use bytes::Bytes;
use recorder_support::*;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_rustls::{client::TlsStream, rustls, TlsConnector};

struct Tls {
    server: Server,
    roots: rustls::RootCertStore,
}

fn start() -> Tls {
    let scratch = Scratch::create("tls");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubecast test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_file = scratch.join("tls.crt");
    let key_file = scratch.join("tls.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let dir = scratch.join("casts");
    let cert_arg = cert_file.to_str().unwrap().to_owned();
    let key_arg = key_file.to_str().unwrap().to_owned();
    let server = Server::start_in(
        scratch,
        dir,
        &["--tls-cert", &cert_arg, "--tls-key", &key_arg],
    );
    Tls { server, roots }
}

async fn connect(tls: &Tls, alpn: &[u8]) -> TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tls.roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(tls.server.addr)
        .await
        .unwrap();
    let stream = tokio::time::timeout(
        STEP,
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

#[tokio::test]
async fn tls_alpn_h2_serves_v2() {
    let tls = start();
    let mut h2 = H2::connect(connect(&tls, b"h2").await).await;
    assert_eq!(h2.head(None).await, 200);
    let data = cast("secure", "vault-0", "heidi", 30);
    let (tx, res) = h2.post(None).await;
    assert_eq!(res.status(), 200);
    let mut frames = Frames::new(res.into_body());
    for piece in data.chunks(100) {
        tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    frames.until_ack(data.len() as u64).await;
    drop(tx);
    frames.rest().await;
    let name = format!("{}.cast", stem("secure", "vault-0", "heidi"));
    eventually("the file", || {
        tls.server.files().contains(&name).then_some(())
    })
    .await;
    assert_eq!(tls.server.read(&name), data);
    let line = &tls.server.wait_log("v2 complete", 1).await[0];
    assert!(line.contains(" tls "), "{line}");
}

#[tokio::test]
async fn tls_alpn_http11_serves_v1() {
    let tls = start();
    let mut stream = connect(&tls, b"http/1.1").await;
    let data = cast("secure", "vault-1", "ivan", 30);
    let head = format!(
        "POST /record HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 100);
    stream.write_all(&data).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{body}");
    let name = format!("{}.cast", stem("secure", "vault-1", "ivan"));
    assert_eq!(tls.server.read(&name), data);
    // v2 is not offered over HTTP/1.1, even under TLS.
    stream
        .write_all(b"HEAD /v2/record HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response_to(&mut stream, true).await.0, 404);
}
