//! TLS configuration from the options (feature `tls`), for both adapters.
//!
//! Unlike the spec's reference implementation, a client verifies the
//! server's certificate chain *and* that it names the host in the URL,
//! unless [`skip_server_cert_verification`](super::ClientOptions::skip_server_cert_verification)
//! is set.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::options::{ClientCert, ClientOptions, ServerCert};
use super::Error;

pub use rustls;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::CertFile {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Certificate(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Certificate(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key in a PEM file: PKCS#8, PKCS#1 or SEC1, or an encrypted
/// PKCS#8 key (`ENCRYPTED PRIVATE KEY`, PBES2) opened with `password`.
pub fn load_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_file(path)?;
    let bad = |m: String| Error::Certificate(format!("{}: {m}", path.display()));
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let password =
            password.ok_or_else(|| bad("the key is encrypted and no password was given".into()))?;
        let start = text
            .find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            .unwrap_or(0);
        let (label, der) =
            pkcs8::der::pem::decode_vec(&pem[start..]).map_err(|e| bad(e.to_string()))?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(bad(format!("unexpected PEM label {label}")));
        }
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| bad(e.to_string()))?;
        let doc = info
            .decrypt(password)
            .map_err(|_| bad("cannot decrypt the key (wrong password?)".into()))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            doc.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(e.to_string()))
}

/// The TLS server name for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Url(format!("{host:?} is not a TLS server name: {e}")))
}

/// The rustls client configuration for `options`: the CA file or the
/// system's store, an optional client certificate (with an optional key
/// password), or no verification at all.
pub fn client_config(options: &ClientOptions) -> Result<Arc<rustls::ClientConfig>, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if options.skip_server_cert_verification {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &options.ca_path {
            Some(path) => {
                for cert in load_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| Error::Certificate(format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(Error::Tls("no CA certificates in the system store".into()));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.client_cert {
        Some(ClientCert {
            cert_path,
            key_path,
            key_password,
        }) => {
            let certs = load_certs(cert_path)?;
            let key = load_key(key_path, key_password.as_deref())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::Certificate(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls server configuration for a certificate and key, requiring
/// client certificates issued by a CA in `client_ca` when given.
pub fn server_config(
    cert: &ServerCert,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs = load_certs(&cert.cert_path)?;
    let key = load_key(&cert.key_path, None)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| Error::Certificate(format!("{}: {e}", path.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| Error::Certificate(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| Error::Certificate(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate for any name (`skipServerCertVerification`), but
/// still checks the handshake signatures, so the session is at least bound
/// to the key the server presented.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
