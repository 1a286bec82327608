//! The standard Kubernetes `Ingress` (`networking.k8s.io/v1`) and its one translate step into
//! the route model, with the ingress-nginx annotations that matter to WebSocket and TLS users
//! read with ingress-nginx's meaning.
//!
//! One Ingress becomes one model route per host (and one catch-all route for rules without a
//! host, or for a `defaultBackend` alone), each marked `merge`: the table merges the paths of
//! every Ingress for a host, the older object winning a path both claim, as ingress-nginx does.
//! Every path takes WebSocket upgrades as well as normal requests, with no idle cut unless an
//! annotation asks for one. An annotation this build does not honour is never dropped
//! silently: it becomes a warning on the route (log, Event, `wsgate check`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, IngressServiceBackend,
};
use rustls_pki_types::ServerName;

use super::parse_duration;
use crate::model::{
    self, AffinityCookie, Backend, BackendProtocol, BackendTarget, Balance, Cidr, ClientLimits,
    DEFAULT_HTTP_TIMEOUT, DEFAULT_MAINTENANCE_BODY, FieldError, Filters, HashKey, Hostname,
    HttpAction, ObjectKind, OriginPattern, PathMatch, PathRewrite, Rejected, Route, RouteMeta,
    RouteTls, Rule, RuleMatch, ServicePort, Translated, WebSocketAction, WeightedBackend,
    check_path, normalize_path_prefix,
};

/// `spec.controller` of the IngressClasses wsgate serves.
pub const CONTROLLER: &str = "wsgate.dev/ingress-controller";
/// The legacy class annotation (before `spec.ingressClassName`).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// ingress-nginx's annotation prefix.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";
/// wsgate's own annotation prefix.
pub const WSGATE: &str = "wsgate.dev/";

/// Which Ingresses are ours, from the cluster's IngressClasses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classes {
    /// IngressClasses whose `spec.controller` is ours.
    pub ours: Vec<String>,
    /// Whether one of them is marked as the cluster's default.
    pub default: bool,
    /// The class name the legacy annotation must carry (wsgate's `--ingress-class`).
    pub legacy: String,
}

impl Classes {
    /// Reads the IngressClasses; those whose controller is `controller` are ours.
    pub fn from_classes<'a>(
        classes: impl IntoIterator<Item = &'a IngressClass>,
        controller: &str,
        legacy: &str,
    ) -> Classes {
        let mut out = Classes {
            legacy: legacy.to_string(),
            ..Classes::default()
        };
        for class in classes {
            let spec = class.spec.as_ref();
            if spec.and_then(|s| s.controller.as_deref()) != Some(controller) {
                continue;
            }
            out.ours
                .push(class.metadata.name.clone().unwrap_or_default());
            let marked = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION));
            out.default |= marked.is_some_and(|v| v == "true");
        }
        out.ours.sort();
        out
    }

    /// Whether `ingress` is ours: its `ingressClassName` is one of our classes, or (without
    /// one) its legacy annotation names our class, or (with neither) our class is the default.
    pub fn claims(&self, ingress: &Ingress) -> bool {
        let named = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        if let Some(name) = named {
            return self.ours.iter().any(|c| c == name);
        }
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
        match legacy {
            Some(name) => *name == self.legacy,
            None => self.default,
        }
    }
}

/// Settings of the translation that come from where the Ingress is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressOptions {
    /// Standalone mode: a backend may name an address through `wsgate.dev/address`.
    pub standalone: bool,
}

/// Who an Ingress is.
pub fn ingress_meta(ingress: &Ingress) -> RouteMeta {
    let mut meta = super::object_meta(&ingress.metadata);
    meta.kind = ObjectKind::Ingress;
    meta
}

