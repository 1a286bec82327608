//! HTTPRoute rules into model rules: matches, filters, backendRefs with weights, timeouts.
//! Every HTTPRoute takes WebSocket upgrades (GEP-1911): each rule's backends serve both its
//! requests and its upgrades.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use rustls_pki_types::ServerName;

use super::attach::granted;
use super::types::*;
use super::{Cond, ServicePortInfo, World};
use crate::api::parse_duration;
use crate::model::{
    Backend, BackendProtocol, BackendTarget, BackendTls, Balance, CaRef, DEFAULT_HTTP_TIMEOUT,
    Filters, HeaderChanges, HeaderMatch, Hostname, HttpAction, PathMatch, PathRewrite, QueryMatch,
    RequestRedirect, Rule, RuleMatch, ServicePort, WebSocketAction, WeightedBackend, check_path,
    normalize_path_prefix,
};

/// The rules of one HTTPRoute.
pub(super) struct Resolved {
    /// Model rules, one per match of each rule.
    pub(super) rules: Vec<Rule>,
    /// The route's `ResolvedRefs` condition.
    pub(super) refs: Cond,
    /// Why the route cannot be served as written (`Accepted: False, UnsupportedValue`).
    pub(super) unsupported: Option<String>,
    /// BackendTLSPolicies (by index in the world) its backends use.
    pub(super) backend_tls_used: Vec<usize>,
}

/// Headers a filter may not change: they frame the message or the hop, or name the
/// authority the request was routed by.
const RESERVED: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// Timeouts of zero mean none; this stands in for "never".
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

struct Ctx<'a, 'w> {
    world: &'a World<'w>,
    route: &'a Object<HttpRouteSpec>,
    /// The first unresolved reference.
    refs: Option<Cond>,
    /// BackendTLSPolicies (by index) the route's backends use.
    backend_tls_used: Vec<usize>,
    unsupported: Vec<String>,
}

impl Ctx<'_, '_> {
    fn unsupported(&mut self, at: &str, why: impl std::fmt::Display) {
        self.unsupported.push(format!("{at}: {why}"));
    }

    fn unresolved(&mut self, reason: &'static str, message: String) {
        self.refs
            .get_or_insert_with(|| Cond::no("ResolvedRefs", reason, message));
    }
}

pub(super) fn translate_rules(world: &World<'_>, route: &Object<HttpRouteSpec>) -> Resolved {
    let mut ctx = Ctx {
        world,
        route,
        refs: None,
        backend_tls_used: Vec::new(),
        unsupported: Vec::new(),
    };
    let default_rule = [HttpRouteRule::default()];
    let rules = match route.spec.rules.as_slice() {
        [] => &default_rule[..],
        rules => rules,
    };
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        let (filters, has_redirect) = filters(&mut ctx, &at, rule);
        let backends = backends(&mut ctx, &at, rule);
        let timeout = timeout(&mut ctx, &at, rule);
        let default_match = [HttpRouteMatch::default()];
        let matches = match rule.matches.as_slice() {
            [] => &default_match[..],
            m => m,
        };
        for (j, m) in matches.iter().enumerate() {
            let Some(matches) = rule_match(&mut ctx, &format!("{at}.matches[{j}]"), m) else {
                continue;
            };
            if prefix_rewrite(&filters) && !matches!(matches.path, PathMatch::Prefix(_)) {
                ctx.unsupported(
                    &at,
                    "ReplacePrefixMatch needs a PathPrefix match on every match of the rule",
                );
            }
            // A rule without backends (and without a redirect) answers 500 (spec).
            let backends = match (&backends[..], has_redirect) {
                (_, true) => Vec::new(),
                ([], false) => vec![unresolved(&at)],
                (b, false) => b.to_vec(),
            };
            out.push(Rule {
                index: i,
                matches,
                http: Some(HttpAction {
                    backends: backends.clone(),
                    timeout: timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT),
                    balance: Balance::RoundRobin,
                    filters: filters.clone(),
                    max_body: None,
                    limits: None,
                    connect_timeout: None,
                }),
                websocket: Some(WebSocketAction {
                    backends,
                    idle_timeout: None,
                    // The route's timeouts bound the handshake, never the socket.
                    handshake_timeout: timeout,
                    max_lifetime: None,
                    keepalive: None,
                    rebalance: None,
                    capacity: Default::default(),
                    balance: Balance::LeastConnections,
                    allowed_origins: Vec::new(),
                    limits: None,
                    filters: filters.clone(),
                    connect_timeout: None,
                }),
                fallback: false,
                allowed_sources: Vec::new(),
                auth: None,
            });
        }
    }
    Resolved {
        rules: out,
        refs: ctx
            .refs
            .unwrap_or_else(|| Cond::yes("ResolvedRefs", "ResolvedRefs", "references resolved")),
        unsupported: (!ctx.unsupported.is_empty()).then(|| ctx.unsupported.join("; ")),
        backend_tls_used: ctx.backend_tls_used,
    }
}

