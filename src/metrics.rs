//! Every Prometheus metric wsgate exports, in one place so names, help texts and label sets stay
//! consistent. Labels are bounded: route ids, status codes, fixed enums, Secret ids — never a raw
//! host, path or client address from a request.
//!
//! Hot-path recording takes no lock per request: per-route handles are resolved once and cached
//! in an `ArcSwap` map, so a request does one lock-free map lookup and atomic increments. Only
//! `wsgate_http_requests_total{route,code}` resolves its child per request (a shared read lock
//! inside the prometheus crate, not a mutex).

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::table::FnvMap;

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "none";

/// Buckets of HTTP request durations, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets of WebSocket lifetimes, in seconds: a second up to a day.
const WS_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// All metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// `wsgate_http_requests_total{route,code}`.
    pub http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// `wsgate_http_redirects_total{kind}`: `https` or `host`.
    pub http_redirects: IntCounterVec,
    ws_active: IntGaugeVec,
    /// `wsgate_websocket_upgrades_total{route,result}`.
    pub ws_upgrades: IntCounterVec,
    ws_duration: HistogramVec,
    ws_bytes: IntCounterVec,
    /// `wsgate_websocket_closes_total{route,reason}`.
    pub ws_closes: IntCounterVec,
    backend_connect_errors: IntCounterVec,
    backend_retries: IntCounterVec,
    /// `wsgate_backend_ejections_total`: endpoints ejected by passive health checks.
    pub backend_ejections: prometheus::IntCounter,
    /// `wsgate_tls_handshakes_total{result}`: `ok`, `error`, `timeout`.
    pub tls_handshakes: IntCounterVec,
    /// `wsgate_local_responses_total{source,reason}`: answers wsgate made itself.
    local_responses: IntCounterVec,
    /// `wsgate_tls_certificate_expiry_timestamp_seconds{secret}`.
    pub cert_expiry: GaugeVec,
    /// `wsgate_config_reloads_total{source,result}`.
    pub config_reloads: IntCounterVec,
    /// `wsgate_routes{state}`: `programmed` or `rejected`.
    pub routes: IntGaugeVec,
    /// `wsgate_config_last_reload_timestamp_seconds`.
    pub last_reload: Gauge,
    /// `wsgate_kube_watch_events_total{kind}` (controller mode).
    pub kube_watch_events: IntCounterVec,
    /// `wsgate_leader` (controller mode): 1 while this replica leads.
    pub leader: IntGauge,
    by_route: ArcSwap<FnvMap<Arc<str>, Arc<RouteMetrics>>>,
    insert: Mutex<()>,
    no_route: Arc<str>,
}

/// One route's pre-resolved metric handles.
#[derive(Debug)]
pub struct RouteMetrics {
    /// The route label.
    pub route: Arc<str>,
    /// `wsgate_http_request_duration_seconds{route}`.
    pub http_duration: Histogram,
    /// `wsgate_websocket_connections_active{route}`.
    pub ws_active: IntGauge,
    /// `wsgate_websocket_connection_duration_seconds{route}`.
    pub ws_duration: Histogram,
    /// `wsgate_websocket_bytes_total{route,direction="to_backend"}`.
    pub ws_to_backend: IntCounter,
    /// `wsgate_websocket_bytes_total{route,direction="to_client"}`.
    pub ws_to_client: IntCounter,
    /// `wsgate_backend_connect_errors_total{route}`.
    pub connect_errors: IntCounter,
    /// `wsgate_backend_retries_total{route}`.
    pub retries: IntCounter,
    /// `wsgate_http_requests_total{route,code}` children of the common codes, resolved on
    /// first use so the per-request path skips the label lookup.
    common_codes: [OnceLock<IntCounter>; COMMON_CODES.len()],
    requests: IntCounterVec,
}

/// Status codes wsgate itself sends plus the most common backend ones.
const COMMON_CODES: [u16; 16] = [
    101, 200, 201, 204, 301, 302, 304, 308, 400, 401, 403, 404, 426, 502, 503, 504,
];

impl RouteMetrics {
    /// Counts one answered request of this route.
    pub fn request(&self, code: http::StatusCode) {
        match COMMON_CODES.iter().position(|c| *c == code.as_u16()) {
            Some(i) => self.common_codes[i].get_or_init(|| self.child(code)).inc(),
            None => self.child(code).inc(),
        }
    }

