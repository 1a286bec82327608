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
    /// `wsgate_websocket_endpoint_connections{endpoint}`: sockets per backend address.
    pub ws_endpoint: IntGaugeVec,
    /// `wsgate_websocket_upgrades_total{route,result}`.
    pub ws_upgrades: IntCounterVec,
    ws_duration: HistogramVec,
    ws_bytes: IntCounterVec,
    /// `wsgate_websocket_closes_total{route,reason}`.
    pub ws_closes: IntCounterVec,
    backend_connect_errors: IntCounterVec,
    backend_retries: IntCounterVec,
    /// `wsgate_backend_ejections_total`: endpoints ejected by passive health checks.
    pub backend_ejections: IntCounter,
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
    /// `wsgate_auth_decisions_total{route,method,result}`.
    pub auth_decisions: IntCounterVec,
    /// `wsgate_auth_jwks_fetches_total{result}`.
    pub jwks_fetches: IntCounterVec,
    /// `wsgate_auth_jwks_age_seconds{url}`.
    pub jwks_age: GaugeVec,
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

/// A metric's name, help text and label names.
struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const ROUTE: &[&str] = &["route"];

const HTTP_REQUESTS: Def = Def {
    name: "wsgate_http_requests_total",
    help: "HTTP requests answered, by route and status code.",
    labels: &["route", "code"],
};
const HTTP_DURATION: Def = Def {
    name: "wsgate_http_request_duration_seconds",
    help: "Time from request headers received to the last response byte sent.",
    labels: ROUTE,
};
const HTTP_REDIRECTS: Def = Def {
    name: "wsgate_http_redirects_total",
    help: "Redirects sent: kind=https (plain HTTP to https) or host (redirectHostnames).",
    labels: &["kind"],
};
const WS_ACTIVE: Def = Def {
    name: "wsgate_websocket_connections_active",
    help: "WebSocket connections being relayed now.",
    labels: ROUTE,
};
const WS_ENDPOINT: Def = Def {
    name: "wsgate_websocket_endpoint_connections",
    help: "WebSocket connections this replica relays to each backend endpoint now.",
    labels: &["endpoint"],
};
const WS_UPGRADES: Def = Def {
    name: "wsgate_websocket_upgrades_total",
    help: "WebSocket upgrade requests by result: upgraded, backend_refused, backend_error, rejected, forbidden, limited, redirected.",
    labels: &["route", "result"],
};
const WS_DURATION: Def = Def {
    name: "wsgate_websocket_connection_duration_seconds",
    help: "Lifetime of relayed WebSocket connections.",
    labels: ROUTE,
};
const WS_BYTES: Def = Def {
    name: "wsgate_websocket_bytes_total",
    help: "Bytes relayed on WebSocket connections, direction=to_backend or to_client.",
    labels: &["route", "direction"],
};
const WS_CLOSES: Def = Def {
    name: "wsgate_websocket_closes_total",
    help: "Ended WebSocket connections by reason: client, backend, idle_timeout, drain, error.",
    labels: &["route", "reason"],
};
const CONNECT_ERRORS: Def = Def {
    name: "wsgate_backend_connect_errors_total",
    help: "Failed or timed-out connections to backends.",
    labels: ROUTE,
};
const RETRIES: Def = Def {
    name: "wsgate_backend_retries_total",
    help: "Idempotent requests retried on another endpoint after a failed connect.",
    labels: ROUTE,
};
const EJECTIONS: Def = Def {
    name: "wsgate_backend_ejections_total",
    help: "Endpoints skipped for a back-off after consecutive connect failures.",
    labels: &[],
};
const LOCAL_RESPONSES: Def = Def {
    name: "wsgate_local_responses_total",
    help: "Responses wsgate made itself instead of a backend, by whose fault (source: client, backend, internal) and reason.",
    labels: &["source", "reason"],
};
const TLS_HANDSHAKES: Def = Def {
    name: "wsgate_tls_handshakes_total",
    help: "TLS handshakes by result: ok, error, timeout.",
    labels: &["result"],
};
const CERT_EXPIRY: Def = Def {
    name: "wsgate_tls_certificate_expiry_timestamp_seconds",
    help: "notAfter of each served certificate, as a Unix timestamp.",
    labels: &["secret"],
};
const CONFIG_RELOADS: Def = Def {
    name: "wsgate_config_reloads_total",
    help: "Routing table rebuilds by source and result (error: some input was rejected and its last good version kept).",
    labels: &["source", "result"],
};
const ROUTES: Def = Def {
    name: "wsgate_routes",
    help: "Routes in the table, state=programmed or rejected.",
    labels: &["state"],
};
const LAST_RELOAD: Def = Def {
    name: "wsgate_config_last_reload_timestamp_seconds",
    help: "When the routing table was last rebuilt.",
    labels: &[],
};
const KUBE_EVENTS: Def = Def {
    name: "wsgate_kube_watch_events_total",
    help: "Kubernetes watch events received, by object kind (controller mode).",
    labels: &["kind"],
};
const LEADER: Def = Def {
    name: "wsgate_leader",
    help: "1 while this replica holds the leader lease (controller mode).",
    labels: &[],
};