fn prefix_rewrite(filters: &Filters) -> bool {
    let redirect = filters.redirect.as_ref().and_then(|r| r.path.as_ref());
    [filters.rewrite.as_ref(), redirect]
        .into_iter()
        .flatten()
        .any(|p| matches!(p, PathRewrite::Prefix(_)))
}

fn unresolved(at: &str) -> WeightedBackend {
    WeightedBackend {
        backend: Backend {
            target: BackendTarget::Unresolved,
            protocol: BackendProtocol::Http,
            tls: None,
            field: format!("{at}.backendRefs").into(),
        },
        weight: 1,
    }
}

fn rule_match(ctx: &mut Ctx<'_, '_>, at: &str, m: &HttpRouteMatch) -> Option<RuleMatch> {
    let path = m.path.as_ref();
    let value = path.and_then(|p| p.value.as_deref()).unwrap_or("/");
    if let Err(why) = check_path(value) {
        ctx.unsupported(&format!("{at}.path.value"), why);
        return None;
    }
    let path = match path
        .and_then(|p| p.type_.as_deref())
        .unwrap_or("PathPrefix")
    {
        "PathPrefix" => PathMatch::Prefix(normalize_path_prefix(value).into()),
        "Exact" => PathMatch::Exact(value.into()),
        other => {
            ctx.unsupported(
                &format!("{at}.path.type"),
                format!("{other} is not supported"),
            );
            return None;
        }
    };
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for (k, h) in m.headers.iter().enumerate() {
        let at = format!("{at}.headers[{k}]");
        if h.type_.as_deref().is_some_and(|t| t != "Exact") {
            ctx.unsupported(&at, "only Exact header matches are supported");
            continue;
        }
        let name = HeaderName::try_from(h.name.as_str());
        let value = HeaderValue::try_from(h.value.as_str());
        match (name, value) {
            // Only the first match of a name counts (spec).
            (Ok(name), Ok(value)) if !headers.iter().any(|x| x.name == name) => {
                headers.push(HeaderMatch { name, value })
            }
            (Ok(_), Ok(_)) => {}
            _ => ctx.unsupported(&at, "not a valid header name and value"),
        }
    }
    let mut query: Vec<QueryMatch> = Vec::new();
    for (k, q) in m.query_params.iter().enumerate() {
        if q.type_.as_deref().is_some_and(|t| t != "Exact") {
            let at = format!("{at}.queryParams[{k}]");
            ctx.unsupported(&at, "only Exact query parameter matches are supported");
            continue;
        }
        if !query.iter().any(|x| *x.name == *q.name) {
            query.push(QueryMatch {
                name: q.name.as_str().into(),
                value: q.value.as_str().into(),
            });
        }
    }
    let method = match &m.method {
        None => None,
        Some(text) => match Method::from_bytes(text.as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                ctx.unsupported(&format!("{at}.method"), "not a method");
                return None;
            }
        },
    };
    Some(RuleMatch {
        path,
        headers,
        method,
        query,
    })
}

/// The rule's filters, and whether one is a redirect.
fn filters(ctx: &mut Ctx<'_, '_>, at: &str, rule: &HttpRouteRule) -> (Filters, bool) {
    let mut out = Filters::default();
    for (k, f) in rule.filters.iter().enumerate() {
        let at = format!("{at}.filters[{k}]");
        match f.type_.as_str() {
            "RequestHeaderModifier" => match &f.request_header_modifier {
                Some(m) => out.request_headers = header_changes(ctx, &at, m),
                None => ctx.unsupported(&at, "requestHeaderModifier is missing"),
            },
            "ResponseHeaderModifier" => match &f.response_header_modifier {
                Some(m) => out.response_headers = header_changes(ctx, &at, m),
                None => ctx.unsupported(&at, "responseHeaderModifier is missing"),
            },
            "RequestRedirect" => match &f.request_redirect {
                Some(r) => out.redirect = redirect(ctx, &at, r),
                None => ctx.unsupported(&at, "requestRedirect is missing"),
            },
            "URLRewrite" => match &f.url_rewrite {
                Some(r) if r.hostname.is_some() => {
                    ctx.unsupported(&at, "URLRewrite of the hostname is not supported")
                }
                Some(r) => out.rewrite = r.path.as_ref().and_then(|p| path_modifier(ctx, &at, p)),
                None => ctx.unsupported(&at, "urlRewrite is missing"),
            },
            other => ctx.unsupported(&at, format!("filter {other} is not supported")),
        }
    }
    let redirect = out.redirect.is_some();
    if redirect && !rule.backend_refs.is_empty() {
        ctx.unsupported(at, "a RequestRedirect rule cannot have backendRefs");
    }
    (out, redirect)
}

