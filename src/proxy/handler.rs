//! One request through its phases, as Pingora's `ProxyHttp` lays them out: read the request
//! facts → [`decide`] (pure) → [`admit`] (origins, per-client limits; upgrades only) →
//! [`authenticate`] (the rule's JWT and external auth) → connect with retry → [`forward`] or
//! [`upgrade`] → log (metrics, HSTS, access log). Each phase lives
//! in its own module; this one only sequences them and turns a [`Failure`] into its answer.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use super::access::{AccessRecord, Finish, Metered};
use super::admit::{Checks, admit};
use super::affinity::set_cookie;
use super::answer::{Answer, BackendFault, Body, ClientFault, maintenance, redirect};
use super::auth::{Passed, Refused, TokenCache, authenticate};
use super::client_ip::TrustedProxies;
use super::connect::{Target, hash_key};
use super::decide::{
    Access, DecideConfig, Decision, ForwardPlan, Listener, RequestFacts, UpgradePlan, decide,
};
use super::drain::DrainRegistry;
use super::forward::forward;
use super::headers::{Forwarded, ip_value, is_websocket_upgrade};
use super::limits::{Admission, ClientLimiter};
use super::rebalance::Rebalancer;
use super::request_target::{self, Malformed};
use super::tracker::Tracker;
use super::upgrade::{UpgradeOutcome, UpgradeRequest, upgrade};
use super::upstream::Upstreams;
use crate::metrics::{Metrics, NO_ROUTE, RouteMetrics};
use crate::table::{BackendSet, CompiledRoute, RouteTable};

/// State shared by every connection of a proxy.
pub(crate) struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub upstreams: Arc<Upstreams>,
    pub decide: DecideConfig,
    pub relays: Tracker,
    pub drain: Arc<DrainRegistry>,
    pub rebalance: Arc<Rebalancer>,
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
    /// The token last verified on this connection.
    pub tokens: TokenCache,
}

/// What an HTTP/2 connection is doing: open streams (requests being handled and relayed
/// WebSockets) and how many requests it has carried.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub streams: Tracker,
    pub requests: AtomicU64,
}

/// A request that reached the backend (or was answered as the route asks: redirect,
/// maintenance page).
pub(crate) struct Served {
    pub response: Response<Body>,
    pub backend: Option<SocketAddr>,
    /// How an upgrade request ended; `None` for normal requests.
    pub upgrade: Option<UpgradeOutcome>,
}

/// A request wsgate answers itself, and the backend it was trying, if any.
#[derive(Debug)]
pub(crate) struct Failure {
    pub answer: Answer,
    pub backend: Option<SocketAddr>,
}

impl From<Answer> for Failure {
    fn from(answer: Answer) -> Self {
        Failure {
            answer,
            backend: None,
        }
    }
}

impl From<ClientFault> for Failure {
    fn from(fault: ClientFault) -> Self {
        Failure {
            answer: Answer::Client(fault),
            backend: None,
        }
    }
}

/// Serves one request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<Metered>, Infallible> {
    let start = Instant::now();
    let _stream = conn.activity.as_ref().map(|a| {
        a.requests.fetch_add(1, Ordering::Relaxed);
        a.streams.token()
    });
    let inbound = Inbound::read(&mut req, &conn, &shared.trusted);
    let decision = decide(
        &shared.table.load(),
        &inbound.facts(&req, &conn),
        &shared.decide,
    );
    let route = decision.route().cloned();
    let route_metrics = route.as_ref().map(|r| shared.metrics.route(&r.id));
    let mut access = shared
        .access_log
        .then(|| inbound.access_record(&req, &conn, route.as_deref()));
    let ctx = Context {
        shared: &shared,
        conn: &conn,
        inbound: &inbound,
        metrics: route_metrics.as_ref(),
    };
    let served = match carry_out(ctx, req, decision, access.as_ref()).await {
        Ok(served) => served,
        Err(failure) => {
            let answer = failure.answer;
            shared
                .metrics
                .local_response(answer.source(), answer.reason());
            Served {
                response: answer.response(),
                backend: failure.backend,
                upgrade: Some(UpgradeOutcome::of(answer)),
            }
        }
    };
    if let Some(a) = access.as_mut() {
        a.backend = served.backend;
    }
    let response = log(ctx, route.as_deref(), served);
    let finish = Finish {
        start,
        status: response.status(),
        metrics: route_metrics,
        access,
    };
    Ok(response.map(|body| Metered::new(body, finish)))
}

