//! The `WebSocketRoute` custom resource (group `wsgate.dev`, version `v1alpha1`) and its one
//! translate step into the route model ([`translate`]).
//!
//! Depends on [`crate::model`] only: the sources translate objects here, and the table
//! compiles only what comes out. Field names are part of the public API (users write them in
//! YAML), so they never change within a version.

pub mod auth;
mod duration;
pub mod gateway;
pub mod ingress;
pub mod migrate;
pub mod policy;
mod suggest;
mod translate;

pub use crate::model::FieldError;
pub use duration::{DurationError, parse_duration};
pub use suggest::{closest, suggest_field};
pub use translate::{decode, object_meta, route_meta, translate};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every wsgate resource.
pub const GROUP: &str = "wsgate.dev";
/// The ingress class a route names to be served by wsgate.
pub const DEFAULT_INGRESS_CLASS: &str = "wsgate";

/// A set of hostnames served by wsgate, with TLS, redirects, maintenance mode and per-path
/// backends for normal HTTP requests and for WebSocket upgrades.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "wsgate.dev",
    version = "v1alpha1",
    kind = "WebSocketRoute",
    namespaced,
    status = "WebSocketRouteStatus",
    shortname = "wsr",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.redirectHostnames) || size(self.redirectHostnames) == 0 || !self.hostnames[0].startsWith('*.')",
        "message": "hostnames[0] must be an exact name when redirectHostnames is set (it is the redirect target)"
    },
    {
        "rule": "!has(self.redirectHostnames) || self.redirectHostnames.all(h, !(h in self.hostnames))",
        "message": "a name is listed in both hostnames and redirectHostnames"
    },
    {
        "rule": "self.rules.all(r, self.rules.exists_one(o, (has(o.pathPrefix) ? o.pathPrefix : '/') == (has(r.pathPrefix) ? r.pathPrefix : '/')))",
        "message": "each rule needs its own pathPrefix"
    }
]))]
pub struct WebSocketRouteSpec {
    /// The ingress class that serves this route; routes naming another class are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Hostnames served by this route: exact names (`chat.example.com`) or a wildcard for one
    /// label (`*.example.com`). At least one.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 253), regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub hostnames: Vec<String>,
    /// Hostnames answered with a permanent redirect to `hostnames[0]`, same path and query
    /// (for example `www.chat.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 253), regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub redirect_hostnames: Vec<String>,
    /// TLS termination; absent means a plain-HTTP route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// Maintenance mode: every request gets 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
    /// Path rules; the longest matching `pathPrefix` wins. At least one.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<Rule>,
}

/// TLS settings of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A Secret of type `kubernetes.io/tls` in the route's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
    /// Redirect plain-HTTP requests to https (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_redirect: Option<bool>,
    /// Send `Strict-Transport-Security` on every https response of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// HTTP Strict Transport Security (RFC 6797) for a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.preload) || !self.preload || (self.maxAge >= 31536000 && has(self.includeSubDomains) && self.includeSubDomains)",
    "message": "preload needs maxAge of at least 31536000 and includeSubDomains: true"
}]))]
pub struct Hsts {
    /// `max-age` in seconds (31536000 is a year); 0 tells browsers to forget the policy.
    #[schemars(range(min = 0, max = 2_147_483_647))]
    pub max_age: i64,
    /// Add `includeSubDomains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_sub_domains: Option<bool>,
    /// Add `preload` (only with a max-age of at least a year and includeSubDomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload: Option<bool>,
}

impl RouteTls {
    /// Whether plain-HTTP requests are redirected to https (the default).
    pub fn redirects_http(&self) -> bool {
        self.http_redirect.unwrap_or(true)
    }
}