fn header_changes(ctx: &mut Ctx<'_, '_>, at: &str, m: &HeaderModifier) -> HeaderChanges {
    let name = |ctx: &mut Ctx<'_, '_>, text: &str| match HeaderName::try_from(text) {
        Ok(n) if RESERVED.contains(&n.as_str()) => {
            ctx.unsupported(at, format!("header {text} cannot be changed by a filter"));
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            ctx.unsupported(at, format!("{text:?} is not a header name"));
            None
        }
    };
    let pairs = |ctx: &mut Ctx<'_, '_>, list: &[HeaderValuePair]| {
        let mut out = Vec::new();
        for p in list {
            let value = HeaderValue::try_from(p.value.as_str());
            match (name(ctx, &p.name), value) {
                (Some(n), Ok(v)) => out.push((n, v)),
                (Some(_), Err(_)) => ctx.unsupported(at, format!("bad value for {}", p.name)),
                (None, _) => {}
            }
        }
        out
    };
    let set = pairs(ctx, &m.set);
    let add = pairs(ctx, &m.add);
    let remove = m.remove.iter().filter_map(|r| name(ctx, r)).collect();
    HeaderChanges { set, add, remove }
}

fn redirect(ctx: &mut Ctx<'_, '_>, at: &str, r: &RequestRedirectFilter) -> Option<RequestRedirect> {
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some("http") => Some("http"),
        Some("https") => Some("https"),
        Some(other) => {
            ctx.unsupported(at, format!("scheme {other} is not http or https"));
            return None;
        }
    };
    let hostname = match &r.hostname {
        None => None,
        Some(h) => match Hostname::parse(h) {
            Ok(h) if !h.is_wildcard() => Some(h),
            _ => {
                ctx.unsupported(at, format!("{h:?} is not a hostname"));
                return None;
            }
        },
    };
    let port = match r.port {
        None => None,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                ctx.unsupported(at, "port must be 1..65535");
                return None;
            }
        },
    };
    let status = match r.status_code.unwrap_or(302) {
        code @ (301 | 302 | 303 | 307 | 308) => {
            StatusCode::from_u16(code as u16).unwrap_or(StatusCode::FOUND)
        }
        other => {
            ctx.unsupported(at, format!("statusCode {other} is not a redirect"));
            return None;
        }
    };
    let path = match &r.path {
        None => None,
        Some(p) => Some(path_modifier(ctx, at, p)?),
    };
    Some(RequestRedirect {
        scheme,
        hostname,
        port,
        path,
        status,
    })
}

fn path_modifier(ctx: &mut Ctx<'_, '_>, at: &str, p: &PathModifier) -> Option<PathRewrite> {
    let (rewrite, value) = match p.type_.as_str() {
        "ReplaceFullPath" => (
            PathRewrite::Full as fn(Box<str>) -> PathRewrite,
            p.replace_full_path.as_deref(),
        ),
        "ReplacePrefixMatch" => (
            PathRewrite::Prefix as fn(Box<str>) -> PathRewrite,
            p.replace_prefix_match.as_deref(),
        ),
        other => {
            ctx.unsupported(at, format!("path type {other} is not supported"));
            return None;
        }
    };
    let value = value.unwrap_or("/");
    if let Err(why) = check_path(value) {
        ctx.unsupported(at, why);
        return None;
    }
    Some(rewrite(value.into()))
}

