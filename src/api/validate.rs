//! Validation of a single route's spec. Every problem is returned (not just the first) with its
//! field path, so `wsgate check` and status conditions can tell the user exactly what to fix.
//! Problems that involve several routes (a hostname claimed twice) are found by the table
//! compiler, which sees all routes at once.

use std::fmt;
use std::net::SocketAddr;

use super::{
    Backend, BackendProtocol, ClientLimits, LoadBalancing, LoadBalancingPolicy, WebSocketRouteSpec,
    parse_duration,
};

/// One problem in a route, e.g. `spec.rules[1].websocket.backend.port: must be 1..65535`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, starting at `spec`.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Checks a route spec on its own; an empty result means it is valid. Field paths are only
/// formatted for problems, so validating a valid route allocates almost nothing (the
/// controller validates every route on every rebuild).
pub fn validate(spec: &WebSocketRouteSpec) -> Vec<FieldError> {
    let mut p = Problems(Vec::new());
    if spec.hostnames.is_empty() {
        p.add("spec.hostnames", "at least one hostname is required");
    }
    let lists = [
        ("hostnames", &spec.hostnames),
        ("redirectHostnames", &spec.redirect_hostnames),
    ];
    // Routes list a handful of names: a linear scan beats a set.
    let mut seen: Vec<&str> = Vec::new();
    for (field, hosts) in lists {
        for (i, host) in hosts.iter().enumerate() {
            if let Err(why) = check_hostname(host) {
                p.add(format!("spec.{field}[{i}]"), why);
            } else if seen.contains(&host.as_str()) {
                p.add(
                    format!("spec.{field}[{i}]"),
                    format!("{host:?} is listed twice in this route"),
                );
            } else {
                seen.push(host);
            }
        }
    }
    if !spec.redirect_hostnames.is_empty()
        && spec.hostnames.first().is_some_and(|h| h.starts_with("*."))
    {
        p.add(
            "spec.hostnames[0]",
            "must be an exact name when redirectHostnames is set (it is the redirect target)",
        );
    }
    if let Some(tls) = &spec.tls {
        if let Err(why) = check_object_name(&tls.secret_name) {
            p.add("spec.tls.secretName", why);
        }
        if let Some(hsts) = &tls.hsts {
            if hsts.max_age < 0 {
                p.add("spec.tls.hsts.maxAge", "must be 0 or more seconds");
            }
            if hsts.preload == Some(true)
                && (hsts.max_age < 31_536_000 || hsts.include_sub_domains != Some(true))
            {
                p.add(
                    "spec.tls.hsts.preload",
                    "needs maxAge of at least 31536000 and includeSubDomains: true",
                );
            }
        }
    }
    if spec.rules.is_empty() {
        p.add("spec.rules", "at least one rule is required");
    }
    let mut prefixes: Vec<&str> = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = |field: &str| format!("spec.rules[{i}].{field}");
        match check_path_prefix(rule.prefix()) {
            Err(why) => p.add(at("pathPrefix"), why),
            Ok(()) => {
                let norm = normalize_path_prefix(rule.prefix());
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
        if let Some(http) = &rule.http {
            check_backend(&mut p, i, "http", &http.backend);
            if let Some(lb) = &http.load_balancing {
                check_load_balancing(&mut p, i, "http", lb);
            }
            if let Some(t) = &http.timeout {
                match parse_duration(t) {
                    Err(e) => p.add(at("http.timeout"), e.to_string()),
                    Ok(d) if d.is_zero() => p.add(at("http.timeout"), "must be greater than 0"),
                    Ok(_) => {}
                }
            }
        }
        if let Some(ws) = &rule.websocket {
            check_backend(&mut p, i, "websocket", &ws.backend);
            if let Some(lb) = &ws.load_balancing {
                check_load_balancing(&mut p, i, "websocket", lb);
            }
            for (j, origin) in ws.allowed_origins.iter().enumerate() {
                if let Err(why) = check_origin_pattern(origin) {
                    p.add(at(&format!("websocket.allowedOrigins[{j}]")), why);
                }
            }
            if let Some(limits) = &ws.limits {
                check_limits(&mut p, i, limits);
            }
            if let Some(t) = &ws.idle_timeout {
                match parse_duration(t) {
                    Err(e) => p.add(at("websocket.idleTimeout"), e.to_string()),
                    Ok(d) if d.is_zero() => p.add(
                        at("websocket.idleTimeout"),
                        "must be greater than 0 (leave it out to never time out)",
                    ),
                    Ok(_) => {}
                }
            }
        }
    }
    p.0
}

fn check_backend(p: &mut Problems, rule: usize, kind: &str, b: &Backend) {
    let at = |field: &str| format!("spec.rules[{rule}].{kind}.backend{field}");
    if let Some(tls) = &b.tls {
        if b.protocol == Some(BackendProtocol::H2c) {
            p.add(
                at(".tls"),
                "h2c is cleartext HTTP/2; drop tls or protocol: h2c",
            );
        }
        if let Some(sni) = &tls.sni {
            if let Err(why) = check_hostname(sni).and_then(|()| {
                if sni.starts_with("*.") {
                    Err(format!("{sni:?}: SNI must be an exact name"))
                } else {
                    Ok(())
                }
            }) {
                p.add(at(".tls.sni"), why);
            }
        }
        if let Some(ca) = &tls.ca_secret_name {
            if let Err(why) = check_object_name(ca) {
                p.add(at(".tls.caSecretName"), why);
            }
        }
    }
    match (&b.service, &b.address) {
        (Some(_), Some(_)) => p.add(at(""), "set either service+port or address, not both"),
        (None, None) => p.add(at(""), "set service+port or address"),
        (Some(svc), None) => {
            if let Err(why) = check_dns_label(svc) {
                p.add(at(".service"), why);
            }
            match b.port {
                None => p.add(at(".port"), "required with service"),
                Some(port) if !(1..=65535).contains(&port) => {
                    p.add(at(".port"), "must be 1..65535")
                }
                Some(_) => {}
            }
        }
        (None, Some(addr)) => {
            if b.port.is_some() {
                p.add(at(".port"), "goes with service; put the port in address");
            }
            match addr.parse::<SocketAddr>() {
                Err(_) => p.add(
                    at(".address"),
                    format!("{addr:?} is not ip:port (e.g. 127.0.0.1:8080 or [::1]:8080)"),
                ),
                Ok(sa) if sa.port() == 0 => p.add(at(".address"), "port must be 1..65535"),
                Ok(_) => {}
            }
        }
    }
}

fn check_load_balancing(p: &mut Problems, rule: usize, kind: &str, lb: &LoadBalancing) {
    let at = |field: &str| format!("spec.rules[{rule}].{kind}.loadBalancing.{field}");
    let hashing = lb.policy == Some(LoadBalancingPolicy::ConsistentHash);
    match (&lb.hash_on, hashing) {
        (None, true) => p.add(at("hashOn"), "required with policy ConsistentHash"),
        (Some(_), false) => p.add(at("hashOn"), "only applies to policy ConsistentHash"),
        (None, false) => {}
        (Some(on), true) => {
            let keys = usize::from(on.header.is_some())
                + usize::from(on.cookie.is_some())
                + usize::from(on.source_ip == Some(true));
            if keys != 1 {
                p.add(
                    at("hashOn"),
                    "set exactly one of header, cookie or sourceIP: true",
                );
            }
            if let Some(h) = &on.header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    p.add(at("hashOn.header"), format!("{h:?} is not a header name"));
                }
            }
            if let Some(c) = &on.cookie {
                if c.is_empty() || !c.bytes().all(is_token_byte) {
                    p.add(at("hashOn.cookie"), format!("{c:?} is not a cookie name"));
                }
            }
        }
    }
}