/// Translates one Ingress: a route per host (and a catch-all one when it has rules without a
/// host, or only a `defaultBackend`). A problem with an annotation rejects every route of the
/// object; a problem with a path rejects its host's route.
pub fn translate(ingress: &Ingress, opts: IngressOptions) -> Vec<Translated> {
    let meta = ingress_meta(ingress);
    let reject = |problems: Vec<FieldError>| {
        vec![Err(Box::new(Rejected {
            meta: meta.clone(),
            problems,
            last_good: None,
        }))]
    };
    let Some(spec) = &ingress.spec else {
        return reject(vec![problem("spec", "is required")]);
    };
    let empty = BTreeMap::new();
    let annotations = ingress.metadata.annotations.as_ref().unwrap_or(&empty);
    let (settings, warnings) = match Settings::read(annotations, opts) {
        Ok(read) => read,
        Err(problems) => return reject(problems),
    };
    let cx = Context {
        namespace: &meta.namespace,
        settings: &settings,
    };

    // Hosts in first-seen order, each with its paths (several rules may name one host).
    let mut hosts: Vec<(Option<&str>, Vec<IndexedPath<'_>>)> = Vec::new();
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule.host.as_deref().filter(|h| !h.is_empty());
        let at = match hosts.iter().position(|(h, _)| *h == host) {
            Some(at) => at,
            None => {
                hosts.push((host, Vec::new()));
                hosts.len() - 1
            }
        };
        let paths = rule.http.iter().flat_map(|h| h.paths.iter().enumerate());
        hosts[at].1.extend(paths.map(|(j, path)| (i, j, path)));
    }
    let default = spec.default_backend.as_ref();
    if hosts.is_empty() {
        if default.is_none() {
            return reject(vec![problem(
                "spec",
                "needs rules or a defaultBackend (or both)",
            )]);
        }
        hosts.push((None, Vec::new()));
    }
    let tls_of = tls_secrets(spec.tls.iter().flatten());

    let mut out = Vec::with_capacity(hosts.len());
    for (host, paths) in hosts {
        let mut p = Vec::new();
        let hostname = host.map(|h| {
            Hostname::parse(h).map_err(|why| {
                let i = spec
                    .rules
                    .iter()
                    .flatten()
                    .position(|r| r.host.as_deref() == Some(h));
                p.push(problem(format!("spec.rules[{}].host", i.unwrap_or(0)), why));
            })
        });
        let mut rules = Vec::new();
        for (i, j, path) in paths {
            if let Some(rule) = cx.path_rule(&mut p, i, j, path, rules.len()) {
                rules.push(rule);
            }
        }
        if let Some(default) = default {
            let at = "spec.defaultBackend";
            if let Some(mut rule) = cx.rule(
                &mut p,
                at,
                PathMatch::Prefix("/".into()),
                default,
                rules.len(),
            ) {
                rule.fallback = true;
                rules.push(rule);
            }
        }
        let hostname = match hostname {
            Some(Ok(h)) => Some(h),
            Some(Err(())) => None,
            None => None,
        };
        if !p.is_empty() {
            out.push(Err(Box::new(Rejected {
                meta: meta.clone(),
                problems: p,
                last_good: None,
            })));
            continue;
        }
        // A host listed in `tls` without a Secret is served with the default certificate,
        // as is every host when https is forced.
        let listed = host.and_then(|h| tls_of.get(h).copied());
        let tls = match (listed, settings.force_ssl_redirect) {
            (None, false) => None,
            (listed, force) => Some(RouteTls {
                secret: listed.flatten().map(str::to_string),
                secret_namespace: None,
                http_redirect: settings.ssl_redirect || force,
                https_only: false,
                hsts: None,
            }),
        };
        let redirect_hostnames = match (&hostname, settings.www_redirect) {
            (Some(h), true) => www_twin(h).into_iter().collect(),
            _ => Vec::new(),
        };
        out.push(Ok(Route {
            meta: meta.clone(),
            catch_all: hostname.is_none(),
            hostnames: hostname.into_iter().collect(),
            merge: true,
            redirect_hostnames,
            tls,
            maintenance: settings.maintenance.clone(),
            rules,
            warnings: Vec::new(),
        }));
    }
    // Warnings once per object, on its first route.
    if let Some(Ok(first)) = out.first_mut() {
        first.warnings = warnings;
    }
    out
}

/// `spec.rules[i].http.paths[j]` with its `i` and `j`.
type IndexedPath<'a> = (usize, usize, &'a HTTPIngressPath);

/// `tls[].hosts` to their `secretName` (`None`: listed without a Secret).
fn tls_secrets<'a>(
    tls: impl Iterator<Item = &'a k8s_openapi::api::networking::v1::IngressTLS>,
) -> HashMap<&'a str, Option<&'a str>> {
    let mut out = HashMap::new();
    for entry in tls {
        let secret = entry.secret_name.as_deref().filter(|s| !s.is_empty());
        for host in entry.hosts.iter().flatten() {
            // The first entry naming a host wins, as in ingress-nginx.
            out.entry(host.as_str()).or_insert(secret);
        }
    }
    out
}

