//! Per-endpoint state across compiles: each compile looks up the last one's endpoint lists,
//! so in-flight counts and passive health survive a rebuild, and builds the lists the next
//! compile will look up. Also the backend TLS client configs, shared for the same reason
//! (connection pools are keyed by them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;

use super::auth::{RemoteKey, RemoteKeyCache, RemoteKeys};
use super::balance::AddrMap;
use super::compile::ServiceKey;
use super::{Endpoint, TlsError};

/// Per Service port named in one compile: its display name and endpoints (`None`: no such
/// Service port), shared by every backend that names it; the last compile's endpoint lists
/// and the new ones; and the backend TLS configs.
pub(super) struct SharedEndpoints<'s, 'c> {
    pub(super) ports: HashMap<(&'s str, &'s str, u16), ResolvedPort>,
    pub(super) old_services: HashMap<ServiceKey, Arc<[Endpoint]>>,
    pub(super) services: &'c mut HashMap<ServiceKey, Arc<[Endpoint]>>,
    pub(super) old_addresses: AddrMap<Endpoint>,
    pub(super) addresses: &'c mut AddrMap<Endpoint>,
    /// By CA digest (`None`: no verification) and whether ALPN offers h2.
    pub(super) client_configs: &'c mut HashMap<(Option<u64>, bool), Arc<ClientConfig>>,
    /// Fetched key sets of the last compile, and of this one.
    pub(super) old_remote_keys: RemoteKeyCache,
    pub(super) remote_keys: &'c mut RemoteKeyCache,
}

impl SharedEndpoints<'_, '_> {
    /// The cached client config for a CA digest, built on first use.
    pub(super) fn client_config(
        &mut self,
        digest: (Option<u64>, bool),
        build: impl FnOnce() -> Result<Arc<ClientConfig>, TlsError>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(config) = self.client_configs.get(&digest) {
            return Ok(config.clone());
        }
        let config = build()?;
        self.client_configs.insert(digest, config.clone());
        Ok(config)
    }

    /// The fetched key set of `key`: the last compile's (with its keys), or a new one.
    pub(super) fn remote_keys(
        &mut self,
        key: RemoteKey,
        make: impl FnOnce() -> RemoteKeys,
    ) -> Arc<RemoteKeys> {
        let keys = match self.remote_keys.get(&key) {
            Some(keys) => keys.clone(),
            None => self
                .old_remote_keys
                .remove(&key)
                .unwrap_or_else(|| Arc::new(make())),
        };
        self.remote_keys.insert(key, keys.clone());
        keys
    }

    /// The endpoint of an `address` backend, with the last compile's state.
    pub(super) fn address(&mut self, addr: SocketAddr) -> Endpoint {
        let endpoint = self
            .old_addresses
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| Endpoint::new(addr));
        self.addresses.insert(addr, endpoint.clone());
        endpoint
    }

    /// The endpoints of a Service port: the last compile's list when the addresses are the
    /// same (the common case: a rebuild for some other object), else a new list that keeps the
    /// state of addresses the old one had.
    pub(super) fn service(&mut self, key: ServiceKey, addrs: &[SocketAddr]) -> Arc<[Endpoint]> {
        let old = self.old_services.get(&key);
        let same = old.is_some_and(|o| {
            o.len() == addrs.len() && o.iter().zip(addrs).all(|(e, a)| e.addr == *a)
        });
        let list = match old {
            Some(old) if same => old.clone(),
            _ => {
                let previous: AddrMap<&Endpoint> = old
                    .iter()
                    .flat_map(|o| o.iter())
                    .map(|e| (e.addr, e))
                    .collect();
                addrs
                    .iter()
                    .map(|&a| match previous.get(&a) {
                        Some(e) => (*e).clone(),
                        None => Endpoint::new(a),
                    })
                    .collect()
            }
        };
        self.services.insert(key, list.clone());
        list
    }
}

/// A Service port's display name and endpoints (`None`: no such Service port).
pub(super) type ResolvedPort = (Arc<str>, Option<Arc<[Endpoint]>>);
