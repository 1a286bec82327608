//! The routing table: a pure compile of model routes, TLS secrets and endpoints into an
//! immutable [`RouteTable`], and the allocation-free lookups the proxy does on every request and
//! every TLS handshake.
//!
//! Depends on [`crate::model`] only, never on a user-facing API: each API translates its objects
//! into the model first. Nothing here performs I/O: sources hand in a [`Snapshot`], get back a
//! table plus a [`RouteReport`] per route, and publish the table whole. Inside: `compile` (the
//! route loop and conflicts), `backends` (a rule's backend set), `certs` (certificate cache),
//! `shared` (per-endpoint state across compiles), `report` (what a compile says per route).

mod auth;
mod backends;
mod balance;
mod certs;
mod compile;
mod endpoints;
mod host;
mod report;
mod shared;
mod split;
mod tls;
mod upstream_tls;

pub use auth::{AnswerCache, ExternalCheck, JwtCheck, JwtKeys, RemoteKeys, RemoteTrust, RuleAuth};
pub use balance::{
    ActiveGuard, EndpointState, FnvMap, HealthPolicy, SocketGuard, hash_addr, hash_bytes,
};
pub use certs::CertificateCache;
pub use compile::{
    CompileCache, DataRef, JWKS_SECRET_TYPE, ServiceKey, Snapshot, compile, compile_with,
};
pub use endpoints::{ExternalName, ResolvedServices, SERVICE_NAME_LABEL, resolve_services};
pub use host::{HostBuf, normalize_host};
pub use report::{Problem, ProblemKind, RouteReport};
pub use split::Split;
pub use tls::{TlsError, TlsSecret, certified_key_from_pem, not_after, self_signed};
pub use upstream_tls::{BackendTlsEntry, backend_client_config, backend_h2_client_config};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method};
use rustls::sign::CertifiedKey;

use crate::model::{
    Balance, Cidr, ClientLimits, HeaderChanges, HeaderMatch, Keepalive, Lifetime, OriginPattern,
    PathRewrite, QueryMatch, Rebalance, RequestRedirect,
};

/// The live routing table, published whole through an `ArcSwap` and never mutated.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact hostnames, lowercase.
    exact: FnvMap<Box<str>, HostEntry>,
    /// `*.example.com` stored as `example.com`: a wildcard covers exactly one label.
    wildcard: FnvMap<Box<str>, HostEntry>,
    /// Hosts no route names (Ingress rules without a host, an Ingress `defaultBackend`).
    catch_all: Option<HostEntry>,
    routes: Vec<Arc<CompiledRoute>>,
    certificates: Vec<CertificateInfo>,
}

/// A certificate the table serves, for expiry monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `namespace/name` of its Secret.
    pub secret: String,
    /// `notAfter` of the leaf as Unix seconds, when it could be read.
    pub not_after: Option<i64>,
}

/// What a hostname leads to.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// The route that owns the hostname.
    pub route: Arc<CompiledRoute>,
    /// Whether the hostname is served or only redirected to the route's first hostname.
    pub role: HostRole,
}

/// How a route uses one of its hostnames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRole {
    /// Listed in `hostnames`: requests are routed by path.
    Serve,
    /// Listed in `redirectHostnames`: every request is redirected to `hostnames[0]`.
    Redirect,
}

/// One route, ready to serve.
#[derive(Debug)]
pub struct CompiledRoute {
    /// `namespace/name`, used in logs and metric labels.
    pub id: Arc<str>,
    /// `hostnames[0]`, the target of `redirectHostnames`.
    pub canonical_host: Arc<str>,
    /// TLS settings; `None` for a plain-HTTP route.
    pub tls: Option<RouteTlsEntry>,
    /// Body of the 503 answer while maintenance is enabled.
    pub maintenance: Option<Bytes>,
    /// `Strict-Transport-Security` value for https responses.
    pub hsts: Option<HeaderValue>,
    /// Rules, longest prefix first.
    pub rules: Vec<CompiledRule>,
}

/// TLS of a compiled route.
#[derive(Debug)]
pub struct RouteTlsEntry {
    /// The certificate; `None` when the Secret is missing or unusable (the listener's default
    /// certificate is served instead, and the route's report says why).
    pub cert: Option<Arc<CertifiedKey>>,
    /// Whether plain-HTTP requests are redirected to https.
    pub http_redirect: bool,
    /// Plain-HTTP requests are not served (404).
    pub https_only: bool,
}

/// One path rule.
#[derive(Debug)]
pub struct CompiledRule {
    /// Normalized path prefix (no trailing slash except the root), or the exact path.
    pub prefix: Box<str>,
    /// Whether `prefix` must be the whole path.
    pub exact: bool,
    /// Method, headers and query parameters the request must also have; `None` (most
    /// rules): the path alone decides.
    pub conditions: Option<Box<Conditions>>,
    /// Client networks allowed (`None` allows any); others get 403.
    pub allowed_sources: Option<Arc<[Cidr]>>,
    /// Index of the rule in the route's spec, for logs and metrics.
    pub index: usize,
    /// Answer requests and upgrades with this redirect instead of forwarding them.
    pub redirect: Option<Box<RequestRedirect>>,
    /// Backend of normal requests.
    pub http: Option<HttpBackend>,
    /// Backend of WebSocket upgrades.
    pub websocket: Option<WebSocketBackend>,
    /// Authentication of its requests and upgrades.
    pub auth: Option<Arc<RuleAuth>>,
}