    fn child(&self, code: http::StatusCode) -> IntCounter {
        let mut buf = [0u8; 3];
        let code = status_label(code, &mut buf);
        self.requests.with_label_values(&[&*self.route, code])
    }
}

#[expect(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one is a bug caught by every test, not input"
)]
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric names, help texts and labels are constants");
    register(registry, vec)
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Names are fixed and unique, so registration cannot fail; a failure would only lose the
    // metric from /metrics, which is not worth crashing for.
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "registering a metric failed");
    }
    c
}

#[expect(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one is a bug caught by every test, not input"
)]
fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, &["route"])
        .expect("metric names, help texts and labels are constants");
    register(registry, vec)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric and, on Linux, the process collector.
    #[expect(
        clippy::expect_used,
        reason = "metric definitions are constants: a bad one is a bug caught by every test, not input"
    )]
    pub fn new() -> Self {
        let r = Registry::new();
        // The prometheus crate's process collector (fds, RSS, CPU) under its standard names.
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric names, help texts and labels are constants");
            register(&r, v)
        };
        Metrics {
            http_requests: counter(
                &r,
                "wsgate_http_requests_total",
                "HTTP requests answered, by route and status code.",
                &["route", "code"],
            ),
            http_duration: histogram(
                &r,
                "wsgate_http_request_duration_seconds",
                "Time from request headers received to the last response byte sent.",
                HTTP_BUCKETS,
            ),
            http_redirects: counter(
                &r,
                "wsgate_http_redirects_total",
                "Redirects sent: kind=https (plain HTTP to https) or host (redirectHostnames).",
                &["kind"],
            ),
            ws_active: gauge_vec(
                "wsgate_websocket_connections_active",
                "WebSocket connections being relayed now.",
                &["route"],
            ),
            ws_upgrades: counter(
                &r,
                "wsgate_websocket_upgrades_total",
                "WebSocket upgrade requests by result: upgraded, backend_refused, backend_error, rejected, forbidden, limited, redirected.",
                &["route", "result"],
            ),
            ws_duration: histogram(
                &r,
                "wsgate_websocket_connection_duration_seconds",
                "Lifetime of relayed WebSocket connections.",
                WS_BUCKETS,
            ),
            ws_bytes: counter(
                &r,
                "wsgate_websocket_bytes_total",
                "Bytes relayed on WebSocket connections, direction=to_backend or to_client.",
                &["route", "direction"],
            ),
            ws_closes: counter(
                &r,
                "wsgate_websocket_closes_total",
                "Ended WebSocket connections by reason: client, backend, idle_timeout, drain, error.",
                &["route", "reason"],
            ),
            backend_connect_errors: counter(
                &r,
                "wsgate_backend_connect_errors_total",
                "Failed or timed-out connections to backends.",
                &["route"],
            ),
            backend_retries: counter(
                &r,
                "wsgate_backend_retries_total",
                "Idempotent requests retried on another endpoint after a failed connect.",
                &["route"],
            ),
            backend_ejections: register(
                &r,
                prometheus::IntCounter::new(
                    "wsgate_backend_ejections_total",
                    "Endpoints skipped for a back-off after consecutive connect failures.",
                )
                .expect("metric names, help texts and labels are constants"),
            ),
            local_responses: counter(
                &r,
                "wsgate_local_responses_total",
                "Responses wsgate made itself instead of a backend, by whose fault (source: client, backend, internal) and reason.",
                &["source", "reason"],
            ),
            tls_handshakes: counter(
                &r,
                "wsgate_tls_handshakes_total",
                "TLS handshakes by result: ok, error, timeout.",
                &["result"],
            ),
            cert_expiry: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "wsgate_tls_certificate_expiry_timestamp_seconds",
                        "notAfter of each served certificate, as a Unix timestamp.",
                    ),
                    &["secret"],
                )
                .expect("metric names, help texts and labels are constants"),
            ),
            config_reloads: counter(
                &r,
                "wsgate_config_reloads_total",
                "Routing table rebuilds by source and result (error: some input was rejected and its last good version kept).",
                &["source", "result"],
            ),
            routes: gauge_vec(
                "wsgate_routes",
                "Routes in the table, state=programmed or rejected.",
                &["state"],
            ),
            last_reload: register(
                &r,
                Gauge::new(
                    "wsgate_config_last_reload_timestamp_seconds",
                    "When the routing table was last rebuilt.",
                )
                .expect("metric names, help texts and labels are constants"),
            ),
            kube_watch_events: counter(
                &r,
                "wsgate_kube_watch_events_total",
                "Kubernetes watch events received, by object kind (controller mode).",
                &["kind"],
            ),
            leader: register(
                &r,
                IntGauge::new(
                    "wsgate_leader",
                    "1 while this replica holds the leader lease (controller mode).",
                )
                .expect("metric names, help texts and labels are constants"),
            ),
            by_route: ArcSwap::from_pointee(FnvMap::default()),
            insert: Mutex::new(()),
            no_route: Arc::from(NO_ROUTE),
            registry: r,
        }
    }

    /// The registry `/metrics` encodes.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The handles of one route, resolved once and then read without locks.
    pub fn route(&self, route: &Arc<str>) -> Arc<RouteMetrics> {
        if let Some(m) = self.by_route.load().get(route) {
            return m.clone();
        }
        let _guard = self.insert.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.by_route.load_full();
        if let Some(m) = current.get(route) {
            return m.clone();
        }
        let label = [&**route];
        let m = Arc::new(RouteMetrics {
            route: route.clone(),
            http_duration: self.http_duration.with_label_values(&label),
            ws_active: self.ws_active.with_label_values(&label),
            ws_duration: self.ws_duration.with_label_values(&label),
            ws_to_backend: self.ws_bytes.with_label_values(&[&**route, "to_backend"]),
            ws_to_client: self.ws_bytes.with_label_values(&[&**route, "to_client"]),
            connect_errors: self.backend_connect_errors.with_label_values(&label),
            retries: self.backend_retries.with_label_values(&label),
            common_codes: Default::default(),
            requests: self.http_requests.clone(),
        });
        let mut next = FnvMap::clone(&current);
        next.insert(route.clone(), m.clone());
        self.by_route.store(Arc::new(next));
        m
    }

    /// Counts one answer wsgate made itself; both labels come from a fixed catalogue.
    pub fn local_response(&self, source: &str, reason: &str) {
        self.local_responses
            .with_label_values(&[source, reason])
            .inc();
    }

    /// Counts one answered request of a route, or of no route.
    pub fn request(&self, route: Option<&RouteMetrics>, code: http::StatusCode) {
        match route {
            Some(r) => r.request(code),
            None => self.route(&self.no_route).request(code),
        }
    }
}

