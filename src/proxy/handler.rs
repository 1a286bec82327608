//! The thin I/O half of request handling: turn a hyper request into [`RequestFacts`], ask
//! [`decide`], and carry the decision out (answer, forward, or relay an upgrade).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

use super::decide::{DecideConfig, Decision, Listener, Reject, RequestFacts, decide};
use super::headers::{Forwarded, is_websocket_upgrade, prepare_request, prepare_response};
use super::relay::relay;
use super::tracker::Tracker;
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
) -> Result<Response<Body>, Infallible> {
    let upgrade = is_websocket_upgrade(req.headers());
    // RFC 9112 §3.2.2: an absolute-form target's authority overrides Host. HeaderValue clones
    // share the request's buffer, so keeping the host for later costs no allocation.
    let host: Option<HeaderValue> = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let host_str = host.as_ref().and_then(|h| h.to_str().ok());
    let decision = {
        let facts = RequestFacts {
            host: host_str,
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
    let fwd = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        proto: if conn.tls { "https" } else { "http" },
        host: host.as_ref(),
        port: conn.local_port,
    };
    let response = match decision {
        Decision::Reject(reject, _) => rejection(reject),
        Decision::Redirect {
            status, location, ..
        } => redirect(status, &location),
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
        } => forward(&shared, req, &backend, timeout, &fwd, &route).await,
        Decision::Upgrade {
            backend,
            idle_timeout,
            route,
        } => upgrade_relay(&shared, req, &backend, idle_timeout, &fwd, route).await,
    };
    Ok(response)
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
    backend: &BackendSet,
    timeout: Duration,
    fwd: &Forwarded<'_>,
    route: &str,
) -> Response<Body> {
    let Some(endpoint) = backend.pick() else {
        return rejection(Reject::NoEndpoints);
    };
    let target = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = match Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.authority.clone())
        .path_and_query(target)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return rejection(Reject::BadRequest),
    };
    if !req.headers().contains_key(header::HOST) {
        if let Some(h) = fwd.host {
            req.headers_mut().insert(header::HOST, h.clone());
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    prepare_request(req.headers_mut(), false, fwd);
    match tokio::time::timeout(timeout, shared.client.request(req)).await {
        Err(_) => gateway_timeout(route, &backend.name),
        Ok(Err(e)) => bad_gateway(route, endpoint.addr, &e),
        Ok(Ok(resp)) => {
            let mut resp = resp.map(Either::Left);
            prepare_response(resp.headers_mut(), false);
            resp
        }
    }
}

async fn upgrade_relay(
    shared: &Shared,
    mut req: Request<Incoming>,
    backend: &BackendSet,
    idle_timeout: Option<Duration>,
    fwd: &Forwarded<'_>,
    route: Arc<str>,
) -> Response<Body> {
    let Some(addr) = backend.pick().map(|e| e.addr) else {
        return rejection(Reject::NoEndpoints);
    };
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
        Err(_) => return gateway_timeout(&route, &backend.name),
        Ok(Err(e)) => return bad_gateway(&route, addr, &e),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return bad_gateway(&route, addr, &e),
    };
    // Drives the backend connection until the upgrade hands its socket over.
    tokio::spawn(conn.with_upgrades());
    let mut resp =
        match tokio::time::timeout(UPGRADE_TIMEOUT, sender.send_request(backend_req)).await {
            Err(_) => return gateway_timeout(&route, &backend.name),
            Ok(Err(e)) => return bad_gateway(&route, addr, &e),
            Ok(Ok(r)) => r,
        };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The backend refused the upgrade: its answer goes back as a normal response.
        let mut resp = resp.map(Either::Left);
        prepare_response(resp.headers_mut(), false);
        return resp;
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut client_resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *client_resp.headers_mut() = std::mem::take(resp.headers_mut());
    prepare_response(client_resp.headers_mut(), true);

    let token = shared.relays.token();
    tokio::spawn(async move {
        let _token = token;
        let (client_io, backend_io) = match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route = &*route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let stats = relay(
            TokioIo::new(client_io),
            TokioIo::new(backend_io),
            idle_timeout,
        )
        .await;
        tracing::debug!(
            route = &*route,
            backend = %addr,
            end = stats.end.as_str(),
            bytes_in = stats.client_to_backend,
            bytes_out = stats.backend_to_client,
            "websocket closed"
        );
    });
    client_resp
}
