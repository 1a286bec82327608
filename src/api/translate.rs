//! The one translate step of the `WebSocketRoute` API into the route model: every field is
//! parsed once, here, and every problem is returned (not just the first) with its field path,
//! so `wsgate check` and status conditions can tell the user exactly what to fix. Problems
//! that involve several routes (a hostname claimed twice) are found by the table compiler,
//! which sees all routes at once.

use std::net::SocketAddr;

use bytes::Bytes;
use http::HeaderName;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls_pki_types::ServerName;

use super::{
    self as api, Backend, BackendProtocol, ClientLimits, HttpTarget, KeepaliveSpec, LoadBalancing,
    LoadBalancingPolicy, RebalanceSpec, WebSocketRoute, WebSocketRouteSpec, WebSocketTarget,
    parse_duration,
};
use crate::model::{
    self, Balance, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAINTENANCE_BODY, FieldError, Filters, HashKey,
    Hostname, ObjectKind, OriginPattern, PathMatch, RouteMeta, RuleMatch, WeightedBackend,
    check_dns_label, check_object_name, check_path, normalize_path_prefix,
};

mod auth;

pub(crate) use auth::auth_into;

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Who a route object is.
pub fn route_meta(route: &WebSocketRoute) -> RouteMeta {
    object_meta(&route.metadata)
}

/// Who a route object is, from its metadata alone (for an object whose spec did not decode).
pub fn object_meta(meta: &ObjectMeta) -> RouteMeta {
    RouteMeta {
        kind: ObjectKind::WebSocketRoute,
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone().unwrap_or_default(),
        generation: meta.generation,
        created: meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond()),
    }
}

/// Decodes one route object from its JSON, or says which field does not fit the type (a
/// number out of range, an enum value this build does not know): the API server's schema
/// lets through what serde refuses, and one such object must not fail a whole list.
pub fn decode(object: serde_json::Value) -> Result<WebSocketRoute, FieldError> {
    serde_path_to_error::deserialize(object).map_err(|e| FieldError {
        path: e.path().to_string(),
        message: format!(
            "{} (the object does not fit this build of wsgate)",
            e.inner()
        ),
    })
}

/// Translates a route object into the model, or says everything wrong with it.
pub fn translate(route: &WebSocketRoute) -> model::Translated {
    let meta = route_meta(route);
    match translate_spec(&meta.namespace, &route.spec) {
        Ok(parts) => Ok(parts.into_route(meta)),
        Err(problems) => Err(Box::new(model::Rejected {
            meta,
            problems,
            last_good: None,
        })),
    }
}

/// A translated spec, before it is joined with its object's metadata.
struct Parts {
    hostnames: Vec<Hostname>,
    redirect_hostnames: Vec<Hostname>,
    tls: Option<model::RouteTls>,
    maintenance: Option<Bytes>,
    rules: Vec<model::Rule>,
}

impl Parts {
    fn into_route(self, meta: RouteMeta) -> model::Route {
        model::Route {
            meta,
            hostnames: self.hostnames,
            catch_all: false,
            merge: false,
            redirect_hostnames: self.redirect_hostnames,
            tls: self.tls,
            maintenance: self.maintenance,
            rules: self.rules,
            warnings: Vec::new(),
        }
    }
}

fn translate_spec(namespace: &str, spec: &WebSocketRouteSpec) -> Result<Parts, Vec<FieldError>> {
    let mut p = Problems(Vec::new());
    if spec.hostnames.is_empty() {
        p.add("spec.hostnames", "at least one hostname is required");
    }
    let hostnames = parse_hostnames(&mut p, "hostnames", &spec.hostnames, &[]);
    let redirect_hostnames = parse_hostnames(
        &mut p,
        "redirectHostnames",
        &spec.redirect_hostnames,
        &hostnames,
    );
    if !spec.redirect_hostnames.is_empty()
        && spec.hostnames.first().is_some_and(|h| h.starts_with("*."))
    {
        p.add(
            "spec.hostnames[0]",
            "must be an exact name when redirectHostnames is set (it is the redirect target)",
        );
    }
    let tls = spec.tls.as_ref().map(|tls| route_tls(&mut p, tls));
    let rules = rules(&mut p, namespace, &spec.rules);
    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Parts {
        hostnames,
        redirect_hostnames,
        tls,
        maintenance: spec.maintenance.as_ref().filter(|m| m.enabled).map(|m| {
            Bytes::from(
                m.body
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MAINTENANCE_BODY.to_string()),
            )
        }),
        rules,
    })
}

