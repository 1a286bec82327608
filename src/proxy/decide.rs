//! The pure half of request handling: (host, path, method, upgrade?, listener) plus the table
//! give a [`Decision`]. No I/O happens here, so every branch is unit-tested; the later phases
//! (`admit`, `connect`, `forward`, `upgrade`) carry decisions out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::answer::ClientFault;
use crate::model::{
    Cidr, ClientLimits, Keepalive, Lifetime, OriginPattern, PathRewrite, RequestRedirect,
};
use crate::table::{
    BackendSet, CompiledRoute, CompiledRule, HeaderFilters, HostBuf, HostEntry, HostRole,
    RouteTable, RuleAuth, RuleInput, normalize_host,
};

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener<'a> {
    /// The plain-HTTP listener.
    Http,
    /// The TLS listener, with the SNI name the client sent (normalized), if any.
    Https {
        /// SNI from the ClientHello.
        sni: Option<&'a str>,
    },
}

/// The facts about a request that routing depends on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The authority: the request target's, else the Host header.
    pub host: Option<&'a str>,
    /// Path of the request target.
    pub path: &'a str,
    /// Query string, without `?`.
    pub query: Option<&'a str>,
    /// Method.
    pub method: &'a Method,
    /// Headers, for rules that match on them.
    pub headers: &'a HeaderMap,
    /// Whether this is a WebSocket upgrade (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT).
    pub upgrade: bool,
    /// The target cannot be trusted (two Hosts, a contradicting `:authority`, a path that
    /// does not normalise, an upgrade with a body): 400 before anything else.
    pub malformed: bool,
    /// Where it arrived.
    pub listener: Listener<'a>,
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Refuse the request, with the route it matched if any.
    Reject(ClientFault, Option<Arc<CompiledRoute>>),
    /// 301 (GET/HEAD) or 308 (other methods) to `location`.
    Redirect {
        /// 301 or 308.
        status: StatusCode,
        /// Absolute URL.
        location: String,
        /// Why: to https, or to the route's main host.
        kind: RedirectKind,
        /// Route, for logs, metrics and HSTS.
        route: Arc<CompiledRoute>,
    },
    /// 503 with the route's maintenance page.
    Maintenance {
        /// HTML body.
        body: Bytes,
        /// Route, for logs, metrics and HSTS.
        route: Arc<CompiledRoute>,
    },
    /// Admit and forward a normal request.
    Forward(ForwardPlan),
    /// Admit and relay a WebSocket upgrade.
    Upgrade(UpgradePlan),
}

/// How to admit and forward one normal request.
#[derive(Debug, Clone)]
pub struct ForwardPlan {
    /// Where to.
    pub backend: Arc<BackendSet>,
    /// Time allowed for the response headers.
    pub timeout: Duration,
    /// Who may send it and how it reaches the backend; `None` (most rules): anyone, as sent.
    pub access: Option<Box<Access>>,
    /// Route, for logs, metrics and HSTS.
    pub route: Arc<CompiledRoute>,
}

/// What the admit phase checks before any backend is dialled, and what the backend sees.
/// Boxed in the plans: most rules set none of it, and the plans are moved through every
/// request's futures.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Largest body accepted (413 beyond).
    pub max_body: Option<u64>,
    /// Client networks allowed (`None` allows any).
    pub allowed_sources: Option<Arc<[Cidr]>>,
    /// Per-client limits, with the rule they count under.
    pub limits: Option<(ClientLimits, usize)>,
    /// The rule's `maxConnections` (all clients), with the rule it counts under.
    pub max_connections: Option<(u32, usize)>,
    /// The path (without query) the backend gets instead of the request's, when the rule
    /// rewrites it.
    pub rewritten_path: Option<String>,
    /// Header changes on the way to the backend and back.
    pub headers: Option<Arc<HeaderFilters>>,
    /// The rule's authentication.
    pub auth: Option<Arc<RuleAuth>>,
}