/// Maintenance mode of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// When true, every request to the route gets 503.
    #[serde(default)]
    pub enabled: bool,
    /// HTML body of the 503 answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One path rule of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.http) || has(self.websocket)",
    "message": "needs an http or a websocket backend (or both)"
}]))]
pub struct Rule {
    /// Path prefix matched element by element (`/ws` matches `/ws` and `/ws/x`, not `/wsx`).
    /// Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^/([^/?#\s]+(/[^/?#\s]+)*/?)?$"))]
    pub path_prefix: Option<String>,
    /// Where normal (non-upgrade) requests go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTarget>,
    /// Where WebSocket upgrade requests go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketTarget>,
    /// Authentication of the rule's requests and upgrades: a JWT, an external auth service,
    /// or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<auth::AuthSpec>,
}

impl Rule {
    /// The rule's path prefix, `/` when unset.
    pub fn prefix(&self) -> &str {
        self.path_prefix.as_deref().unwrap_or("/")
    }
}

/// Backend of normal HTTP requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpTarget {
    /// The backend.
    pub backend: Backend,
    /// How long to wait for the backend's response headers, as a Go-style duration
    /// (`60s`, `1m30s`). Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub timeout: Option<String>,
    /// How requests are spread over the backend's endpoints (default RoundRobin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
}

/// Backend of WebSocket upgrade requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketTarget {
    /// The backend.
    pub backend: Backend,
    /// Close a relayed connection after this long without a byte in either direction
    /// (Go-style duration). Absent means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub idle_timeout: Option<String>,
    /// How connections are spread over the backend's endpoints (default LeastConnections:
    /// sockets live long, so round robin drifts uneven).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
    /// Origins allowed to open a WebSocket (`https://chat.example.com`, or
    /// `https://*.example.com` for any subdomain); others get 403. Empty allows any origin.
    /// Guards against cross-site WebSocket hijacking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub allowed_origins: Vec<String>,
    /// Per-client limits (the client is its IP, after PROXY protocol and trusted proxies);
    /// exceeding one gets 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ClientLimits>,
    /// Close a socket this old (Go-style duration): Close 1001 to both sides at frame
    /// boundaries, as on drain. Absent means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub max_lifetime: Option<String>,
    /// Up to this share of `maxLifetime` is taken off at random per socket (`10%`, the
    /// default), so sockets opened together do not reconnect together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(100|[1-9]?[0-9])%$"))]
    pub lifetime_jitter: Option<String>,
    /// Ping a peer that sent nothing for `interval`; one that then stays silent for `timeout`
    /// is dead (the other side gets Close 1001). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<KeepaliveSpec>,
    /// After the backend's endpoints change, close (1012) the sockets of endpoints holding
    /// more than (1 + tolerance) × the mean, oldest first, spread over `window`. Off when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceSpec>,
}

/// WebSocket keepalive.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepaliveSpec {
    /// Silence after which a peer is pinged (Go-style duration, e.g. `30s`).
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub interval: String,
    /// Time a pinged peer has to send anything (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub timeout: Option<String>,
}

/// WebSocket rebalancing after a scale-out.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// How far above the mean an endpoint may be before sockets move (default 0.2: 20 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub tolerance: Option<f64>,
    /// The closes are spread over this long (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub window: Option<String>,
}

/// A load-balancing policy and, for ConsistentHash, what to hash.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancing {
    /// `RoundRobin`, `LeastConnections` or `ConsistentHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LoadBalancingPolicy>,
    /// The key of ConsistentHash: exactly one of header, cookie or sourceIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// The cookie of StickyCookie (default: `wsgate-affinity`, the rule's path, a session
    /// cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<StickyCookie>,
}

/// The cookie wsgate issues for StickyCookie.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickyCookie {
    /// Cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Path` attribute (default: the rule's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Max-Age` in seconds (default: a session cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 34_560_000))]
    pub max_age_seconds: Option<u64>,
}

/// How endpoints are picked.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LoadBalancingPolicy {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest open requests and relayed connections.
    LeastConnections,
    /// The same key goes to the same endpoint while the endpoint set is stable; a change moves
    /// only about 1/N of the keys (rendezvous hashing).
    ConsistentHash,
    /// wsgate issues a cookie naming the endpoint a client reached; later requests and
    /// upgrades with it go back there while it is up (Socket.IO, SockJS long-polling).
    StickyCookie,
}