fn route_tls(p: &mut Problems, tls: &api::RouteTls) -> model::RouteTls {
    if let Err(why) = check_object_name(&tls.secret_name) {
        p.add("spec.tls.secretName", why);
    }
    model::RouteTls {
        secret: Some(tls.secret_name.clone()),
        secret_namespace: None,
        http_redirect: tls.redirects_http(),
        https_only: false,
        hsts: tls.hsts.as_ref().and_then(|hsts| {
            if hsts.max_age < 0 {
                p.add("spec.tls.hsts.maxAge", "must be 0 or more seconds");
            }
            let include_sub_domains = hsts.include_sub_domains == Some(true);
            let preload = hsts.preload == Some(true);
            if preload && (hsts.max_age < 31_536_000 || !include_sub_domains) {
                p.add(
                    "spec.tls.hsts.preload",
                    "needs maxAge of at least 31536000 and includeSubDomains: true",
                );
            }
            Some(model::Hsts {
                max_age: u64::try_from(hsts.max_age).ok()?,
                include_sub_domains,
                preload,
            })
        }),
    }
}

/// The rules in order; a path prefix used by an earlier rule is a problem.
fn rules(p: &mut Problems, namespace: &str, rules: &[api::Rule]) -> Vec<model::Rule> {
    if rules.is_empty() {
        p.add("spec.rules", "at least one rule is required");
    }
    let mut prefixes: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let prefix = rule.prefix();
        match check_path(prefix) {
            Err(why) => p.add(format!("spec.rules[{i}].pathPrefix"), why),
            Ok(()) => {
                let norm = normalize_path_prefix(prefix);
                if prefixes.contains(&norm) {
                    p.add(
                        format!("spec.rules[{i}].pathPrefix"),
                        format!("{norm:?} is used by an earlier rule"),
                    );
                } else {
                    prefixes.push(norm);
                }
            }
        }
        if rule.http.is_none() && rule.websocket.is_none() {
            p.add(
                format!("spec.rules[{i}]"),
                "needs an http or a websocket backend (or both)",
            );
        }
        let path = normalize_path_prefix(prefix);
        let at = RuleAt { index: i, path };
        let http = rule.http.as_ref().map(|h| http_action(p, namespace, at, h));
        let websocket = rule
            .websocket
            .as_ref()
            .map(|ws| websocket_action(p, namespace, at, ws));
        let auth = rule.auth.as_ref().map(|a| {
            let prefix = format!("spec.rules[{i}].auth");
            auth::auth(p, namespace, &prefix, a)
        });
        out.push(model::Rule {
            index: i,
            matches: RuleMatch {
                path: PathMatch::Prefix(normalize_path_prefix(prefix).into()),
                headers: Vec::new(),
                method: None,
                query: Vec::new(),
            },
            http: http.flatten(),
            websocket: websocket.flatten(),
            fallback: false,
            allowed_sources: Vec::new(),
            auth: auth.flatten().map(std::sync::Arc::new),
        });
    }
    out
}

/// Parses one list of hostnames; a name listed twice in the route (in this list or in
/// `earlier`) is a problem.
fn parse_hostnames(
    p: &mut Problems,
    field: &str,
    hosts: &[String],
    earlier: &[Hostname],
) -> Vec<Hostname> {
    let mut parsed: Vec<Hostname> = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        match Hostname::parse(host) {
            Err(why) => p.add(format!("spec.{field}[{i}]"), why),
            Ok(name) => {
                // Routes list a handful of names: a linear scan beats a set.
                if earlier.contains(&name) || parsed.contains(&name) {
                    p.add(
                        format!("spec.{field}[{i}]"),
                        format!("{host:?} is listed twice in this route"),
                    );
                } else {
                    parsed.push(name);
                }
            }
        }
    }
    parsed
}