/// What the phases after `decide` share.
#[derive(Clone, Copy)]
struct Context<'a> {
    shared: &'a Shared,
    conn: &'a ConnInfo,
    inbound: &'a Inbound,
    metrics: Option<&'a Arc<RouteMetrics>>,
}

impl<'a> Context<'a> {
    /// The connect phase's target: `backend`, counted under the decided route.
    fn target(self, backend: &'a BackendSet, route: &'a Arc<str>) -> Target<'a> {
        Target {
            backend,
            route,
            metrics: self.metrics,
        }
    }

    /// The balancing key of `backend` for this request (`None` unless it hashes or sticks).
    fn hash_key(self, backend: &BackendSet, headers: &http::HeaderMap) -> Option<u64> {
        hash_key(&backend.balance, headers, self.inbound.client)
    }

    /// The admit phase for this client, now.
    fn admit(self, checks: Checks<'_>, route: &Arc<str>) -> Result<Option<Admission>, Failure> {
        // Most rules check nothing: skip the clock and the limiter.
        if checks.is_empty() {
            return Ok(None);
        }
        let limiter = &self.shared.limiter;
        admit(checks, route, self.inbound.client, limiter, Instant::now()).map_err(Failure::from)
    }

    /// The auth phase for this request.
    async fn authenticate(
        self,
        route: &Arc<str>,
        auth: &Arc<crate::table::RuleAuth>,
        req: &mut Request<Incoming>,
    ) -> Result<Passed, Refused> {
        let fwd = self.inbound.forwarded(self.conn);
        authenticate(self.shared, self.conn, route, auth, req, &fwd).await
    }

    /// Sticky sessions: the cookie naming the endpoint that served, unless the request's
    /// `requested` key already named it.
    fn stick(self, backend: &BackendSet, requested: Option<u64>, mut served: Served) -> Served {
        let tls = self.conn.tls;
        if let Some(cookie) = set_cookie(&backend.balance, requested, served.backend, tls) {
            served
                .response
                .headers_mut()
                .append(header::SET_COOKIE, cookie);
        }
        served
    }
}

/// What the request says about itself, read once.
struct Inbound {
    /// A WebSocket handshake: HTTP/1.1 Upgrade or HTTP/2 extended CONNECT.
    upgrade: bool,
    extended_connect: bool,
    /// The authority the request is routed and forwarded by ([`request_target::authority`]).
    /// A `HeaderValue` clone shares the request's buffer, so keeping it costs no allocation.
    host: Option<HeaderValue>,
    /// Why the target cannot be trusted (a 400), if it cannot.
    malformed: Option<Malformed>,
    /// The client: the peer, or what a trusted proxy in front says it is.
    client: IpAddr,
    client_value: HeaderValue,
}

impl Inbound {
    /// Reads the request, putting its path in normal form first so that every phase after
    /// this one sees the same target.
    fn read(req: &mut Request<Incoming>, conn: &ConnInfo, trusted: &TrustedProxies) -> Self {
        let extended_connect = is_extended_connect(req);
        let upgrade = extended_connect
            || (req.version() < Version::HTTP_2 && is_websocket_upgrade(req.headers()));
        let path = request_target::normalize_path(req.uri_mut());
        let (host, malformed) =
            match request_target::authority(req.version(), req.uri(), req.headers()) {
                Ok(host) => (host, path.err()),
                Err(why) => (None, Some(why)),
            };
        let malformed = malformed.or_else(|| match upgrade && !extended_connect {
            true => request_target::check_handshake(req.headers()).err(),
            false => None,
        });
        if let Some(why) = malformed {
            tracing::debug!(?why, uri = %req.uri(), "malformed request target: 400");
        }
        let client = trusted.client_ip(conn.peer.ip(), req.headers());
        let client_value = if client == conn.peer.ip() {
            conn.peer_value.clone()
        } else {
            ip_value(client)
        };
        Inbound {
            upgrade,
            extended_connect,
            host,
            malformed,
            client,
            client_value,
        }
    }

