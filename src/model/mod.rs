//! The validated internal route model: what every user-facing API (`WebSocketRoute` today,
//! Kubernetes `Ingress` and the Gateway API next) is translated into.
//!
//! "Parse, don't validate": every value here is already parsed — hostnames as
//! [`Hostname`]s, origins as [`OriginPattern`]s, durations as [`Duration`]s, header names as
//! [`HeaderName`]s — so nothing downstream parses a string again and no two grammars can
//! disagree. Each API has one translate step returning `Result<Route, Vec<FieldError>>`
//! with the field paths of its own object; the [`crate::table`] compiles only this model.
//!
//! Depends on nothing else in the crate.

mod auth;
#[cfg(test)]
pub(crate) mod build;
mod cidr;
mod host;
mod origin;
mod path;

pub use auth::{
    Algorithm, Auth, AuthCache, CacheKey, ClaimHeader, ExternalAuth, JwksSource, JwtAuth,
    TokenSource,
};
pub use cidr::{Cidr, CidrError};
pub use host::{Hostname, check_dns_label, check_object_name};
pub use origin::{OriginPattern, origin_allowed};
pub use path::{PathError, check_path, normalize_path_prefix, normalize_request_path};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use rustls_pki_types::ServerName;

/// One problem in a user's object, e.g. `spec.rules[1].websocket.backend.port: must be
/// 1..65535`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field in the user's object, starting at `spec`.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The kind of user object a route came from, for reports and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `wsgate.dev/v1alpha1` `WebSocketRoute`.
    WebSocketRoute,
    /// `networking.k8s.io/v1` `Ingress`.
    Ingress,
    /// `gateway.networking.k8s.io/v1` `HTTPRoute`.
    HttpRoute,
}

impl ObjectKind {
    /// The kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::WebSocketRoute => "WebSocketRoute",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::HttpRoute => "HTTPRoute",
        }
    }
}

/// Who a route is: enough to report on it and to order conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMeta {
    /// The kind of object.
    pub kind: ObjectKind,
    /// Namespace (`default` when the object has none).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` in nanoseconds since the Unix epoch: older objects win
    /// conflicts.
    pub created: Option<i128>,
}

/// A translated route: a set of hostnames with TLS, redirects, maintenance and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Who it is.
    pub meta: RouteMeta,
    /// Hostnames served by path (the first is the target of host redirects). Empty only for
    /// a catch-all route.
    pub hostnames: Vec<Hostname>,
    /// Also serves every request whose host no route names (an Ingress rule without a host,
    /// or an Ingress `defaultBackend` alone).
    pub catch_all: bool,
    /// Ingress semantics: other routes that share this flag may serve the same hostnames, and
    /// their rules are merged; a path two of them claim goes to the older. Without it a
    /// hostname belongs to one route.
    pub merge: bool,
    /// Hostnames answered with a permanent redirect to `hostnames[0]`.
    pub redirect_hostnames: Vec<Hostname>,
    /// TLS termination; `None` for a plain-HTTP route.
    pub tls: Option<RouteTls>,
    /// Body of the 503 answer while maintenance is on.
    pub maintenance: Option<Bytes>,
    /// Path rules in the object's order (the table sorts them by precedence).
    pub rules: Vec<Rule>,
    /// What translation left out without refusing the route (an annotation this build does
    /// not honour): reported with the route, never silently dropped.
    pub warnings: Vec<FieldError>,
}

/// A route that could not be translated, with everything wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Who it is.
    pub meta: RouteMeta,
    /// Every problem, in field order.
    pub problems: Vec<FieldError>,
    /// The last version of the same object that translated, which keeps serving (a source
    /// that remembers one sets it; a bad edit of a live route must not take it down).
    pub last_good: Option<Route>,
}

/// What translating one object gave (a rejection is boxed: it is the rare case).
pub type Translated = Result<Route, Box<Rejected>>;

/// Who a translated object is, whether it translated or not.
pub fn meta(translated: &Translated) -> &RouteMeta {
    match translated {
        Ok(route) => &route.meta,
        Err(rejected) => &rejected.meta,
    }
}

/// The default body of a maintenance answer.
pub const DEFAULT_MAINTENANCE_BODY: &str =
    "<!doctype html><title>Maintenance</title><h1>Down for maintenance</h1><p>Back soon.</p>\n";

/// TLS of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTls {
    /// Name of a `kubernetes.io/tls` Secret; `None` serves the listener's default certificate
    /// (an Ingress that forces https without a `tls` entry).
    pub secret: Option<String>,
    /// Namespace of the Secret when it is not the route's (a Gateway's certificate).
    pub secret_namespace: Option<String>,
    /// Redirect plain-HTTP requests to https.
    pub http_redirect: bool,
    /// Plain-HTTP requests get 404 (a Gateway API route attached only to HTTPS listeners).
    pub https_only: bool,
    /// `Strict-Transport-Security` on https answers.
    pub hsts: Option<Hsts>,
}