/// How to admit and relay one WebSocket upgrade.
#[derive(Debug, Clone)]
pub struct UpgradePlan {
    /// Where to.
    pub backend: Arc<BackendSet>,
    /// Close the relay after this long without traffic.
    pub idle_timeout: Option<Duration>,
    /// Time the backend has to answer the handshake (`None`: the proxy's default).
    pub handshake_timeout: Option<Duration>,
    /// Close the socket this old.
    pub max_lifetime: Option<Lifetime>,
    /// Ping silent peers, close dead ones.
    pub keepalive: Option<Keepalive>,
    /// Origins allowed to open a socket (empty allows any), checked by `admit`.
    pub allowed_origins: Arc<[OriginPattern]>,
    /// Sources, limits and path, as for normal requests.
    pub access: Option<Box<Access>>,
    /// Route, for logs, metrics and HSTS.
    pub route: Arc<CompiledRoute>,
}

impl Decision {
    /// The route the decision was made for, if a route matched.
    pub fn route(&self) -> Option<&Arc<CompiledRoute>> {
        match self {
            Decision::Reject(_, route) => route.as_ref(),
            Decision::Redirect { route, .. }
            | Decision::Maintenance { route, .. }
            | Decision::Forward(ForwardPlan { route, .. })
            | Decision::Upgrade(UpgradePlan { route, .. }) => Some(route),
        }
    }
}

/// Why a request is redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// Plain HTTP to https on the same host.
    Https,
    /// A `redirectHostnames` host to the route's first hostname.
    Host,
    /// A rule's redirect filter (Gateway API `RequestRedirect`).
    Rule,
}

impl RedirectKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Https => "https",
            RedirectKind::Host => "host",
            RedirectKind::Rule => "rule",
        }
    }
}

/// Settings of the decision that come from flags rather than routes.
#[derive(Debug, Clone, Copy)]
pub struct DecideConfig {
    /// Port in `https://` redirects from the HTTP listener (omitted when 443).
    pub https_redirect_port: u16,
}

/// Decides what to do with a request. Pure: reads the table, allocates only for redirects.
pub fn decide(table: &RouteTable, req: &RequestFacts<'_>, cfg: &DecideConfig) -> Decision {
    if req.malformed {
        return Decision::Reject(ClientFault::BadRequest, None);
    }
    if req.method == Method::CONNECT && !req.upgrade {
        return Decision::Reject(ClientFault::MethodNotAllowed, None);
    }
    let raw_host = req.host.unwrap_or("");
    let mut buf = HostBuf::default();
    let Some(host) = normalize_host(raw_host, &mut buf) else {
        return Decision::Reject(ClientFault::BadRequest, None);
    };
    let Some(entry) = table.lookup(host) else {
        return Decision::Reject(ClientFault::NotFound, None);
    };
    if let Some(decision) = by_listener(table, entry, host, req, cfg) {
        return decision;
    }
    let route = &entry.route;
    if let Some(body) = &route.maintenance {
        return Decision::Maintenance {
            body: body.clone(),
            route: route.clone(),
        };
    }
    let input = RuleInput {
        path: req.path,
        method: req.method,
        headers: req.headers,
        query: req.query,
    };
    match route.rule_for(&input) {
        Some(rule) => match &rule.redirect {
            Some(to) => rule_redirect(rule, to, host, route, req),
            None => by_rule(rule, route, req),
        },
        None => Decision::Reject(ClientFault::NotFound, Some(route.clone())),
    }
}

