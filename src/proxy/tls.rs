//! TLS termination: a rustls server config whose certificate resolver reads the live routing
//! table on every handshake, so certificates change together with routes and a rotation never
//! touches sessions already established.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

/// The server config: TLS 1.2 and 1.3 with the ring provider, ALPN `h2` and `http/1.1`, stateless
/// session tickets so returning clients skip the full handshake.
pub fn server_config(resolver: SniResolver) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}
