//! The connect phase: pick an endpoint of the chosen backend and get a connection to it. A
//! failed connect is tried once more on another endpoint — the request has not left, so nothing
//! is sent twice. Forwarding and upgrades both go through [`connect_with_retry`]; only what an
//! attempt does (send over a pooled connection, or dial a fresh one for a handshake) differs.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;

use super::answer::{Answer, BackendFault};
use super::handler::Failure;
use super::headers::cookie;
use super::upstream::ConnectError;
use crate::metrics::RouteMetrics;
use crate::model::{Balance, HashKey};
use crate::table::{BackendSet, Endpoint, hash_bytes};

/// The backend a decision chose, with what to blame in logs and metrics.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub backend: &'a BackendSet,
    pub route: &'a Arc<str>,
    pub metrics: Option<&'a Arc<RouteMetrics>>,
}

/// An attempt that could not connect, with what it needs back to try again (the request, for
/// forwarding), boxed: the request is large and the error path rare, so the attempt's result
/// stays small where it is moved on every request.
pub(crate) struct ConnectFailed<R> {
    pub error: ConnectError,
    pub back: Box<R>,
}

impl<R> ConnectFailed<R> {
    /// The failure `error`, handing `back` for the next attempt.
    pub(crate) fn new(error: ConnectError, back: R) -> Self {
        Self {
            error,
            back: Box::new(back),
        }
    }
}

impl<'a> Target<'a> {
    /// A connection was not made: counted per route, logged, answered with 502.
    fn connect_failed(&self, addr: SocketAddr, error: &ConnectError) -> Failure {
        if let Some(m) = self.metrics {
            m.connect_errors.inc();
        }
        self.unreachable(addr, error)
    }

    /// The backend at `addr` broke off the exchange: 502.
    pub(crate) fn unreachable(&self, addr: SocketAddr, why: &dyn std::fmt::Display) -> Failure {
        tracing::warn!(route = &**self.route, backend = %addr, error = %why, "backend unreachable");
        Failure {
            answer: Answer::Backend(BackendFault::Unreachable),
            backend: Some(addr),
        }
    }

    /// A protocol switch that is not the WebSocket the client asked for: 502.
    pub(crate) fn bad_switch(&self, addr: SocketAddr, status: http::StatusCode) -> Failure {
        tracing::warn!(
            route = &**self.route,
            backend = %addr,
            status = status.as_u16(),
            "backend answered with a protocol switch that is no WebSocket handshake"
        );
        Failure {
            answer: Answer::Backend(BackendFault::BadSwitch),
            backend: Some(addr),
        }
    }

    /// No answer in time: 504.
    pub(crate) fn timed_out(&self, addr: Option<SocketAddr>) -> Failure {
        tracing::warn!(
            route = &**self.route,
            backend = &*self.backend.name,
            "backend timed out"
        );
        Failure {
            answer: Answer::Backend(BackendFault::Timeout),
            backend: addr,
        }
    }

    /// After a failed connect to `failed`: whether to try once more, on another endpoint.
    /// Only the first failure is retried, and only when there is another endpoint; `exclude`
    /// then holds the failed one, and the retry is counted.
    fn retry_elsewhere(&self, failed: SocketAddr, exclude: &mut Option<SocketAddr>) -> bool {
        if exclude.is_some() || self.backend.endpoints().len() <= 1 {
            return false;
        }
        if let Some(m) = self.metrics {
            m.retries.inc();
        }
        *exclude = Some(failed);
        true
    }
}