/// HTTP Strict Transport Security (RFC 6797).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    /// `max-age` in seconds.
    pub max_age: u64,
    /// `includeSubDomains`.
    pub include_sub_domains: bool,
    /// `preload`.
    pub preload: bool,
}

/// One rule: what it matches and where matching requests and upgrades go.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Position of the rule in its object, for logs, metrics and per-rule limits.
    pub index: usize,
    /// What requests the rule takes.
    pub matches: RuleMatch,
    /// Where normal requests go.
    pub http: Option<HttpAction>,
    /// Where WebSocket upgrades go.
    pub websocket: Option<WebSocketAction>,
    /// A default (an Ingress `defaultBackend`): yields to any other rule of a merged host
    /// for the same path, whatever its age.
    pub fallback: bool,
    /// Client networks allowed to use the rule (empty allows any); others get 403.
    pub allowed_sources: Vec<Cidr>,
    /// Authentication of its requests and upgrades; `None`: none.
    pub auth: Option<std::sync::Arc<Auth>>,
}

/// What a rule matches. Every part must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// The path.
    pub path: PathMatch,
    /// Headers that must be present with these exact values.
    pub headers: Vec<HeaderMatch>,
    /// The method, when the rule takes only one.
    pub method: Option<Method>,
    /// Query parameters that must be present with these exact values.
    pub query: Vec<QueryMatch>,
}

/// An exact query parameter match: the first parameter of that name, percent-decoded, must
/// have this value (names are case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    /// The parameter name.
    pub name: Box<str>,
    /// Its required value.
    pub value: Box<str>,
}

/// How a rule matches the request path (already normalised by the proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Element-wise prefix (`/ws` matches `/ws` and `/ws/x`, not `/wsx`), stored without a
    /// trailing `/` except for the root.
    Prefix(Box<str>),
    /// The whole path.
    Exact(Box<str>),
}

impl PathMatch {
    /// The path text.
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
        }
    }
}

/// An exact header match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The header.
    pub name: HeaderName,
    /// Its required value.
    pub value: HeaderValue,
}

/// Where normal requests of a rule go.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAction {
    /// The backends, with their share of requests.
    pub backends: Vec<WeightedBackend>,
    /// How long to wait for the response headers.
    pub timeout: Duration,
    /// How requests are spread over the endpoints.
    pub balance: Balance,
    /// Changes made on the way.
    pub filters: Filters,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body: Option<u64>,
    /// Requests per second per client (the connection count does not apply to requests).
    pub limits: Option<ClientLimits>,
    /// Time allowed to connect to an endpoint; `None` is the proxy's default.
    pub connect_timeout: Option<Duration>,
}

/// Where WebSocket upgrades of a rule go, and the socket's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketAction {
    /// The backends, with their share of new sockets.
    pub backends: Vec<WeightedBackend>,
    /// Close a relayed connection idle this long; `None` never.
    pub idle_timeout: Option<Duration>,
    /// Time the backend has to answer the handshake (Gateway API `timeouts`); `None` is
    /// the proxy's default. Never bounds the life of the socket.
    pub handshake_timeout: Option<Duration>,
    /// Close sockets this old (Close 1001 to both sides); `None` never.
    pub max_lifetime: Option<Lifetime>,
    /// Ping silent peers and close dead ones; `None`: off.
    pub keepalive: Option<Keepalive>,
    /// Move sockets off overloaded endpoints after a scale-out; `None`: off.
    pub rebalance: Option<Rebalance>,
    /// Sockets of the rule and of each endpoint, all clients together.
    pub capacity: Capacity,
    /// How sockets are spread over the endpoints.
    pub balance: Balance,
    /// Origins allowed to open a socket; empty allows any.
    pub allowed_origins: Vec<OriginPattern>,
    /// Per-client limits.
    pub limits: Option<ClientLimits>,
    /// Changes made to the handshake on the way.
    pub filters: Filters,
    /// Time allowed to connect to an endpoint; `None` is the proxy's default.
    pub connect_timeout: Option<Duration>,
}

/// Request and response changes of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<RequestRedirect>,
    /// Rewrite the path the backend sees.
    pub rewrite: Option<PathRewrite>,
    /// Changes to the request's headers.
    pub request_headers: HeaderChanges,
    /// Changes to the response's headers.
    pub response_headers: HeaderChanges,
}

impl Filters {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
}

/// Header changes, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    /// Replace (or add) these headers.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Add these values.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove these headers.
    pub remove: Vec<HeaderName>,
}

impl HeaderChanges {
    /// Applies the changes to `headers`.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A redirect answered instead of forwarding; unset parts keep the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRedirect {
    /// `http` or `https`.
    pub scheme: Option<&'static str>,
    /// The host.
    pub hostname: Option<Hostname>,
    /// The port.
    pub port: Option<u16>,
    /// The new path: the whole path, or the matched prefix replaced.
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// How a path is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(Box<str>),
    /// Replace the prefix the rule matched.
    Prefix(Box<str>),
}

/// A backend with its share of the rule's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// The backend.
    pub backend: Backend,
    /// Relative weight.
    pub weight: u32,
}