/// The shorter of `timeouts.request` and `backendRequest`, when the rule sets one; zero
/// (no timeout) is a day.
fn timeout(ctx: &mut Ctx<'_, '_>, at: &str, rule: &HttpRouteRule) -> Option<Duration> {
    let t = rule.timeouts.as_ref()?;
    let mut set: Option<Duration> = None;
    for (field, value) in [
        ("request", &t.request),
        ("backendRequest", &t.backend_request),
    ] {
        let Some(value) = value else { continue };
        match parse_duration(value) {
            // Zero disables the timeout: it loses to any that is set.
            Ok(d) => {
                let d = if d.is_zero() { NO_TIMEOUT } else { d };
                set = Some(set.map_or(d, |s| s.min(d)));
            }
            Err(why) => ctx.unsupported(&format!("{at}.timeouts.{field}"), why),
        }
    }
    set
}

fn backends(ctx: &mut Ctx<'_, '_>, at: &str, rule: &HttpRouteRule) -> Vec<WeightedBackend> {
    let mut out = Vec::new();
    for (k, b) in rule.backend_refs.iter().enumerate() {
        let at = format!("{at}.backendRefs[{k}]");
        if !b.filters.is_empty() {
            ctx.unsupported(&at, "backendRefs[].filters are not supported");
        }
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        let (target, protocol, tls) = match backend(ctx, b) {
            Some(resolved) => resolved,
            None => (BackendTarget::Unresolved, BackendProtocol::Http, None),
        };
        out.push(WeightedBackend {
            backend: Backend {
                target,
                protocol,
                tls,
                field: at.into(),
            },
            weight,
        });
    }
    out
}

/// A backendRef resolved to a Service port, its protocol and TLS (GEP-1911: the port's
/// `appProtocol`), or `None` with the reason recorded.
fn backend(
    ctx: &mut Ctx<'_, '_>,
    b: &HttpBackendRef,
) -> Option<(BackendTarget, BackendProtocol, Option<BackendTls>)> {
    let core = matches!(b.group.as_deref(), None | Some(""));
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !core || kind != "Service" {
        let message = format!(
            "backendRef {}: kind {kind} is not supported; use a Service",
            b.name
        );
        ctx.unresolved("InvalidKind", message);
        return None;
    }
    let route_ns = ctx.route.namespace.as_str();
    let namespace = b.namespace.as_deref().unwrap_or(route_ns);
    if namespace != route_ns
        && !granted(
            ctx.world,
            ("HTTPRoute", route_ns),
            ("Service", namespace, &b.name),
        )
    {
        ctx.unresolved(
            "RefNotPermitted",
            format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                b.name
            ),
        );
        return None;
    }
    let key = (namespace.to_string(), b.name.clone());
    let port = b.port.and_then(|p| u16::try_from(p).ok());
    let found = ctx.world.services.get(&key).and_then(|ports| {
        let port = port?;
        ports.iter().find(|p| p.number == port).cloned()
    });
    let Some(ServicePortInfo {
        number: port,
        name: port_name,
        app_protocol,
    }) = found
    else {
        let port = b
            .port
            .map_or_else(|| "no port".to_string(), |p| format!("port {p}"));
        ctx.unresolved(
            "BackendNotFound",
            format!("Service {namespace}/{} with {port} not found", b.name),
        );
        return None;
    };
    // A BackendTLSPolicy for the port makes it TLS, verified; one that is not valid fails
    // closed (500) rather than falling back to an unverified or plain connection.
    let policy = backend_tls_policy(ctx.world, namespace, &b.name, port_name.as_deref());
    let verified = match policy {
        None => None,
        Some((i, policy)) => {
            ctx.backend_tls_used.push(i);
            // The policy's own status says why it cannot be used.
            Some(verified_tls(ctx.world, policy).ok()?)
        }
    };
    let wss = || BackendTls {
        server_name: ServerName::try_from(format!("{}.{namespace}.svc", b.name))
            .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())),
        ca: None,
    };
    let (protocol, tls) = match app_protocol.as_deref() {
        // HTTP/2 with prior knowledge: h2c, or h2 over the policy's TLS.
        Some("kubernetes.io/h2c") => (BackendProtocol::Http2, verified),
        Some("kubernetes.io/wss") => (BackendProtocol::Http, verified.or_else(|| Some(wss()))),
        Some(p) if p.starts_with("kubernetes.io/") && p != "kubernetes.io/ws" => {
            ctx.unresolved(
                "UnsupportedProtocol",
                format!(
                    "Service {namespace}/{} port {port}: appProtocol {p} is not supported",
                    b.name
                ),
            );
            return None;
        }
        _ => (BackendProtocol::Http, verified),
    };
    let target = BackendTarget::Service {
        namespace: (namespace != route_ns).then(|| namespace.to_string()),
        name: b.name.clone(),
        port: ServicePort::Number(port),
    };
    Some((target, protocol, tls))
}

