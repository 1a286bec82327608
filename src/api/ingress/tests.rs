use super::*;

fn ingress(yaml: &str) -> Ingress {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn routes(yaml: &str) -> Vec<Route> {
    translate(&ingress(yaml), IngressOptions::default())
        .into_iter()
        .map(|t| t.unwrap_or_else(|r| panic!("{:?}", r.problems)))
        .collect()
}

fn problems(yaml: &str) -> Vec<String> {
    translate(&ingress(yaml), IngressOptions::default())
        .into_iter()
        .filter_map(Result::err)
        .flat_map(|r| r.problems.into_iter().map(|p| p.to_string()))
        .collect()
}

const CHAT: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: chat
  namespace: apps
  annotations:
    nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"
    nginx.ingress.kubernetes.io/proxy-send-timeout: "7200"
spec:
  ingressClassName: wsgate
  tls:
    - hosts: [chat.example.com]
      secretName: chat-tls
  rules:
    - host: chat.example.com
      http:
        paths:
          - path: /socket.io/
            pathType: Prefix
            backend: { service: { name: chat, port: { number: 3000 } } }
          - path: /health
            pathType: Exact
            backend: { service: { name: chat, port: { name: http } } }
    - host: "*.example.com"
      http:
        paths:
          - path: /
            pathType: ImplementationSpecific
            backend: { service: { name: web, port: { number: 80 } } }
"#;

#[test]
fn one_route_per_host_every_path_takes_upgrades_with_the_longer_timeout() {
    let routes = routes(CHAT);
    assert_eq!(routes.len(), 2);
    let chat = &routes[0];
    assert_eq!(chat.meta.kind, ObjectKind::Ingress);
    assert!(chat.merge && !chat.catch_all);
    assert_eq!(chat.hostnames[0].as_str(), "chat.example.com");
    let tls = chat.tls.as_ref().unwrap_or_else(|| panic!("tls"));
    assert_eq!(
        (tls.secret.as_deref(), tls.http_redirect),
        (Some("chat-tls"), true)
    );
    assert_eq!(
        chat.rules[0].matches.path,
        PathMatch::Prefix("/socket.io".into())
    );
    assert_eq!(
        chat.rules[1].matches.path,
        PathMatch::Exact("/health".into())
    );
    let ws = chat.rules[0]
        .websocket
        .as_ref()
        .unwrap_or_else(|| panic!("ws"));
    assert_eq!(ws.idle_timeout, Some(Duration::from_secs(7200)));
    let http = chat.rules[0]
        .http
        .as_ref()
        .unwrap_or_else(|| panic!("http"));
    assert_eq!(http.timeout, Duration::from_secs(3600));
    assert_eq!(
        chat.rules[1]
            .http
            .as_ref()
            .map(|h| h.backends[0].backend.target.clone()),
        Some(BackendTarget::Service {
            namespace: None,
            name: "chat".into(),
            port: ServicePort::Name("http".into())
        })
    );
    let wild = &routes[1];
    assert_eq!(wild.hostnames[0].as_str(), "*.example.com");
    assert!(wild.tls.is_none());
    assert_eq!(wild.rules[0].matches.path, PathMatch::Prefix("/".into()));
}

#[test]
fn without_annotations_sockets_never_idle_out() {
    let yaml = CHAT.replace("nginx.ingress.kubernetes.io/proxy", "x/proxy");
    let ws = routes(&yaml)[0].rules[0].websocket.clone();
    assert_eq!(ws.map(|w| w.idle_timeout), Some(None));
}

#[test]
fn a_max_lifetime_annotation_sets_the_socket_lifetime_with_its_jitter() {
    let yaml = CHAT.replace(
        "nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"",
        "wsgate.dev/websocket-max-lifetime: 2h\n    wsgate.dev/websocket-lifetime-jitter: 25%",
    );
    let ws = routes(&yaml)[0].rules[0].websocket.clone();
    let lifetime = ws.and_then(|w| w.max_lifetime);
    assert_eq!(
        lifetime,
        Some(crate::model::Lifetime {
            max: Duration::from_secs(7200),
            jitter_percent: 25
        })
    );
    let bad = CHAT.replace(
        "nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"",
        "wsgate.dev/websocket-max-lifetime: \"0s\"",
    );
    let found = problems(&bad);
    assert!(
        found.iter().any(|p| p.contains("websocket-max-lifetime")),
        "{found:?}"
    );
}

#[test]
fn rules_without_a_host_and_a_default_backend_make_a_catch_all_route() {
    let routes = routes(
        r#"
metadata: { name: d, namespace: apps }
spec:
  defaultBackend: { service: { name: fallback, port: { number: 80 } } }
  rules:
    - http:
        paths:
          - { path: /api, pathType: Prefix, backend: { service: { name: api, port: { number: 80 } } } }
    - host: a.test
      http:
        paths:
          - { path: /x, pathType: Prefix, backend: { service: { name: x, port: { number: 80 } } } }
"#,
    );
    assert_eq!(routes.len(), 2);
    assert!(routes[0].catch_all && routes[0].hostnames.is_empty());
    for route in &routes {
        let last = route.rules.last().unwrap_or_else(|| panic!("rules"));
        assert!(last.fallback, "defaultBackend is every host's fallback");
        assert_eq!(last.matches.path, PathMatch::Prefix("/".into()));
    }
    let alone = self::routes(
        "metadata: { name: d }\nspec:\n  defaultBackend: { service: { name: f, port: { number: 80 } } }\n",
    );
    assert!(alone.len() == 1 && alone[0].catch_all);
}

#[test]
fn honoured_annotations_map_onto_the_model() {
    let yaml = CHAT.replace(
        "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"\n",
        concat!(
            "    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n",
            "    nginx.ingress.kubernetes.io/from-to-www-redirect: \"true\"\n",
            "    nginx.ingress.kubernetes.io/upstream-hash-by: \"$http_x_user\"\n",
            "    nginx.ingress.kubernetes.io/limit-connections: \"3\"\n",
            "    nginx.ingress.kubernetes.io/limit-rps: \"2\"\n",
            "    nginx.ingress.kubernetes.io/backend-protocol: \"HTTPS\"\n",
            "    wsgate.dev/websocket-backend: \"chat-ws:ws\"\n",
            "    wsgate.dev/idle-timeout: \"0\"\n",
            "    wsgate.dev/allowed-origins: \"https://chat.example.com\"\n",
        ),
    );
    let chat = &routes(&yaml)[0];
    assert_eq!(chat.tls.as_ref().map(|t| t.http_redirect), Some(false));
    assert_eq!(chat.redirect_hostnames[0].as_str(), "www.chat.example.com");
    let ws = chat.rules[0]
        .websocket
        .as_ref()
        .unwrap_or_else(|| panic!("ws"));
    assert_eq!(ws.idle_timeout, None, "wsgate.dev/idle-timeout 0 wins");
    assert_eq!(
        ws.balance,
        Balance::ConsistentHash(HashKey::Header(HeaderName::from_static("x-user")))
    );
    assert_eq!(
        ws.limits,
        Some(ClientLimits {
            max_connections: Some(3),
            rate: Some(2),
            burst: 10
        })
    );
    assert_eq!(ws.allowed_origins.len(), 1);
    let target = &ws.backends[0].backend;
    assert_eq!(
        target.target,
        BackendTarget::Service {
            namespace: None,
            name: "chat-ws".into(),
            port: ServicePort::Name("ws".into())
        }
    );
    assert!(target.tls.as_ref().is_some_and(|t| t.ca.is_none()));
    assert!(chat.warnings.is_empty(), "{:?}", chat.warnings);
}

#[test]
fn affinity_sources_body_rewrite_connect_and_https_map_onto_the_model() {
    let yaml = CHAT.replace(
        "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"\n",
        concat!(
            "    nginx.ingress.kubernetes.io/affinity: cookie\n",
            "    nginx.ingress.kubernetes.io/session-cookie-max-age: \"172800\"\n",
            "    nginx.ingress.kubernetes.io/upstream-hash-by: \"$remote_addr\"\n",
            "    nginx.ingress.kubernetes.io/whitelist-source-range: \"10.0.0.0/8, 192.168.1.7\"\n",
            "    nginx.ingress.kubernetes.io/allowlist-source-range: \"2001:db8::/32\"\n",
            "    nginx.ingress.kubernetes.io/proxy-body-size: \"8m\"\n",
            "    nginx.ingress.kubernetes.io/limit-rps: \"4\"\n",
            "    nginx.ingress.kubernetes.io/limit-connections: \"2\"\n",
            "    nginx.ingress.kubernetes.io/rewrite-target: /\n",
            "    nginx.ingress.kubernetes.io/proxy-connect-timeout: \"3\"\n",
            "    nginx.ingress.kubernetes.io/force-ssl-redirect: \"true\"\n",
            "    nginx.ingress.kubernetes.io/backend-protocol: GRPCS\n",
        ),
    );
    let routes = routes(&yaml);
    let chat = &routes[0];
    let rule = &chat.rules[0];
    let http = rule.http.as_ref().unwrap_or_else(|| panic!("http"));
    let ws = rule.websocket.as_ref().unwrap_or_else(|| panic!("ws"));
    // The sticky cookie wins over hashing; its path defaults to the Ingress path.
    let sticky = Balance::Cookie(AffinityCookie {
        name: "INGRESSCOOKIE".into(),
        path: "/socket.io".into(),
        max_age: Some(172_800),
    });
    assert_eq!((&http.balance, &ws.balance), (&sticky, &sticky));
    let nets: Vec<Cidr> = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
        .iter()
        .map(|c| c.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rule.allowed_sources, nets);
    assert_eq!(http.max_body, Some(8 << 20));
    // Requests count against the rate only; sockets against both.
    let rate_only = ClientLimits {
        max_connections: None,
        rate: Some(4),
        burst: 20,
    };
    assert_eq!(http.limits, Some(rate_only));
    assert_eq!(ws.limits.and_then(|l| l.max_connections), Some(2));
    let rewrite = Some(PathRewrite::Prefix("/".into()));
    assert_eq!(
        (&http.filters.rewrite, &ws.filters.rewrite),
        (&rewrite, &rewrite)
    );
    assert_eq!(http.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(ws.connect_timeout, Some(Duration::from_secs(3)));
    let backend = &http.backends[0].backend;
    assert_eq!(backend.protocol, BackendProtocol::Http2);
    assert!(backend.tls.is_some(), "GRPCS is h2 over TLS");
    // force-ssl-redirect: the host without a tls entry is redirected too.
    let wildcard = routes[1].tls.as_ref().unwrap_or_else(|| panic!("tls"));
    assert_eq!(
        (wildcard.secret.as_deref(), wildcard.http_redirect),
        (None, true)
    );
    assert!(chat.warnings.is_empty(), "{:?}", chat.warnings);
}

#[test]
fn nginx_sizes_read_as_nginx_does() {
    assert_eq!(body_size("0"), Ok(None));
    assert_eq!(body_size("1024"), Ok(Some(1024)));
    assert_eq!(body_size("512k"), Ok(Some(512 << 10)));
    assert_eq!(body_size("8M"), Ok(Some(8 << 20)));
    assert_eq!(body_size("1g"), Ok(Some(1 << 30)));
    for bad in ["", "m", "8mb", "-1", "1.5m", "99999999999999g"] {
        assert!(body_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn other_annotations_are_reported_as_ignored_never_dropped() {
    let yaml = CHAT.replace(
        "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"\n",
        concat!(
            "    nginx.ingress.kubernetes.io/use-regex: \"true\"\n",
            "    nginx.ingress.kubernetes.io/configuration-snippet: \"more_set_headers x\"\n",
            "    wsgate.dev/no-such-thing: \"1\"\n",
        ),
    );
    let routes = routes(&yaml);
    let warnings: Vec<String> = routes[0].warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("configuration-snippet]: ignored"))
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("use-regex]: ignored: regular-expression"))
    );
    assert!(routes[1].warnings.is_empty(), "reported once per object");
}

#[test]
fn bad_values_name_their_field() {
    for (annotation, value, field) in [
        (
            "nginx.ingress.kubernetes.io/proxy-read-timeout",
            "60s",
            "proxy-read-timeout]",
        ),
        (
            "nginx.ingress.kubernetes.io/upstream-hash-by",
            "$request_uri",
            "upstream-hash-by]",
        ),
        (
            "nginx.ingress.kubernetes.io/backend-protocol",
            "FCGI",
            "backend-protocol]",
        ),
        (
            "nginx.ingress.kubernetes.io/ssl-redirect",
            "yes",
            "ssl-redirect]",
        ),
        ("wsgate.dev/websocket-backend", "chat", "websocket-backend]"),
        ("nginx.ingress.kubernetes.io/affinity", "ip", "affinity]"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-name",
            "a=b",
            "session-cookie-name]",
        ),
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/33",
            "whitelist-source-range]",
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-body-size",
            "big",
            "proxy-body-size]",
        ),
        (
            "nginx.ingress.kubernetes.io/rewrite-target",
            "/$2",
            "rewrite-target]: \"/$2\": capture groups",
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-connect-timeout",
            "5s",
            "proxy-connect-timeout]",
        ),
    ] {
        let yaml = CHAT.replace(
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"",
            &format!("{annotation}: \"{value}\""),
        );
        let found = problems(&yaml);
        assert!(
            found.iter().any(|p| p.contains(field)),
            "{annotation}: {found:?}"
        );
    }
    let resource = CHAT.replace(
        "backend: { service: { name: web, port: { number: 80 } } }",
        "backend: { resource: { kind: Bucket, name: b } }",
    );
    let found = problems(&resource);
    assert!(
        found.iter().any(|p| p
            .contains("spec.rules[1].http.paths[0].backend: resource backends are not supported")),
        "{found:?}"
    );
    // Only that host's route is refused.
    assert_eq!(
        translate(&ingress(&resource), IngressOptions::default())
            .iter()
            .filter(|t| t.is_ok())
            .count(),
        1
    );
}

#[test]
fn standalone_backends_take_the_address_annotation() {
    let yaml = CHAT.replace(
        "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"\n",
        "    wsgate.dev/address: \"chat=127.0.0.1:3000, web=127.0.0.1:8080\"\n",
    );
    let opts = IngressOptions { standalone: true };
    let routes: Vec<Route> = translate(&ingress(&yaml), opts)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let target = |r: &Route| {
        r.rules[0]
            .http
            .as_ref()
            .map(|h| h.backends[0].backend.target.clone())
    };
    assert_eq!(
        target(&routes[0]),
        Some(BackendTarget::Address(
            "127.0.0.1:3000".parse().unwrap_or_else(|_| unreachable!())
        ))
    );
    assert_eq!(
        target(&routes[1]),
        Some(BackendTarget::Address(
            "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!())
        ))
    );
    // In a cluster the annotation is reported and Services are used.
    let cluster = self::routes(&yaml);
    assert!(matches!(
        target(&cluster[0]),
        Some(BackendTarget::Service { .. })
    ));
    assert!(
        cluster[0]
            .warnings
            .iter()
            .any(|w| w.message.contains("ignored in a cluster"))
    );
}

fn class(name: &str, controller: &str, default: bool) -> IngressClass {
    let mut c: IngressClass = serde_yaml::from_str(&format!(
        "metadata: {{ name: {name} }}\nspec: {{ controller: {controller} }}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    if default {
        c.metadata.annotations =
            Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    }
    c
}

#[test]
fn class_selection_in_all_four_forms() {
    let with = |spec_class: Option<&str>, legacy: Option<&str>| {
        let mut ing = ingress(CHAT);
        if let Some(s) = ing.spec.as_mut() {
            s.ingress_class_name = spec_class.map(Into::into);
        }
        if let Some(l) = legacy {
            ing.metadata.annotations =
                Some([(LEGACY_CLASS_ANNOTATION.to_string(), l.to_string())].into());
        }
        ing
    };
    let classes = [
        class("wsgate", CONTROLLER, false),
        class("nginx", "k8s.io/ingress-nginx", true),
    ];
    let ours = Classes::from_classes(&classes, CONTROLLER, "wsgate");
    assert!(
        ours.claims(&with(Some("wsgate"), None)),
        "ingressClassName of our class"
    );
    assert!(
        !ours.claims(&with(Some("nginx"), None)),
        "another controller's class"
    );
    assert!(
        ours.claims(&with(None, Some("wsgate"))),
        "legacy annotation"
    );
    assert!(!ours.claims(&with(None, Some("nginx"))));
    assert!(
        !ours.claims(&with(None, None)),
        "no class, and ours is not the default"
    );
    let classes = [class("wsgate", CONTROLLER, true)];
    let default = Classes::from_classes(&classes, CONTROLLER, "wsgate");
    assert!(
        default.claims(&with(None, None)),
        "no class, ours is the default"
    );
    assert!(!default.claims(&with(Some("other"), None)));
}

#[test]
fn keepalive_rebalance_and_capacity_annotations_set_the_socket() {
    let yaml = CHAT.replace(
        "nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"",
        "wsgate.dev/websocket-keepalive-interval: 30s\n    wsgate.dev/websocket-rebalance-tolerance: \"0.3\"\n    wsgate.dev/websocket-max-connections: \"1000\"\n    wsgate.dev/websocket-max-connections-per-endpoint: \"200\"",
    );
    let ws = routes(&yaml)[0].rules[0].websocket.clone();
    let ws = ws.unwrap_or_else(|| panic!("no websocket action"));
    assert_eq!(
        ws.keepalive,
        Some(crate::model::Keepalive {
            interval: Duration::from_secs(30),
            timeout: crate::model::Keepalive::DEFAULT_TIMEOUT,
        })
    );
    assert_eq!(
        ws.rebalance,
        Some(crate::model::Rebalance {
            tolerance: 0.3,
            window: crate::model::Rebalance::DEFAULT_WINDOW,
        })
    );
    assert_eq!(
        ws.capacity,
        crate::model::Capacity {
            max_connections: Some(1000),
            max_per_endpoint: Some(200),
        }
    );
    for bad in [
        "wsgate.dev/websocket-keepalive-interval: \"0\"",
        "wsgate.dev/websocket-rebalance-tolerance: lots",
        "wsgate.dev/websocket-max-connections: \"0\"",
    ] {
        let yaml = CHAT.replace(
            "nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"",
            bad,
        );
        let name = bad.split(':').next().unwrap_or_default();
        let found = problems(&yaml);
        assert!(found.iter().any(|p| p.contains(name)), "{bad}: {found:?}");
    }
}

#[test]
fn auth_annotations_map_to_external_auth_and_jwt() {
    let yaml = CHAT.replace(
        "    nginx.ingress.kubernetes.io/proxy-send-timeout: \"7200\"\n",
        "    nginx.ingress.kubernetes.io/proxy-send-timeout: \"7200\"
    nginx.ingress.kubernetes.io/auth-url: \"http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth?x=1\"
    nginx.ingress.kubernetes.io/auth-signin: \"https://login.example.com/oauth2/start\"
    nginx.ingress.kubernetes.io/auth-response-headers: \"X-Auth-Request-User, X-Auth-Request-Email\"
    nginx.ingress.kubernetes.io/auth-method: GET
    nginx.ingress.kubernetes.io/auth-cache-key: $cookie__oauth2_proxy
    nginx.ingress.kubernetes.io/auth-cache-duration: 200 202 401 5m
    wsgate.dev/auth-jwt-jwks-configmap: idp/keys.json
    wsgate.dev/auth-jwt-issuer: https://id.example.com
    wsgate.dev/auth-jwt-audiences: chat, admin
    wsgate.dev/auth-jwt-token-from: cookie:session, protocol:token., bearer
    wsgate.dev/auth-jwt-claims-to-headers: sub:X-User
",
    );
    let routes = routes(&yaml);
    let auth = routes[0].rules[0].auth.as_ref().unwrap();
    let ext = auth.external.as_ref().unwrap();
    assert_eq!(
        ext.backend.target,
        BackendTarget::Service {
            namespace: Some("auth".into()),
            name: "oauth2-proxy".into(),
            port: ServicePort::Number(4180),
        }
    );
    assert_eq!(&*ext.path, "/oauth2/auth?x=1");
    assert_eq!(ext.method, Some(http::Method::GET));
    assert_eq!(ext.response_headers.len(), 2);
    assert_eq!(
        ext.signin.as_ref().unwrap().host(),
        Some("login.example.com")
    );
    let cache = ext.cache.as_ref().unwrap();
    assert_eq!(cache.key, model::CacheKey::Cookie("_oauth2_proxy".into()));
    assert_eq!(cache.ttl, Duration::from_secs(300));
    let jwt = auth.jwt.as_ref().unwrap();
    assert_eq!(
        jwt.jwks,
        model::JwksSource::ConfigMap {
            name: "idp".into(),
            key: "keys.json".into()
        }
    );
    assert_eq!(jwt.audiences.len(), 2);
    assert_eq!(
        jwt.from,
        vec![
            model::TokenSource::Cookie("session".into()),
            model::TokenSource::Protocol("token.".into()),
            model::TokenSource::Bearer
        ]
    );
    // Every path of the Ingress gets it.
    assert!(
        routes
            .iter()
            .all(|r| r.rules.iter().all(|rule| rule.auth.is_some()))
    );
    assert!(routes[0].warnings.is_empty(), "{:?}", routes[0].warnings);
}

#[test]
fn bad_auth_annotations_are_problems() {
    for (name, value) in [
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://auth.example.com/check",
        ),
        ("nginx.ingress.kubernetes.io/auth-url", "ftp://10.0.0.1/"),
        ("nginx.ingress.kubernetes.io/auth-cache-key", "$remote_user"),
        ("wsgate.dev/auth-jwt-jwks-url", "http://id.example.com/jwks"),
        ("wsgate.dev/auth-jwt-token-from", "header:x"),
    ] {
        let yaml = CHAT.replace(
            "    nginx.ingress.kubernetes.io/proxy-send-timeout: \"7200\"\n",
            &format!(
                "    nginx.ingress.kubernetes.io/proxy-send-timeout: \"7200\"\n    nginx.ingress.kubernetes.io/auth-url: \"http://10.0.0.9:80/\"\n    wsgate.dev/auth-jwt-jwks-configmap: keys\n    {name}: \"{value}\"\n"
            ),
        );
        let found = problems(&yaml);
        assert!(found.iter().any(|p| p.contains(name)), "{name}: {found:?}");
    }
}