/// `www.example.com` for `example.com` and the other way round (from-to-www-redirect).
fn www_twin(host: &Hostname) -> Option<Hostname> {
    if host.is_wildcard() {
        return None;
    }
    let name = host.as_str();
    let twin = match name.strip_prefix("www.") {
        Some(apex) => apex.to_string(),
        None => format!("www.{name}"),
    };
    Hostname::parse(&twin).ok()
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// The field path of an annotation.
fn annotation(name: &str) -> String {
    format!("metadata.annotations[{name}]")
}

/// The annotations wsgate honours, read once per object.
#[derive(Debug, Clone)]
struct Settings {
    ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect to https even without a `tls` entry for the host.
    force_ssl_redirect: bool,
    www_redirect: bool,
    /// The WebSocket idle timeout; `None` never.
    idle_timeout: Option<Duration>,
    /// `wsgate.dev/websocket-max-lifetime` and `-lifetime-jitter`.
    max_lifetime: Option<crate::model::Lifetime>,
    /// `wsgate.dev/websocket-keepalive-interval` and `-timeout`.
    keepalive: Option<crate::model::Keepalive>,
    /// `wsgate.dev/websocket-rebalance-tolerance` and `-window`.
    rebalance: Option<crate::model::Rebalance>,
    /// `wsgate.dev/websocket-max-connections` and `-max-connections-per-endpoint`.
    capacity: crate::model::Capacity,
    /// The time a backend has to answer a normal request.
    http_timeout: Duration,
    connect_timeout: Option<Duration>,
    protocol: Protocol,
    balance: Option<Balance>,
    /// `affinity: cookie`: the cookie, its path defaulting to each rule's path.
    affinity: Option<Affinity>,
    limits: Option<ClientLimits>,
    allowed_sources: Vec<Cidr>,
    max_body: Option<u64>,
    /// `rewrite-target`: what replaces the matched prefix.
    rewrite_target: Option<Box<str>>,
    allowed_origins: Vec<OriginPattern>,
    /// `wsgate.dev/websocket-backend`: another Service for upgrades, `name:port`.
    websocket_backend: Option<(String, ServicePort)>,
    maintenance: Option<Bytes>,
    /// `wsgate.dev/address` (standalone): every Service, or `service=address` pairs.
    addresses: Addresses,
    /// `auth-url` and friends, `wsgate.dev/auth-jwt-*`.
    auth: Option<std::sync::Arc<model::Auth>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

#[derive(Debug, Clone)]
struct Affinity {
    name: Box<str>,
    path: Option<Box<str>>,
    max_age: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Addresses {
    all: Option<SocketAddr>,
    by_service: HashMap<String, SocketAddr>,
}

/// What each ingress-nginx annotation wsgate honours means here, for `wsgate migrate` and
/// the README; every other name under the prefix is reported as ignored.
pub const HONOURED_NGINX: &[(&str, &str)] = &[
    (
        "ssl-redirect",
        "redirect plain HTTP to https when the host has TLS (default true)",
    ),
    (
        "force-ssl-redirect",
        "redirect plain HTTP to https even without a tls entry (default certificate)",
    ),
    (
        "from-to-www-redirect",
        "redirect www.HOST to HOST, or HOST to www.HOST",
    ),
    (
        "proxy-read-timeout",
        "seconds: the time a backend has to answer a request, and the WebSocket idle timeout (the longer of read and send)",
    ),
    (
        "proxy-send-timeout",
        "seconds: WebSocket idle timeout (the longer of read and send)",
    ),
    (
        "proxy-connect-timeout",
        "seconds: the time allowed to connect to a pod",
    ),
    (
        "backend-protocol",
        "HTTP, HTTPS (TLS, not verified, as ingress-nginx), GRPC (h2c), GRPCS (h2 over TLS)",
    ),
    (
        "upstream-hash-by",
        "$remote_addr, $http_NAME or $cookie_NAME: consistent hashing",
    ),
    (
        "affinity",
        "cookie: wsgate issues a sticky cookie; first request and later upgrade reach the same pod",
    ),
    (
        "session-cookie-name",
        "the sticky cookie's name (default INGRESSCOOKIE)",
    ),
    (
        "session-cookie-path",
        "the sticky cookie's Path (default the Ingress path)",
    ),
    (
        "session-cookie-max-age",
        "seconds: the sticky cookie's Max-Age (default a session cookie)",
    ),
    ("limit-connections", "open WebSockets per client IP"),
    (
        "limit-rps",
        "requests and WebSocket upgrades per second per client IP (burst 5x, as ingress-nginx); 429 beyond",
    ),
    (
        "whitelist-source-range",
        "CIDRs allowed to use the Ingress's paths; others get 403",
    ),
    (
        "allowlist-source-range",
        "as whitelist-source-range (both lists are allowed)",
    ),
    (
        "proxy-body-size",
        "largest request body (8m, 512k; 0 no limit); 413 beyond",
    ),
    (
        "rewrite-target",
        "a plain path that replaces the matched prefix (no capture groups)",
    ),
    (
        "auth-url",
        "external auth: http(s)://IP:PORT/path or a Service NAME.NAMESPACE.svc[.cluster.local]; 2xx passes, other answers go back to the client, no answer is 503",
    ),
    (
        "auth-signin",
        "where a 401 from auth-url redirects (302, with rd= the original URL)",
    ),
    (
        "auth-response-headers",
        "headers of the auth answer copied into the request to the backend",
    ),
    (
        "auth-method",
        "the method of the auth subrequest (default: the request's)",
    ),
    (
        "auth-cache-key",
        "$http_NAME or $cookie_NAME: reuse allowed auth answers for the same value",
    ),
    (
        "auth-cache-duration",
        "how long an allowed answer is reused (the last word of \"200 202 5m\"; default 1m)",
    ),
];

/// wsgate's own annotations.
pub const HONOURED_WSGATE: &[(&str, &str)] = &[
    (
        "websocket-backend",
        "SERVICE:PORT that takes the upgrades of every path",
    ),
    (
        "idle-timeout",
        "WebSocket idle timeout (1h, 30m; 0 never), over proxy-*-timeout",
    ),
    (
        "websocket-max-lifetime",
        "close WebSockets this old (1h) with Close 1001",
    ),
    (
        "websocket-lifetime-jitter",
        "up to this share of the lifetime is taken off per socket (default 10%)",
    ),
    (
        "websocket-keepalive-interval",
        "ping a WebSocket peer silent this long (30s); off when absent",
    ),
    (
        "websocket-keepalive-timeout",
        "a pinged peer silent this long is dead (default 10s)",
    ),
    (
        "websocket-rebalance-tolerance",
        "rebalance sockets after a scale-out beyond this share over the mean (0.2)",
    ),
    (
        "websocket-rebalance-window",
        "spread rebalancing closes over this long (default 5m)",
    ),
    (
        "websocket-max-connections",
        "WebSockets of each rule, all clients, per replica (503 beyond)",
    ),
    (
        "websocket-max-connections-per-endpoint",
        "WebSockets per backend endpoint, per replica (full ones are skipped)",
    ),
    (
        "allowed-origins",
        "comma-separated Origin patterns allowed to open a socket",
    ),
    ("load-balancing", "round-robin or least-connections"),
    ("maintenance", "true: every request gets 503"),
    (
        "address",
        "standalone: HOST:PORT for every Service, or SERVICE=HOST:PORT,...",
    ),
    (
        "auth-jwt-jwks-url",
        "check a JWT against the JWKS at this https URL (fetched, refreshed every 5m)",
    ),
    (
        "auth-jwt-jwks-configmap",
        "check a JWT against the JWKS in this ConfigMap: NAME or NAME/KEY (default key jwks.json)",
    ),
    ("auth-jwt-issuer", "the required iss claim"),
    ("auth-jwt-audiences", "comma-separated: aud must name one"),
    (
        "auth-jwt-token-from",
        "where the token is, in order: bearer, cookie:NAME, query:NAME, protocol:PREFIX (default bearer)",
    ),
    (
        "auth-jwt-claims-to-headers",
        "CLAIM:HEADER,... copied into requests (client copies removed)",
    ),
    (
        "auth-jwt-clock-skew",
        "tolerated clock difference (default 30s)",
    ),
    (
        "auth-jwt-close-on-expiry",
        "false: keep WebSockets open past their token's exp (default true: Close 1008)",
    ),
];

/// Annotations known from ingress-nginx that wsgate does not honour, with why.
const NOT_YET: &[(&str, &str)] = &[
    (
        "enable-cors",
        "out of scope: answer CORS in the application",
    ),
    (
        "use-regex",
        "regular-expression paths are not supported: paths are literal",
    ),
    (
        "affinity-mode",
        "wsgate's sticky cookie always keeps a client on its pod while the pod is up",
    ),
    ("session-cookie-expires", "use session-cookie-max-age"),
    (
        "proxy-buffering",
        "wsgate streams bodies; there is nothing to buffer",
    ),
    (
        "configuration-snippet",
        "nginx configuration cannot be honoured (and snippets were a security hole)",
    ),
    (
        "server-snippet",
        "nginx configuration cannot be honoured (and snippets were a security hole)",
    ),
];

/// Why an ingress-nginx annotation is not honoured.
pub fn ignored_because(name: &str) -> &'static str {
    NOT_YET
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("not supported by wsgate", |(_, why)| why)
}

/// Reads annotation values, collecting what is wrong with them.
struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    problems: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    /// The trimmed value of `prefix` + `name`.
    fn get(&self, prefix: &str, name: &str) -> Option<&'a str> {
        let value = self.annotations.get(&format!("{prefix}{name}"));
        value.map(|v| v.trim())
    }

    fn wsgate(&self, name: &str) -> Option<&'a str> {
        self.get(WSGATE, name)
    }

    fn bad(&mut self, prefix: &str, name: &str, why: impl Into<String>) {
        self.problems
            .push(problem(annotation(&format!("{prefix}{name}")), why));
    }

    /// `prefix` + `name` read with `parse`, whose error says what is wrong.
    fn parsed<T>(
        &mut self,
        prefix: &str,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let v = self.get(prefix, name)?;
        match parse(v) {
            Ok(t) => Some(t),
            Err(why) => {
                self.bad(prefix, name, why);
                None
            }
        }
    }

    fn flag(&mut self, prefix: &str, name: &str, default: bool) -> bool {
        let parse = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("{other:?} is not true or false")),
        };
        self.parsed(prefix, name, parse).unwrap_or(default)
    }

    /// A whole number above 0 (ingress-nginx's seconds and counts).
    fn positive(&mut self, name: &str, unit: &str) -> Option<u32> {
        self.parsed(NGINX, name, |v| match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{v:?} is not a number of {unit} above 0")),
        })
    }

    fn seconds(&mut self, name: &str) -> Option<Duration> {
        let n = self.positive(name, "seconds")?;
        Some(Duration::from_secs(u64::from(n)))
    }
}

