//! Picking an endpoint: round robin, least connections and consistent (rendezvous) hashing,
//! all skipping endpoints that passive health checks have ejected.
//!
//! The table stays a pure value: the per-endpoint counters live in [`EndpointState`]s that the
//! compile cache hands to every table built after them, so in-flight counts and ejections
//! survive rebuilds, and the clock is passed in by the caller.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{BackendSet, Endpoint};
use crate::model::Balance;

/// Passive health settings (from flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive connect failures that eject an endpoint; 0 never ejects.
    pub failures: u32,
    /// How long an ejected endpoint is skipped before it gets another try.
    pub backoff_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            failures: 3,
            backoff_ms: 10_000,
        }
    }
}

/// Runtime counters of one endpoint address, shared by every backend and every table that
/// lists it.
#[derive(Debug, Default)]
pub struct EndpointState {
    active: AtomicUsize,
    /// Open WebSockets (a subset of `active`), for `maxConnectionsPerEndpoint`.
    sockets: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds on the caller's clock until which the endpoint is skipped.
    ejected_until: AtomicU64,
}

impl EndpointState {
    /// In-flight requests plus open relays.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Open WebSockets.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Relaxed)
    }

    /// Counts one more WebSocket until the guard drops, unless `cap` are open already.
    pub fn open_socket(self: &std::sync::Arc<Self>, cap: Option<u32>) -> Option<SocketGuard> {
        let cap = cap.map_or(usize::MAX, |c| c as usize);
        let counted = self
            .sockets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            });
        counted.ok().map(|_| SocketGuard(self.clone()))
    }

    /// Counts one more request or relay until the guard drops.
    pub fn begin(self: &std::sync::Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// Records a failed connect; returns true when this failure ejected the endpoint.
    pub fn connect_failed(&self, now_ms: u64, policy: HealthPolicy) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.failures == 0 || failures < policy.failures {
            return false;
        }
        // After the back-off the endpoint is tried again; one more failure ejects it again at
        // once, because the count is only reset by a success.
        self.ejected_until
            .store(now_ms + policy.backoff_ms, Ordering::Relaxed);
        true
    }

    /// Records a successful connect.
    pub fn connect_succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the endpoint may be picked at `now_ms`.
    pub fn available(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }
}

/// Decrements an endpoint's active count when dropped.
#[derive(Debug)]
pub struct ActiveGuard(std::sync::Arc<EndpointState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements an endpoint's socket count when dropped (the relay ended).
#[derive(Debug)]
pub struct SocketGuard(std::sync::Arc<EndpointState>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// 64-bit FNV-1a: stable across processes and versions, so every wsgate replica sends a key
/// to the same endpoint.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a as a `Hasher`, for maps on hot paths: endpoint addresses (a changed endpoint list
/// looks up each of its addresses; SipHash cost more than the rest of that), hostnames, route
/// names and backend pool keys (each request looks up one of each). The keys come from routes
/// and EndpointSlices, which only the cluster's operators and controllers write. A client only
/// looks keys up, and a lookup costs at most the longest probe chain that the stored keys made,
/// so flooding attacks (which need colliding keys inserted) are not a concern here.
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// A `HashMap` hashed with [`FnvHasher`].
pub type FnvMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FnvHasher>>;

/// A map keyed by endpoint address.
pub(crate) type AddrMap<V> = FnvMap<SocketAddr, V>;

/// The hash of an endpoint address, computed once at compile time. It is also the endpoint's
/// affinity id (the value of a sticky cookie): the same in every replica and every version,
/// so a cookie issued by one wsgate is honoured by all.
pub fn hash_addr(addr: SocketAddr) -> u64 {
    let mut buf = [0u8; 18];
    let ip: &[u8] = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            &buf[..4]
        }
        std::net::IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            &buf[..16]
        }
    };
    let len = ip.len();
    buf[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    hash_bytes(&buf[..len + 2])
}