/// Picks an endpoint (by `key` when the backend hashes) and runs `attempt` on it; when the
/// attempt cannot connect and `retry` allows, runs it once more on another endpoint with what
/// the failed attempt handed back. Returns the attempt's result and the endpoint it ran on.
pub(crate) async fn connect_with_retry<'a, T, R, F, Fut>(
    target: &Target<'a>,
    now_ms: impl Fn() -> u64,
    key: Option<u64>,
    retry: bool,
    mut state: R,
    mut attempt: F,
) -> Result<(T, &'a Endpoint), Failure>
where
    F: FnMut(&'a Endpoint, R) -> Fut,
    Fut: Future<Output = Result<T, ConnectFailed<R>>>,
{
    if target.backend.unresolved {
        return Err(Failure {
            answer: Answer::Backend(BackendFault::Unresolved),
            backend: None,
        });
    }
    let mut exclude = None;
    loop {
        let Some(endpoint) = target.backend.pick(key, now_ms(), exclude) else {
            let fault = match target.backend.full() {
                true => BackendFault::AtCapacity,
                false => BackendFault::NoEndpoints,
            };
            return Err(Failure {
                answer: Answer::Backend(fault),
                backend: exclude,
            });
        };
        match attempt(endpoint, state).await {
            Ok(done) => return Ok((done, endpoint)),
            Err(ConnectFailed { error, back }) => {
                let failed = target.connect_failed(endpoint.addr, &error);
                if retry && target.retry_elsewhere(endpoint.addr, &mut exclude) {
                    state = *back;
                    continue;
                }
                return Err(failed);
            }
        }
    }
}

/// The consistent-hashing key of a request, when the backend hashes and the request has it.
pub(crate) fn hash_key(balance: &Balance, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
    let on = match balance {
        Balance::ConsistentHash(on) => on,
        Balance::Cookie(c) => return super::affinity::requested(c, headers),
        Balance::RoundRobin | Balance::LeastConnections => return None,
    };
    match on {
        HashKey::Header(name) => headers.get(name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => cookie(headers, name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::SourceIp => Some(match client.to_canonical() {
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => hash_bytes(&v6.octets()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use http::header::{self, HeaderName, HeaderValue};

    use super::*;

    /// Runs `connect_with_retry` over `endpoints`, failing to connect to those in `down`.
    /// Returns the outcome and the (endpoint, state) of every attempt.
    async fn attempts(
        endpoints: &[&str],
        down: &[&str],
        retry: bool,
    ) -> (Result<SocketAddr, Failure>, Vec<(SocketAddr, u32)>) {
        let addrs = endpoints.iter().filter_map(|a| a.parse().ok()).collect();
        let backend = BackendSet::new("test", addrs);
        let route: Arc<str> = "apps/chat".into();
        let target = Target {
            backend: &backend,
            route: &route,
            metrics: None,
        };
        let seen = RefCell::new(Vec::new());
        let result = connect_with_retry(
            &target,
            || 0,
            None,
            retry,
            1u32,
            |endpoint, n| {
                seen.borrow_mut().push((endpoint.addr, n));
                let up = !down.contains(&endpoint.addr.to_string().as_str());
                async move {
                    match up {
                        true => Ok(endpoint.addr),
                        false => Err(ConnectFailed::new(ConnectError::Timeout, n + 1)),
                    }
                }
            },
        )
        .await;
        (result.map(|(addr, _)| addr), seen.into_inner())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[tokio::test]
    async fn a_failed_connect_is_tried_once_more_elsewhere_with_what_came_back() {
        let (a, b) = ("192.0.2.1:80", "192.0.2.2:80");
        let (got, seen) = attempts(&[a, b], &[a], true).await;
        assert_eq!(got.ok(), Some(addr(b)));
        assert_eq!(seen, vec![(addr(a), 1), (addr(b), 2)]);
        // The other way round: round robin starts at the first endpoint.
        let (got, seen) = attempts(&[a, b], &[b], true).await;
        assert_eq!(got.ok(), Some(addr(a)));
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_only_where_allowed() {
        let (a, b) = ("192.0.2.1:80", "192.0.2.2:80");
        let unreachable = |r: Result<SocketAddr, Failure>, at: &str| match r {
            Err(f) => {
                assert_eq!(f.answer, Answer::Backend(BackendFault::Unreachable));
                assert_eq!(f.backend, Some(addr(at)));
            }
            Ok(x) => panic!("connected to {x}"),
        };
        // Both down: one retry, then the second failure is the answer.
        let (got, seen) = attempts(&[a, b], &[a, b], true).await;
        assert_eq!(seen.len(), 2);
        unreachable(got, b);
        // Not allowed (a request that must not be sent twice): no retry.
        let (got, seen) = attempts(&[a, b], &[a], false).await;
        assert_eq!(seen.len(), 1);
        unreachable(got, a);
        // Nowhere else to go.
        let (got, seen) = attempts(&[a], &[a], true).await;
        assert_eq!(seen.len(), 1);
        unreachable(got, a);
    }

    #[tokio::test]
    async fn no_endpoint_is_a_503_without_an_attempt() {
        let (got, seen) = attempts(&[], &[], true).await;
        assert!(seen.is_empty());
        let failure = got.err().unwrap_or_else(|| panic!("connected"));
        assert_eq!(failure.answer, Answer::Backend(BackendFault::NoEndpoints));
        assert_eq!(
            failure.answer.status(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn hash_keys_come_from_header_cookie_or_client() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; sid=s3"));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let key = |on: HashKey| hash_key(&Balance::ConsistentHash(on), &headers, ip);
        let header_name = HeaderName::from_static("x-user");
        assert_eq!(
            key(HashKey::Header(header_name)),
            Some(hash_bytes(b"alice"))
        );
        assert_eq!(key(HashKey::Cookie("sid".into())), Some(hash_bytes(b"s3")));
        assert_eq!(key(HashKey::Cookie("nope".into())), None);
        assert_eq!(key(HashKey::SourceIp), Some(hash_bytes(&[192, 0, 2, 1])));
        // An IPv4-mapped IPv6 client hashes like the IPv4 one (dual-stack listeners).
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap_or(ip);
        assert_eq!(
            hash_key(
                &Balance::ConsistentHash(HashKey::SourceIp),
                &headers,
                mapped
            ),
            key(HashKey::SourceIp)
        );
        assert_eq!(hash_key(&Balance::RoundRobin, &headers, ip), None);
    }
}
