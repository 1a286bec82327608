//! TLS towards backends (`backend.tls`): a rustls client config per CA bundle, built at compile
//! time and reused across compiles, so connection pools keyed by it survive rebuilds.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsError;

/// How to reach one TLS backend.
#[derive(Debug)]
pub struct BackendTlsEntry {
    /// Sent as SNI and, with a CA, checked against the certificate.
    pub server_name: ServerName<'static>,
    /// Roots from the CA Secret, or no verification when the route gave none; `None` when the
    /// CA Secret is missing or unusable, and connections are refused.
    pub config: Option<Arc<ClientConfig>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client config trusting the CA certificates in `ca_pem`, or trusting any certificate
/// when `None`. ALPN offers only `http/1.1`: requests and upgrades both speak it to TLS
/// backends.
pub fn backend_client_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, TlsError> {
    client_config(ca_pem, b"http/1.1")
}

/// As [`backend_client_config`], offering only `h2` (gRPC over TLS, which requires it).
pub fn backend_h2_client_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, TlsError> {
    client_config(ca_pem, b"h2")
}

fn client_config(ca_pem: Option<&[u8]>, alpn: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    let mut config = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::BadCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(TlsError::NoCaCertificate);
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::BadCa(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any backend certificate but still checks the handshake signatures, so the session
/// is encrypted to whoever holds the certificate's key (what ingress-nginx does by default).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::self_signed;

    #[test]
    fn builds_with_and_without_a_ca() {
        let (cert, _) = self_signed(&["backend.local".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(backend_client_config(Some(cert.as_bytes())).is_ok());
        assert!(backend_client_config(None).is_ok());
        assert!(matches!(
            backend_client_config(Some(b"no pem here")),
            Err(TlsError::NoCaCertificate)
        ));
    }
}
