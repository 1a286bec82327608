//! Per-client WebSocket limits (`websocket.limits`): open connections and a token bucket of
//! upgrades per second, per (route, rule, client IP).
//!
//! Memory is bounded: at most `capacity` clients are tracked. When the map is full, clients
//! with nothing open and a full bucket are forgotten (they are indistinguishable from new
//! ones); if none can be, new clients are refused with 429 until some can. Time is passed in,
//! so the logic is tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::ClientLimits;

/// Default number of tracked clients (about 100 bytes each).
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    route: Arc<str>,
    rule: usize,
    ip: IpAddr,
}

#[derive(Debug)]
struct Entry {
    open: u32,
    tokens: f64,
    last: Instant,
    limits: ClientLimits,
}

impl Entry {
    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.limits.rate {
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens =
                (self.tokens + elapsed * f64::from(rate)).min(f64::from(self.limits.burst));
        }
        self.last = now;
    }

    /// Nothing open and nothing spent: forgetting it changes no answer.
    fn forgettable(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.open == 0
            && (self.limits.rate.is_none() || self.tokens >= f64::from(self.limits.burst))
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client holds `maxConnectionsPerClient` sockets already.
    TooManyConnections,
    /// The client's upgrade bucket is empty; retry after this long.
    TooFast(Duration),
    /// The limiter is tracking as many clients as it may.
    Full,
}

impl Refusal {
    /// Seconds for `Retry-After`.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Refusal::TooFast(d) => d.as_secs_f64().ceil().max(1.0) as u64,
            Refusal::TooManyConnections | Refusal::Full => 1,
        }
    }
}

/// The limiter of one proxy.
#[derive(Debug)]
pub struct ClientLimiter {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
    /// Open sockets of each (route, rule) with `maxConnections`, all clients together. One
    /// entry per such rule with sockets open: bounded by the table, not by clients.
    totals: Mutex<HashMap<(Arc<str>, usize), u32>>,
}

/// Holds one socket of a rule's `maxConnections`; dropping it frees the place.
#[derive(Debug)]
pub struct TotalSlot {
    limiter: Arc<ClientLimiter>,
    key: (Arc<str>, usize),
}

impl Drop for TotalSlot {
    fn drop(&mut self) {
        let mut totals = self
            .limiter
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = totals.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                totals.remove(&self.key);
            }
        }
    }
}

/// Holds one of a client's open connections; dropping it frees the slot.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<ClientLimiter>,
    key: Option<Key>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut map = self
            .limiter
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&key) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

