//! `wsgate migrate`: what wsgate makes of an ingress-nginx Ingress, before the switch — which
//! annotations it honours and how, which it ignores and why, and the equivalent
//! WebSocketRoutes (one per host), for teams that want to move to wsgate's own API.
//!
//! The WebSocketRoutes are written from the translated model, so they mean exactly what wsgate
//! serves for the Ingress; what the WebSocketRoute API cannot say (exact paths, ports by name,
//! rules without a host) is listed as a note instead of being guessed.

use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::auth::AuthSpec;
use super::ingress::{self, HONOURED_NGINX, HONOURED_WSGATE, IngressOptions, NGINX, WSGATE};
use super::{
    Backend, ClientLimits, HashOn, HttpTarget, KeepaliveSpec, LoadBalancing, LoadBalancingPolicy,
    Maintenance, RebalanceSpec, RouteTls, Rule, StickyCookie, WebSocketRoute, WebSocketRouteSpec,
    WebSocketTarget,
};
use crate::model::{self, BackendTarget, Balance, HashKey, PathMatch, ServicePort};

/// What migrating one Ingress means.
#[derive(Debug, Default)]
pub struct Migration {
    /// `namespace/name`.
    pub id: String,
    /// Annotations honoured, with what they mean in wsgate.
    pub honoured: Vec<(String, String)>,
    /// Annotations ignored, with why.
    pub ignored: Vec<(String, String)>,
    /// Problems that keep (part of) the Ingress from being served.
    pub problems: Vec<String>,
    /// What the WebSocketRoutes below cannot say.
    pub notes: Vec<String>,
    /// The equivalent WebSocketRoutes.
    pub routes: Vec<WebSocketRoute>,
}

/// Reads one Ingress as wsgate would serve it.
pub fn migrate(object: &Ingress) -> Migration {
    let meta = ingress::ingress_meta(object);
    let mut out = Migration {
        id: format!("{}/{}", meta.namespace, meta.name),
        ..Migration::default()
    };
    let annotations = object.metadata.annotations.iter().flatten();
    for (name, _) in annotations {
        let honoured = [(NGINX, HONOURED_NGINX), (WSGATE, HONOURED_WSGATE)]
            .iter()
            .find_map(|(prefix, table)| {
                let short = name.strip_prefix(prefix)?;
                table.iter().find(|(n, _)| *n == short).map(|(_, m)| m)
            });
        if let Some(meaning) = honoured {
            out.honoured.push((name.clone(), meaning.to_string()));
        } else if let Some(short) = name.strip_prefix(NGINX) {
            let why = ingress::ignored_because(short);
            out.ignored.push((name.clone(), why.to_string()));
        } else if name.starts_with(WSGATE) {
            out.ignored
                .push((name.clone(), "no such wsgate annotation".into()));
        }
    }
    for (i, translated) in ingress::translate(object, IngressOptions::default())
        .into_iter()
        .enumerate()
    {
        match translated {
            Ok(route) => {
                match websocket_route(&route, i, &mut out.notes) {
                    Some(r) => out.routes.push(r),
                    None => out.notes.push(
                        "rules without a host (or a defaultBackend alone) serve every host no route names; a WebSocketRoute always names its hosts, so keep them in an Ingress".into(),
                    ),
                }
            }
            Err(rejected) => out
                .problems
                .extend(rejected.problems.iter().map(ToString::to_string)),
        }
    }
    // The http and websocket halves of a path say the same things.
    let mut seen = std::collections::HashSet::new();
    out.notes.retain(|n| seen.insert(n.clone()));
    out
}

