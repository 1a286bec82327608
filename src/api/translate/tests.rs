use super::*;

/// Every problem of a spec on its own; empty when it translates.
fn validate(spec: &WebSocketRouteSpec) -> Vec<FieldError> {
    translate_spec("default", spec).err().unwrap_or_default()
}
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
            auth: None,
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
        auth: None,
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
            cookie: None,
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
fn a_sticky_cookie_defaults_to_the_rules_path_and_checks_its_fields() {
    use crate::api::{LoadBalancing, LoadBalancingPolicy::StickyCookie, StickyCookie as Cookie};
    let mut spec = valid();
    spec.rules[0].path_prefix = Some("/chat/".into());
    let sticky = |cookie: Option<Cookie>| {
        Some(LoadBalancing {
            policy: Some(StickyCookie),
            hash_on: None,
            cookie,
        })
    };
    if let Some(ws) = spec.rules[0].websocket.as_mut() {
        ws.load_balancing = sticky(None);
    }
    let route = translated(spec.clone());
    let ws = route.rules[0].websocket.as_ref().unwrap();
    assert_eq!(
        ws.balance,
        Balance::Cookie(model::AffinityCookie {
            name: "wsgate-affinity".into(),
            path: "/chat".into(),
            max_age: None,
        })
    );
    for (cookie, field) in [
        (
            Cookie {
                name: Some("a=b".into()),
                ..Cookie::default()
            },
            "cookie.name",
        ),
        (
            Cookie {
                path: Some("no-slash".into()),
                ..Cookie::default()
            },
            "cookie.path",
        ),
    ] {
        if let Some(ws) = spec.rules[0].websocket.as_mut() {
            ws.load_balancing = sticky(Some(cookie));
        }
        assert_eq!(
            paths(&spec),
            vec![format!("spec.rules[0].websocket.loadBalancing.{field}")]
        );
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
            ..ClientLimits::default()
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
            cookie: None,
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
            namespace: None,
            name: "chat".into(),
            port: model::ServicePort::Number(5000)
        }
    );
    assert_eq!(&*backend.field, "spec.rules[0].websocket.backend");
    let tls = backend.tls.as_ref().unwrap();
    assert_eq!(tls.server_name.to_str(), "chat.default.svc");
    assert_eq!(tls.ca, None);
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
                    cookie: None,
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
                    cookie: None,
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

#[test]
fn max_lifetime_and_its_jitter_are_read_and_checked() {
    let with = |max: Option<&str>, jitter: Option<&str>| {
        let mut spec = valid();
        let ws = WebSocketTarget {
            backend: addr("127.0.0.1:5000"),
            max_lifetime: max.map(Into::into),
            lifetime_jitter: jitter.map(Into::into),
            ..Default::default()
        };
        spec.rules[0].websocket = Some(ws);
        spec
    };
    let lifetime = |spec: &WebSocketRouteSpec| {
        let route = translate_spec("default", spec).unwrap_or_else(|e| panic!("{e:?}"));
        route.rules[0]
            .websocket
            .as_ref()
            .and_then(|w| w.max_lifetime)
    };
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(
        lifetime(&with(Some("1h"), None)),
        Some(model::Lifetime {
            max: hour,
            jitter_percent: 10
        })
    );
    assert_eq!(
        lifetime(&with(Some("1h"), Some("0%"))).map(|l| l.jitter_percent),
        Some(0)
    );
    assert_eq!(lifetime(&with(None, None)), None);
    for (max, jitter, field) in [
        (Some("0s"), None, "spec.rules[0].websocket.maxLifetime"),
        (
            Some("1h"),
            Some("101%"),
            "spec.rules[0].websocket.lifetimeJitter",
        ),
        (
            Some("1h"),
            Some("10"),
            "spec.rules[0].websocket.lifetimeJitter",
        ),
        (None, Some("10%"), "spec.rules[0].websocket.lifetimeJitter"),
    ] {
        let problems = validate(&with(max, jitter));
        assert_eq!(paths_of(&problems), [field], "{max:?} {jitter:?}");
    }
    // A socket's lifetime falls within the jitter below the maximum.
    let l = model::Lifetime {
        max: hour,
        jitter_percent: 10,
    };
    assert_eq!(l.of_one(0.0), hour);
    assert_eq!(l.of_one(1.0), hour.mul_f64(0.9));
    assert!(l.of_one(0.5) < hour && l.of_one(0.5) > hour.mul_f64(0.9));
}