impl ClientLimiter {
    /// A limiter tracking at most `capacity` clients.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(ClientLimiter {
            entries: Mutex::default(),
            capacity: capacity.max(1),
            totals: Mutex::default(),
        })
    }

    /// Takes one of the `max` places of (`route`, `rule`), or `None` when all are taken.
    pub fn hold_total(
        self: &Arc<Self>,
        route: &Arc<str>,
        rule: usize,
        max: u32,
    ) -> Option<TotalSlot> {
        let key = (route.clone(), rule);
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let open = totals.entry(key.clone()).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(TotalSlot {
            limiter: self.clone(),
            key,
        })
    }

    /// Number of clients tracked.
    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Admits one upgrade of `ip` on (`route`, `rule`) or says why not.
    pub fn admit(
        self: &Arc<Self>,
        route: &Arc<str>,
        rule: usize,
        ip: IpAddr,
        limits: ClientLimits,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        let key = Key {
            route: route.clone(),
            rule,
            ip,
        };
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= self.capacity {
            map.retain(|_, e| !e.forgettable(now));
            if map.len() >= self.capacity {
                return Err(Refusal::Full);
            }
        }
        let entry = map.entry(key.clone()).or_insert_with(|| Entry {
            open: 0,
            tokens: f64::from(limits.burst),
            last: now,
            limits,
        });
        // A table change may have changed the rule's limits; the new ones apply from now.
        entry.limits = limits;
        entry.refill(now);
        if let Some(max) = limits.max_connections {
            if entry.open >= max {
                return Err(Refusal::TooManyConnections);
            }
        }
        if let Some(rate) = limits.rate {
            if entry.tokens < 1.0 {
                let wait = (1.0 - entry.tokens) / f64::from(rate);
                return Err(Refusal::TooFast(Duration::from_secs_f64(wait)));
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        Ok(Admission {
            limiter: self.clone(),
            key: Some(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: Option<u32>, rate: Option<u32>, burst: u32) -> ClientLimits {
        ClientLimits {
            max_connections: max,
            rate,
            burst,
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn connection_limit_frees_slots_on_drop() {
        let l = ClientLimiter::new(10);
        let route: Arc<str> = "a/r".into();
        let t = Instant::now();
        let lim = limits(Some(2), None, 1);
        let a = l.admit(&route, 0, ip(1), lim, t);
        let b = l.admit(&route, 0, ip(1), lim, t);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            l.admit(&route, 0, ip(1), lim, t).err(),
            Some(Refusal::TooManyConnections)
        );
        // Another client, and another rule, have their own counts.
        assert!(l.admit(&route, 0, ip(2), lim, t).is_ok());
        assert!(l.admit(&route, 1, ip(1), lim, t).is_ok());
        drop(a);
        assert!(l.admit(&route, 0, ip(1), lim, t).is_ok());
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let l = ClientLimiter::new(10);
        let route: Arc<str> = "a/r".into();
        let t = Instant::now();
        let lim = limits(None, Some(2), 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                l.admit(&route, 0, ip(1), lim, t)
                    .map_err(|e| format!("{e:?}")),
            );
        }
        assert!(held.iter().all(Result::is_ok));
        match l.admit(&route, 0, ip(1), lim, t) {
            Err(r @ Refusal::TooFast(wait)) => {
                assert_eq!(wait, Duration::from_millis(500));
                assert_eq!(r.retry_after_secs(), 1);
            }
            other => panic!("{other:?}"),
        }
        // Half a second later one token is back, not two.
        let later = t + Duration::from_millis(500);
        assert!(l.admit(&route, 0, ip(1), lim, later).is_ok());
        assert!(l.admit(&route, 0, ip(1), lim, later).is_err());
    }

    #[test]
    fn a_rules_total_counts_every_client_and_frees_on_drop() {
        let l = ClientLimiter::new(10);
        let route: Arc<str> = "a/r".into();
        let a = l.hold_total(&route, 0, 2);
        let b = l.hold_total(&route, 0, 2);
        assert!(a.is_some() && b.is_some());
        assert!(l.hold_total(&route, 0, 2).is_none(), "the third socket");
        // Another rule has its own total.
        assert!(l.hold_total(&route, 1, 2).is_some());
        drop(a);
        let c = l.hold_total(&route, 0, 2);
        assert!(c.is_some());
        drop((b, c));
        assert!(
            l.totals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        );
    }

    #[test]
    fn memory_is_bounded() {
        let l = ClientLimiter::new(100);
        let route: Arc<str> = "a/r".into();
        let t = Instant::now();
        let lim = limits(Some(1), Some(1), 1);
        // 100 clients each holding a socket fill the limiter; the 101st is refused.
        let held: Vec<_> = (0..100)
            .filter_map(|i| l.admit(&route, 0, ip(i), lim, t).ok())
            .collect();
        assert_eq!(held.len(), 100);
        assert_eq!(
            l.admit(&route, 0, ip(1000), lim, t).err(),
            Some(Refusal::Full)
        );
        assert_eq!(l.tracked(), 100);
        // Once they close and their buckets refill, 100,000 new clients never grow it.
        drop(held);
        let later = t + Duration::from_secs(2);
        for i in 0..100_000u32 {
            let admitted = l.admit(
                &route,
                0,
                ip(10_000 + i),
                lim,
                later + Duration::from_secs(u64::from(i)),
            );
            assert!(admitted.is_ok(), "client {i}");
            assert!(l.tracked() <= 100);
        }
    }
}
