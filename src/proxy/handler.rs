//! The thin I/O half of request handling: turn a hyper request into [`RequestFacts`], ask
//! [`decide`], and carry the decision out (answer, forward, or relay an upgrade).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::access::{AccessRecord, Finish, Metered};
use super::client_ip::TrustedProxies;
use super::decide::{DecideConfig, Decision, Listener, Reject, RequestFacts, decide};
use super::drain::DrainRegistry;
use super::headers::{
    Forwarded, cookie, ip_value, is_websocket_upgrade, prepare_request, prepare_response,
};
use super::limits::{ClientLimiter, Refusal};
use super::relay::relay;
use super::tracker::Tracker;
use super::upstream::{SendError, UpstreamBody, Upstreams};
use crate::metrics::Metrics;
use crate::metrics::{NO_ROUTE, RouteMetrics};
use crate::model::{Balance, ClientLimits, HashKey};
use crate::table::{BackendSet, RouteTable, hash_bytes};

/// Response body: a backend's streamed body, or one of ours.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

/// How long a backend may take to answer a WebSocket handshake.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every connection of a proxy.
pub(crate) struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub upstreams: Arc<Upstreams>,
    pub decide: DecideConfig,
    pub relays: Tracker,
    pub drain: Arc<DrainRegistry>,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    pub trusted: TrustedProxies,
    pub limiter: Arc<ClientLimiter>,
}

/// Facts about one client connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub peer_value: HeaderValue,
    pub local_port: u16,
    pub tls: bool,
    pub sni: Option<Box<str>>,
    /// Streams of an HTTP/2 connection, for closing it when idle; `None` for HTTP/1.1.
    pub activity: Option<Activity>,
}

/// What an HTTP/2 connection is doing: open streams (requests being handled and relayed
/// WebSockets) and how many requests it has carried.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub streams: Tracker,
    pub requests: std::sync::atomic::AtomicU64,
}