/// A rule's redirect (Gateway API `RequestRedirect`): what the filter leaves unset keeps the
/// request's. Without a port, a changed scheme goes to its well-known port and an unchanged
/// one keeps the port the client used; a well-known port is left out of the URL.
fn rule_redirect(
    rule: &CompiledRule,
    to: &RequestRedirect,
    host: &str,
    route: &Arc<CompiledRoute>,
    req: &RequestFacts<'_>,
) -> Decision {
    let scheme = to.scheme.unwrap_or(match req.listener {
        Listener::Http => "http",
        Listener::Https { .. } => "https",
    });
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port_text;
    let port = match (to.port, to.scheme) {
        (Some(p), _) if p == default_port => None,
        (Some(p), _) => {
            port_text = p.to_string();
            Some(port_text.as_str())
        }
        (None, Some(_)) => None,
        (None, None) => client_port(req.host).filter(|p| *p != default_port.to_string()),
    };
    let host = to.hostname.as_ref().map_or(host, |h| h.as_str());
    let path = match &to.path {
        None => req.path.to_string(),
        Some(rewrite) => rewritten(rule, rewrite, req.path),
    };
    Decision::Redirect {
        status: to.status,
        location: location(scheme, host, port, &path, req.query),
        kind: RedirectKind::Rule,
        route: route.clone(),
    }
}

/// The port in a Host value (`host:port`, `[v6]:port`), if it has one.
fn client_port(host: Option<&str>) -> Option<&str> {
    host.and_then(|h| h.rsplit_once(':'))
        .filter(|(h, _)| !h.contains(':') || h.ends_with(']'))
        .map(|(_, p)| p)
}

/// What the listener alone settles: redirects to https or to the route's main host, and
/// requests that reached the TLS listener for a route they may not use there.
fn by_listener(
    table: &RouteTable,
    entry: &HostEntry,
    host: &str,
    req: &RequestFacts<'_>,
    cfg: &DecideConfig,
) -> Option<Decision> {
    let route = &entry.route;
    let redirect = |scheme: &str, host: &str, port: Option<&str>| Decision::Redirect {
        status: if req.method == Method::GET || req.method == Method::HEAD {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::PERMANENT_REDIRECT
        },
        location: location(scheme, host, port, req.path, req.query),
        kind: if entry.role == HostRole::Redirect {
            RedirectKind::Host
        } else {
            RedirectKind::Https
        },
        route: route.clone(),
    };
    // The port the client used, kept on same-scheme redirects.
    let client_port = client_port(req.host);
    match req.listener {
        Listener::Http => {
            let https_port_text;
            let https_port = if cfg.https_redirect_port == 443 {
                None
            } else {
                https_port_text = cfg.https_redirect_port.to_string();
                Some(https_port_text.as_str())
            };
            let tls_redirect = route.tls.as_ref().is_some_and(|t| t.http_redirect);
            if route
                .tls
                .as_ref()
                .is_some_and(|t| t.https_only && !t.http_redirect)
            {
                return Some(Decision::Reject(ClientFault::NotFound, Some(route.clone())));
            }
            match (entry.role, tls_redirect) {
                (HostRole::Redirect, true) => {
                    Some(redirect("https", &route.canonical_host, https_port))
                }
                (HostRole::Redirect, false) => {
                    Some(redirect("http", &route.canonical_host, client_port))
                }
                (HostRole::Serve, true) => Some(redirect("https", host, https_port)),
                (HostRole::Serve, false) => None,
            }
        }
        Listener::Https { sni } => {
            let misdirected = || {
                Some(Decision::Reject(
                    ClientFault::Misdirected,
                    Some(route.clone()),
                ))
            };
            if route.tls.is_none() {
                return misdirected();
            }
            // A connection whose certificate was chosen for one route must not be used to
            // reach another (RFC 9110 §15.5.20).
            if let Some(sni) = sni {
                let same = table
                    .lookup(sni)
                    .is_some_and(|e| Arc::ptr_eq(&e.route, route));
                if !same {
                    return misdirected();
                }
            }
            (entry.role == HostRole::Redirect)
                .then(|| redirect("https", &route.canonical_host, client_port))
        }
    }
}

