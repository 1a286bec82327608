//! TLS material: PEM Secrets into rustls `CertifiedKey`s, checked before they can be served.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A `kubernetes.io/tls` Secret, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSecret {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// `tls.crt`: PEM certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// `tls.key`: PEM private key (PKCS#1, PKCS#8 or SEC1).
    pub key_pem: Vec<u8>,
}

/// Why a Secret's certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.crt` holds no PEM certificate.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.crt` is not valid PEM.
    #[error("tls.crt is not valid PEM: {0}")]
    BadCertificatePem(rustls_pki_types::pem::Error),
    /// `tls.key` holds no usable private key.
    #[error("tls.key holds no PEM private key: {0}")]
    BadKeyPem(rustls_pki_types::pem::Error),
    /// The key type is not supported (RSA, ECDSA P-256/P-384 and Ed25519 are).
    #[error("tls.key is not a supported key (RSA, ECDSA P-256/P-384, Ed25519): {0}")]
    UnsupportedKey(rustls::Error),
    /// The key does not belong to the leaf certificate.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
    /// A certificate could not be generated.
    #[error("generating a self-signed certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Parses and checks a PEM chain and key. Pure: the same bytes always give the same answer.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::BadCertificatePem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::BadKeyPem)?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        // `Unknown` means the key type cannot report its public key; accept it.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(TlsError::KeyMismatch),
    }
}

/// A self-signed ECDSA P-256 certificate for `names`, as (certificate PEM, key PEM). Used for
/// routes whose Secret is missing in standalone mode, the demo, and the default certificate.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((generated.cert.pem(), generated.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_generated_certificate() {
        let (cert, key) = self_signed(&["a.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(certified_key_from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (cert, _) = self_signed(&["a.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        let (_, other_key) = self_signed(&["b.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        let err = certified_key_from_pem(cert.as_bytes(), other_key.as_bytes());
        assert!(matches!(err, Err(TlsError::KeyMismatch)), "{err:?}");
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            certified_key_from_pem(b"nothing here", b""),
            Err(TlsError::NoCertificate)
        ));
        let (cert, _) = self_signed(&["a.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            certified_key_from_pem(cert.as_bytes(), b"not a key"),
            Err(TlsError::BadKeyPem(_))
        ));
    }
}