/// Serves one request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Metered>, Infallible> {
    let start = Instant::now();
    let _stream = conn.activity.as_ref().map(|a| {
        a.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        a.streams.token()
    });
    let extended_connect = is_extended_connect(&req);
    let upgrade = extended_connect
        || (req.version() < Version::HTTP_2 && is_websocket_upgrade(req.headers()));
    // RFC 9112 §3.2.2: an absolute-form target's authority overrides Host (and HTTP/2 has
    // only :authority). HeaderValue clones share the request's buffer, so keeping the host for
    // later costs no allocation.
    let host: Option<HeaderValue> = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let client = shared.trusted.client_ip(conn.peer.ip(), req.headers());
    let decision = {
        let facts = RequestFacts {
            host: host.as_ref().and_then(|h| h.to_str().ok()),
            path: req.uri().path(),
            query: req.uri().query(),
            method: req.method(),
            upgrade,
            origin: req
                .headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok()),
            listener: if conn.tls {
                Listener::Https {
                    sni: conn.sni.as_deref(),
                }
            } else {
                Listener::Http
            },
        };
        decide(&shared.table.load(), &facts, &shared.decide)
    };
    let route = decision.route().cloned();
    let route_metrics = route.as_ref().map(|r| shared.metrics.route(&r.id));
    let route_label = route.as_ref().map_or(NO_ROUTE, |r| &*r.id);
    let mut access = shared.access_log.then(|| AccessRecord {
        route: route
            .as_ref()
            .map_or_else(|| Arc::from(NO_ROUTE), |r| r.id.clone()),
        peer: SocketAddr::new(client, conn.peer.port()),
        method: req.method().clone(),
        host: host.clone(),
        uri: req.uri().clone(),
        bytes_in: req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        backend: None,
    });
    let client_value = if client == conn.peer.ip() {
        conn.peer_value.clone()
    } else {
        ip_value(client)
    };
    let fwd = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        client_value: &client_value,
        proto: if conn.tls { "https" } else { "http" },
        host: host.as_ref(),
        port: conn.local_port,
    };
    let mut upgrade_result = if upgrade { "rejected" } else { "" };
    let mut response = match decision {
        Decision::Reject(reject, _) => {
            if reject == Reject::ForbiddenOrigin {
                upgrade_result = "forbidden";
            }
            rejection(reject)
        }
        Decision::Redirect {
            status,
            location,
            kind,
            ..
        } => {
            shared
                .metrics
                .http_redirects
                .with_label_values(&[kind.as_str()])
                .inc();
            upgrade_result = "redirected";
            redirect(status, &location)
        }
        Decision::Maintenance { body, .. } => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Decision::Forward {
            backend,
            timeout,
            route,
        } => {
            let key = hash_key(&backend.balance, req.headers(), client);
            let target = Target::new(&backend, &route.id, route_metrics.as_ref());
            let (resp, addr) = forward(&shared, req, target, timeout, &fwd, key).await;
            if let Some(a) = access.as_mut() {
                a.backend = addr;
            }
            resp
        }
        Decision::Upgrade {
            backend,
            idle_timeout,
            limits,
            route,
        } => {
            let key = hash_key(&backend.balance, req.headers(), client);
            let target = Target::new(&backend, &route.id, route_metrics.as_ref());
            let upgrade = UpgradeRequest {
                req,
                extended_connect,
                idle_timeout,
                key,
                limits: limits.map(|(limits, rule)| (limits, rule, client)),
                stream: conn.activity.as_ref().map(|a| a.streams.token()),
            };
            let (resp, addr, result) =
                upgrade_relay(&shared, upgrade, target, &fwd, &mut access).await;
            if let Some(a) = access.as_mut() {
                a.backend = addr;
            }
            upgrade_result = result;
            resp
        }
    };
    if conn.tls {
        if let Some(hsts) = route.as_ref().and_then(|r| r.hsts.as_ref()) {
            response
                .headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
    }
    let status = response.status();
    shared.metrics.request(route_metrics.as_deref(), status);
    if upgrade {
        shared
            .metrics
            .ws_upgrades
            .with_label_values(&[route_label, upgrade_result])
            .inc();
    }
    let finish = Finish {
        start,
        status,
        metrics: route_metrics,
        access,
    };
    Ok(response.map(|body| Metered::new(body, finish)))
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441 §4).
fn is_extended_connect(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The consistent-hashing key of a request, when the backend hashes and the request has it.
fn hash_key(balance: &Balance, headers: &HeaderMap, client: IpAddr) -> Option<u64> {
    let Balance::ConsistentHash(on) = balance else {
        return None;
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

/// The backend a decision chose, with what to blame in logs and metrics.
#[derive(Clone, Copy)]
struct Target<'a> {
    backend: &'a BackendSet,
    route: &'a Arc<str>,
    metrics: Option<&'a Arc<RouteMetrics>>,
}

impl<'a> Target<'a> {
    fn new(
        backend: &'a BackendSet,
        route: &'a Arc<str>,
        metrics: Option<&'a Arc<RouteMetrics>>,
    ) -> Self {
        Target {
            backend,
            route,
            metrics,
        }
    }

    fn connect_failed(&self, addr: SocketAddr, why: &dyn std::fmt::Display) -> Response<Body> {
        if let Some(m) = self.metrics {
            m.connect_errors.inc();
        }
        bad_gateway(self.route, addr, why)
    }

    /// After a failed connect to `failed`: whether to try once more, on another endpoint (the
    /// request never left). Only the first failure is retried, and only when there is another
    /// endpoint; `exclude` then holds the failed one, and the retry is counted.
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

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn rejection(reject: Reject) -> Response<Body> {
    let mut r = text(reject.status(), reject.body());
    if reject == Reject::UpgradeRequired {
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    r
}

fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = text(status, format!("Redirecting to {location}\n"));
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        // The path came from a parsed URI, so this only guards against surprises.
        Err(_) => rejection(Reject::BadRequest),
    }
}

fn bad_gateway(route: &str, backend: SocketAddr, why: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(route, %backend, error = %why, "backend unreachable");
    text(
        StatusCode::BAD_GATEWAY,
        "502 bad gateway: the backend is unreachable\n",
    )
}

fn gateway_timeout(route: &str, backend: &str) -> Response<Body> {
    tracing::warn!(route, backend, "backend timed out");
    text(
        StatusCode::GATEWAY_TIMEOUT,
        "504 gateway timeout: the backend did not answer in time\n",
    )
}

/// Whether a request may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

async fn forward(
    shared: &Shared,
    mut req: Request<Incoming>,
    target: Target<'_>,
    timeout: Duration,
    fwd: &Forwarded<'_>,
    key: Option<u64>,
) -> (Response<Body>, Option<SocketAddr>) {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let h2c = target.backend.h2c;
    if h2c {
        // HTTP/2 carries the host as :authority, taken from the URI.
        let authority = fwd
            .host
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        match Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority)
            .path_and_query(path)
            .build()
        {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return (rejection(Reject::BadRequest), None),
        }
        req.headers_mut().remove(header::HOST);
        *req.version_mut() = Version::HTTP_2;
    } else {
        if !req.headers().contains_key(header::HOST) {
            if let Some(h) = fwd.host {
                req.headers_mut().insert(header::HOST, h.clone());
            }
        }
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
    }
    prepare_request(req.headers_mut(), false, fwd);
    let retry = idempotent(req.method());
    let attempts = async {
        let mut exclude = None;
        loop {
            let now = shared.upstreams.now_ms();
            let Some(endpoint) = target.backend.pick(key, now, exclude) else {
                return (rejection(Reject::NoEndpoints), exclude);
            };
            let active = endpoint.state.begin();
            match shared
                .upstreams
                .send(target.backend, endpoint, req, active)
                .await
            {
                Ok(resp) => {
                    let mut resp = resp.map(Either::Left);
                    prepare_response(resp.headers_mut(), false);
                    return (resp, Some(endpoint.addr));
                }
                Err(SendError::Connect(e, back)) => {
                    let failed = target.connect_failed(endpoint.addr, &e);
                    // Requests that may be repeated (the request never left, so its body is
                    // still unread).
                    if retry && target.retry_elsewhere(endpoint.addr, &mut exclude) {
                        req = *back;
                        continue;
                    }
                    return (failed, Some(endpoint.addr));
                }
                Err(SendError::Http(e)) => {
                    return (
                        bad_gateway(target.route, endpoint.addr, &e),
                        Some(endpoint.addr),
                    );
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempts).await {
        Ok(done) => done,
        Err(_) => (gateway_timeout(target.route, &target.backend.name), None),
    }
}

/// A WebSocket handshake to relay, HTTP/1.1 Upgrade or HTTP/2 extended CONNECT.
struct UpgradeRequest {
    req: Request<Incoming>,
    extended_connect: bool,
    idle_timeout: Option<Duration>,
    key: Option<u64>,
    /// Limits, the rule they count under, and the client.
    limits: Option<(ClientLimits, usize, IpAddr)>,
    /// Keeps an HTTP/2 connection from counting as idle while the socket is relayed.
    stream: Option<super::tracker::Token>,
}

fn too_many(refusal: Refusal) -> Response<Body> {
    let why = match refusal {
        Refusal::TooManyConnections => "too many open WebSockets from this client",
        Refusal::TooFast(_) => "too many WebSocket upgrades from this client",
        Refusal::Full => "too many clients are being tracked; try again shortly",
    };
    let mut r = text(
        StatusCode::TOO_MANY_REQUESTS,
        format!("429 too many requests: {why}\n"),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(refusal.retry_after_secs()),
    );
    r
}

/// A fresh `Sec-WebSocket-Key` for the backend: HTTP/2 clients send none (RFC 8441 §5).
fn websocket_key() -> HeaderValue {
    let mut nonce = [0u8; 16];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut nonce).is_err() {
        // Only uniqueness matters here, not secrecy: fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        nonce = t.to_le_bytes();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// Forwards a WebSocket handshake and, on 101, relays the connection in its own task. Returns
/// the response for the client, the backend address, and the upgrade result label.
async fn upgrade_relay(
    shared: &Shared,
    upgrade: UpgradeRequest,
    target: Target<'_>,
    fwd: &Forwarded<'_>,
    access: &mut Option<AccessRecord>,
) -> (Response<Body>, Option<SocketAddr>, &'static str) {
    let UpgradeRequest {
        mut req,
        extended_connect,
        idle_timeout,
        key,
        limits,
        stream,
    } = upgrade;
    let admission = match limits {
        None => None,
        Some((limits, rule, client)) => {
            match shared
                .limiter
                .admit(target.route, rule, client, limits, Instant::now())
            {
                Ok(a) => Some(a),
                Err(refusal) => return (too_many(refusal), None, "limited"),
            }
        }
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    if extended_connect {
        // RFC 8441 §5: the HTTP/1.1 handshake the backend expects, rebuilt from the CONNECT.
        parts.method = Method::GET;
        prepare_request(&mut parts.headers, false, fwd);
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(SEC_WEBSOCKET_KEY.clone(), websocket_key());
        if let Some(h) = fwd.host {
            parts.headers.insert(header::HOST, h.clone());
        }
    } else {
        prepare_request(&mut parts.headers, true, fwd);
    }
    let backend_req = Request::from_parts(parts, Empty::<Bytes>::new());

    // As for requests: a failed connect is retried once on another endpoint (the handshake
    // has not left yet).
    let now = shared.upstreams.now_ms();
    let mut exclude = None;
    let (endpoint, io) = loop {
        let Some(endpoint) = target.backend.pick(key, now, exclude) else {
            return (rejection(Reject::NoEndpoints), None, "rejected");
        };
        match shared
            .upstreams
            .connect(endpoint, target.backend.tls.as_deref())
            .await
        {
            Ok(io) => break (endpoint, io),
            Err(e) => {
                let failed = target.connect_failed(endpoint.addr, &e);
                if target.retry_elsewhere(endpoint.addr, &mut exclude) {
                    continue;
                }
                return (failed, Some(endpoint.addr), "backend_error");
            }
        }
    };
    let addr = endpoint.addr;
    let failed = |resp| (resp, Some(addr), "backend_error");
    let active = endpoint.state.begin();
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return failed(bad_gateway(target.route, addr, &e)),
    };
    // Drives the backend connection until the upgrade hands its socket over.
    tokio::spawn(conn.with_upgrades());
    let mut resp =
        match tokio::time::timeout(UPGRADE_TIMEOUT, sender.send_request(backend_req)).await {
            Err(_) => return failed(gateway_timeout(target.route, &target.backend.name)),
            Ok(Err(e)) => return failed(bad_gateway(target.route, addr, &e)),
            Ok(Ok(r)) => r,
        };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The backend refused the upgrade: its answer goes back as a normal response.
        let mut resp = resp.map(|inner| Either::Left(UpstreamBody::unpooled(inner)));
        prepare_response(resp.headers_mut(), false);
        return (resp, Some(addr), "backend_refused");
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut client_resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *client_resp.headers_mut() = std::mem::take(resp.headers_mut());
    if extended_connect {
        // RFC 8441 §5: a 2xx accepts the CONNECT; the HTTP/1.1 handshake headers stay behind.
        prepare_response(client_resp.headers_mut(), false);
        client_resp.headers_mut().remove(&SEC_WEBSOCKET_ACCEPT);
    } else {
        *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        prepare_response(client_resp.headers_mut(), true);
    }

    let token = shared.relays.token();
    // The route's handles, looked up once per request by `handle`.
    let metrics = match target.metrics {
        Some(m) => m.clone(),
        None => shared.metrics.route(target.route),
    };
    let closes = shared.metrics.ws_closes.clone();
    // The connection gets its own log line when it ends; the 101 keeps the request's.
    let ws_access = access.as_ref().map(|a| AccessRecord {
        route: a.route.clone(),
        peer: a.peer,
        method: a.method.clone(),
        host: a.host.clone(),
        uri: a.uri.clone(),
        bytes_in: None,
        backend: Some(addr),
    });
    let (registration, drain) = shared.drain.register();
    tokio::spawn(async move {
        // Held for the connection's life: drain bookkeeping, least-connections count and the
        // client's connection slot.
        let _held = (token, registration, active, admission, stream);
        let (client_io, backend_io) = match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route = &*metrics.route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let opened = Instant::now();
        metrics.ws_active.inc();
        let stats = relay(
            TokioIo::new(client_io),
            TokioIo::new(backend_io),
            idle_timeout,
            |up, down| {
                metrics.ws_to_backend.inc_by(up);
                metrics.ws_to_client.inc_by(down);
            },
            drain,
        )
        .await;
        metrics.ws_active.dec();
        let lifetime = opened.elapsed();
        metrics.ws_duration.observe(lifetime.as_secs_f64());
        let reason = stats.reason();
        closes.with_label_values(&[&*metrics.route, reason]).inc();
        if let Some(a) = ws_access {
            a.log_websocket(lifetime, &stats, reason);
        }
    });
    (client_resp, Some(addr), "upgraded")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_idempotent_methods_are_retried() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!idempotent(&m), "{m}");
        }
    }
}