/// An RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_limits(p: &mut Problems, rule: usize, limits: &ClientLimits) {
    let at = |field: &str| format!("spec.rules[{rule}].websocket.limits{field}");
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
}

/// An allowed origin: `scheme://host[:port]` with scheme http or https, the host optionally
/// `*.` for any subdomain; no path. Matching is in the table.
fn check_origin_pattern(origin: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{origin:?} is not an origin like https://chat.example.com or https://*.example.com"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(']') || host.ends_with(']') => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad());
            }
            host
        }
        _ => rest,
    };
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| bad());
    }
    check_hostname(host).map_err(|_| bad())
}

/// A hostname as Kubernetes Ingress and Gateway API accept it: lowercase RFC 1123 labels,
/// optionally `*.` in front for a one-label wildcard.
fn check_hostname(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() {
        return Err(format!("{host:?} is not a hostname"));
    }
    if host.len() > 253 {
        return Err(format!("{host:?} is longer than 253 characters"));
    }
    if name.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard is only allowed as the whole first label (*.example.com)"
        ));
    }
    for label in name.split('.') {
        check_dns_label(label).map_err(|why| format!("{host:?}: {why}"))?;
    }
    Ok(())
}

/// An RFC 1123 label: 1-63 of a-z 0-9 '-', not starting or ending with '-'.
fn check_dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        return Err(format!("label {label:?} must be 1-63 characters"));
    }
    let ok_chars = label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label {label:?} must be lowercase letters, digits and '-', not starting or ending with '-'"
        ));
    }
    Ok(())
}

/// A Kubernetes object name (DNS subdomain).
fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1-253 characters".into());
    }
    name.split('.').try_for_each(check_dns_label)
}

fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with '/'"));
    }
    if prefix.contains("//") {
        return Err(format!("{prefix:?} must not contain '//'"));
    }
    if prefix
        .bytes()
        .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "{prefix:?} must be a path only (no query, fragment, spaces or control characters)"
        ));
    }
    Ok(())
}

/// The canonical form of a path prefix: no trailing '/' except for the root.
pub fn normalize_path_prefix(prefix: &str) -> &str {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
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
    fn hostnames() {
        for good in ["a.b", "*.example.com", "x-1.example.com", "localhost"] {
            assert_eq!(check_hostname(good), Ok(()), "{good}");
        }
        for bad in [
            "", "*.", "*", "a..b", "-a.com", "a-.com", "A.com", "a.*.com", "*a.com", "a b",
            "a_b.com", "é.com", "a.com:80",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad:?} should fail");
        }
        assert!(check_hostname(&"a".repeat(64)).is_err());
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
    fn path_prefix_normalization() {
        assert_eq!(normalize_path_prefix("/"), "/");
        assert_eq!(normalize_path_prefix("/ws/"), "/ws");
        assert_eq!(normalize_path_prefix("/ws"), "/ws");
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
    fn origins() {
        for good in [
            "https://chat.example.com",
            "http://localhost:8080",
            "https://*.example.com",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
        ] {
            assert_eq!(check_origin_pattern(good), Ok(()), "{good}");
        }
        for bad in [
            "chat.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://x.com:0",
            "https://x.com:http",
            "https://*",
            "https://a.*.com",
            "https://Chat.example.com",
            "null",
            "*",
        ] {
            assert!(check_origin_pattern(bad).is_err(), "{bad:?} should fail");
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
}
