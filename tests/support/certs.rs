//! A test CA issuing real certificates, and client configs that trust it.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;

/// A CA that issues leaf certificates, and a client config that trusts only it.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, plus the DER to compare with what a server sent.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsgate test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// A leaf for `names`, valid until 2040.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_until(names, (2040, 1, 1))
    }

    /// The CA certificate, PEM: what a `ca.crt` holds.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf whose notAfter is midnight UTC of the given (year, month, day).
    pub fn leaf_until(&self, names: &[&str], (y, m, d): (i32, u8, u8)) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client config trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A client config that accepts any certificate: for tests that inspect which one was served.
/// (wsgate's own config for unverified TLS backends.)
pub fn trust_anything() -> Arc<rustls::ClientConfig> {
    wsgate::table::backend_client_config(None).unwrap()
}

/// A `kubernetes.io/tls` Secret document.
pub fn secret_yaml(namespace: &str, name: &str, leaf: &Leaf) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: {namespace} }}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&leaf.cert_pem),
        indent(&leaf.key_pem)
    )
}

/// A `kubernetes.io/tls` Secret that also carries `ca.crt` (as cert-manager writes them).
pub fn secret_with_ca_yaml(namespace: &str, name: &str, leaf: &Leaf, ca_pem: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "{}  ca.crt: |\n{}",
        secret_yaml(namespace, name, leaf),
        indent(ca_pem)
    )
}

/// A client config offering ALPN `h2` (and only that).
pub fn h2_config(base: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut config = (*base).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}