/// Which rule an action belongs to: its index and normalised path.
#[derive(Clone, Copy)]
struct RuleAt<'a> {
    index: usize,
    path: &'a str,
}

fn http_action(
    p: &mut Problems,
    namespace: &str,
    at_rule: RuleAt<'_>,
    http: &HttpTarget,
) -> Option<model::HttpAction> {
    let rule = at_rule.index;
    let at = |field: &str| format!("spec.rules[{rule}].http.{field}");
    let backend = backend(p, namespace, &at("backend"), &http.backend);
    let prefix = format!("spec.rules[{rule}].http");
    let balance = load_balancing(p, &prefix, at_rule.path, http.load_balancing.as_ref());
    let timeout = match &http.timeout {
        None => Some(DEFAULT_HTTP_TIMEOUT),
        Some(t) => positive_duration(p, at("timeout"), t, "must be greater than 0"),
    };
    Some(model::HttpAction {
        backends: vec![WeightedBackend {
            backend: backend?,
            weight: 1,
        }],
        timeout: timeout?,
        balance: balance?.unwrap_or(Balance::RoundRobin),
        filters: Filters::default(),
        max_body: None,
        limits: None,
        connect_timeout: None,
    })
}

fn websocket_action(
    p: &mut Problems,
    namespace: &str,
    at_rule: RuleAt<'_>,
    ws: &WebSocketTarget,
) -> Option<model::WebSocketAction> {
    let rule = at_rule.index;
    let base = format!("spec.rules[{rule}].websocket.backend");
    let backend = backend(p, namespace, &base, &ws.backend);
    let settings = SocketSpec {
        idle_timeout: ws.idle_timeout.as_deref(),
        allowed_origins: &ws.allowed_origins,
        limits: ws.limits.as_ref(),
        load_balancing: ws.load_balancing.as_ref(),
        max_lifetime: ws.max_lifetime.as_deref(),
        lifetime_jitter: ws.lifetime_jitter.as_deref(),
        keepalive: ws.keepalive.as_ref(),
        rebalance: ws.rebalance.as_ref(),
    };
    let prefix = format!("spec.rules[{rule}].websocket");
    let settings = socket_settings(p, &prefix, at_rule.path, &settings);
    let settings = settings?;
    Some(model::WebSocketAction {
        backends: vec![WeightedBackend {
            backend: backend?,
            weight: 1,
        }],
        idle_timeout: settings.idle_timeout,
        handshake_timeout: None,
        balance: settings.balance.unwrap_or(Balance::LeastConnections),
        allowed_origins: settings.allowed_origins,
        limits: settings.limits,
        max_lifetime: settings.max_lifetime,
        keepalive: settings.keepalive,
        rebalance: settings.rebalance,
        capacity: settings.capacity,
        filters: Filters::default(),
        connect_timeout: None,
    })
}

/// The socket settings a WebSocketRoute rule and a WebSocketPolicy share, as written.
pub(crate) struct SocketSpec<'a> {
    pub(crate) idle_timeout: Option<&'a str>,
    pub(crate) allowed_origins: &'a [String],
    pub(crate) limits: Option<&'a ClientLimits>,
    pub(crate) load_balancing: Option<&'a LoadBalancing>,
    pub(crate) max_lifetime: Option<&'a str>,
    pub(crate) lifetime_jitter: Option<&'a str>,
    pub(crate) keepalive: Option<&'a KeepaliveSpec>,
    pub(crate) rebalance: Option<&'a RebalanceSpec>,
}

