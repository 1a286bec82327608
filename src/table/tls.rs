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
    /// `ca.crt`, when present: CA certificates for verifying backends (`backend.tls`).
    pub ca_pem: Option<Vec<u8>>,
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
    /// `ca.crt` holds no PEM certificate.
    #[error("ca.crt holds no PEM certificate")]
    NoCaCertificate,
    /// `ca.crt` cannot be used as a trust anchor.
    #[error("ca.crt: {0}")]
    BadCa(String),
    /// `tls.key` holds no usable private key.
    #[error("tls.key holds no PEM private key: {0}")]
    BadKeyPem(rustls_pki_types::pem::Error),
    /// The key type is not supported (RSA, ECDSA P-256/P-384 and Ed25519 are).
    #[error("tls.key is not a supported key (RSA, ECDSA P-256/P-384, Ed25519): {0}")]
    UnsupportedKey(rustls::Error),
    /// The leaf certificate's DER is not an X.509 certificate.
    #[error("tls.crt holds PEM that is not an X.509 certificate: {0}")]
    BadCertificate(rustls::Error),
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
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate);
    };
    // Parsed first, so a broken certificate is not reported as a key that does not match it.
    rustls::server::ParsedCertificate::try_from(leaf).map_err(TlsError::BadCertificate)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::BadKeyPem)?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(TlsError::UnsupportedKey)?;
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
        // PEM armour around bytes that are no certificate.
        let (_, key) = self_signed(&["a.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        let armoured = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n";
        let err = certified_key_from_pem(armoured.as_bytes(), key.as_bytes());
        assert!(matches!(err, Err(TlsError::BadCertificate(_))), "{err:?}");
    }
}

/// The leaf certificate's `notAfter` as Unix seconds, read straight from the DER (RFC 5280
/// §4.1: Certificate → TBSCertificate → Validity). `None` if the structure is not as expected.
pub fn not_after(cert_der: &[u8]) -> Option<i64> {
    let (cert, _) = der_element(cert_der, 0x30)?;
    let (mut tbs, _) = der_element(cert, 0x30)?;
    // Optional explicit [0] version.
    if tbs.first() == Some(&0xa0) {
        tbs = der_skip(tbs)?;
    }
    tbs = der_skip(tbs)?; // serialNumber
    tbs = der_skip(tbs)?; // signature AlgorithmIdentifier
    tbs = der_skip(tbs)?; // issuer
    let (validity, _) = der_element(tbs, 0x30)?;
    let after_not_before = der_skip(validity)?;
    let tag = *after_not_before.first()?;
    let (time, _) = der_element(after_not_before, tag)?;
    parse_time(tag, time)
}

/// The contents of the element at the start of `input` if its tag is `tag`, and what follows.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
            2 + n,
        )
    };
    let body = input.get(header..header.checked_add(len)?)?;
    Some((body, &input[header + len..]))
}

fn der_skip(input: &[u8]) -> Option<&[u8]> {
    der_element(input, *input.first()?).map(|(_, rest)| rest)
}

/// UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    fn cert_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .der()
            .to_vec()
    }

    #[test]
    fn reads_not_after_in_utc_and_generalized_time() {
        // 2030-06-15 00:00:00 UTC (UTCTime) and 2051-01-01 (GeneralizedTime, year >= 2050).
        assert_eq!(not_after(&cert_expiring(2030, 6, 15)), Some(1_907_712_000));
        assert_eq!(not_after(&cert_expiring(2051, 1, 1)), Some(2_556_144_000));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        let cert = cert_expiring(2030, 1, 1);
        for cut in [1, 10, 100, cert.len() / 2] {
            let _ = not_after(&cert[..cut]); // must not panic
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