/// The key of consistent hashing. Requests without the key fall back to round robin.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashOn {
    /// A request header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The client IP.
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// WebSocket limits: per client (429 beyond) and capacity caps for all clients together
/// (503 beyond). Every count is per wsgate replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientLimits {
    /// Open WebSockets of this rule, all clients together; an upgrade beyond gets 503 with
    /// `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub max_connections: Option<u32>,
    /// Open WebSockets of this rule on each endpoint (pod); full endpoints are skipped, and an
    /// upgrade when all are full gets 503 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub max_connections_per_endpoint: Option<u32>,
    /// Open WebSocket connections one client may hold on this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub max_connections_per_client: Option<u32>,
    /// Sustained WebSocket upgrades per second one client may make on this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub upgrades_per_second_per_client: Option<u32>,
    /// Upgrades allowed at once above the rate (token bucket size; default the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295u32))]
    pub burst: Option<u32>,
}

/// A backend: a Service port in the route's namespace, or a fixed `host:port` address.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.service) != has(self.address)", "message": "set either service+port or address, not both"},
    {"rule": "!has(self.service) || has(self.port)", "message": "port is required with service"},
    {"rule": "!has(self.address) || !has(self.port)", "message": "port goes with service; put the port in address"},
    {"rule": "!has(self.protocol) || self.protocol != 'h2' || has(self.tls)", "message": "protocol h2 is HTTP/2 over TLS and needs tls"},
    {"rule": "!has(self.protocol) || self.protocol != 'h2c' || !has(self.tls)", "message": "h2c is cleartext HTTP/2; drop tls or use protocol h2"}
]))]
pub struct Backend {
    /// Service name (with `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub service: Option<String>,
    /// Service port number (with `service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// A fixed `ip:port` address instead of a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What normal requests speak to the backend: `http` (HTTP/1.1, the default), `h2c`
    /// (cleartext HTTP/2 with prior knowledge) or `h2` (HTTP/2 over TLS, e.g. gRPC; needs
    /// `tls`). WebSocket upgrades always use HTTP/1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<BackendProtocol>,
    /// Connect to the backend over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
}

/// Application protocol of a backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendProtocol {
    /// HTTP/1.1.
    Http,
    /// HTTP/2 over cleartext TCP, with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`), as gRPC servers speak it.
    H2,
}

/// TLS towards a backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// Server name sent as SNI and verified in the backend's certificate. Default: the
    /// Service's `name.namespace.svc`, or the address's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A Secret in the route's namespace whose `ca.crt` holds the CA certificates that sign
    /// the backend's certificate (cert-manager writes it). Without it the backend's
    /// certificate is not verified, as ingress-nginx's `backend-protocol: HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub ca_secret_name: Option<String>,
}

/// Observed state of a route, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketRouteStatus {
    /// The wsgate that wrote these conditions, as `wsgate.dev/<ingress class>`: a wsgate that
    /// stops serving the route (its class changed) removes only its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs` and `Programmed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CustomResourceDefinition as YAML, exactly what `wsgate crd` prints.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&described(
        WebSocketRoute::crd(),
        "Routes of one or more hostnames to WebSocket and HTTP backends, served by wsgate: TLS \
         with SNI, redirects, and per path a backend for normal requests and one for WebSocket \
         upgrades with their socket settings (timeouts, origins, limits, keepalive, lifetimes, \
         rebalancing).",
    ))
}

/// The `WebSocketPolicy` CustomResourceDefinition as YAML (`wsgate crd websocketpolicy`).
pub fn policy_crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&described(
        policy::WebSocketPolicy::crd(),
        "WebSocket settings the Gateway API has no field for (idle timeout, origins, limits, \
         balancing, keepalive, lifetimes, rebalancing), attached to the upgrades of an HTTPRoute \
         or of one of its rules.",
    ))
}

/// `crd` with `what` as its schema's top-level description: what `kubectl explain` shows
/// (kube's derive would say "Auto-generated derived type for …").
fn described(
    mut crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    what: &str,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.description = Some(what.to_string());
        }
    }
    crd
}