/// [`SocketSpec`] parsed.
pub(crate) struct SocketSettings {
    pub(crate) idle_timeout: Option<std::time::Duration>,
    pub(crate) allowed_origins: Vec<OriginPattern>,
    pub(crate) limits: Option<model::ClientLimits>,
    /// `None`: the default of the action.
    pub(crate) balance: Option<Balance>,
    pub(crate) max_lifetime: Option<model::Lifetime>,
    pub(crate) keepalive: Option<model::Keepalive>,
    pub(crate) rebalance: Option<model::Rebalance>,
    pub(crate) capacity: model::Capacity,
}

/// Parses socket settings whose fields sit under `prefix` (`spec.rules[0].websocket`,
/// `spec`); `path` is the default `Path` of a sticky cookie. Every problem is added to
/// `errors`; `None` if there was one.
pub(crate) fn socket_settings_into(
    errors: &mut Vec<FieldError>,
    prefix: &str,
    path: &str,
    spec: &SocketSpec<'_>,
) -> Option<SocketSettings> {
    let mut p = Problems(std::mem::take(errors));
    let out = socket_settings(&mut p, prefix, path, spec);
    *errors = p.0;
    out
}

fn socket_settings(
    p: &mut Problems,
    prefix: &str,
    path: &str,
    spec: &SocketSpec<'_>,
) -> Option<SocketSettings> {
    let at = |field: &str| format!("{prefix}.{field}");
    let balance = load_balancing(p, prefix, path, spec.load_balancing);
    let mut allowed_origins = Vec::with_capacity(spec.allowed_origins.len());
    for (j, origin) in spec.allowed_origins.iter().enumerate() {
        match OriginPattern::parse(origin) {
            Ok(pattern) => allowed_origins.push(pattern),
            Err(why) => p.add(at(&format!("allowedOrigins[{j}]")), why),
        }
    }
    let limits = match spec.limits {
        None => Some((None, model::Capacity::default())),
        Some(limits) => client_limits(p, prefix, limits),
    };
    let idle_timeout = match spec.idle_timeout {
        None => Some(None),
        Some(t) => positive_duration(
            p,
            at("idleTimeout"),
            t,
            "must be greater than 0 (leave it out to never time out)",
        )
        .map(Some),
    };
    let max_lifetime = lifetime(p, prefix, spec.max_lifetime, spec.lifetime_jitter);
    let keepalive = spec
        .keepalive
        .map_or(Some(None), |k| keepalive(p, prefix, k));
    let rebalance = spec
        .rebalance
        .map_or(Some(None), |r| rebalance(p, prefix, r));
    let (balance, (limits, capacity), idle_timeout) = (balance?, limits?, idle_timeout?);
    if allowed_origins.len() != spec.allowed_origins.len() {
        return None;
    }
    Some(SocketSettings {
        idle_timeout,
        allowed_origins,
        limits,
        capacity,
        balance,
        max_lifetime: max_lifetime?,
        keepalive: keepalive?,
        rebalance: rebalance?,
    })
}

/// `keepalive` under `prefix`.
fn keepalive(
    p: &mut Problems,
    prefix: &str,
    spec: &KeepaliveSpec,
) -> Option<Option<model::Keepalive>> {
    let interval = positive_duration(
        p,
        format!("{prefix}.keepalive.interval"),
        &spec.interval,
        "must be greater than 0 (leave keepalive out to turn it off)",
    );
    let timeout = match &spec.timeout {
        None => Some(model::Keepalive::DEFAULT_TIMEOUT),
        Some(t) => positive_duration(
            p,
            format!("{prefix}.keepalive.timeout"),
            t,
            "must be greater than 0",
        ),
    };
    Some(Some(model::Keepalive {
        interval: interval?,
        timeout: timeout?,
    }))
}