/// The matched rule's answer: its websocket or http backend, by whether this is an upgrade.
/// A new request or socket picks its backend from the rule's split here.
fn by_rule(rule: &CompiledRule, route: &Arc<CompiledRoute>, req: &RequestFacts<'_>) -> Decision {
    let access = |limits: Option<ClientLimits>,
                  rewrite: Option<&PathRewrite>,
                  max_body: Option<u64>,
                  headers: Option<&Arc<HeaderFilters>>,
                  max_connections: Option<u32>| {
        let none = rule.allowed_sources.is_none()
            && limits.is_none()
            && rewrite.is_none()
            && headers.is_none()
            && max_connections.is_none()
            && rule.auth.is_none();
        (!none || max_body.is_some()).then(|| {
            Box::new(Access {
                max_body,
                allowed_sources: rule.allowed_sources.clone(),
                limits: limits.map(|l| (l, rule.index)),
                max_connections: max_connections.map(|m| (m, rule.index)),
                rewritten_path: rewrite.map(|to| rewritten(rule, to, req.path)),
                headers: headers.cloned(),
                auth: rule.auth.clone(),
            })
        })
    };
    if req.upgrade {
        match (&rule.websocket, &rule.http) {
            (Some(ws), _) => Decision::Upgrade(UpgradePlan {
                backend: ws.backends.pick().clone(),
                idle_timeout: ws.idle_timeout,
                handshake_timeout: ws.handshake_timeout,
                max_lifetime: ws.max_lifetime,
                keepalive: ws.keepalive,
                allowed_origins: ws.allowed_origins.clone(),
                access: access(
                    ws.limits,
                    ws.rewrite.as_ref(),
                    None,
                    ws.headers.as_ref(),
                    ws.max_connections,
                ),
                route: route.clone(),
            }),
            // A rule with only `http` passes upgrades through to the http backend.
            (None, Some(http)) => Decision::Upgrade(UpgradePlan {
                backend: http.backends.pick().clone(),
                idle_timeout: None,
                handshake_timeout: None,
                max_lifetime: None,
                keepalive: None,
                allowed_origins: Arc::default(),
                access: access(
                    None,
                    http.rewrite.as_ref(),
                    None,
                    http.headers.as_ref(),
                    None,
                ),
                route: route.clone(),
            }),
            (None, None) => Decision::Reject(ClientFault::NotFound, Some(route.clone())),
        }
    } else {
        match &rule.http {
            Some(http) => Decision::Forward(ForwardPlan {
                backend: http.backends.pick().clone(),
                timeout: http.timeout,
                access: access(
                    http.limits,
                    http.rewrite.as_ref(),
                    http.max_body,
                    http.headers.as_ref(),
                    None,
                ),
                route: route.clone(),
            }),
            None => Decision::Reject(ClientFault::UpgradeRequired, Some(route.clone())),
        }
    }
}

/// The path a rule's rewrite gives `path`.
fn rewritten(rule: &CompiledRule, rewrite: &PathRewrite, path: &str) -> String {
    match rewrite {
        PathRewrite::Full(to) => to.to_string(),
        PathRewrite::Prefix(to) => rewrite_prefix(rule, to, path),
    }
}

/// `path` with the rule's matched prefix replaced by `to` (Gateway API's ReplacePrefixMatch,
/// ingress-nginx's `rewrite-target` for a plain prefix): `/app` → `/` turns `/app/x` into `/x`
/// and `/app` into `/`; the rest keeps its segments, with no doubled `/`.
fn rewrite_prefix(rule: &CompiledRule, to: &str, path: &str) -> String {
    let rest = match (rule.exact, &*rule.prefix) {
        (true, _) => "",
        (false, "/") => path,
        (false, prefix) => path.get(prefix.len()..).unwrap_or(""),
    };
    if rest.is_empty() || rest == "/" && to.ends_with('/') {
        return to.to_string();
    }
    let mut out = String::with_capacity(to.len() + rest.len());
    out.push_str(to.trim_end_matches('/'));
    out.push_str(rest);
    out
}

fn location(
    scheme: &str,
    host: &str,
    port: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> String {
    let mut url = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    if let Some(port) = port {
        url.push(':');
        url.push_str(port);
    }
    url.push_str(if path.starts_with('/') { path } else { "/" });
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests;
