//! The thin I/O half of request handling: turn a hyper request into [`RequestFacts`], ask
//! [`decide`], and carry the decision out (answer, forward, or relay an upgrade).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::access::{AccessRecord, Finish, Metered};
use super::decide::{DecideConfig, Decision, Listener, Reject, RequestFacts, decide};
use super::drain::DrainRegistry;
use super::headers::{Forwarded, is_websocket_upgrade, prepare_request, prepare_response};
use super::relay::relay;
use super::tracker::Tracker;
use crate::admin::Metrics;
use crate::admin::metrics::{NO_ROUTE, RouteMetrics};
use crate::table::{BackendSet, RouteTable};

/// Response body: a backend's streamed body, or one of ours.
pub type Body = Either<Incoming, Full<Bytes>>;

/// How long to wait for a backend TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a backend may take to answer a WebSocket handshake.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every connection of a proxy.
pub(crate) struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub client: Client<HttpConnector, Incoming>,
    pub decide: DecideConfig,
    pub relays: Tracker,
    pub drain: Arc<DrainRegistry>,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
}

/// Facts about one client connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub peer_value: HeaderValue,
    pub local_port: u16,
    pub tls: bool,
    pub sni: Option<Box<str>>,
}

pub(crate) fn pooled_client() -> Client<HttpConnector, Incoming> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.enforce_http(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

/// Serves one request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Metered>, Infallible> {
    let start = Instant::now();
    let upgrade = is_websocket_upgrade(req.headers());
    // RFC 9112 §3.2.2: an absolute-form target's authority overrides Host. HeaderValue clones
    // share the request's buffer, so keeping the host for later costs no allocation.
    let host: Option<HeaderValue> = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let decision = {
        let facts = RequestFacts {
            host: host.as_ref().and_then(|h| h.to_str().ok()),
            path: req.uri().path(),
            query: req.uri().query(),
            method: req.method(),
            upgrade,
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
    let route_metrics = route.as_ref().map(|r| shared.metrics.route(r));
    let route_label = route.as_deref().unwrap_or(NO_ROUTE);
    let mut access = shared.access_log.then(|| AccessRecord {
        route: route.clone().unwrap_or_else(|| Arc::from(NO_ROUTE)),
        peer: conn.peer,
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
    let fwd = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        proto: if conn.tls { "https" } else { "http" },
        host: host.as_ref(),
        port: conn.local_port,
    };
    let mut upgrade_result = if upgrade { "rejected" } else { "" };
    let response = match decision {
        Decision::Reject(reject, _) => rejection(reject),
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
            let target = Target::new(&backend, &route, route_metrics.as_deref());
            let (resp, addr) = forward(&shared, req, target, timeout, &fwd).await;
            if let Some(a) = access.as_mut() {
                a.backend = addr;
            }
            resp
        }
        Decision::Upgrade {
            backend,
            idle_timeout,
            route,
        } => {
            let target = Target::new(&backend, &route, route_metrics.as_deref());
            let (resp, addr, result) =
                upgrade_relay(&shared, req, target, idle_timeout, &fwd, &mut access).await;
            if let Some(a) = access.as_mut() {
                a.backend = addr;
            }
            upgrade_result = result;
            resp
        }
    };
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

/// The backend a decision chose, with what to blame in logs and metrics.
#[derive(Clone, Copy)]
struct Target<'a> {
    backend: &'a BackendSet,
    route: &'a str,
    metrics: Option<&'a RouteMetrics>,
}

impl<'a> Target<'a> {
    fn new(backend: &'a BackendSet, route: &'a str, metrics: Option<&'a RouteMetrics>) -> Self {
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

async fn forward(
    shared: &Shared,
    mut req: Request<Incoming>,
    target: Target<'_>,
    timeout: Duration,
    fwd: &Forwarded<'_>,
) -> (Response<Body>, Option<SocketAddr>) {
    let Some(endpoint) = target.backend.pick() else {
        return (rejection(Reject::NoEndpoints), None);
    };
    let addr = Some(endpoint.addr);
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = match Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return (rejection(Reject::BadRequest), addr),
    };
    if !req.headers().contains_key(header::HOST) {
        if let Some(h) = fwd.host {
            req.headers_mut().insert(header::HOST, h.clone());
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    prepare_request(req.headers_mut(), false, fwd);
    let resp = match tokio::time::timeout(timeout, shared.client.request(req)).await {
        Err(_) => gateway_timeout(target.route, &target.backend.name),
        Ok(Err(e)) if e.is_connect() => target.connect_failed(endpoint.addr, &e),
        Ok(Err(e)) => bad_gateway(target.route, endpoint.addr, &e),
        Ok(Ok(resp)) => {
            let mut resp = resp.map(Either::Left);
            prepare_response(resp.headers_mut(), false);
            resp
        }
    };
    (resp, addr)
}

/// Forwards a WebSocket handshake and, on 101, relays the connection in its own task. Returns
/// the response for the client, the backend address, and the upgrade result label.
async fn upgrade_relay(
    shared: &Shared,
    mut req: Request<Incoming>,
    target: Target<'_>,
    idle_timeout: Option<Duration>,
    fwd: &Forwarded<'_>,
    access: &mut Option<AccessRecord>,
) -> (Response<Body>, Option<SocketAddr>, &'static str) {
    let Some(addr) = target.backend.pick().map(|e| e.addr) else {
        return (rejection(Reject::NoEndpoints), None, "rejected");
    };
    let failed = |resp| (resp, Some(addr), "backend_error");
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _) = req.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    prepare_request(&mut parts.headers, true, fwd);
    let backend_req = Request::from_parts(parts, Empty::<Bytes>::new());

    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return failed(target.connect_failed(addr, &"connect timed out")),
        Ok(Err(e)) => return failed(target.connect_failed(addr, &e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
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
        let mut resp = resp.map(Either::Left);
        prepare_response(resp.headers_mut(), false);
        return (resp, Some(addr), "backend_refused");
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut client_resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *client_resp.headers_mut() = std::mem::take(resp.headers_mut());
    prepare_response(client_resp.headers_mut(), true);

    let token = shared.relays.token();
    let metrics = shared.metrics.route(&Arc::from(target.route));
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
        let _token = token;
        let _registration = registration;
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