/// `rebalance` under `prefix`.
fn rebalance(
    p: &mut Problems,
    prefix: &str,
    spec: &RebalanceSpec,
) -> Option<Option<model::Rebalance>> {
    let tolerance = spec
        .tolerance
        .unwrap_or(model::Rebalance::DEFAULT_TOLERANCE);
    let tolerance_ok = (0.0..=10.0).contains(&tolerance);
    if !tolerance_ok {
        p.add(
            format!("{prefix}.rebalance.tolerance"),
            format!("{tolerance} is not between 0 and 10"),
        );
    }
    let window = match &spec.window {
        None => Some(model::Rebalance::DEFAULT_WINDOW),
        Some(w) => match parse_duration(w) {
            Ok(d) => Some(d),
            Err(e) => {
                p.add(format!("{prefix}.rebalance.window"), e.to_string());
                None
            }
        },
    };
    let window = window?;
    tolerance_ok.then_some(Some(model::Rebalance { tolerance, window }))
}

/// `maxLifetime` and `lifetimeJitter` under `prefix`.
fn lifetime(
    p: &mut Problems,
    prefix: &str,
    max: Option<&str>,
    jitter: Option<&str>,
) -> Option<Option<model::Lifetime>> {
    let at = |field: &str| format!("{prefix}.{field}");
    let jitter_percent = match jitter {
        None => model::Lifetime::DEFAULT_JITTER_PERCENT,
        Some(text) => match parse_percent(text) {
            Some(n) => n,
            None => {
                p.add(
                    at("lifetimeJitter"),
                    format!("{text:?} is not a percentage (0% to 100%)"),
                );
                return None;
            }
        },
    };
    let Some(max) = max else {
        if jitter.is_some() {
            p.add(at("lifetimeJitter"), "goes with maxLifetime");
            return None;
        }
        return Some(None);
    };
    let max = positive_duration(
        p,
        at("maxLifetime"),
        max,
        "must be greater than 0 (leave it out for no limit)",
    )?;
    Some(Some(model::Lifetime {
        max,
        jitter_percent,
    }))
}

/// `0%` to `100%`.
pub(crate) fn parse_percent(text: &str) -> Option<u8> {
    let n: u8 = text.strip_suffix('%')?.parse().ok()?;
    (n <= 100).then_some(n)
}

/// A duration above zero; `zero` says what to do instead of 0.
fn positive_duration(
    p: &mut Problems,
    path: String,
    text: &str,
    zero: &str,
) -> Option<std::time::Duration> {
    match parse_duration(text) {
        Err(e) => {
            p.add(path, e.to_string());
            None
        }
        Ok(d) if d.is_zero() => {
            p.add(path, zero);
            None
        }
        Ok(d) => Some(d),
    }
}

/// The backend whose fields sit under `base` (`spec.rules[0].http.backend`).
fn backend(p: &mut Problems, namespace: &str, base: &str, b: &Backend) -> Option<model::Backend> {
    let at = |field: &str| format!("{base}{field}");
    let before = p.0.len();
    let protocol = match b.protocol {
        Some(BackendProtocol::H2c | BackendProtocol::H2) => model::BackendProtocol::Http2,
        Some(BackendProtocol::Http) | None => model::BackendProtocol::Http,
    };
    match (b.protocol, &b.tls) {
        (Some(BackendProtocol::H2c), Some(_)) => p.add(
            at(".tls"),
            "h2c is cleartext HTTP/2; drop tls, or use protocol: h2 for HTTP/2 over TLS",
        ),
        (Some(BackendProtocol::H2), None) => p.add(
            at(".protocol"),
            "h2 is HTTP/2 over TLS and needs tls (use h2c for cleartext)",
        ),
        _ => {}
    }
    let sni = b.tls.as_ref().and_then(|tls| backend_sni(p, &at, tls));
    let target = backend_target(p, &at, b);
    if p.0.len() != before {
        return None;
    }
    let target = target?;
    let tls = b.tls.as_ref().map(|tls| model::BackendTls {
        // The default names what the backend is: its Service's cluster name, or its IP.
        server_name: sni.unwrap_or_else(|| match &target {
            model::BackendTarget::Service { name, .. } => {
                ServerName::try_from(format!("{name}.{namespace}.svc")).unwrap_or_else(|_| {
                    ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
                })
            }
            model::BackendTarget::Address(a) => ServerName::IpAddress(a.ip().into()),
            model::BackendTarget::Unresolved => {
                ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
            }
        }),
        ca: tls.ca_secret_name.clone().map(model::CaRef::Secret),
    });
    Some(model::Backend {
        target,
        protocol,
        tls,
        field: at("").into(),
    })
}