/// A duration above zero, for an annotation.
fn above_zero(v: &str) -> Result<Duration, String> {
    match parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than 0".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Settings {
    /// Reads the annotations: the settings, and warnings for those that are not honoured.
    fn read(
        annotations: &BTreeMap<String, String>,
        opts: IngressOptions,
    ) -> Result<(Settings, Vec<FieldError>), Vec<FieldError>> {
        let mut r = Reader {
            annotations,
            problems: Vec::new(),
        };
        let mut warnings = unhonoured(annotations);

        let read = r.seconds("proxy-read-timeout");
        let send = r.seconds("proxy-send-timeout");
        let mut idle_timeout = read.max(send);
        if let Some(d) = r.parsed(WSGATE, "idle-timeout", |v| {
            parse_duration(v).map_err(|e| e.to_string())
        }) {
            idle_timeout = (!d.is_zero()).then_some(d);
        }
        let protocol = r
            .parsed(NGINX, "backend-protocol", |v| {
                match v.to_ascii_uppercase().as_str() {
                    "HTTP" => Ok(Protocol::Http),
                    "HTTPS" => Ok(Protocol::Https),
                    "GRPC" => Ok(Protocol::Grpc),
                    "GRPCS" => Ok(Protocol::Grpcs),
                    other => Err(format!(
                        "{other:?} is not supported (HTTP, HTTPS, GRPC or GRPCS)"
                    )),
                }
            })
            .unwrap_or(Protocol::Http);
        let affinity = read_affinity(&mut r);
        let mut balance = r
            .parsed(NGINX, "upstream-hash-by", hash_key)
            .map(Balance::ConsistentHash);
        if let Some(lb) = r.parsed(WSGATE, "load-balancing", |v| match v {
            "round-robin" => Ok(Balance::RoundRobin),
            "least-connections" => Ok(Balance::LeastConnections),
            other => Err(format!("{other:?} is not round-robin or least-connections")),
        }) {
            balance = Some(lb);
        }
        let max_connections = r.positive("limit-connections", "connections");
        let rate = r.positive("limit-rps", "requests");
        let limits = (max_connections.is_some() || rate.is_some()).then(|| ClientLimits {
            max_connections,
            rate,
            // ingress-nginx's limit-burst-multiplier default.
            burst: rate.map_or(1, |r| r.saturating_mul(5)),
        });
        let mut allowed_sources = Vec::new();
        for name in ["whitelist-source-range", "allowlist-source-range"] {
            if let Some(list) = r.parsed(NGINX, name, cidrs) {
                allowed_sources.extend(list);
            }
        }
        let max_body = r.parsed(NGINX, "proxy-body-size", body_size).flatten();
        let rewrite_target = r.parsed(NGINX, "rewrite-target", |v| {
            if v.contains('$') {
                return Err(format!(
                    "{v:?}: capture groups need regular-expression paths, which wsgate does not support; use a plain prefix such as /"
                ));
            }
            check_path(v)
                .map(|()| Box::from(normalize_path_prefix(v)))
                .map_err(|why| format!("{v:?}: {why}"))
        });
        let mut allowed_origins = Vec::new();
        if let Some(list) = r.parsed(WSGATE, "allowed-origins", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(OriginPattern::parse)
                .collect::<Result<Vec<_>, _>>()
        }) {
            allowed_origins = list;
        }
        let websocket_backend = r.parsed(WSGATE, "websocket-backend", service_port);
        let maintenance = r
            .flag(WSGATE, "maintenance", false)
            .then(|| Bytes::from_static(DEFAULT_MAINTENANCE_BODY.as_bytes()));
        let mut addresses = Addresses::default();
        if r.wsgate("address").is_some() && !opts.standalone {
            warnings.push(problem(
                annotation(&format!("{WSGATE}address")),
                "ignored in a cluster: backends are Services",
            ));
        } else if let Some(a) = r.parsed(WSGATE, "address", standalone_addresses) {
            addresses = a;
        }
        let max_lifetime = r
            .parsed(WSGATE, "websocket-max-lifetime", above_zero)
            .map(|max| crate::model::Lifetime {
                max,
                jitter_percent: r
                    .parsed(WSGATE, "websocket-lifetime-jitter", |v| {
                        super::translate::parse_percent(v)
                            .ok_or_else(|| format!("{v:?} is not a percentage (0% to 100%)"))
                    })
                    .unwrap_or(crate::model::Lifetime::DEFAULT_JITTER_PERCENT),
            });
        let keepalive = r
            .parsed(WSGATE, "websocket-keepalive-interval", above_zero)
            .map(|interval| crate::model::Keepalive {
                interval,
                timeout: r
                    .parsed(WSGATE, "websocket-keepalive-timeout", above_zero)
                    .unwrap_or(crate::model::Keepalive::DEFAULT_TIMEOUT),
            });
        let rebalance = r
            .parsed(WSGATE, "websocket-rebalance-tolerance", |v| {
                match v.parse::<f64>() {
                    Ok(t) if (0.0..=10.0).contains(&t) => Ok(t),
                    _ => Err(format!("{v:?} is not a number from 0 to 10")),
                }
            })
            .map(|tolerance| crate::model::Rebalance {
                tolerance,
                window: r
                    .parsed(WSGATE, "websocket-rebalance-window", |v| {
                        parse_duration(v).map_err(|e| e.to_string())
                    })
                    .unwrap_or(crate::model::Rebalance::DEFAULT_WINDOW),
            });
        let count = |v: &str| match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{v:?} is not a number above 0")),
        };
        let capacity = crate::model::Capacity {
            max_connections: r.parsed(WSGATE, "websocket-max-connections", count),
            max_per_endpoint: r.parsed(WSGATE, "websocket-max-connections-per-endpoint", count),
        };
        let auth = auth::read_auth(&mut r);
        let settings = Settings {
            auth,
            max_lifetime,
            keepalive,
            rebalance,
            capacity,
            ssl_redirect: r.flag(NGINX, "ssl-redirect", true),
            force_ssl_redirect: r.flag(NGINX, "force-ssl-redirect", false),
            www_redirect: r.flag(NGINX, "from-to-www-redirect", false),
            idle_timeout,
            http_timeout: read.unwrap_or(DEFAULT_HTTP_TIMEOUT),
            connect_timeout: r.seconds("proxy-connect-timeout"),
            protocol,
            balance,
            affinity,
            limits,
            allowed_sources,
            max_body,
            rewrite_target,
            allowed_origins,
            websocket_backend,
            maintenance,
            addresses,
        };
        match r.problems.is_empty() {
            true => Ok((settings, warnings)),
            false => Err(r.problems),
        }
    }
}