/// Notes for what a rule does that a WebSocketRoute cannot say yet (those stay in the Ingress).
fn unexpressed(rule: &model::Rule, host: &str, prefix: &str, notes: &mut Vec<String>) {
    let mut missing = Vec::new();
    if !rule.allowed_sources.is_empty() {
        missing.push("the source allow-list");
    }
    let http = rule.http.as_ref();
    if http.is_some_and(|h| h.max_body.is_some()) {
        missing.push("the body size limit");
    }
    if http.is_some_and(|h| h.limits.is_some()) {
        missing.push("the request rate limit (upgrades keep theirs)");
    }
    let rewrites = http.is_some_and(|h| h.filters.rewrite.is_some())
        || rule
            .websocket
            .as_ref()
            .is_some_and(|w| w.filters.rewrite.is_some());
    if rewrites {
        missing.push("rewrite-target");
    }
    let connect = http.is_some_and(|h| h.connect_timeout.is_some())
        || rule
            .websocket
            .as_ref()
            .is_some_and(|w| w.connect_timeout.is_some());
    if connect {
        missing.push("the connect timeout");
    }
    if !missing.is_empty() {
        notes.push(format!(
            "{host}{prefix}: a WebSocketRoute cannot say {} yet; keep the Ingress for this path",
            missing.join(", ")
        ));
    }
}

/// The WebSocketRoute for one host's route; `None` for the catch-all route.
fn websocket_route(
    route: &model::Route,
    i: usize,
    notes: &mut Vec<String>,
) -> Option<WebSocketRoute> {
    let host = route.hostnames.first()?;
    let mut rules = Vec::new();
    for rule in &route.rules {
        let prefix = match &rule.matches.path {
            PathMatch::Prefix(p) => p.to_string(),
            PathMatch::Exact(p) => {
                notes.push(format!(
                    "{host}: the Exact path {p} becomes a pathPrefix (WebSocketRoute has no exact match)"
                ));
                p.to_string()
            }
        };
        if rules.iter().any(|r: &Rule| r.prefix() == prefix) {
            continue;
        }
        unexpressed(rule, host.as_str(), &prefix, notes);
        let http = rule.http.as_ref().and_then(|h| {
            Some(HttpTarget {
                backend: backend(&h.backends.first()?.backend, host.as_str(), notes),
                timeout: Some(seconds(h.timeout)),
                load_balancing: load_balancing(&h.balance, &Balance::RoundRobin),
            })
        });
        let websocket = rule.websocket.as_ref().and_then(|w| {
            Some(WebSocketTarget {
                backend: backend(&w.backends.first()?.backend, host.as_str(), notes),
                idle_timeout: w.idle_timeout.map(seconds),
                load_balancing: load_balancing(&w.balance, &Balance::LeastConnections),
                allowed_origins: w.allowed_origins.iter().map(ToString::to_string).collect(),
                limits: limits(w.limits, w.capacity),
                max_lifetime: w.max_lifetime.map(|l| seconds(l.max)),
                lifetime_jitter: w.max_lifetime.map(|l| format!("{}%", l.jitter_percent)),
                keepalive: w.keepalive.map(|k| KeepaliveSpec {
                    interval: seconds(k.interval),
                    timeout: Some(seconds(k.timeout)),
                }),
                rebalance: w.rebalance.map(|r| RebalanceSpec {
                    tolerance: Some(r.tolerance),
                    window: Some(seconds(r.window)),
                }),
            })
        });
        let auth = rule
            .auth
            .as_deref()
            .map(|a| auth_spec(a, host.as_str(), notes));
        rules.push(Rule {
            path_prefix: Some(prefix),
            http,
            websocket,
            auth,
        });
    }
    if route.tls.as_ref().is_some_and(|t| t.secret.is_none()) {
        notes.push(format!(
            "{host}: https without a tls Secret (force-ssl-redirect, or a tls host without secretName) has no WebSocketRoute equivalent; add spec.tls.secretName"
        ));
    }
    let name = match i {
        0 => route.meta.name.clone(),
        _ => format!(
            "{}-{}",
            route.meta.name,
            host.as_str().replace("*.", "wildcard.")
        ),
    };
    let spec = WebSocketRouteSpec {
        ingress_class_name: Some(super::DEFAULT_INGRESS_CLASS.into()),
        hostnames: vec![host.to_string()],
        redirect_hostnames: route
            .redirect_hostnames
            .iter()
            .map(ToString::to_string)
            .collect(),
        // A WebSocketRoute's TLS names its Secret: https without one has no equivalent
        // (noted above).
        tls: route.tls.as_ref().and_then(|t| {
            Some(RouteTls {
                secret_name: t.secret.clone()?,
                http_redirect: Some(t.http_redirect),
                hsts: None,
            })
        }),
        maintenance: route.maintenance.as_ref().map(|_| Maintenance {
            enabled: true,
            body: None,
        }),
        rules,
    };
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(route.meta.namespace.clone()),
        ..ObjectMeta::default()
    };
    let mut out = WebSocketRoute::new(&name, spec);
    out.metadata = metadata;
    Some(out)
}