const AUTH_DECISIONS: Def = Def {
    name: "wsgate_auth_decisions_total",
    help: "Authentication decisions by route, method (jwt, external) and result (allow, allow_cached, deny, unavailable, or why a token was refused: missing, expired, signature, ...).",
    labels: &["route", "method", "result"],
};
const JWKS_FETCHES: Def = Def {
    name: "wsgate_auth_jwks_fetches_total",
    help: "Fetches of JWKS from URLs, result=ok or error (the last good set keeps verifying).",
    labels: &["result"],
};
const JWKS_AGE: Def = Def {
    name: "wsgate_auth_jwks_age_seconds",
    help: "Time since each JWKS URL's set was last fetched successfully.",
    labels: &["url"],
};

/// Makes metrics from their [`Def`]s and registers them.
struct Registrar<'a>(&'a Registry);

#[expect(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one is a bug caught by every test, not input"
)]
impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        made: prometheus::Result<C>,
    ) -> C {
        let c = made.expect("metric names, help texts and labels are constants");
        // Names are fixed and unique, so registration cannot fail; a failure would only lose
        // the metric from /metrics, which is not worth crashing for.
        if let Err(e) = self.0.register(Box::new(c.clone())) {
            tracing::error!(error = %e, "registering a metric failed");
        }
        c
    }

    fn counters(&self, d: &Def) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(d.name, d.help), d.labels))
    }

    fn counter(&self, d: &Def) -> IntCounter {
        self.add(IntCounter::new(d.name, d.help))
    }

    fn int_gauges(&self, d: &Def) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(d.name, d.help), d.labels))
    }

    fn int_gauge(&self, d: &Def) -> IntGauge {
        self.add(IntGauge::new(d.name, d.help))
    }

    fn gauges(&self, d: &Def) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(d.name, d.help), d.labels))
    }

    fn gauge(&self, d: &Def) -> Gauge {
        self.add(Gauge::new(d.name, d.help))
    }

    fn histograms(&self, d: &Def, buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(d.name, d.help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, d.labels))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric and, on Linux, the process collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        // The prometheus crate's process collector (fds, RSS, CPU) under its standard names.
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        let r = Registrar(&registry);
        Metrics {
            http_requests: r.counters(&HTTP_REQUESTS),
            http_duration: r.histograms(&HTTP_DURATION, HTTP_BUCKETS),
            http_redirects: r.counters(&HTTP_REDIRECTS),
            ws_active: r.int_gauges(&WS_ACTIVE),
            ws_endpoint: r.int_gauges(&WS_ENDPOINT),
            ws_upgrades: r.counters(&WS_UPGRADES),
            ws_duration: r.histograms(&WS_DURATION, WS_BUCKETS),
            ws_bytes: r.counters(&WS_BYTES),
            ws_closes: r.counters(&WS_CLOSES),
            backend_connect_errors: r.counters(&CONNECT_ERRORS),
            backend_retries: r.counters(&RETRIES),
            backend_ejections: r.counter(&EJECTIONS),
            local_responses: r.counters(&LOCAL_RESPONSES),
            tls_handshakes: r.counters(&TLS_HANDSHAKES),
            cert_expiry: r.gauges(&CERT_EXPIRY),
            config_reloads: r.counters(&CONFIG_RELOADS),
            routes: r.int_gauges(&ROUTES),
            last_reload: r.gauge(&LAST_RELOAD),
            kube_watch_events: r.counters(&KUBE_EVENTS),
            leader: r.int_gauge(&LEADER),
            auth_decisions: r.counters(&AUTH_DECISIONS),
            jwks_fetches: r.counters(&JWKS_FETCHES),
            jwks_age: r.gauges(&JWKS_AGE),
            by_route: ArcSwap::from_pointee(FnvMap::default()),
            insert: Mutex::new(()),
            no_route: Arc::from(NO_ROUTE),
            registry,
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