/// Warnings for every annotation under either prefix that wsgate does not honour.
fn unhonoured(annotations: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    for name in annotations.keys() {
        if let Some(short) = name.strip_prefix(NGINX) {
            if !HONOURED_NGINX.iter().any(|(n, _)| *n == short) {
                warnings.push(problem(
                    annotation(name),
                    format!("ignored: {}", ignored_because(short)),
                ));
            }
        } else if let Some(short) = name.strip_prefix(WSGATE) {
            if !HONOURED_WSGATE.iter().any(|(n, _)| *n == short) {
                warnings.push(problem(
                    annotation(name),
                    "ignored: no such wsgate annotation",
                ));
            }
        }
    }
    warnings
}

/// `affinity: cookie` and its `session-cookie-*` settings.
fn read_affinity(r: &mut Reader<'_>) -> Option<Affinity> {
    let on = r.parsed(NGINX, "affinity", |v| match v {
        "cookie" => Ok(()),
        other => Err(format!("{other:?} is not supported (cookie)")),
    });
    let name = r.parsed(NGINX, "session-cookie-name", |v| {
        super::translate::is_token(v)
            .then(|| Box::from(v))
            .ok_or_else(|| format!("{v:?} is not a cookie name (RFC 6265 §4.1.1)"))
    });
    let path = r.parsed(NGINX, "session-cookie-path", |v| {
        check_path(v)
            .map(|()| Box::from(v))
            .map_err(|why| format!("{v:?}: {why}"))
    });
    let max_age = r.positive("session-cookie-max-age", "seconds");
    on?;
    Some(Affinity {
        // ingress-nginx's default name.
        name: name.unwrap_or_else(|| "INGRESSCOOKIE".into()),
        path,
        max_age: max_age.map(u64::from),
    })
}