/// What a rule matches beyond the path (Gateway API `matches`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// The method, when the rule takes one.
    pub method: Option<Method>,
    /// Headers with exact values.
    pub headers: Box<[HeaderMatch]>,
    /// Query parameters with exact values.
    pub query: Box<[QueryMatch]>,
}

impl Conditions {
    /// Whether a request with this method, these headers and this query string (without
    /// `?`) meets every condition.
    pub fn met(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|h| header_is(headers, h))
            && self.query.iter().all(|q| query_is(query.unwrap_or(""), q))
    }
}

/// A header repeated in the request is compared as its values joined by `,` (RFC 9110 §5.3
/// makes the two forms equivalent).
fn header_is(headers: &HeaderMap, want: &HeaderMatch) -> bool {
    let mut values = headers.get_all(&want.name).iter();
    match (values.next(), values.next()) {
        (None, _) => false,
        (Some(one), None) => one == want.value,
        (Some(_), Some(_)) => {
            let joined: Vec<&[u8]> = headers
                .get_all(&want.name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            joined.join(&b","[..]) == want.value.as_bytes()
        }
    }
}

/// The first parameter named `want.name` (both sides percent-decoded) has `want.value`.
fn query_is(query: &str, want: &QueryMatch) -> bool {
    let first = query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decoded_is(name, &want.name)).then_some(value)
    });
    first.is_some_and(|value| decoded_is(value, &want.value))
}

/// Whether `raw`, percent-decoded (RFC 3986 §2.1; `+` stays `+`), is `want`. A malformed
/// escape is compared as written.
fn decoded_is(raw: &str, want: &str) -> bool {
    if !raw.contains('%') {
        return raw == want;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        let escape = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match escape {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out == want.as_bytes()
}

/// Header changes of a rule, applied to what goes to the backend and what comes back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFilters {
    /// Changes to the request.
    pub request: HeaderChanges,
    /// Changes to the response.
    pub response: HeaderChanges,
}

/// Backend of normal requests with its timeout.
#[derive(Debug)]
pub struct HttpBackend {
    /// Where requests go.
    pub backends: Split,
    /// How long to wait for response headers.
    pub timeout: Duration,
    /// Largest request body, in bytes (413 beyond).
    pub max_body: Option<u64>,
    /// Requests per second per client.
    pub limits: Option<ClientLimits>,
    /// How the path the backend sees is rewritten.
    pub rewrite: Option<PathRewrite>,
    /// Header changes (`None`: none).
    pub headers: Option<Arc<HeaderFilters>>,
}

/// Backend of WebSocket upgrades with its idle timeout.
#[derive(Debug)]
pub struct WebSocketBackend {
    /// Where upgrades go.
    pub backends: Split,
    /// Close a relayed connection idle this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Time the backend has to answer the handshake; `None` is the proxy's default.
    pub handshake_timeout: Option<Duration>,
    /// Close sockets this old.
    pub max_lifetime: Option<Lifetime>,
    /// Ping silent peers, close dead ones.
    pub keepalive: Option<Keepalive>,
    /// Sockets of the rule, all clients (this replica's): an upgrade beyond gets 503.
    pub max_connections: Option<u32>,
    /// Origins allowed to open a socket; empty allows any.
    pub allowed_origins: Arc<[OriginPattern]>,
    /// Per-client limits.
    pub limits: Option<ClientLimits>,
    /// How the path the backend sees is rewritten.
    pub rewrite: Option<PathRewrite>,
    /// Header changes of the handshake (`None`: none).
    pub headers: Option<Arc<HeaderFilters>>,
}

/// The endpoints of one backend, with how to pick among them and how to talk to them.
#[derive(Debug)]
pub struct BackendSet {
    /// Human-readable name (`127.0.0.1:8080` or `service chat:5000`), for logs.
    pub name: Arc<str>,
    endpoints: Arc<[Endpoint]>,
    next: AtomicUsize,
    /// How endpoints are picked.
    pub balance: Balance,
    /// HTTP/2 with prior knowledge (`protocol: h2c`) for normal requests.
    pub h2c: bool,
    /// TLS towards the endpoints.
    pub tls: Option<Arc<BackendTlsEntry>>,
    /// Time allowed to connect to an endpoint; `None` is the proxy's default.
    pub connect_timeout: Option<Duration>,
    /// WebSockets per endpoint (this replica's); full endpoints are skipped.
    pub max_sockets_per_endpoint: Option<u32>,
    /// Move this replica's sockets off overloaded endpoints when the endpoints change.
    pub rebalance: Option<Rebalance>,
    /// The route named a backend it may not use or that is not a Service (Gateway API): its
    /// share of the traffic gets 500.
    pub unresolved: bool,
}

/// One backend address, with its URI authority prepared at compile time so forwarding a
/// request does not format it again.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `ip:port` as a URI authority.
    pub authority: Authority,
    /// Hash of the address, for consistent hashing.
    hash: u64,
    /// In-flight count and passive health, shared across tables.
    pub state: Arc<EndpointState>,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

impl Eq for Endpoint {}

impl Endpoint {
    /// An endpoint for `addr` with fresh counters.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_state(addr, Arc::default())
    }

    /// An endpoint for `addr` sharing `state` with earlier tables.
    pub fn with_state(addr: SocketAddr, state: Arc<EndpointState>) -> Self {
        // A formatted socket address is always a valid authority; the fallback is unreachable.
        let authority = Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid"));
        Endpoint {
            addr,
            authority,
            hash: balance::hash_addr(addr),
            state,
        }
    }
}

