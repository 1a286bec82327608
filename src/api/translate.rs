//! The one translate step of the `WebSocketRoute` API into the route model: every field is
//! parsed once, here, and every problem is returned (not just the first) with its field path,
//! so `wsgate check` and status conditions can tell the user exactly what to fix. Problems
//! that involve several routes (a hostname claimed twice) are found by the table compiler,
//! which sees all routes at once.

use std::net::SocketAddr;

use bytes::Bytes;
use http::HeaderName;
use kube::ResourceExt;
use rustls_pki_types::ServerName;

use super::{
    Backend, BackendProtocol, ClientLimits, HttpTarget, LoadBalancing, LoadBalancingPolicy,
    WebSocketRoute, WebSocketRouteSpec, WebSocketTarget, parse_duration,
};
use crate::model::{
    self, Balance, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAINTENANCE_BODY, FieldError, Filters, HashKey,
    Hostname, ObjectKind, OriginPattern, PathMatch, RouteMeta, RuleMatch, WeightedBackend,
    check_dns_label, check_object_name, check_path, normalize_path_prefix,
};

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
    RouteMeta {
        kind: ObjectKind::WebSocketRoute,
        namespace: route.namespace().unwrap_or_else(|| "default".into()),
        name: route.name_any(),
        generation: route.metadata.generation,
        created: route
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond()),
    }
}

/// Translates a route object into the model, or says everything wrong with it.
pub fn translate(route: &WebSocketRoute) -> model::Translated {
    let meta = route_meta(route);
    match translate_spec(&meta.namespace, &route.spec) {
        Ok(parts) => Ok(parts.into_route(meta)),
        Err(problems) => Err(Box::new(model::Rejected { meta, problems })),
    }
}

