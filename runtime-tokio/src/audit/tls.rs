//! The rustls client config towards an `https://` webhook: the given CA,
//! else the system's roots (as kube-apiserver); no certificate check with
//! `insecure-skip-tls-verify`; an optional client certificate. ALPN is
//! `http/1.1`, set by the recorder upload's [`crate::UploadTls`].

use crate::tls::SkipServerVerification;
use crate::UploadTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

pub(super) fn client_config(
    ca: Option<&[u8]>,
    insecure: bool,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipServerVerification::new(provider)))
    } else {
        builder.with_root_certificates(roots(ca)?)
    };
    let config = match client {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(UploadTls::from_client_config(config).config(false))
}

fn roots(ca: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("certificate-authority: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("certificate-authority: {e}"))?;
            }
            if roots.is_empty() {
                return Err("certificate-authority: no PEM certificate found".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}
