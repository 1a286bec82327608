//! TLS termination: a rustls server config whose certificate resolver reads the live routing
//! table on every handshake, so certificates change together with routes and a rotation never
//! touches sessions already established.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SupportedCipherSuite};

use crate::table::{HostBuf, RouteTable, normalize_host};

/// Picks the certificate for a handshake: the route's for the SNI name, else the default.
#[derive(Debug)]
pub struct SniResolver {
    table: Arc<ArcSwap<RouteTable>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver over the live table, with a fallback certificate for unknown names, clients
    /// that send no SNI and routes whose Secret is unusable (as ingress-nginx's default
    /// certificate).
    pub fn new(table: Arc<ArcSwap<RouteTable>>, default: Arc<CertifiedKey>) -> Self {
        SniResolver { table, default }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut buf = HostBuf::default();
        let name = hello
            .server_name()
            .and_then(|n| normalize_host(n, &mut buf));
        let cert = name.and_then(|n| self.table.load().certificate(n).cloned());
        Some(cert.unwrap_or_else(|| self.default.clone()))
    }
}

/// Cipher suites in wsgate's order of preference (Mozilla's "intermediate" order): AES-128-GCM
/// first. With a client-ordered server, every OpenSSL- or rustls-based client (curl, Node,
/// Python) would get AES-256-GCM-SHA384, whose SHA-384 key schedule made a full handshake ~10 %
/// more expensive than with SHA-256 (measured with ring on this AMD build machine).
fn suites() -> Vec<SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The two server configs of the TLS listener. They differ only in whose cipher-suite order
/// wins, and share the certificate resolver and the ticket key, so a session started under one
/// resumes under the other.
#[derive(Clone)]
pub struct ServerConfigs {
    /// wsgate's order: AES-128-GCM first.
    ours: Arc<rustls::ServerConfig>,
    /// The client's order, for clients that put ChaCha20 first.
    theirs: Arc<rustls::ServerConfig>,
}

impl ServerConfigs {
    /// The config for a handshake. A client whose first choice is ChaCha20-Poly1305 usually has
    /// no AES instructions (older phones), and AES would cost it far more than ChaCha20: it
    /// keeps its order, as Go and BoringSSL servers do.
    pub fn for_hello(&self, hello: &ClientHello<'_>) -> Arc<rustls::ServerConfig> {
        let ours = &self.ours.crypto_provider().cipher_suites;
        if prefers_chacha(hello.cipher_suites(), ours) {
            self.theirs.clone()
        } else {
            self.ours.clone()
        }
    }
}

/// Whether the first of `offered` that is in `ours` is a ChaCha20-Poly1305 suite. Unknown values
/// (GREASE, suites we lack) are skipped.
fn prefers_chacha(offered: &[CipherSuite], ours: &[SupportedCipherSuite]) -> bool {
    offered
        .iter()
        .find(|c| ours.iter().any(|s| s.suite() == **c))
        .is_some_and(|c| {
            matches!(
                c,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            )
        })
}

/// The server configs: TLS 1.2 and 1.3 with the aws-lc-rs provider, whose key exchange groups
/// start with the hybrid post-quantum X25519MLKEM768 (then X25519, P-256, P-384; TLS 1.3 takes
/// the client's first choice of them), ALPN `h2` and `http/1.1`, stateless session tickets so
/// returning clients skip the full handshake.
pub fn server_configs(resolver: SniResolver) -> Result<ServerConfigs, rustls::Error> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    let theirs = Arc::new(config.clone());
    config.ignore_client_order = true;
    Ok(ServerConfigs {
        ours: Arc::new(config),
        theirs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha_first_clients_keep_their_order_others_get_ours() {
        use CipherSuite as C;
        let grease = C::Unknown(0x0a0a);
        let ours = suites();
        let prefers_chacha = |offered: &[CipherSuite]| prefers_chacha(offered, &ours);
        // Chrome on a phone without AES instructions.
        assert!(prefers_chacha(&[
            grease,
            C::TLS13_CHACHA20_POLY1305_SHA256,
            C::TLS13_AES_128_GCM_SHA256,
        ]));
        assert!(prefers_chacha(&[
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]));
        // OpenSSL's default order, a browser's, and a list with no suite we know.
        assert!(!prefers_chacha(&[
            C::TLS13_AES_256_GCM_SHA384,
            C::TLS13_CHACHA20_POLY1305_SHA256,
        ]));
        assert!(!prefers_chacha(&[
            grease,
            C::TLS13_AES_128_GCM_SHA256,
            C::TLS13_CHACHA20_POLY1305_SHA256,
        ]));
        assert!(!prefers_chacha(&[grease, C::TLS13_AES_128_CCM_SHA256]));
    }
}