/// A status code as its three digits, without allocating.
fn status_label(code: http::StatusCode, buf: &mut [u8; 3]) -> &str {
    let n = code.as_u16();
    buf[0] = b'0' + (n / 100 % 10) as u8;
    buf[1] = b'0' + (n / 10 % 10) as u8;
    buf[2] = b'0' + (n % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_are_cached_and_shared() {
        let m = Metrics::new();
        let route: Arc<str> = "ns/chat".into();
        let a = m.route(&route);
        let b = m.route(&route);
        assert!(Arc::ptr_eq(&a, &b));
        a.ws_active.inc();
        a.request(http::StatusCode::NOT_FOUND);
        a.request(http::StatusCode::NOT_FOUND);
        a.request(http::StatusCode::IM_A_TEAPOT);
        m.request(None, http::StatusCode::BAD_REQUEST);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&m.registry().gather())
            .unwrap_or_default();
        assert!(
            text.contains("wsgate_websocket_connections_active{route=\"ns/chat\"} 1"),
            "{text}"
        );
        for line in [
            "wsgate_http_requests_total{code=\"404\",route=\"ns/chat\"} 2",
            "wsgate_http_requests_total{code=\"418\",route=\"ns/chat\"} 1",
            "wsgate_http_requests_total{code=\"400\",route=\"none\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }

    #[test]
    fn status_labels() {
        let mut buf = [0u8; 3];
        assert_eq!(
            status_label(http::StatusCode::SWITCHING_PROTOCOLS, &mut buf),
            "101"
        );
        assert_eq!(
            status_label(http::StatusCode::GATEWAY_TIMEOUT, &mut buf),
            "504"
        );
    }
}