/// The BackendTLSPolicy for a Service port: one naming the port (`sectionName`) wins over one
/// naming the whole Service, then the older, then the name (GEP-713).
fn backend_tls_policy<'w>(
    world: &World<'w>,
    namespace: &str,
    service: &str,
    port_name: Option<&str>,
) -> Option<(usize, &'w Object<BackendTlsPolicySpec>)> {
    let mut found: Vec<(bool, usize, &Object<BackendTlsPolicySpec>)> = Vec::new();
    for (i, p) in world.backend_tls.iter().enumerate() {
        if p.namespace != namespace {
            continue;
        }
        let targets = p
            .spec
            .target_refs
            .iter()
            .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == service);
        for t in targets {
            match t.section_name.as_deref() {
                None => found.push((false, i, p)),
                Some(s) if Some(s) == port_name => found.push((true, i, p)),
                Some(_) => {}
            }
        }
    }
    found.sort_by_key(|(specific, _, p)| {
        (!specific, p.created.is_none(), p.created, p.name.clone())
    });
    found.first().map(|(_, i, p)| (*i, *p))
}

/// Why a BackendTLSPolicy cannot be used, as its status reasons.
enum TlsProblem {
    /// `Accepted: False, Invalid`.
    Invalid(String),
    /// `ResolvedRefs: False, InvalidKind`.
    CaKind(String),
    /// `ResolvedRefs: False, InvalidCACertificateRef`.
    CaMissing(String),
}

/// The verified TLS a BackendTLSPolicy asks for, or why it cannot be had.
fn verified_tls(
    world: &World<'_>,
    policy: &Object<BackendTlsPolicySpec>,
) -> Result<BackendTls, TlsProblem> {
    let v = &policy.spec.validation;
    let server_name = Hostname::parse(&v.hostname)
        .ok()
        .filter(|h| !h.is_wildcard())
        .and_then(|h| ServerName::try_from(h.as_str().to_string()).ok())
        .ok_or_else(|| {
            let why = format!("validation.hostname {:?} is not a hostname", v.hostname);
            TlsProblem::Invalid(why)
        })?;
    if v.well_known_ca_certificates.is_some() {
        let why = "wellKnownCACertificates is not supported; name a ConfigMap in caCertificateRefs";
        return Err(TlsProblem::Invalid(why.into()));
    }
    let Some(ca) = v.ca_certificate_refs.first() else {
        let why = "validation.caCertificateRefs is empty";
        return Err(TlsProblem::Invalid(why.into()));
    };
    if !ca.group.is_empty() || ca.kind != "ConfigMap" {
        let why = format!(
            "caCertificateRefs[0]: kind {} is not supported; use a ConfigMap",
            ca.kind
        );
        return Err(TlsProblem::CaKind(why));
    }
    if !world
        .config_maps
        .contains(&(policy.namespace.clone(), ca.name.clone()))
    {
        let why = format!(
            "caCertificateRefs[0]: ConfigMap {}/{} not found or without ca.crt",
            policy.namespace, ca.name
        );
        return Err(TlsProblem::CaMissing(why));
    }
    Ok(BackendTls {
        server_name,
        ca: Some(CaRef::ConfigMap {
            namespace: policy.namespace.clone(),
            name: ca.name.clone(),
        }),
    })
}

/// What a BackendTLSPolicy in use says at each Gateway: `Accepted` and `ResolvedRefs`.
pub(super) fn backend_tls_conditions(
    world: &World<'_>,
    policy: &Object<BackendTlsPolicySpec>,
) -> Vec<Cond> {
    let resolved = || Cond::yes("ResolvedRefs", "ResolvedRefs", "references resolved");
    let no_ca = |why: &String| Cond::no("Accepted", "NoValidCACertificate", why.clone());
    match verified_tls(world, policy) {
        Ok(_) => vec![
            Cond::yes("Accepted", "Accepted", "TLS to the backend is verified"),
            resolved(),
        ],
        Err(TlsProblem::Invalid(why)) => vec![Cond::no("Accepted", "Invalid", why), resolved()],
        Err(TlsProblem::CaKind(why)) => {
            vec![no_ca(&why), Cond::no("ResolvedRefs", "InvalidKind", why)]
        }
        Err(TlsProblem::CaMissing(why)) => vec![
            no_ca(&why),
            Cond::no("ResolvedRefs", "InvalidCACertificateRef", why),
        ],
    }
}