    fn facts<'a>(&'a self, req: &'a Request<Incoming>, conn: &'a ConnInfo) -> RequestFacts<'a> {
        RequestFacts {
            host: self.host.as_ref().and_then(|h| h.to_str().ok()),
            path: req.uri().path(),
            query: req.uri().query(),
            method: req.method(),
            headers: req.headers(),
            upgrade: self.upgrade,
            malformed: self.malformed.is_some(),
            listener: match conn.tls {
                true => Listener::Https {
                    sni: conn.sni.as_deref(),
                },
                false => Listener::Http,
            },
        }
    }

    /// What this hop tells the backend.
    fn forwarded<'a>(&'a self, conn: &'a ConnInfo) -> Forwarded<'a> {
        Forwarded {
            peer: conn.peer.ip(),
            peer_value: &conn.peer_value,
            client_value: &self.client_value,
            proto: if conn.tls { "https" } else { "http" },
            host: self.host.as_ref(),
            port: conn.local_port,
        }
    }

    fn access_record(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
        route: Option<&CompiledRoute>,
    ) -> AccessRecord {
        AccessRecord {
            route: route.map_or_else(|| Arc::from(NO_ROUTE), |r| r.id.clone()),
            peer: SocketAddr::new(self.client, conn.peer.port()),
            method: req.method().clone(),
            host: self.host.clone(),
            uri: req.uri().clone(),
            bytes_in: content_length(req),
            backend: None,
        }
    }
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441 §4).
fn is_extended_connect(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Carries the decision out: answer, or admit, connect and forward or upgrade.
async fn carry_out(
    ctx: Context<'_>,
    req: Request<Incoming>,
    decision: Decision,
    access: Option<&AccessRecord>,
) -> Result<Served, Failure> {
    let ours = |response, upgrade| Served {
        response,
        backend: None,
        upgrade: Some(upgrade),
    };
    match decision {
        Decision::Reject(fault, _) => Err(Failure::from(fault)),
        Decision::Redirect {
            status,
            location,
            kind,
            ..
        } => {
            let kind = [kind.as_str()];
            ctx.shared
                .metrics
                .http_redirects
                .with_label_values(&kind)
                .inc();
            Ok(ours(
                redirect(status, &location),
                UpgradeOutcome::Redirected,
            ))
        }
        Decision::Maintenance { body, .. } => Ok(ours(maintenance(body), UpgradeOutcome::Rejected)),
        Decision::Forward(plan) => admit_and_forward(ctx, req, plan).await,
        Decision::Upgrade(plan) => admit_and_upgrade(ctx, req, plan, access).await,
    }
}

/// The admit phase (sources, declared body, request rate), then forwarding.
async fn admit_and_forward(
    ctx: Context<'_>,
    mut req: Request<Incoming>,
    plan: ForwardPlan,
) -> Result<Served, Failure> {
    let ForwardPlan {
        backend,
        timeout,
        access,
        route,
    } = plan;
    let mut max_body = None;
    let mut headers = None;
    if let Some(access) = access {
        max_body = access.max_body;
        headers = access.headers;
        let checks = Checks {
            allowed_sources: access.allowed_sources.as_deref().unwrap_or_default(),
            body: (content_length(&req), max_body),
            limits: access.limits,
            ..Checks::default()
        };
        // A request holds no slot: only its rate counts.
        drop(ctx.admit(checks, &route.id)?);
        if let Some(auth) = &access.auth {
            if let Err(refused) = ctx.authenticate(&route.id, auth, &mut req).await {
                return refused_answer(refused);
            }
        }
        rewrite_path(&mut req, access.rewritten_path.as_deref())?;
    }
    if let Some(h) = &headers {
        h.request.apply(req.headers_mut());
    }
    let key = ctx.hash_key(&backend, req.headers());
    let fwd = ctx.inbound.forwarded(ctx.conn);
    let target = ctx.target(&backend, &route.id);
    let mut served = forward(ctx.shared, req, target, timeout, max_body, &fwd, key).await?;
    if let Some(h) = &headers {
        h.response.apply(served.response.headers_mut());
    }
    Ok(ctx.stick(&backend, key, served))
}

/// The admit phase (origin, per-client limits), then the upgrade.
async fn admit_and_upgrade(
    ctx: Context<'_>,
    req: Request<Incoming>,
    plan: UpgradePlan,
    log: Option<&AccessRecord>,
) -> Result<Served, Failure> {
    let Context {
        shared,
        conn,
        inbound,
        ..
    } = ctx;
    let UpgradePlan {
        backend,
        idle_timeout,
        handshake_timeout,
        max_lifetime,
        keepalive,
        allowed_origins,
        access,
        route,
    } = plan;
    let nothing = Access::default();
    let access = access.as_deref().unwrap_or(&nothing);
    let checks = Checks {
        allowed_sources: access.allowed_sources.as_deref().unwrap_or_default(),
        allowed_origins: &allowed_origins,
        origin: req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        limits: access.limits,
        ..Checks::default()
    };
    let admission = ctx.admit(checks, &route.id)?;
    let mut req = req;
    let passed = match &access.auth {
        None => Passed::default(),
        Some(auth) => match ctx.authenticate(&route.id, auth, &mut req).await {
            Ok(passed) => passed,
            Err(refused) => return refused_answer(refused),
        },
    };
    // The rule's capacity, all clients together: an overload, so 503, not the 429 of a
    // client over its own limits.
    let total = match access.max_connections {
        None => None,
        Some((max, rule)) => match shared.limiter.hold_total(&route.id, rule, max) {
            Some(slot) => Some(slot),
            None => return Err(Failure::from(Answer::Backend(BackendFault::AtCapacity))),
        },
    };
    rewrite_path(&mut req, access.rewritten_path.as_deref())?;
    if let Some(h) = &access.headers {
        h.request.apply(req.headers_mut());
    }
    let key = ctx.hash_key(&backend, req.headers());
    let request = UpgradeRequest {
        token_expires: passed.expires,
        key,
        req,
        extended_connect: inbound.extended_connect,
        idle_timeout,
        handshake_timeout,
        max_lifetime,
        keepalive,
        admission,
        total,
        stream: conn.activity.as_ref().map(|a| a.streams.token()),
    };
    let target = ctx.target(&backend, &route.id);
    let mut served = upgrade(shared, request, target, &inbound.forwarded(conn), log).await?;
    if let Some(h) = &access.headers {
        h.response.apply(served.response.headers_mut());
    }
    Ok(ctx.stick(&backend, key, served))
}

/// A refusal of the auth phase: one of ours (a failure, counted as such), or the auth
/// service's own answer, passed on as it came.
fn refused_answer(refused: Refused) -> Result<Served, Failure> {
    match refused {
        Refused::Answer(answer) => Err(Failure::from(answer)),
        Refused::Response(response) => Ok(Served {
            response: *response,
            backend: None,
            upgrade: Some(UpgradeOutcome::Unauthorized),
        }),
    }
}

/// The declared body length, when the request declares one.
fn content_length(req: &Request<Incoming>) -> Option<u64> {
    let value = req.headers().get(header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// Gives the request the path its rule rewrote, keeping the query. The path is built from
/// the normalised request path and a validated prefix, so it parses; if it did not, the
/// request is refused rather than forwarded with a path the rule did not mean.
fn rewrite_path(req: &mut Request<Incoming>, path: Option<&str>) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let with_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    let bad = |_| Failure::from(ClientFault::BadRequest);
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(with_query).map_err(bad)?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| ClientFault::BadRequest)?;
    Ok(())
}

/// The log phase: HSTS on TLS answers, request and upgrade metrics. The access log line and
/// the duration are recorded when the response body ends ([`Metered`]).
fn log(ctx: Context<'_>, route: Option<&CompiledRoute>, served: Served) -> Response<Body> {
    let mut response = served.response;
    if ctx.conn.tls {
        if let Some(hsts) = route.and_then(|r| r.hsts.as_ref()) {
            response
                .headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
    }
    let metrics = &ctx.shared.metrics;
    metrics.request(ctx.metrics.map(|m| &**m), response.status());
    if ctx.inbound.upgrade {
        let outcome = served.upgrade.unwrap_or(UpgradeOutcome::Rejected);
        let route = route.map_or(NO_ROUTE, |r| &*r.id);
        metrics
            .ws_upgrades
            .with_label_values(&[route, outcome.as_str()])
            .inc();
    }
    response
}