/// The SNI a backend's TLS names, if set and valid; also checks the CA Secret's name.
fn backend_sni(
    p: &mut Problems,
    at: &impl Fn(&str) -> String,
    tls: &api::BackendTls,
) -> Option<ServerName<'static>> {
    let sni = tls
        .sni
        .as_ref()
        .and_then(|name| match Hostname::parse(name) {
            Err(why) => {
                p.add(at(".tls.sni"), why);
                None
            }
            Ok(h) if h.is_wildcard() => {
                p.add(
                    at(".tls.sni"),
                    format!("{name:?}: SNI must be an exact name"),
                );
                None
            }
            Ok(_) => ServerName::try_from(name.clone()).ok(),
        });
    if let Some(ca) = &tls.ca_secret_name {
        if let Err(why) = check_object_name(ca) {
            p.add(at(".tls.caSecretName"), why);
        }
    }
    sni
}

/// Where a backend is: a Service and port, or a literal address.
fn backend_target(
    p: &mut Problems,
    at: &impl Fn(&str) -> String,
    b: &Backend,
) -> Option<model::BackendTarget> {
    match (&b.service, &b.address) {
        (Some(_), Some(_)) => {
            p.add(at(""), "set either service+port or address, not both");
            None
        }
        (None, None) => {
            p.add(at(""), "set service+port or address");
            None
        }
        (Some(svc), None) => {
            if let Err(why) = check_dns_label(svc) {
                p.add(at(".service"), why);
            }
            let port = match b.port.map(u16::try_from) {
                None => {
                    p.add(at(".port"), "required with service");
                    return None;
                }
                Some(Ok(port)) if port != 0 => port,
                Some(_) => {
                    p.add(at(".port"), "must be 1..65535");
                    return None;
                }
            };
            Some(model::BackendTarget::Service {
                namespace: None,
                name: svc.clone(),
                port: model::ServicePort::Number(port),
            })
        }
        (None, Some(addr)) => {
            if b.port.is_some() {
                p.add(at(".port"), "goes with service; put the port in address");
            }
            match addr.parse::<SocketAddr>() {
                Err(_) => {
                    p.add(
                        at(".address"),
                        format!("{addr:?} is not ip:port (e.g. 127.0.0.1:8080 or [::1]:8080)"),
                    );
                    None
                }
                Ok(sa) if sa.port() == 0 => {
                    p.add(at(".address"), "port must be 1..65535");
                    None
                }
                Ok(sa) => Some(model::BackendTarget::Address(sa)),
            }
        }
    }
}