fn paths_of(problems: &[FieldError]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn keepalive_and_rebalance_are_read_with_their_defaults_and_checked() {
    use crate::api::{KeepaliveSpec, RebalanceSpec};
    let with = |keepalive: Option<KeepaliveSpec>, rebalance: Option<RebalanceSpec>| {
        let mut spec = valid();
        spec.rules[0].websocket = Some(WebSocketTarget {
            backend: addr("127.0.0.1:5000"),
            keepalive,
            rebalance,
            ..Default::default()
        });
        spec
    };
    let ws = |spec: &WebSocketRouteSpec| {
        let route = translate_spec("default", spec).unwrap_or_else(|e| panic!("{e:?}"));
        let ws = route.rules[0].websocket.clone();
        ws.map(|w| (w.keepalive, w.rebalance))
    };
    let secs = std::time::Duration::from_secs;
    let keepalive = |interval: &str, timeout: Option<&str>| KeepaliveSpec {
        interval: interval.into(),
        timeout: timeout.map(Into::into),
    };
    assert_eq!(
        ws(&with(None, None)),
        Some((None, None)),
        "both off by default"
    );
    let (k, r) = ws(&with(
        Some(keepalive("30s", None)),
        Some(RebalanceSpec::default()),
    ))
    .unwrap_or_default();
    assert_eq!(
        k,
        Some(model::Keepalive {
            interval: secs(30),
            timeout: secs(10)
        })
    );
    assert_eq!(
        r,
        Some(model::Rebalance {
            tolerance: 0.2,
            window: secs(300)
        })
    );
    let rebalance = RebalanceSpec {
        tolerance: Some(0.5),
        window: Some("1m".into()),
    };
    let (k, r) = ws(&with(Some(keepalive("1m", Some("5s"))), Some(rebalance))).unwrap_or_default();
    assert_eq!(
        k.map(|k| (k.interval, k.timeout)),
        Some((secs(60), secs(5)))
    );
    assert_eq!(r.map(|r| (r.tolerance, r.window)), Some((0.5, secs(60))));
    let bad_tolerance = |t: f64| RebalanceSpec {
        tolerance: Some(t),
        window: None,
    };
    for (spec, field) in [
        (
            with(Some(keepalive("0s", None)), None),
            "spec.rules[0].websocket.keepalive.interval",
        ),
        (
            with(Some(keepalive("30s", Some("soon"))), None),
            "spec.rules[0].websocket.keepalive.timeout",
        ),
        (
            with(None, Some(bad_tolerance(-0.1))),
            "spec.rules[0].websocket.rebalance.tolerance",
        ),
        (
            with(None, Some(bad_tolerance(f64::NAN))),
            "spec.rules[0].websocket.rebalance.tolerance",
        ),
        (
            with(
                None,
                Some(RebalanceSpec {
                    tolerance: None,
                    window: Some("5 minutes".into()),
                }),
            ),
            "spec.rules[0].websocket.rebalance.window",
        ),
    ] {
        assert_eq!(paths_of(&validate(&spec)), [field]);
    }
}

#[test]
fn auth_problems_name_their_fields() {
    let mut spec = valid();
    spec.rules[0].auth = Some(
        serde_yaml::from_str(
            r#"
jwt:
  jwks: { configMap: { name: Bad_Name }, url: "http://x" }
  allowHS256: true
  algorithms: [HS256]
  tokenFrom: [ { cookie: "a b" }, { bearer: true, query: x } ]
  claimsToHeaders: [ { claim: "a..b", header: "bad header" } ]
  clockSkew: soon
external:
  backend: { address: nowhere }
  path: relative
  cache: { duration: 0s }
  signinURL: not a url
"#,
        )
        .unwrap(),
    );
    let got = paths(&spec);
    for want in [
        "spec.rules[0].auth.jwt.jwks",
        "spec.rules[0].auth.jwt.allowHS256",
        "spec.rules[0].auth.jwt.tokenFrom[0].cookie",
        "spec.rules[0].auth.jwt.tokenFrom[1]",
        "spec.rules[0].auth.jwt.claimsToHeaders[0].claim",
        "spec.rules[0].auth.jwt.claimsToHeaders[0].header",
        "spec.rules[0].auth.jwt.clockSkew",
        "spec.rules[0].auth.external.backend.address",
        "spec.rules[0].auth.external.path",
        "spec.rules[0].auth.external.cache",
        "spec.rules[0].auth.external.cache.duration",
        "spec.rules[0].auth.external.signinURL",
    ] {
        assert!(got.iter().any(|p| p == want), "{want} not in {got:?}");
    }
}

#[test]
fn auth_translates_with_its_defaults() {
    let mut spec = valid();
    spec.rules[0].auth = Some(
        serde_yaml::from_str("jwt: { jwks: { url: \"https://id.example/jwks\" } }\n").unwrap(),
    );
    let route = translate_spec("default", &spec).ok().unwrap();
    let auth = route.rules[0].auth.as_ref().unwrap();
    let jwt = auth.jwt.as_ref().unwrap();
    assert_eq!(jwt.from, vec![model::TokenSource::Bearer]);
    assert_eq!(jwt.algorithms, model::Algorithm::ASYMMETRIC.to_vec());
    assert_eq!(jwt.clock_skew, model::JwtAuth::DEFAULT_SKEW);
    assert_eq!(jwt.close_on_expiry, Some(std::time::Duration::ZERO));
    assert!(
        matches!(&jwt.jwks, model::JwksSource::Url { refresh, ca: None, .. } if *refresh == model::JwtAuth::DEFAULT_REFRESH)
    );
    assert!(auth.external.is_none());
}