/// The per-client limits and the capacity caps, as one `limits` object.
fn limits(client: Option<model::ClientLimits>, caps: model::Capacity) -> Option<ClientLimits> {
    let mut out = ClientLimits {
        max_connections: caps.max_connections,
        max_connections_per_endpoint: caps.max_per_endpoint,
        ..ClientLimits::default()
    };
    if let Some(l) = client {
        out.max_connections_per_client = l.max_connections;
        out.upgrades_per_second_per_client = l.rate;
        out.burst = l.rate.map(|_| l.burst);
    }
    (out != ClientLimits::default()).then_some(out)
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn backend(b: &model::Backend, host: &str, notes: &mut Vec<String>) -> Backend {
    let (service, port, address) = match &b.target {
        BackendTarget::Service { name, port, .. } => {
            let number = match port {
                ServicePort::Number(n) => Some(i32::from(*n)),
                ServicePort::Name(p) => {
                    notes.push(format!(
                        "{host}: Service {name} port {p:?} is named; a WebSocketRoute names ports by number: fill it in"
                    ));
                    None
                }
            };
            (Some(name.clone()), number, None)
        }
        BackendTarget::Address(a) => (None, None, Some(a.to_string())),
        // Only Gateway API routes have these, and they are not migrated.
        BackendTarget::Unresolved => (None, None, None),
    };
    Backend {
        service,
        port,
        address,
        protocol: match b.protocol {
            model::BackendProtocol::Http2 if b.tls.is_some() => Some(super::BackendProtocol::H2),
            model::BackendProtocol::Http2 => Some(super::BackendProtocol::H2c),
            model::BackendProtocol::Http => None,
        },
        tls: b.tls.as_ref().map(|t| super::BackendTls {
            sni: None,
            ca_secret_name: match &t.ca {
                Some(model::CaRef::Secret(name)) => Some(name.clone()),
                // Only Gateway API routes have these, and they are not migrated.
                Some(model::CaRef::ConfigMap { .. }) | None => None,
            },
        }),
    }
}

/// A rule's auth as a WebSocketRoute says it.
fn auth_spec(auth: &model::Auth, host: &str, notes: &mut Vec<String>) -> AuthSpec {
    use super::auth::{
        AuthCacheSpec, ClaimToHeader, ExternalAuthSpec, JwksSpec, JwtSpec, KeyRef, TokenFrom,
    };
    let jwt = auth.jwt.as_ref().map(|j| JwtSpec {
        issuer: j.issuer.as_deref().map(String::from),
        audiences: j.audiences.iter().map(|a| a.to_string()).collect(),
        jwks: match &j.jwks {
            model::JwksSource::ConfigMap { name, key } => JwksSpec {
                config_map: Some(KeyRef {
                    name: name.clone(),
                    key: Some(key.clone()),
                }),
                ..JwksSpec::default()
            },
            model::JwksSource::Secret { name, key } => JwksSpec {
                secret: Some(KeyRef {
                    name: name.clone(),
                    key: Some(key.clone()),
                }),
                ..JwksSpec::default()
            },
            model::JwksSource::Url { url, refresh, .. } => JwksSpec {
                url: Some(url.to_string()),
                refresh_interval: Some(seconds(*refresh)),
                ..JwksSpec::default()
            },
        },
        clock_skew: Some(seconds(j.clock_skew)),
        token_from: j
            .from
            .iter()
            .map(|f| match f {
                model::TokenSource::Bearer => TokenFrom {
                    bearer: Some(true),
                    ..TokenFrom::default()
                },
                model::TokenSource::Cookie(c) => TokenFrom {
                    cookie: Some(c.to_string()),
                    ..TokenFrom::default()
                },
                model::TokenSource::Query(q) => TokenFrom {
                    query: Some(q.to_string()),
                    ..TokenFrom::default()
                },
                model::TokenSource::Protocol(p) => TokenFrom {
                    protocol_prefix: Some(p.to_string()),
                    ..TokenFrom::default()
                },
            })
            .collect(),
        claims_to_headers: j
            .claims_to_headers
            .iter()
            .map(|c| ClaimToHeader {
                claim: c.claim.to_string(),
                header: c.header.to_string(),
            })
            .collect(),
        close_on_expiry: Some(j.close_on_expiry.is_some()),
        ..JwtSpec::default()
    });
    let external = auth.external.as_ref().map(|e| {
        if let BackendTarget::Service {
            namespace: Some(ns),
            name,
            ..
        } = &e.backend.target
        {
            notes.push(format!(
                "{host}: auth-url names Service {ns}/{name}; a WebSocketRoute's backends are in its own namespace: give the auth service a Service there, or an address"
            ));
        }
        if e.method.is_some() {
            notes.push(format!(
                "{host}: auth-method has no WebSocketRoute field: the auth service gets the request's own method"
            ));
        }
        ExternalAuthSpec {
            backend: backend(&e.backend, host, notes),
            path: Some(e.path.to_string()),
            request_headers: e.request_headers.iter().map(ToString::to_string).collect(),
            response_headers: e.response_headers.iter().map(ToString::to_string).collect(),
            timeout: Some(seconds(e.timeout)),
            cache: e.cache.as_ref().map(|c| AuthCacheSpec {
                header: match &c.key {
                    model::CacheKey::Header(h) => Some(h.to_string()),
                    model::CacheKey::Cookie(_) => None,
                },
                cookie: match &c.key {
                    model::CacheKey::Cookie(c) => Some(c.to_string()),
                    model::CacheKey::Header(_) => None,
                },
                duration: seconds(c.ttl),
            }),
            signin_url: e.signin.as_ref().map(ToString::to_string),
        }
    });
    AuthSpec { jwt, external }
}

fn load_balancing(balance: &Balance, default: &Balance) -> Option<LoadBalancing> {
    if balance == default {
        return None;
    }
    Some(match balance {
        Balance::RoundRobin => LoadBalancing {
            policy: Some(LoadBalancingPolicy::RoundRobin),
            hash_on: None,
            cookie: None,
        },
        Balance::LeastConnections => LoadBalancing {
            policy: Some(LoadBalancingPolicy::LeastConnections),
            hash_on: None,
            cookie: None,
        },
        Balance::ConsistentHash(key) => LoadBalancing {
            policy: Some(LoadBalancingPolicy::ConsistentHash),
            hash_on: Some(match key {
                HashKey::Header(h) => HashOn {
                    header: Some(h.to_string()),
                    ..HashOn::default()
                },
                HashKey::Cookie(c) => HashOn {
                    cookie: Some(c.to_string()),
                    ..HashOn::default()
                },
                HashKey::SourceIp => HashOn {
                    source_ip: Some(true),
                    ..HashOn::default()
                },
            }),
            cookie: None,
        },
        Balance::Cookie(c) => LoadBalancing {
            policy: Some(LoadBalancingPolicy::StickyCookie),
            hash_on: None,
            cookie: Some(StickyCookie {
                name: Some(c.name.to_string()),
                path: Some(c.path.to_string()),
                max_age_seconds: c.max_age,
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first written route and the Ingress's own first route, both translated.
    fn both_translations(m: &Migration, ingress: &Ingress) -> (model::Route, model::Route) {
        let written =
            crate::api::translate(&m.routes[0]).unwrap_or_else(|r| panic!("{:?}", r.problems));
        let from_ingress = ingress::translate(ingress, IngressOptions::default());
        let from_ingress = from_ingress.into_iter().next();
        let from_ingress = from_ingress.and_then(Result::ok);
        (
            written,
            from_ingress.unwrap_or_else(|| panic!("translates")),
        )
    }

    #[test]
    fn auth_annotations_migrate_to_a_route_auth_that_translates_the_same() {
        let ingress: Ingress = serde_yaml::from_str(
            r#"
metadata:
  name: chat
  namespace: apps
  annotations:
    nginx.ingress.kubernetes.io/auth-url: "http://10.0.0.9:4180/oauth2/auth"
    nginx.ingress.kubernetes.io/auth-response-headers: X-Auth-Request-User
    nginx.ingress.kubernetes.io/auth-cache-key: $cookie_session
    wsgate.dev/auth-jwt-jwks-configmap: keys
    wsgate.dev/auth-jwt-token-from: cookie:session, bearer
    wsgate.dev/auth-jwt-claims-to-headers: sub:X-User
spec:
  rules:
    - host: chat.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = migrate(&ingress);
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        let (written, from_ingress) = both_translations(&m, &ingress);
        let from_ingress = &from_ingress;
        let auth = |r: &model::Route| {
            let mut a = (*r.rules[0].auth.clone().unwrap_or_else(|| panic!("auth"))).clone();
            if let Some(e) = a.external.as_mut() {
                e.backend.field = "".into();
            }
            a
        };
        assert_eq!(auth(&written), auth(from_ingress));
    }

    #[test]
    fn a_migration_lists_annotations_and_writes_routes_that_translate_the_same() {
        let ingress: Ingress = serde_yaml::from_str(
            r#"
metadata:
  name: chat
  namespace: apps
  annotations:
    nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"
    nginx.ingress.kubernetes.io/upstream-hash-by: "$remote_addr"
    nginx.ingress.kubernetes.io/configuration-snippet: "x"
spec:
  tls: [ { hosts: [chat.example.com], secretName: chat-tls } ]
  rules:
    - host: chat.example.com
      http:
        paths:
          - { path: /ws, pathType: Prefix, backend: { service: { name: chat, port: { number: 5000 } } } }
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = migrate(&ingress);
        assert_eq!(m.id, "apps/chat");
        let names: Vec<&str> = m.honoured.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "nginx.ingress.kubernetes.io/proxy-read-timeout",
                "nginx.ingress.kubernetes.io/upstream-hash-by"
            ]
        );
        assert_eq!(m.ignored.len(), 1);
        assert_eq!(
            m.ignored[0].0,
            "nginx.ingress.kubernetes.io/configuration-snippet"
        );
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        assert_eq!(m.routes.len(), 1);
        // The written route serves the /ws rule the same way the Ingress does.
        let (written, from_ingress) = both_translations(&m, &ingress);
        let from_ingress = &from_ingress;
        // Equal but for the field paths, which name each object's own fields.
        let ws = |r: &model::Route| {
            let mut ws = r.rules[0].websocket.clone();
            for b in ws.iter_mut().flat_map(|w| w.backends.iter_mut()) {
                b.backend.field = "".into();
            }
            ws
        };
        assert_eq!(ws(&written), ws(from_ingress));
        assert_eq!(written.tls, from_ingress.tls);

        // What a WebSocketRoute cannot say is a note, not a guess.
        let mut named = ingress;
        if let Some(rule) = named
            .spec
            .as_mut()
            .and_then(|s| s.rules.as_mut())
            .and_then(|r| r.first_mut())
        {
            if let Some(path) = rule.http.as_mut().and_then(|h| h.paths.first_mut()) {
                path.path_type = "Exact".into();
                if let Some(port) = path.backend.service.as_mut().and_then(|s| s.port.as_mut()) {
                    port.number = None;
                    port.name = Some("ws".into());
                }
            }
        }
        let notes = migrate(&named).notes;
        assert!(
            notes.iter().any(|n| n.contains("Exact path /ws")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("port \"ws\" is named")),
            "{notes:?}"
        );
    }
}
