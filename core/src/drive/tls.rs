//! TLS towards `https://` recorders: which roots are trusted, and the two
//! ALPN offers the protocol asks for (feature `tls`). rustls is itself
//! sans-IO; the adapters wrap it in their runtime's TLS streams
//! (`tokio-rustls`, `futures-rustls`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How the uploader verifies `https://` recorders. Cheap to clone (two
/// `Arc`s); build it once and share it between sessions.
///
/// A v2 attempt offers ALPN `h2, http/1.1` (if the server does not pick
/// `h2`, the core falls back to v1); a v1 attempt offers `http/1.1`.
/// Cleartext (`http://`) recorders do not use it.
#[derive(Clone)]
pub struct UploadTls {
    v2: Arc<ClientConfig>,
    v1: Arc<ClientConfig>,
}

impl fmt::Debug for UploadTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadTls").finish_non_exhaustive()
    }
}

/// The same configuration: clones of one `UploadTls` (pooled recorder
/// connections are shared only between attempts that trust the same
/// roots). Two separately built ones differ even if their contents agree.
impl PartialEq for UploadTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.v2, &other.v2) && Arc::ptr_eq(&self.v1, &other.v1)
    }
}

impl Eq for UploadTls {}

impl Default for UploadTls {
    /// [`UploadTls::webpki`].
    fn default() -> Self {
        UploadTls::webpki()
    }
}

impl UploadTls {
    /// Trusts the Mozilla root set (`webpki-roots`), as a browser would.
    pub fn webpki() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        UploadTls::from_roots(roots)
    }

    /// Trusts exactly the certificates of a PEM file (a private CA bundle).
    /// A file with no certificate, or one rustls rejects, is an error.
    pub fn from_ca_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        UploadTls::from_ca_certs(certs)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// Trusts exactly these CA certificates (DER).
    pub fn from_ca_certs(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> io::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        if roots.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no CA certificate found",
            ));
        }
        Ok(UploadTls::from_roots(roots))
    }

    /// Trusts `roots`.
    pub fn from_roots(roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        // The ring provider supports the default versions; the fallback
        // only exists so this cannot panic.
        let config = config.unwrap_or_else(|_| {
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
        UploadTls::from_client_config(config)
    }

    /// Uses `config` as it is (client certificates, custom verifiers, …)
    /// except for ALPN, which the protocol decides.
    pub fn from_client_config(config: ClientConfig) -> Self {
        let mut v2 = config.clone();
        v2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut v1 = config;
        v1.alpn_protocols = vec![b"http/1.1".to_vec()];
        UploadTls {
            v2: Arc::new(v2),
            v1: Arc::new(v1),
        }
    }

    /// The configuration for a connection that speaks v2 (`true`) or v1.
    pub fn config(&self, v2: bool) -> Arc<ClientConfig> {
        if v2 {
            self.v2.clone()
        } else {
            self.v1.clone()
        }
    }
}