/// Checks a route spec on its own; an empty result means it translates.
pub fn validate(spec: &WebSocketRouteSpec) -> Vec<FieldError> {
    translate_spec("default", spec).err().unwrap_or_default()
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
            redirect_hostnames: self.redirect_hostnames,
            tls: self.tls,
            maintenance: self.maintenance,
            rules: self.rules,
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
    let tls = spec.tls.as_ref().map(|tls| {
        if let Err(why) = check_object_name(&tls.secret_name) {
            p.add("spec.tls.secretName", why);
        }
        model::RouteTls {
            secret: tls.secret_name.clone(),
            http_redirect: tls.redirects_http(),
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
    });
    if spec.rules.is_empty() {
        p.add("spec.rules", "at least one rule is required");
    }
    let mut prefixes: Vec<&str> = Vec::new();
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = |field: &str| format!("spec.rules[{i}].{field}");
        let prefix = rule.prefix();
        match check_path(prefix) {
            Err(why) => p.add(at("pathPrefix"), why),
            Ok(()) => {
                let norm = normalize_path_prefix(prefix);
                if prefixes.contains(&norm) {
                    p.add(
                        at("pathPrefix"),
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
        let http = rule
            .http
            .as_ref()
            .map(|http| http_action(&mut p, namespace, i, http));
        let websocket = rule
            .websocket
            .as_ref()
            .map(|ws| websocket_action(&mut p, namespace, i, ws));
        rules.push(model::Rule {
            index: i,
            matches: RuleMatch {
                path: PathMatch::Prefix(normalize_path_prefix(prefix).into()),
                headers: Vec::new(),
                method: None,
            },
            http: http.flatten(),
            websocket: websocket.flatten(),
        });
    }
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

fn http_action(
    p: &mut Problems,
    namespace: &str,
    rule: usize,
    http: &HttpTarget,
) -> Option<model::HttpAction> {
    let at = |field: &str| format!("spec.rules[{rule}].http.{field}");
    let backend = backend(p, namespace, rule, "http", &http.backend);
    let balance = load_balancing(p, rule, "http", http.load_balancing.as_ref());
    let timeout = match &http.timeout {
        None => Some(DEFAULT_HTTP_TIMEOUT),
        Some(t) => match parse_duration(t) {
            Err(e) => {
                p.add(at("timeout"), e.to_string());
                None
            }
            Ok(d) if d.is_zero() => {
                p.add(at("timeout"), "must be greater than 0");
                None
            }
            Ok(d) => Some(d),
        },
    };
    Some(model::HttpAction {
        backends: vec![WeightedBackend {
            backend: backend?,
            weight: 1,
        }],
        timeout: timeout?,
        balance: balance?.unwrap_or(Balance::RoundRobin),
        filters: Filters::default(),
    })
}

fn websocket_action(
    p: &mut Problems,
    namespace: &str,
    rule: usize,
    ws: &WebSocketTarget,
) -> Option<model::WebSocketAction> {
    let at = |field: &str| format!("spec.rules[{rule}].websocket.{field}");
    let backend = backend(p, namespace, rule, "websocket", &ws.backend);
    let balance = load_balancing(p, rule, "websocket", ws.load_balancing.as_ref());
    let mut allowed_origins = Vec::with_capacity(ws.allowed_origins.len());
    for (j, origin) in ws.allowed_origins.iter().enumerate() {
        match OriginPattern::parse(origin) {
            Ok(pattern) => allowed_origins.push(pattern),
            Err(why) => p.add(at(&format!("allowedOrigins[{j}]")), why),
        }
    }
    let limits = match &ws.limits {
        None => Some(None),
        Some(limits) => client_limits(p, rule, limits).map(Some),
    };
    let idle_timeout = match &ws.idle_timeout {
        None => Some(None),
        Some(t) => match parse_duration(t) {
            Err(e) => {
                p.add(at("idleTimeout"), e.to_string());
                None
            }
            Ok(d) if d.is_zero() => {
                p.add(
                    at("idleTimeout"),
                    "must be greater than 0 (leave it out to never time out)",
                );
                None
            }
            Ok(d) => Some(Some(d)),
        },
    };
    Some(model::WebSocketAction {
        backends: vec![WeightedBackend {
            backend: backend?,
            weight: 1,
        }],
        idle_timeout: idle_timeout?,
        balance: balance?.unwrap_or(Balance::LeastConnections),
        allowed_origins,
        limits: limits?,
        filters: Filters::default(),
    })
}

fn backend(
    p: &mut Problems,
    namespace: &str,
    rule: usize,
    kind: &str,
    b: &Backend,
) -> Option<model::Backend> {
    let at = |field: &str| format!("spec.rules[{rule}].{kind}.backend{field}");
    let before = p.0.len();
    let protocol = match b.protocol {
        Some(BackendProtocol::H2c) => model::BackendProtocol::H2c,
        Some(BackendProtocol::Http) | None => model::BackendProtocol::Http,
    };
    let mut sni = None;
    if let Some(tls) = &b.tls {
        if protocol == model::BackendProtocol::H2c {
            p.add(
                at(".tls"),
                "h2c is cleartext HTTP/2; drop tls or protocol: h2c",
            );
        }
        if let Some(name) = &tls.sni {
            match Hostname::parse(name) {
                Err(why) => p.add(at(".tls.sni"), why),
                Ok(h) if h.is_wildcard() => p.add(
                    at(".tls.sni"),
                    format!("{name:?}: SNI must be an exact name"),
                ),
                Ok(_) => sni = ServerName::try_from(name.clone()).ok(),
            }
        }
        if let Some(ca) = &tls.ca_secret_name {
            if let Err(why) = check_object_name(ca) {
                p.add(at(".tls.caSecretName"), why);
            }
        }
    }
    let target = match (&b.service, &b.address) {
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
            let port = match b.port {
                None => {
                    p.add(at(".port"), "required with service");
                    None
                }
                Some(port) => match u16::try_from(port) {
                    Ok(port) if port != 0 => Some(port),
                    _ => {
                        p.add(at(".port"), "must be 1..65535");
                        None
                    }
                },
            };
            port.map(|port| model::BackendTarget::Service {
                name: svc.clone(),
                port,
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
    };
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
        }),
        ca_secret: tls.ca_secret_name.clone(),
    });
    Some(model::Backend {
        target,
        protocol,
        tls,
        field: at("").into(),
    })
}

/// The balancing policy; `Some(None)` when the rule keeps its default.
fn load_balancing(
    p: &mut Problems,
    rule: usize,
    kind: &str,
    lb: Option<&LoadBalancing>,
) -> Option<Option<Balance>> {
    let Some(lb) = lb else { return Some(None) };
    let at = |field: &str| format!("spec.rules[{rule}].{kind}.loadBalancing.{field}");
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
                if c.is_empty() || !c.bytes().all(is_token_byte) {
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

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn client_limits(
    p: &mut Problems,
    rule: usize,
    limits: &ClientLimits,
) -> Option<model::ClientLimits> {
    let at = |field: &str| format!("spec.rules[{rule}].websocket.limits{field}");
    let before = p.0.len();
    let fields = [
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
    if limits.max_connections_per_client.is_none()
        && limits.upgrades_per_second_per_client.is_none()
    {
        p.add(
            at(""),
            "set maxConnectionsPerClient or upgradesPerSecondPerClient (or both)",
        );
    }
    if limits.burst.is_some() && limits.upgrades_per_second_per_client.is_none() {
        p.add(at(".burst"), "goes with upgradesPerSecondPerClient");
    }
    if p.0.len() != before {
        return None;
    }
    let rate = limits.upgrades_per_second_per_client;
    Some(model::ClientLimits {
        max_connections: limits.max_connections_per_client,
        rate,
        // A bucket as large as the rate unless told otherwise: one second's worth at once.
        burst: limits.burst.or(rate).unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HttpTarget, RouteTls, Rule, WebSocketTarget};

    fn addr(a: &str) -> Backend {
        Backend {
            address: Some(a.into()),
            ..Default::default()
        }
    }

    fn valid() -> WebSocketRouteSpec {
        WebSocketRouteSpec {
            hostnames: vec!["chat.example.com".into()],
            redirect_hostnames: vec!["www.chat.example.com".into()],
            tls: Some(RouteTls {
                secret_name: "chat-tls".into(),
                ..Default::default()
            }),
            rules: vec![Rule {
                path_prefix: None,
                http: Some(HttpTarget {
                    backend: addr("127.0.0.1:8080"),
                    timeout: Some("30s".into()),
                    ..Default::default()
                }),
                websocket: Some(WebSocketTarget {
                    backend: Backend {
                        service: Some("chat".into()),
                        port: Some(5000),
                        ..Default::default()
                    },
                    idle_timeout: Some("24h".into()),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    fn paths(spec: &WebSocketRouteSpec) -> Vec<String> {
        validate(spec).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_valid_spec_has_no_problems() {
        assert_eq!(validate(&valid()), vec![]);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut spec = valid();
        spec.hostnames.push("Bad_Host".into());
        spec.rules.push(Rule {
            path_prefix: Some("nope".into()),
            http: None,
            websocket: Some(WebSocketTarget {
                backend: Backend {
                    service: Some("chat".into()),
                    port: Some(70000),
                    ..Default::default()
                },
                idle_timeout: Some("forever".into()),
                ..Default::default()
            }),
        });
        if let Some(h) = spec.rules[0].http.as_mut() {
            h.timeout = Some("10".into());
        }
        let errors = validate(&spec);
        let got: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "spec.hostnames[1]",
                "spec.rules[0].http.timeout",
                "spec.rules[1].pathPrefix",
                "spec.rules[1].websocket.backend.port",
                "spec.rules[1].websocket.idleTimeout",
            ]
        );
        assert_eq!(
            errors[3].to_string(),
            "spec.rules[1].websocket.backend.port: must be 1..65535"
        );
    }

    #[test]
    fn empty_lists_and_empty_rules_are_refused() {
        let mut spec = valid();
        spec.hostnames.clear();
        spec.redirect_hostnames.clear();
        spec.rules = vec![Rule::default()];
        assert_eq!(paths(&spec), vec!["spec.hostnames", "spec.rules[0]"]);
        spec.rules.clear();
        assert_eq!(paths(&spec), vec!["spec.hostnames", "spec.rules"]);
    }

    #[test]
    fn duplicate_hostnames_and_prefixes_in_one_route() {
        let mut spec = valid();
        spec.redirect_hostnames = vec!["chat.example.com".into()];
        let mut second = spec.rules[0].clone();
        second.path_prefix = Some("//".into());
        spec.rules.push(second);
        let mut third = spec.rules[0].clone();
        third.path_prefix = Some("/".into());
        spec.rules.push(third);
        assert_eq!(
            paths(&spec),
            vec![
                "spec.redirectHostnames[0]",
                "spec.rules[1].pathPrefix",
                "spec.rules[2].pathPrefix"
            ]
        );
    }

    #[test]
    fn backends() {
        let mut spec = valid();
        spec.rules[0].http = Some(HttpTarget {
            backend: Backend {
                service: Some("web".into()),
                port: None,
                address: Some("127.0.0.1:1".into()),
                ..Default::default()
            },
            timeout: Some("0s".into()),
            ..Default::default()
        });
        spec.rules[0].websocket = Some(WebSocketTarget {
            backend: addr("localhost:80"),
            idle_timeout: None,
            ..Default::default()
        });
        assert_eq!(
            paths(&spec),
            vec![
                "spec.rules[0].http.backend",
                "spec.rules[0].http.timeout",
                "spec.rules[0].websocket.backend.address"
            ]
        );
        spec.rules[0].http = None;
        spec.rules[0].websocket = Some(WebSocketTarget {
            backend: Backend::default(),
            idle_timeout: None,
            ..Default::default()
        });
        assert_eq!(paths(&spec), vec!["spec.rules[0].websocket.backend"]);
    }

    #[test]
    fn wildcard_first_hostname_cannot_be_a_redirect_target() {
        let mut spec = valid();
        spec.hostnames = vec!["*.example.com".into()];
        assert_eq!(paths(&spec), vec!["spec.hostnames[0]"]);
    }

    #[test]
    fn load_balancing() {
        use crate::api::{HashOn, LoadBalancing, LoadBalancingPolicy::*};
        let mut spec = valid();
        let lb = |policy, hash_on| {
            Some(LoadBalancing {
                policy: Some(policy),
                hash_on,
            })
        };
        let on = |header: Option<&str>, cookie: Option<&str>, ip: Option<bool>| {
            Some(HashOn {
                header: header.map(Into::into),
                cookie: cookie.map(Into::into),
                source_ip: ip,
            })
        };
        let cases = [
            (lb(RoundRobin, None), vec![]),
            (lb(LeastConnections, None), vec![]),
            (lb(ConsistentHash, on(Some("x-user"), None, None)), vec![]),
            (lb(ConsistentHash, on(None, Some("session"), None)), vec![]),
            (lb(ConsistentHash, on(None, None, Some(true))), vec![]),
            (lb(ConsistentHash, None), vec!["hashOn"]),
            (lb(RoundRobin, on(None, None, Some(true))), vec!["hashOn"]),
            (
                lb(ConsistentHash, on(None, None, Some(false))),
                vec!["hashOn"],
            ),
            (
                lb(ConsistentHash, on(Some("x"), Some("y"), None)),
                vec!["hashOn"],
            ),
            (
                lb(ConsistentHash, on(Some("bad header"), None, None)),
                vec!["hashOn.header"],
            ),
            (
                lb(ConsistentHash, on(None, Some("a;b"), None)),
                vec!["hashOn.cookie"],
            ),
        ];
        for (lb, want) in cases {
            if let Some(ws) = spec.rules[0].websocket.as_mut() {
                ws.load_balancing = lb.clone();
            }
            let want: Vec<String> = want
                .iter()
                .map(|f| format!("spec.rules[0].websocket.loadBalancing.{f}"))
                .collect();
            assert_eq!(paths(&spec), want, "{lb:?}");
        }
    }

    #[test]
    fn limits_hsts_and_backend_tls() {
        use crate::api::{BackendTls, ClientLimits, Hsts};
        let mut spec = valid();
        if let Some(ws) = spec.rules[0].websocket.as_mut() {
            ws.allowed_origins = vec!["https://chat.example.com".into(), "nope".into()];
            ws.limits = Some(ClientLimits {
                max_connections_per_client: Some(0),
                upgrades_per_second_per_client: None,
                burst: Some(3),
            });
            ws.backend.tls = Some(BackendTls {
                sni: Some("*.svc".into()),
                ca_secret_name: Some("Bad".into()),
            });
            ws.backend.protocol = Some(BackendProtocol::H2c);
        }
        if let Some(tls) = spec.tls.as_mut() {
            tls.hsts = Some(Hsts {
                max_age: 600,
                include_sub_domains: Some(true),
                preload: Some(true),
            });
        }
        assert_eq!(
            paths(&spec),
            vec![
                "spec.tls.hsts.preload",
                "spec.rules[0].websocket.backend.tls",
                "spec.rules[0].websocket.backend.tls.sni",
                "spec.rules[0].websocket.backend.tls.caSecretName",
                "spec.rules[0].websocket.allowedOrigins[1]",
                "spec.rules[0].websocket.limits.maxConnectionsPerClient",
                "spec.rules[0].websocket.limits.burst",
            ]
        );
        if let Some(ws) = spec.rules[0].websocket.as_mut() {
            ws.limits = Some(ClientLimits::default());
        }
        assert!(paths(&spec).contains(&"spec.rules[0].websocket.limits".to_string()));
    }

    fn translated(spec: WebSocketRouteSpec) -> model::Route {
        let route = WebSocketRoute::new("chat", spec);
        translate(&route).unwrap_or_else(|r| panic!("{:?}", r.problems))
    }

    #[test]
    fn every_field_is_parsed_into_the_model() {
        use crate::api::{HashOn, Hsts, Maintenance};
        let mut spec = valid();
        spec.maintenance = Some(Maintenance {
            enabled: true,
            body: None,
        });
        if let Some(tls) = spec.tls.as_mut() {
            tls.hsts = Some(Hsts {
                max_age: 600,
                include_sub_domains: Some(true),
                preload: None,
            });
        }
        if let Some(ws) = spec.rules[0].websocket.as_mut() {
            ws.allowed_origins = vec!["https://*.example.com".into()];
            ws.load_balancing = Some(LoadBalancing {
                policy: Some(LoadBalancingPolicy::ConsistentHash),
                hash_on: Some(HashOn {
                    cookie: Some("room".into()),
                    ..Default::default()
                }),
            });
            ws.limits = Some(ClientLimits {
                upgrades_per_second_per_client: Some(4),
                ..Default::default()
            });
            ws.backend.tls = Some(Default::default());
        }
        let route = translated(spec);
        assert_eq!(route.meta.namespace, "default");
        assert_eq!(route.hostnames[0].as_str(), "chat.example.com");
        assert_eq!(route.redirect_hostnames[0].as_str(), "www.chat.example.com");
        let tls = route.tls.as_ref().unwrap();
        assert_eq!(
            tls.hsts,
            Some(model::Hsts {
                max_age: 600,
                include_sub_domains: true,
                preload: false
            })
        );
        assert!(tls.http_redirect);
        assert_eq!(
            route.maintenance.as_deref(),
            Some(DEFAULT_MAINTENANCE_BODY.as_bytes())
        );
        let rule = &route.rules[0];
        assert_eq!(rule.matches.path, PathMatch::Prefix("/".into()));
        let http = rule.http.as_ref().unwrap();
        assert_eq!(http.timeout, std::time::Duration::from_secs(30));
        assert_eq!(http.balance, Balance::RoundRobin);
        let ws = rule.websocket.as_ref().unwrap();
        assert_eq!(
            ws.idle_timeout,
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(
            ws.allowed_origins,
            vec![OriginPattern::parse("https://*.example.com").unwrap()]
        );
        assert_eq!(
            ws.balance,
            Balance::ConsistentHash(HashKey::Cookie("room".into()))
        );
        assert_eq!(
            ws.limits,
            Some(model::ClientLimits {
                max_connections: None,
                rate: Some(4),
                burst: 4
            })
        );
        let backend = &ws.backends[0].backend;
        assert_eq!(
            backend.target,
            model::BackendTarget::Service {
                name: "chat".into(),
                port: 5000
            }
        );
        assert_eq!(&*backend.field, "spec.rules[0].websocket.backend");
        let tls = backend.tls.as_ref().unwrap();
        assert_eq!(tls.server_name.to_str(), "chat.default.svc");
        assert_eq!(tls.ca_secret, None);
    }

    /// What once failed open: a value that does not translate must reject the route with its
    /// field path, never leave it with a default (no origin check, no timeout, source-IP
    /// hashing).
    #[test]
    fn values_that_do_not_parse_reject_the_route() {
        use crate::api::HashOn;
        type Edit = fn(&mut WebSocketTarget);
        let cases: [(Edit, &str); 4] = [
            (
                |ws| ws.allowed_origins = vec!["https://chat.example.com/".into()],
                "spec.rules[0].websocket.allowedOrigins[0]",
            ),
            (
                |ws| ws.idle_timeout = Some("1 day".into()),
                "spec.rules[0].websocket.idleTimeout",
            ),
            (
                |ws| {
                    ws.load_balancing = Some(LoadBalancing {
                        policy: Some(LoadBalancingPolicy::ConsistentHash),
                        hash_on: Some(HashOn {
                            header: Some("x user".into()),
                            ..Default::default()
                        }),
                    })
                },
                "spec.rules[0].websocket.loadBalancing.hashOn.header",
            ),
            (
                |ws| {
                    ws.load_balancing = Some(LoadBalancing {
                        policy: Some(LoadBalancingPolicy::ConsistentHash),
                        hash_on: Some(HashOn {
                            cookie: Some("a=b".into()),
                            ..Default::default()
                        }),
                    })
                },
                "spec.rules[0].websocket.loadBalancing.hashOn.cookie",
            ),
        ];
        for (edit, path) in cases {
            let mut spec = valid();
            if let Some(ws) = spec.rules[0].websocket.as_mut() {
                edit(ws);
            }
            let rejected = translate(&WebSocketRoute::new("chat", spec)).unwrap_err();
            let paths: Vec<&str> = rejected.problems.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, vec![path]);
        }
        let mut spec = valid();
        if let Some(http) = spec.rules[0].http.as_mut() {
            http.timeout = Some("soon".into());
        }
        let rejected = translate(&WebSocketRoute::new("chat", spec)).unwrap_err();
        assert_eq!(rejected.problems[0].path, "spec.rules[0].http.timeout");
    }
}