impl BackendSet {
    /// A backend over fixed endpoints.
    pub fn new(name: impl Into<Arc<str>>, endpoints: Vec<SocketAddr>) -> Self {
        Self::with_endpoints(name, endpoints.into_iter().map(Endpoint::new).collect())
    }

    /// A round-robin HTTP/1.1 backend over an endpoint list shared with other backends.
    pub fn with_endpoints(name: impl Into<Arc<str>>, endpoints: Arc<[Endpoint]>) -> Self {
        BackendSet {
            name: name.into(),
            endpoints,
            next: AtomicUsize::new(0),
            balance: Balance::RoundRobin,
            h2c: false,
            tls: None,
            connect_timeout: None,
            max_sockets_per_endpoint: None,
            rebalance: None,
            unresolved: false,
        }
    }

    /// All endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

/// What a request offers rule matching.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The normalised path.
    pub path: &'a str,
    /// The method.
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
}

impl CompiledRoute {
    /// The first rule, in precedence order, that `req` matches: its path exactly or by a
    /// prefix of whole path segments (`/ws` matches `/ws` and `/ws/x`, not `/wsx`), and its
    /// conditions.
    pub fn rule_for(&self, req: &RuleInput<'_>) -> Option<&CompiledRule> {
        self.rules.iter().find(|r| {
            let path = match r.exact {
                true => *r.prefix == *req.path,
                false => prefix_matches(&r.prefix, req.path),
            };
            path && r
                .conditions
                .as_ref()
                .is_none_or(|c| c.met(req.method, req.headers, req.query))
        })
    }

    /// The rule a plain `GET` of `path` takes.
    #[cfg(test)]
    pub fn rule_for_path(&self, path: &str) -> Option<&CompiledRule> {
        self.rule_for(&RuleInput {
            path,
            method: &Method::GET,
            headers: &HeaderMap::new(),
            query: None,
        })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl RouteTable {
    /// The entry for a hostname, which must already be normalized (see [`normalize_host`]).
    /// Exact names win over wildcards, and both over the catch-all host.
    pub fn lookup(&self, host: &str) -> Option<&HostEntry> {
        if let Some(e) = self.exact.get(host) {
            return Some(e);
        }
        let wildcard = host
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent));
        wildcard.or(self.catch_all.as_ref())
    }

    /// Adds `host` for `route`.
    fn insert(&mut self, host: &crate::model::Hostname, route: Arc<CompiledRoute>, role: HostRole) {
        let entry = HostEntry { route, role };
        match host.wildcard_parent() {
            Some(parent) => self.wildcard.insert(parent.into(), entry),
            None => self.exact.insert(host.as_str().into(), entry),
        };
    }

    /// The certificate for an SNI name, if its route has a usable one.
    pub fn certificate(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        self.lookup(sni)?.route.tls.as_ref()?.cert.as_ref()
    }

    /// Every programmed route.
    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    /// The backends of every rule's WebSocket upgrades (a backend named by several rules
    /// comes once per rule).
    pub fn websocket_backends(&self) -> impl Iterator<Item = &Arc<BackendSet>> {
        self.routes
            .iter()
            .flat_map(|r| &r.rules)
            .filter_map(|rule| rule.websocket.as_ref())
            .flat_map(|ws| ws.backends.backends())
    }

    /// Every fetched key set a rule uses (a set named by several rules comes once per rule).
    pub fn remote_keys(&self) -> impl Iterator<Item = &Arc<RemoteKeys>> {
        self.routes
            .iter()
            .flat_map(|r| &r.rules)
            .filter_map(|rule| match &rule.auth.as_ref()?.jwt.as_ref()?.keys {
                JwtKeys::Remote(keys) => Some(keys),
                JwtKeys::Local(_) => None,
            })
    }

    /// Every certificate in use, sorted by Secret.
    pub fn certificates(&self) -> &[CertificateInfo] {
        &self.certificates
    }

    /// Number of hostnames (exact and wildcard) in the table.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/ws", "/ws"));
        assert!(prefix_matches("/ws", "/ws/"));
        assert!(prefix_matches("/ws", "/ws/room"));
        assert!(!prefix_matches("/ws", "/wsx"));
        assert!(!prefix_matches("/ws", "/"));
        assert!(!prefix_matches("/ws/chat", "/ws"));
    }
}