/// MurmurHash3's 64-bit finalizer: spreads the combined key and endpoint hashes.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl BackendSet {
    /// The endpoint for a request: by the backend's policy, among endpoints that are not
    /// ejected and not `exclude` (the one a retry just failed on). When every endpoint is
    /// ejected, ejection is ignored (as Envoy's panic mode): a maybe-down endpoint beats a
    /// certain 503. `key` is the hashed request key for consistent hashing.
    pub fn pick(
        &self,
        key: Option<u64>,
        now_ms: u64,
        exclude: Option<SocketAddr>,
    ) -> Option<&Endpoint> {
        // A WebSocket backend with a per-endpoint cap skips full endpoints.
        let room = |e: &&Endpoint| {
            self.max_sockets_per_endpoint
                .is_none_or(|cap| e.state.sockets() < cap as usize)
        };
        let eligible = |e: &&Endpoint| Some(e.addr) != exclude && room(e);
        let healthy = |e: &&Endpoint| eligible(e) && e.state.available(now_ms);
        let any_healthy = self.endpoints.iter().any(|e| healthy(&e));
        let usable = |e: &&Endpoint| if any_healthy { healthy(e) } else { eligible(e) };
        match (&self.balance, key) {
            (Balance::ConsistentHash(_), Some(key)) => self
                .endpoints
                .iter()
                .filter(usable)
                .max_by_key(|e| mix(key ^ e.hash)),
            // The endpoint the affinity cookie names, while it is usable; else a new one.
            (Balance::Cookie(_), Some(id)) => {
                let named = self.endpoints.iter().filter(usable).find(|e| e.hash == id);
                named.or_else(|| {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    self.rotated(start).find(usable)
                })
            }
            (Balance::LeastConnections, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                self.rotated(start)
                    .filter(usable)
                    .min_by_key(|e| e.state.active())
            }
            _ => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                self.rotated(start).find(usable)
            }
        }
    }

    /// Whether every endpoint holds `max_sockets_per_endpoint` sockets (there are some).
    pub fn full(&self) -> bool {
        let Some(cap) = self.max_sockets_per_endpoint else {
            return false;
        };
        !self.endpoints.is_empty()
            && self
                .endpoints
                .iter()
                .all(|e| e.state.sockets() >= cap as usize)
    }

    /// The endpoints starting at `start` (modulo their number), wrapping around.
    fn rotated(&self, start: usize) -> impl Iterator<Item = &Endpoint> {
        let n = self.endpoints.len().max(1);
        let (tail, head) = self.endpoints.split_at(start % n);
        head.iter().chain(tail)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::model::HashKey;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8080)))
            .collect()
    }

    fn set(balance: Balance, addrs: &[SocketAddr]) -> BackendSet {
        let mut set = BackendSet::new("test", addrs.to_vec());
        set.balance = balance;
        set
    }

    fn pick(set: &BackendSet, key: Option<u64>) -> Option<SocketAddr> {
        set.pick(key, 0, None).map(|e| e.addr)
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected() {
        let a = addrs(3);
        let set = set(Balance::RoundRobin, &a);
        let got: Vec<_> = (0..4).map(|_| pick(&set, None)).collect();
        assert_eq!(got, [Some(a[0]), Some(a[1]), Some(a[2]), Some(a[0])]);
        let policy = HealthPolicy {
            failures: 2,
            backoff_ms: 1000,
        };
        let b = &set.endpoints()[1].state;
        assert!(!b.connect_failed(0, policy));
        assert!(b.connect_failed(0, policy));
        for _ in 0..6 {
            assert_ne!(pick(&set, None), Some(a[1]));
        }
        // After the back-off it is tried again; one more failure ejects it at once.
        assert!(b.available(1000));
        assert!(b.connect_failed(1000, policy));
        assert!(!b.available(1999));
        b.connect_succeeded();
        assert!(b.available(0));
    }

    #[test]
    fn all_ejected_still_picks_and_exclude_is_honoured() {
        let a = addrs(2);
        let set = set(Balance::RoundRobin, &a);
        let policy = HealthPolicy {
            failures: 1,
            backoff_ms: 1000,
        };
        for e in set.endpoints() {
            e.state.connect_failed(0, policy);
        }
        assert!(pick(&set, None).is_some());
        for _ in 0..4 {
            assert_eq!(set.pick(None, 0, Some(a[0])).map(|e| e.addr), Some(a[1]));
        }
        let single = BackendSet::new("one", vec![a[0]]);
        assert!(single.pick(None, 0, Some(a[0])).is_none());
        assert!(
            BackendSet::new("none", vec![])
                .pick(None, 0, None)
                .is_none()
        );
    }

    #[test]
    fn least_connections_fills_the_emptiest_endpoint() {
        let a = addrs(3);
        let set = set(Balance::LeastConnections, &a);
        let mut guards: Vec<ActiveGuard> = Vec::new();
        for _ in 0..9 {
            let e = set.pick(None, 0, None).unwrap_or_else(|| unreachable!());
            guards.push(e.state.begin());
        }
        let counts: Vec<_> = set.endpoints().iter().map(|e| e.state.active()).collect();
        assert_eq!(counts, [3, 3, 3]);
        // Endpoint 1 loses its connections: the next three all go there.
        guards.retain(|g| !Arc::ptr_eq(&g.0, &set.endpoints()[1].state));
        for _ in 0..3 {
            assert_eq!(pick(&set, None), Some(a[1]));
            guards.push(set.endpoints()[1].state.begin());
        }
        drop(guards);
        assert!(set.endpoints().iter().all(|e| e.state.active() == 0));
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_about_one_nth() {
        let keys: Vec<u64> = (0..10_000u32)
            .map(|i| hash_bytes(format!("user-{i}").as_bytes()))
            .collect();
        let assign = |set: &BackendSet| -> Vec<SocketAddr> {
            keys.iter()
                .map(|&k| pick(set, Some(k)).unwrap_or_else(|| unreachable!()))
                .collect()
        };
        let ten = addrs(11);
        let before = assign(&set(Balance::ConsistentHash(HashKey::SourceIp), &ten[..10]));
        // Stable: the same keys land on the same endpoints, in another order of endpoints too.
        let mut shuffled = ten[..10].to_vec();
        shuffled.reverse();
        assert_eq!(
            before,
            assign(&set(Balance::ConsistentHash(HashKey::SourceIp), &shuffled))
        );
        // Balanced: every endpoint gets 10 % ± 3 %.
        let mut per: HashMap<SocketAddr, usize> = HashMap::new();
        for a in &before {
            *per.entry(*a).or_default() += 1;
        }
        assert!(per.values().all(|&n| (700..=1300).contains(&n)), "{per:?}");

        // Adding an 11th endpoint moves ~1/11 of the keys, all of them to the new endpoint.
        let after = assign(&set(Balance::ConsistentHash(HashKey::SourceIp), &ten));
        let moved: Vec<_> = (0..keys.len()).filter(|&i| before[i] != after[i]).collect();
        assert!((600..=1200).contains(&moved.len()), "{}", moved.len());
        assert!(moved.iter().all(|&i| after[i] == ten[10]));

        // Removing one moves only the keys it had.
        let removed = ten[3];
        let rest: Vec<_> = ten[..10]
            .iter()
            .copied()
            .filter(|&a| a != removed)
            .collect();
        let after = assign(&set(Balance::ConsistentHash(HashKey::SourceIp), &rest));
        for i in 0..keys.len() {
            if before[i] != removed {
                assert_eq!(before[i], after[i]);
            }
        }
    }

    #[test]
    fn a_sticky_cookie_names_its_endpoint_while_it_is_usable() {
        let a = addrs(3);
        let cookie = crate::model::AffinityCookie {
            name: "sid".into(),
            path: "/".into(),
            max_age: None,
        };
        let set = set(Balance::Cookie(cookie), &a);
        let id = hash_addr(a[2]);
        for _ in 0..5 {
            assert_eq!(pick(&set, Some(id)), Some(a[2]));
        }
        // Ejected (or gone): another endpoint, round robin.
        let policy = HealthPolicy {
            failures: 1,
            backoff_ms: 1000,
        };
        set.endpoints()[2].state.connect_failed(0, policy);
        let elsewhere = pick(&set, Some(id));
        assert!(elsewhere.is_some() && elsewhere != Some(a[2]));
        // No cookie, or one naming no endpoint: round robin.
        let first = pick(&set, None);
        assert_ne!(first, pick(&set, Some(12345)));
    }

    #[test]
    fn consistent_hash_without_a_key_goes_round_robin() {
        let a = addrs(2);
        let set = set(Balance::ConsistentHash(HashKey::SourceIp), &a);
        assert_eq!(
            [pick(&set, None), pick(&set, None)],
            [Some(a[0]), Some(a[1])]
        );
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(hash_bytes(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_bytes(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