/// One backend: where it is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Where it is.
    pub target: BackendTarget,
    /// What normal requests speak.
    pub protocol: BackendProtocol,
    /// TLS towards it.
    pub tls: Option<BackendTls>,
    /// The field path of the backend in its object, for problems found when compiling.
    pub field: Box<str>,
}

/// Where a backend is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendTarget {
    /// A Service port.
    Service {
        /// Namespace of the Service when it is not the route's (a Gateway API backendRef
        /// that a ReferenceGrant allows).
        namespace: Option<String>,
        /// Service name.
        name: String,
        /// The port, by number or by name.
        port: ServicePort,
    },
    /// A fixed address.
    Address(SocketAddr),
    /// A reference translation could not resolve (a kind wsgate does not serve, a namespace
    /// no ReferenceGrant opens): its share of the traffic gets 500 (Gateway API).
    Unresolved,
}

/// A Service port as a backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServicePort {
    /// `spec.ports[].port`.
    Number(u16),
    /// `spec.ports[].name`, resolved through the Service when the table is compiled.
    Name(Box<str>),
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(n) => f.write_str(n),
        }
    }
}

/// Application protocol of normal requests to a backend (upgrades always use HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendProtocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 with prior knowledge: h2c over cleartext TCP, h2 (ALPN) over TLS.
    Http2,
}

/// TLS towards a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Sent as SNI and verified in the backend's certificate.
    pub server_name: ServerName<'static>,
    /// Where the CA certificates that verify the backend are; `None` skips verification.
    pub ca: Option<CaRef>,
}

/// CA certificates (PEM, the `ca.crt` key) that verify a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaRef {
    /// A Secret in the route's namespace (WebSocketRoute `caSecretName`).
    Secret(String),
    /// A ConfigMap (a Gateway API BackendTLSPolicy's `caCertificateRefs`).
    ConfigMap {
        /// Its namespace (the policy's, the Service's).
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// How a backend spreads requests over its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Each endpoint in turn.
    RoundRobin,
    /// Fewest in-flight requests and open relays, ties broken round robin.
    LeastConnections,
    /// Rendezvous hashing of a request key; requests without the key go round robin.
    ConsistentHash(HashKey),
    /// Sticky sessions: wsgate issues a cookie naming the endpoint a client was sent to, and
    /// later requests and upgrades carrying it go back there while it is up; requests without
    /// it (or naming a gone endpoint) go round robin and get a new cookie.
    Cookie(AffinityCookie),
}

/// The cookie of [`Balance::Cookie`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityCookie {
    /// Cookie name.
    pub name: Box<str>,
    /// `Path` attribute.
    pub path: Box<str>,
    /// `Max-Age` in seconds; `None` makes a session cookie.
    pub max_age: Option<u64>,
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The client IP.
    SourceIp,
}

/// The maximum lifetime of a socket, shortened by a random part of `jitter_percent` per
/// socket so that sockets opened together do not all close (and reconnect) together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// The longest a socket lives.
    pub max: Duration,
    /// Up to this share (0..=100 %) is taken off, at random per socket.
    pub jitter_percent: u8,
}

impl Lifetime {
    /// The default jitter: 10 %.
    pub const DEFAULT_JITTER_PERCENT: u8 = 10;

    /// The lifetime of one socket, `u` (in 0..1) picking where in the jitter it falls.
    pub fn of_one(self, u: f64) -> Duration {
        let jitter = f64::from(self.jitter_percent.min(100)) / 100.0;
        self.max.mul_f64(1.0 - jitter * u.clamp(0.0, 1.0))
    }
}

/// Keepalive of a rule's sockets: a peer that sent nothing for `interval` gets a Ping; one
/// that then stays silent for `timeout` is dead, and the other side gets Close 1001.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence after which a peer is pinged.
    pub interval: Duration,
    /// Time a pinged peer has to send anything.
    pub timeout: Duration,
}

impl Keepalive {
    /// The default `timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

/// Rebalancing after the endpoints of a backend change: sockets over `(1 + tolerance)` × the
/// mean of an endpoint are closed (1012), oldest first, spread over `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rebalance {
    /// How far above the mean an endpoint may be (0.2: 20 %).
    pub tolerance: f64,
    /// The closes are spread over this long.
    pub window: Duration,
}

impl Rebalance {
    /// The default tolerance: 20 %.
    pub const DEFAULT_TOLERANCE: f64 = 0.2;
    /// The default window: five minutes.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
}

/// Capacity caps of a rule's WebSockets, counted per wsgate replica: an upgrade beyond one
/// gets 503 with `Retry-After` (overload, not the client's fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Sockets of the rule.
    pub max_connections: Option<u32>,
    /// Sockets of each endpoint; balancing skips full ones.
    pub max_per_endpoint: Option<u32>,
}

/// Per-client WebSocket limits of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Open connections per client.
    pub max_connections: Option<u32>,
    /// Sustained upgrades per second per client.
    pub rate: Option<u32>,
    /// Token bucket size (at least 1).
    pub burst: u32,
}

/// Default time a backend has to send response headers.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);