/// The balancing policy; `Some(None)` when the rule keeps its default.
/// `loadBalancing` under `prefix`; `path` is the default cookie `Path`.
fn load_balancing(
    p: &mut Problems,
    prefix: &str,
    path: &str,
    lb: Option<&LoadBalancing>,
) -> Option<Option<Balance>> {
    let Some(lb) = lb else { return Some(None) };
    let at = |field: &str| format!("{prefix}.loadBalancing.{field}");
    let sticky = lb.policy == Some(LoadBalancingPolicy::StickyCookie);
    if lb.cookie.is_some() && !sticky {
        p.add(at("cookie"), "only applies to policy StickyCookie");
        return None;
    }
    if sticky {
        if lb.hash_on.is_some() {
            p.add(at("hashOn"), "only applies to policy ConsistentHash");
            return None;
        }
        let cookie = lb.cookie.clone().unwrap_or_default();
        let name = cookie.name.as_deref().unwrap_or(DEFAULT_AFFINITY_COOKIE);
        if !is_token(name) {
            p.add(at("cookie.name"), format!("{name:?} is not a cookie name"));
            return None;
        }
        let path = cookie.path.as_deref().unwrap_or(path);
        if let Err(why) = check_path(path) {
            p.add(at("cookie.path"), why);
            return None;
        }
        return Some(Some(Balance::Cookie(model::AffinityCookie {
            name: name.into(),
            path: path.into(),
            max_age: cookie.max_age_seconds.filter(|&s| s > 0),
        })));
    }
    let hashing = lb.policy == Some(LoadBalancingPolicy::ConsistentHash);
    match (&lb.hash_on, hashing) {
        (None, true) => {
            p.add(at("hashOn"), "required with policy ConsistentHash");
            None
        }
        (Some(_), false) => {
            p.add(at("hashOn"), "only applies to policy ConsistentHash");
            None
        }
        (None, false) => Some(lb.policy.map(|policy| match policy {
            LoadBalancingPolicy::LeastConnections => Balance::LeastConnections,
            _ => Balance::RoundRobin,
        })),
        (Some(on), true) => {
            let keys = usize::from(on.header.is_some())
                + usize::from(on.cookie.is_some())
                + usize::from(on.source_ip == Some(true));
            let mut key = None;
            if keys != 1 {
                p.add(
                    at("hashOn"),
                    "set exactly one of header, cookie or sourceIP: true",
                );
            } else if on.source_ip == Some(true) {
                key = Some(HashKey::SourceIp);
            }
            if let Some(h) = &on.header {
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => key = key.or(Some(HashKey::Header(name))),
                    Err(_) => p.add(at("hashOn.header"), format!("{h:?} is not a header name")),
                }
            }
            if let Some(c) = &on.cookie {
                if !is_token(c) {
                    p.add(at("hashOn.cookie"), format!("{c:?} is not a cookie name"));
                } else {
                    key = key.or(Some(HashKey::Cookie(c.as_str().into())));
                }
            }
            if keys != 1 {
                return None;
            }
            key.map(|k| Some(Balance::ConsistentHash(k)))
        }
    }
}

/// The cookie name of StickyCookie when the route names none.
const DEFAULT_AFFINITY_COOKIE: &str = "wsgate-affinity";

/// An RFC 9110 `token` (what a cookie name is, RFC 6265 §4.1.1).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `limits` under `prefix`: the per-client limits (if any) and the capacity caps.
fn client_limits(
    p: &mut Problems,
    prefix: &str,
    limits: &ClientLimits,
) -> Option<(Option<model::ClientLimits>, model::Capacity)> {
    let at = |field: &str| format!("{prefix}.limits{field}");
    let before = p.0.len();
    let fields = [
        (".maxConnections", limits.max_connections),
        (
            ".maxConnectionsPerEndpoint",
            limits.max_connections_per_endpoint,
        ),
        (
            ".maxConnectionsPerClient",
            limits.max_connections_per_client,
        ),
        (
            ".upgradesPerSecondPerClient",
            limits.upgrades_per_second_per_client,
        ),
        (".burst", limits.burst),
    ];
    for (field, value) in fields {
        if value == Some(0) {
            p.add(at(field), "must be at least 1 (leave it out for no limit)");
        }
    }
    if fields[..4].iter().all(|(_, v)| v.is_none()) {
        p.add(
            at(""),
            "set maxConnections, maxConnectionsPerEndpoint, maxConnectionsPerClient or upgradesPerSecondPerClient",
        );
    }
    if limits.burst.is_some() && limits.upgrades_per_second_per_client.is_none() {
        p.add(at(".burst"), "goes with upgradesPerSecondPerClient");
    }
    if p.0.len() != before {
        return None;
    }
    let rate = limits.upgrades_per_second_per_client;
    let per_client = limits.max_connections_per_client.is_some() || rate.is_some();
    let client = per_client.then(|| model::ClientLimits {
        max_connections: limits.max_connections_per_client,
        rate,
        // A bucket as large as the rate unless told otherwise: one second's worth at once.
        burst: limits.burst.or(rate).unwrap_or(1),
    });
    let capacity = model::Capacity {
        max_connections: limits.max_connections,
        max_per_endpoint: limits.max_connections_per_endpoint,
    };
    Some((client, capacity))
}

#[cfg(test)]
mod tests;