/// A comma-separated CIDR list.
fn cidrs(v: &str) -> Result<Vec<Cidr>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<Cidr>().map_err(|e| e.to_string()))
        .collect()
}

/// An nginx size (`8m`, `512k`, `1g`, bytes without a unit); `0` is no limit.
fn body_size(v: &str) -> Result<Option<u64>, String> {
    let bad = || format!("{v:?} is not a size such as 8m, 512k or 1g (0: no limit)");
    let (digits, unit) = match v.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&v[..at], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(bad)?;
    Ok((bytes > 0).then_some(bytes))
}

/// `wsgate.dev/address`: `HOST:PORT` for every Service, or `SERVICE=HOST:PORT,...`.
fn standalone_addresses(v: &str) -> Result<Addresses, String> {
    let mut addresses = Addresses::default();
    for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (service, addr) = match part.split_once('=') {
            Some((s, a)) => (Some(s.trim()), a.trim()),
            None => (None, part),
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not IP:PORT"))?;
        match service {
            None => addresses.all = Some(addr),
            Some(s) => {
                addresses.by_service.insert(s.to_string(), addr);
            }
        }
    }
    Ok(addresses)
}

/// An `upstream-hash-by` value.
fn hash_key(v: &str) -> Result<HashKey, String> {
    if v == "$remote_addr" || v == "$binary_remote_addr" {
        return Ok(HashKey::SourceIp);
    }
    if let Some(h) = v.strip_prefix("$http_") {
        // nginx spells header names lower case with '_' for '-'.
        let name = h.replace('_', "-");
        return HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("{v:?}: not a header name"));
    }
    if let Some(c) = v.strip_prefix("$cookie_") {
        if !c.is_empty() {
            return Ok(HashKey::Cookie(c.into()));
        }
    }
    Err(format!(
        "{v:?} is not supported: use $remote_addr, $http_NAME or $cookie_NAME (one variable)"
    ))
}

/// `name:port` (number or name).
fn service_port(v: &str) -> Result<(String, ServicePort), String> {
    let (name, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("{v:?} is not SERVICE:PORT"))?;
    model::check_object_name(name).map_err(|why| format!("{name:?}: {why}"))?;
    let port = match port.parse::<u16>() {
        Ok(0) => return Err("port must be 1..65535".into()),
        Ok(n) => ServicePort::Number(n),
        Err(_) if !port.is_empty() => ServicePort::Name(port.into()),
        Err(_) => return Err(format!("{v:?} is not SERVICE:PORT")),
    };
    Ok((name.to_string(), port))
}

/// What translating the paths of one object needs.
struct Context<'a> {
    namespace: &'a str,
    settings: &'a Settings,
}

impl Context<'_> {
    /// The rule of `spec.rules[i].http.paths[j]`.
    fn path_rule(
        &self,
        p: &mut Vec<FieldError>,
        i: usize,
        j: usize,
        path: &HTTPIngressPath,
        index: usize,
    ) -> Option<Rule> {
        let at = format!("spec.rules[{i}].http.paths[{j}]");
        let text = path.path.as_deref().unwrap_or("/");
        let text = if text.is_empty() { "/" } else { text };
        if let Err(why) = check_path(text) {
            p.push(problem(format!("{at}.path"), why));
            return None;
        }
        let matches = match path.path_type.as_str() {
            "Exact" => PathMatch::Exact(text.into()),
            // ImplementationSpecific is a prefix here, element-wise like Prefix.
            "Prefix" | "ImplementationSpecific" => {
                PathMatch::Prefix(normalize_path_prefix(text).into())
            }
            other => {
                p.push(problem(
                    format!("{at}.pathType"),
                    format!("{other:?} is not Exact, Prefix or ImplementationSpecific"),
                ));
                return None;
            }
        };
        self.rule(p, &format!("{at}.backend"), matches, &path.backend, index)
    }

    /// A rule sending normal requests and upgrades on `matches` to `backend`.
    fn rule(
        &self,
        p: &mut Vec<FieldError>,
        at: &str,
        matches: PathMatch,
        backend: &IngressBackend,
        index: usize,
    ) -> Option<Rule> {
        let s = self.settings;
        let Some(service) = &backend.service else {
            let what = if backend.resource.is_some() {
                "resource backends are not supported; use service"
            } else {
                "needs a service"
            };
            p.push(problem(at, what));
            return None;
        };
        let http_backend = self.backend(p, &format!("{at}.service"), service)?;
        let ws_backend = match &s.websocket_backend {
            Some((name, port)) => self.target(
                name,
                port.clone(),
                &annotation(&format!("{WSGATE}websocket-backend")),
            ),
            None => http_backend.clone(),
        };
        let one = |backend| vec![WeightedBackend { backend, weight: 1 }];
        // Sticky cookies win over hashing, as in ingress-nginx; wsgate's own load-balancing
        // annotation wins over both.
        let balance = |default: Balance| match (&s.affinity, &s.balance) {
            (_, Some(b @ (Balance::RoundRobin | Balance::LeastConnections))) => b.clone(),
            (Some(a), _) => Balance::Cookie(AffinityCookie {
                name: a.name.clone(),
                path: a.path.clone().unwrap_or_else(|| matches.as_str().into()),
                max_age: a.max_age,
            }),
            (None, b) => b.clone().unwrap_or(default),
        };
        let filters = Filters {
            rewrite: s.rewrite_target.clone().map(PathRewrite::Prefix),
            ..Filters::default()
        };
        Some(Rule {
            index,
            http: Some(HttpAction {
                backends: one(http_backend),
                timeout: s.http_timeout,
                balance: balance(Balance::RoundRobin),
                filters: filters.clone(),
                max_body: s.max_body,
                // Requests share the rule's bucket with upgrades; the connection count is
                // for sockets.
                limits: s.limits.and_then(|l| {
                    l.rate.map(|_| ClientLimits {
                        max_connections: None,
                        ..l
                    })
                }),
                connect_timeout: s.connect_timeout,
            }),
            websocket: Some(WebSocketAction {
                backends: one(ws_backend),
                idle_timeout: s.idle_timeout,
                handshake_timeout: None,
                max_lifetime: s.max_lifetime,
                keepalive: s.keepalive,
                rebalance: s.rebalance,
                capacity: s.capacity,
                balance: balance(Balance::LeastConnections),
                allowed_origins: s.allowed_origins.clone(),
                limits: s.limits,
                filters,
                connect_timeout: s.connect_timeout,
            }),
            matches: RuleMatch {
                path: matches,
                headers: Vec::new(),
                method: None,
                query: Vec::new(),
            },
            fallback: false,
            allowed_sources: s.allowed_sources.clone(),
            auth: s.auth.clone(),
        })
    }

    fn backend(
        &self,
        p: &mut Vec<FieldError>,
        at: &str,
        service: &IngressServiceBackend,
    ) -> Option<Backend> {
        if let Err(why) = model::check_object_name(&service.name) {
            p.push(problem(format!("{at}.name"), why));
            return None;
        }
        let port = service.port.as_ref();
        let port = match (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.as_deref()),
        ) {
            (Some(n), None) => match u16::try_from(n) {
                Ok(n) if n > 0 => ServicePort::Number(n),
                _ => {
                    p.push(problem(format!("{at}.port.number"), "must be 1..65535"));
                    return None;
                }
            },
            (None, Some(name)) if !name.is_empty() => ServicePort::Name(name.into()),
            _ => {
                p.push(problem(
                    format!("{at}.port"),
                    "set exactly one of number or name",
                ));
                return None;
            }
        };
        Some(self.target(&service.name, port, at))
    }

    /// A backend for a Service port (or, standalone, the address `wsgate.dev/address` names).
    fn target(&self, name: &str, port: ServicePort, at: &str) -> Backend {
        let s = self.settings;
        let address = s
            .addresses
            .by_service
            .get(name)
            .copied()
            .or(s.addresses.all);
        let target = match address {
            Some(addr) => BackendTarget::Address(addr),
            None => BackendTarget::Service {
                namespace: None,
                name: name.to_string(),
                port,
            },
        };
        let tls =
            matches!(s.protocol, Protocol::Https | Protocol::Grpcs).then(|| model::BackendTls {
                server_name: ServerName::try_from(format!("{name}.{}.svc", self.namespace))
                    .unwrap_or_else(|_| {
                        ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
                    }),
                // ingress-nginx does not verify backend certificates unless told to.
                ca: None,
            });
        Backend {
            target,
            protocol: match s.protocol {
                Protocol::Grpc | Protocol::Grpcs => BackendProtocol::Http2,
                _ => BackendProtocol::Http,
            },
            tls,
            field: at.into(),
        }
    }
}

mod auth;
#[cfg(test)]
mod tests;
