use super::*;
use crate::model::build::{address, origins, route, rule, secs, service};
use crate::model::{Balance, ClientLimits, FieldError, HashKey, Rejected};
use crate::table::{HostBuf, ProblemKind, normalize_host, self_signed};

fn snapshot(routes: Vec<Route>) -> Snapshot {
    Snapshot {
        routes: routes.into_iter().map(|r| Arc::new(Ok(r))).collect(),
        ..Default::default()
    }
}

/// `chat` with a redirect host, TLS and three rules, and a wildcard route beside it.
fn chat() -> Vec<Route> {
    vec![
        route("apps/chat")
            .host("chat.example.com")
            .redirect_host("www.chat.example.com")
            .tls("chat-tls")
            .rule(rule("/").http(address("127.0.0.1:8080")))
            .rule(rule("/ws/").websocket_with(address("127.0.0.1:5000"), |w| {
                w.idle_timeout = Some(secs(86_400))
            }))
            .rule(rule("/api").http_with(service("api", 80), |h| h.timeout = secs(5)))
            .build(),
        route("apps/wild")
            .host("*.example.com")
            .rule(rule("/").http(address("127.0.0.1:9000")))
            .build(),
    ]
}

fn lookup<'t>(table: &'t RouteTable, host: &str) -> Option<&'t HostEntry> {
    let mut buf = HostBuf::default();
    table.lookup(normalize_host(host, &mut buf)?)
}

#[test]
fn compiles_hosts_rules_and_reports() {
    let mut snap = snapshot(chat());
    let (cert, key) = self_signed(&["chat.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
    snap.secrets.push(TlsSecret {
        namespace: "apps".into(),
        name: "chat-tls".into(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: None,
    });
    let (table, reports) = compile(&snap);
    assert_eq!(table.host_count(), 3);
    let chat = lookup(&table, "Chat.Example.com:443").unwrap_or_else(|| panic!("chat"));
    assert_eq!(chat.role, HostRole::Serve);
    assert_eq!(&*chat.route.id, "apps/chat");
    assert!(table.certificate("chat.example.com").is_some());
    // Redirect hostname uses the same route (and certificate).
    let www = lookup(&table, "www.chat.example.com").unwrap_or_else(|| panic!("www"));
    assert_eq!(www.role, HostRole::Redirect);
    // Exact wins over the wildcard; the wildcard covers one label only.
    assert_eq!(
        &*lookup(&table, "foo.example.com")
            .map(|e| e.route.id.clone())
            .unwrap_or_default(),
        "apps/wild"
    );
    assert!(lookup(&table, "a.b.example.com").is_none());
    assert!(lookup(&table, "example.com").is_none());

    let route = &chat.route;
    let prefix = |p: &str| route.rule_for_path(p).map(|r| &*r.prefix);
    assert_eq!(prefix("/ws/room"), Some("/ws"));
    assert_eq!(prefix("/wsx"), Some("/"));
    assert_eq!(prefix("/api"), Some("/api"));
    let ws = route
        .rule_for_path("/ws")
        .and_then(|r| r.websocket.as_ref());
    assert_eq!(
        ws.and_then(|w| w.idle_timeout),
        Some(std::time::Duration::from_secs(86400))
    );

    // The service backend has no endpoints in this snapshot: reported, still programmed.
    assert!(reports.iter().all(|r| r.programmed));
    let chat_report = &reports[0];
    assert_eq!(chat_report.problems.len(), 1);
    assert_eq!(chat_report.problems[0].kind, ProblemKind::ServiceNotFound);
    assert!(
        route
            .rule_for_path("/api")
            .and_then(|r| r.http.as_ref())
            .is_some_and(|h| h.backends.first().pick(None, 0, None).is_none())
    );
}

#[test]
fn service_endpoints_are_resolved() {
    let mut snap = snapshot(chat());
    let ep: SocketAddr = "10.0.0.7:8080".parse().unwrap_or_else(|_| unreachable!());
    let key = ServiceKey {
        namespace: "apps".into(),
        name: "api".into(),
        port: 80,
    };
    snap.endpoints.insert(key, vec![ep]);
    let (table, reports) = compile(&snap);
    let api = lookup(&table, "chat.example.com")
        .and_then(|e| e.route.rule_for_path("/api/x"))
        .and_then(|r| r.http.as_ref())
        .unwrap_or_else(|| panic!("api rule"));
    assert_eq!(
        api.backends.first().pick(None, 0, None).map(|e| e.addr),
        Some(ep)
    );
    assert_eq!(api.timeout, std::time::Duration::from_secs(5));
    assert_eq!(reports[0].problems[0].kind, ProblemKind::SecretNotFound);
}

#[test]
fn older_route_wins_a_hostname_conflict() {
    let routes = || {
        vec![
            route("a/newer")
                .host("x.example.com")
                .created(1_780_000_000)
                .rule(rule("/").http(address("127.0.0.1:1")))
                .build(),
            route("b/older")
                .host("x.example.com")
                .created(1_770_000_000)
                .rule(rule("/").http(address("127.0.0.1:2")))
                .build(),
        ]
    };
    let (table, reports) = compile(&snapshot(routes()));
    assert_eq!(
        lookup(&table, "x.example.com").map(|e| &*e.route.id),
        Some("b/older")
    );
    let newer = reports
        .iter()
        .find(|r| r.name == "newer")
        .unwrap_or_else(|| panic!("report"));
    assert!(!newer.programmed);
    assert_eq!(newer.problems[0].kind, ProblemKind::HostnameConflict);
    assert!(newer.problems[0].message.contains("b/older"));
    // Same result whatever the input order.
    let mut swapped = snapshot(routes());
    swapped.routes.reverse();
    let (table2, _) = compile(&swapped);
    assert_eq!(
        lookup(&table2, "x.example.com").map(|e| &*e.route.id),
        Some("b/older")
    );
}

#[test]
fn invalid_route_is_left_out_and_others_keep_serving() {
    let mut snap = snapshot(chat());
    let problem = |path: &str| FieldError {
        path: path.into(),
        message: "wrong".into(),
    };
    let meta = route("default/bad").build().meta;
    snap.routes.push(Arc::new(Err(Box::new(Rejected {
        meta,
        problems: vec![problem("spec.hostnames[0]"), problem("spec.rules")],
        last_good: None,
    }))));
    let (table, reports) = compile(&snap);
    assert!(lookup(&table, "chat.example.com").is_some());
    let bad = reports
        .iter()
        .find(|r| r.name == "bad")
        .unwrap_or_else(|| panic!("report"));
    assert!(!bad.programmed);
    assert_eq!(bad.namespace, "default");
    let messages: Vec<_> = bad.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        vec!["spec.hostnames[0]: wrong", "spec.rules: wrong"]
    );
    assert!(
        bad.problems
            .iter()
            .all(|p| p.kind == ProblemKind::InvalidSpec)
    );
}

/// The model can say more than the data plane serves; such a route is refused, never
/// served as if the unsupported part were not there.
#[test]
fn weights_redirects_and_header_filters_compile_into_the_rule() {
    use crate::model::{HeaderChanges, RequestRedirect};
    let headers = HeaderChanges {
        set: vec![(http::header::ACCEPT, HeaderValue::from_static("x"))],
        ..HeaderChanges::default()
    };
    let routes = vec![
        route("apps/gw")
            .host("gw.test")
            .rule(rule("/split").http_split(vec![
                (address("127.0.0.1:1"), 1),
                (address("127.0.0.1:2"), 0),
                (address("127.0.0.1:3"), 2),
            ]))
            .rule(rule("/nowhere").http_split(vec![(address("127.0.0.1:1"), 0)]))
            .rule(rule("/away").redirect(RequestRedirect {
                scheme: Some("https"),
                hostname: None,
                port: None,
                path: None,
                status: http::StatusCode::FOUND,
            }))
            .rule(rule("/h").http_with(address("127.0.0.1:4"), |h| {
                h.filters.request_headers = headers.clone()
            }))
            .build(),
    ];
    let (table, reports) = compile(&snapshot(routes));
    assert!(reports[0].problems.is_empty(), "{:?}", reports[0].problems);
    let route = table.lookup("gw.test").map(|e| e.route.clone());
    let route = route.unwrap_or_else(|| panic!("gw.test"));
    let rule = |p| route.rule_for_path(p).unwrap_or_else(|| panic!("{p}"));
    let names = |p| -> Vec<String> {
        let http = rule(p).http.as_ref().unwrap_or_else(|| panic!("http"));
        http.backends
            .backends()
            .map(|b| b.name.to_string())
            .collect()
    };
    // A zero weight gets no backend set at all.
    assert_eq!(names("/split"), ["127.0.0.1:1", "127.0.0.1:3"]);
    // All weights zero: nowhere to go, so the traffic is answered 500.
    let nowhere = rule("/nowhere")
        .http
        .as_ref()
        .map(|h| h.backends.first().clone());
    assert!(nowhere.is_some_and(|b| b.unresolved));
    let away = rule("/away");
    assert!(away.http.is_none());
    assert_eq!(away.redirect.as_ref().map(|r| r.status.as_u16()), Some(302));
    let filters = rule("/h").http.as_ref().and_then(|h| h.headers.clone());
    assert_eq!(filters.map(|f| f.request.set.len()), Some(1));
    assert!(
        rule("/split")
            .http
            .as_ref()
            .is_some_and(|h| h.headers.is_none())
    );
}

#[test]
fn broken_certificate_is_reported_not_loaded() {
    let mut snap = snapshot(chat());
    snap.secrets.push(TlsSecret {
        namespace: "apps".into(),
        name: "chat-tls".into(),
        cert_pem: b"garbage".to_vec(),
        key_pem: b"garbage".to_vec(),
        ca_pem: None,
    });
    let (table, reports) = compile(&snap);
    assert!(table.certificate("chat.example.com").is_none());
    assert_eq!(reports[0].problems[0].kind, ProblemKind::InvalidCertificate);
    assert!(reports[0].programmed);
}

#[test]
fn maintenance_body_is_served() {
    let mut routes = chat();
    routes[0].maintenance = Some(bytes::Bytes::from_static(b"<h1>Back soon</h1>"));
    let (table, _) = compile(&snapshot(routes));
    let body = lookup(&table, "chat.example.com").and_then(|e| e.route.maintenance.clone());
    assert_eq!(body.as_deref(), Some(&b"<h1>Back soon</h1>"[..]));
}

fn balanced() -> Route {
    let tls = |ca: Option<&str>| {
        Some(crate::model::BackendTls {
            server_name: rustls_pki_types::ServerName::try_from("api.apps.svc").unwrap(),
            ca: ca.map(|name| crate::model::CaRef::Secret(name.into())),
        })
    };
    let api_ca = crate::model::Backend {
        tls: tls(Some("api-ca")),
        ..service("api", 80)
    };
    let api_tls = crate::model::Backend {
        tls: tls(None),
        ..service("api", 80)
    };
    let grpc = crate::model::Backend {
        protocol: crate::model::BackendProtocol::Http2,
        ..address("10.0.0.9:8080")
    };
    route("apps/lb")
        .host("lb.example.com")
        .tls("lb-tls")
        .hsts(Hsts {
            max_age: 600,
            include_sub_domains: true,
            preload: false,
        })
        .rule(rule("/").http(api_ca).websocket_with(api_tls, |w| {
            w.balance = Balance::ConsistentHash(HashKey::Cookie("room".into()));
            w.allowed_origins = origins(&["https://lb.example.com"]);
            w.limits = Some(ClientLimits {
                max_connections: None,
                rate: Some(4),
                burst: 4,
            });
        }))
        .rule(rule("/grpc").http_with(grpc, |h| {
            h.balance = Balance::LeastConnections;
            h.connect_timeout = Some(std::time::Duration::from_secs(3));
            h.max_body = Some(4096);
            h.filters.rewrite = Some(crate::model::PathRewrite::Prefix("/".into()));
        }))
        .build()
}

fn balanced_snapshot() -> Snapshot {
    let mut snap = snapshot(vec![balanced()]);
    let key = ServiceKey {
        namespace: "apps".into(),
        name: "api".into(),
        port: 80,
    };
    let ep: SocketAddr = "10.0.0.7:8443".parse().unwrap_or_else(|_| unreachable!());
    snap.endpoints.insert(key, vec![ep]);
    snap
}

#[test]
fn balancing_origins_limits_hsts_and_backend_protocols_compile() {
    let (table, reports) = compile(&balanced_snapshot());
    let route = &lookup(&table, "lb.example.com")
        .unwrap_or_else(|| panic!("route"))
        .route;
    assert_eq!(
        route.hsts.as_ref().map(|v| v.as_bytes()),
        Some(&b"max-age=600; includeSubDomains"[..])
    );
    let root = route.rule_for_path("/").unwrap_or_else(|| panic!("rule"));
    let http = root.http.as_ref().unwrap_or_else(|| panic!("http"));
    let ws = root.websocket.as_ref().unwrap_or_else(|| panic!("ws"));
    assert_eq!(http.backends.first().balance, Balance::RoundRobin);
    assert_eq!(
        ws.backends.first().balance,
        Balance::ConsistentHash(HashKey::Cookie("room".into()))
    );
    assert_eq!(ws.allowed_origins.len(), 1);
    assert_eq!(
        ws.limits,
        Some(ClientLimits {
            max_connections: None,
            rate: Some(4),
            burst: 4
        })
    );
    // TLS towards a Service: SNI defaults to its cluster name; no CA given means no
    // verification, a named CA that is missing means no connections (and a problem).
    let ws_tls = ws
        .backends
        .first()
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("tls"));
    assert_eq!(ws_tls.server_name.to_str(), "api.apps.svc");
    assert!(ws_tls.config.is_some());
    let http_tls = http
        .backends
        .first()
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("tls"));
    assert!(http_tls.config.is_none());
    assert!(
        reports[0]
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::CaSecretNotFound
                && p.message.contains("backend CA Secret apps/api-ca"))
    );
    let grpc = route.rule_for_path("/grpc/x").and_then(|r| r.http.as_ref());
    let grpc = grpc.unwrap_or_else(|| panic!("grpc"));
    assert!(grpc.backends.first().h2c);
    assert_eq!(grpc.backends.first().balance, Balance::LeastConnections);
    assert_eq!(
        grpc.backends.first().connect_timeout,
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(
        (grpc.max_body, grpc.rewrite.clone()),
        (
            Some(4096),
            Some(crate::model::PathRewrite::Prefix("/".into()))
        )
    );
    assert_eq!(http.backends.first().connect_timeout, None);
}

#[test]
fn a_ca_secret_gives_a_verifying_config_and_bad_pem_a_problem() {
    let mut snap = balanced_snapshot();
    let (cert, key) = self_signed(&["x.test".into()]).unwrap_or_else(|e| panic!("{e}"));
    snap.secrets.push(TlsSecret {
        namespace: "apps".into(),
        name: "api-ca".into(),
        cert_pem: cert.clone().into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: Some(cert.into_bytes()),
    });
    let (table, _) = compile(&snap);
    let tls_of = |table: &RouteTable| {
        lookup(table, "lb.example.com")
            .and_then(|e| e.route.rule_for_path("/"))
            .and_then(|r| r.http.as_ref())
            .and_then(|h| h.backends.first().tls.clone())
            .unwrap_or_else(|| panic!("tls"))
    };
    assert!(tls_of(&table).config.is_some());
    if let Some(s) = snap.secrets.last_mut() {
        s.ca_pem = Some(b"garbage".to_vec());
    }
    let (table, reports) = compile(&snap);
    assert!(tls_of(&table).config.is_none());
    assert!(
        reports[0]
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::InvalidCertificate)
    );
}

#[test]
fn endpoint_state_and_client_configs_survive_rebuilds() {
    let snap = balanced_snapshot();
    let mut cache = CompileCache::default();
    let state = |table: &RouteTable| {
        let rule = lookup(table, "lb.example.com").and_then(|e| e.route.rule_for_path("/"));
        let ws = rule.and_then(|r| r.websocket.as_ref());
        let ws = ws.unwrap_or_else(|| panic!("ws"));
        let config = ws
            .backends
            .first()
            .tls
            .as_ref()
            .and_then(|t| t.config.clone());
        (ws.backends.first().endpoints()[0].state.clone(), config)
    };
    let (first, _) = compile_with(&snap, &mut cache);
    let (state1, config1) = state(&first);
    let _guard = state1.begin();
    let (second, _) = compile_with(&snap, &mut cache);
    let (state2, config2) = state(&second);
    assert!(Arc::ptr_eq(&state1, &state2));
    assert_eq!(state2.active(), 1);
    assert!(matches!((config1, config2), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
    // An endpoint that leaves every table is forgotten.
    drop((first, second, _guard, state1, state2));
    let (_, _) = compile_with(&Snapshot::default(), &mut cache);
    assert!(cache.services.is_empty() && cache.addresses.is_empty());
}

#[test]
fn a_secret_rotated_to_garbage_keeps_its_last_good_certificate() {
    let mut snap = snapshot(chat());
    let (cert, key) = self_signed(&["chat.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
    let (_, other_key) = self_signed(&["x.test".into()]).unwrap_or_else(|e| panic!("{e}"));
    snap.secrets.push(TlsSecret {
        namespace: "apps".into(),
        name: "chat-tls".into(),
        cert_pem: cert.clone().into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: None,
    });
    let mut cache = CompileCache::default();
    let (good, _) = compile_with(&snap, &mut cache);
    let served = |t: &RouteTable| t.certificate("chat.example.com").cloned();
    let first = served(&good).unwrap_or_else(|| panic!("a certificate"));
    let problem = |reports: &[RouteReport]| {
        reports
            .iter()
            .flat_map(|r| &r.problems)
            .find(|p| p.kind == ProblemKind::InvalidCertificate)
            .map(|p| p.message.clone())
    };
    for (cert_pem, key_pem) in [
        (b"garbage".to_vec(), b"garbage".to_vec()),
        (cert.into_bytes(), other_key.into_bytes()),
    ] {
        if let Some(s) = snap.secrets.last_mut() {
            (s.cert_pem, s.key_pem) = (cert_pem, key_pem);
        }
        let (table, reports) = compile_with(&snap, &mut cache);
        let kept = served(&table).unwrap_or_else(|| panic!("the last good certificate"));
        assert!(Arc::ptr_eq(&first, &kept));
        let message = problem(&reports).unwrap_or_else(|| panic!("a problem"));
        assert!(
            message.contains("last good certificate keeps serving"),
            "{message}"
        );
        // Without the cache (a fresh process) there is no last good one: the default serves.
        let (fresh, _) = compile(&snap);
        assert!(served(&fresh).is_none());
    }
    // Once it has expired, the last good certificate is not served either.
    snap.now = Some(i64::MAX / 2);
    let (table, reports) = compile_with(&snap, &mut cache);
    assert!(served(&table).is_none());
    assert!(problem(&reports).is_some_and(|m| m.contains("default certificate")));
}

/// The id of the route serving `host` at `path`, and the backend of that rule.
fn served(table: &RouteTable, host: &str, path: &str) -> Option<(String, String)> {
    let entry = lookup(table, host)?;
    let rule = entry.route.rule_for_path(path)?;
    let backend = rule.http.as_ref()?.backends.first().name.to_string();
    Some((entry.route.id.to_string(), backend))
}

fn backend_at(table: &RouteTable, host: &str, path: &str) -> Option<String> {
    served(table, host, path).map(|(_, b)| b)
}

#[test]
fn ingresses_for_one_host_merge_their_paths_and_the_older_keeps_a_path_both_claim() {
    let snap = snapshot(vec![
        route("b/newer")
            .ingress()
            .created(20)
            .host("app.test")
            .rule(rule("/api").http(address("127.0.0.1:2")))
            .rule(rule("/chat").http(address("127.0.0.1:3")))
            .build(),
        route("a/older")
            .ingress()
            .created(10)
            .host("app.test")
            .rule(rule("/").http(address("127.0.0.1:1")))
            .rule(rule("/api").http(address("127.0.0.1:9")))
            .build(),
    ]);
    let (table, reports) = compile(&snap);
    assert_eq!(
        backend_at(&table, "app.test", "/x").as_deref(),
        Some("127.0.0.1:1")
    );
    assert_eq!(
        backend_at(&table, "app.test", "/api/v1").as_deref(),
        Some("127.0.0.1:9")
    );
    assert_eq!(
        backend_at(&table, "app.test", "/chat").as_deref(),
        Some("127.0.0.1:3")
    );
    let newer = reports.iter().find(|r| r.name == "newer");
    let newer = newer.unwrap_or_else(|| panic!("report"));
    assert!(newer.programmed, "the rest of the newer Ingress serves");
    assert_eq!(newer.problems.len(), 1, "{:?}", newer.problems);
    assert_eq!(newer.problems[0].kind, ProblemKind::PathConflict);
    assert!(newer.problems[0].message.contains("a/older"));
    assert!(
        reports
            .iter()
            .find(|r| r.name == "older")
            .is_some_and(|r| r.problems.is_empty())
    );
}

#[test]
fn an_ingress_and_a_websocket_route_on_one_host_go_to_the_older() {
    for (ingress_age, wsr_age, winner) in [(10, 20, "Ingress"), (20, 10, "WebSocketRoute")] {
        let snap = snapshot(vec![
            route("apps/ing")
                .ingress()
                .created(ingress_age)
                .host("app.test")
                .rule(rule("/").http(address("127.0.0.1:1")))
                .build(),
            route("apps/wsr")
                .created(wsr_age)
                .host("app.test")
                .rule(rule("/").http(address("127.0.0.1:2")))
                .build(),
        ]);
        let (table, reports) = compile(&snap);
        let want = if winner == "Ingress" {
            "127.0.0.1:1"
        } else {
            "127.0.0.1:2"
        };
        assert_eq!(backend_at(&table, "app.test", "/").as_deref(), Some(want));
        let loser = reports.iter().find(|r| !r.programmed);
        let loser = loser.unwrap_or_else(|| panic!("one is refused"));
        assert_eq!(loser.problems[0].kind, ProblemKind::HostnameConflict);
    }
}

#[test]
fn exact_paths_match_only_themselves_and_win_over_an_equal_prefix() {
    let snap = snapshot(vec![
        route("apps/a")
            .host("app.test")
            .rule(rule("/login").http(address("127.0.0.1:1")))
            .rule(rule("/login").exact().http(address("127.0.0.1:2")))
            .rule(rule("/").http(address("127.0.0.1:3")))
            .build(),
    ]);
    let (table, _) = compile(&snap);
    assert_eq!(
        backend_at(&table, "app.test", "/login").as_deref(),
        Some("127.0.0.1:2")
    );
    assert_eq!(
        backend_at(&table, "app.test", "/login/x").as_deref(),
        Some("127.0.0.1:1")
    );
    assert_eq!(
        backend_at(&table, "app.test", "/log").as_deref(),
        Some("127.0.0.1:3")
    );
}

#[test]
fn the_catch_all_host_serves_unknown_hosts_and_a_fallback_yields_to_any_rule() {
    let snap = snapshot(vec![
        route("apps/default")
            .ingress()
            .created(10)
            .host("app.test")
            .catch_all()
            .rule(rule("/").fallback().http(address("127.0.0.1:1")))
            .build(),
        route("apps/site")
            .ingress()
            .created(20)
            .host("app.test")
            .rule(rule("/").http(address("127.0.0.1:2")))
            .build(),
    ]);
    let (table, reports) = compile(&snap);
    // The newer explicit `/` beats the older fallback, without a conflict.
    assert_eq!(
        backend_at(&table, "app.test", "/").as_deref(),
        Some("127.0.0.1:2")
    );
    assert!(reports.iter().all(|r| r.problems.is_empty()), "{reports:?}");
    // Any other host reaches the catch-all, which also answers on https.
    assert_eq!(
        backend_at(&table, "other.test", "/x").as_deref(),
        Some("127.0.0.1:1")
    );
    let catch_all = lookup(&table, "other.test").unwrap_or_else(|| panic!("catch-all"));
    assert!(
        catch_all
            .route
            .tls
            .as_ref()
            .is_some_and(|t| t.cert.is_none())
    );
    // Exact and wildcard names still win.
    assert!(lookup(&table, "app.test").is_some_and(|e| !Arc::ptr_eq(&e.route, &catch_all.route)));
}

#[test]
fn a_service_port_named_by_name_resolves_through_the_service() {
    use crate::model::{BackendTarget, ServicePort};
    let mut backend = service("web", 80);
    backend.target = BackendTarget::Service {
        namespace: None,
        name: "web".into(),
        port: ServicePort::Name("http".into()),
    };
    let mut snap = snapshot(vec![
        route("apps/a")
            .host("app.test")
            .rule(rule("/").http(backend))
            .build(),
    ]);
    let key = ServiceKey {
        namespace: "apps".into(),
        name: "web".into(),
        port: 8080,
    };
    let ep: SocketAddr = "10.0.0.1:9000".parse().unwrap_or_else(|_| unreachable!());
    snap.endpoints.insert(key, vec![ep]);
    let (table, reports) = compile(&snap);
    assert!(
        reports[0]
            .problems
            .iter()
            .any(|p| p.message.contains("no port named \"http\""))
    );
    snap.port_names
        .insert(("apps".into(), "web".into(), "http".into()), 8080);
    let (table2, reports) = compile(&snap);
    assert!(reports[0].problems.is_empty(), "{:?}", reports[0].problems);
    let set = |t: &RouteTable| {
        let e = lookup(t, "app.test").and_then(|e| e.route.rule_for_path("/"))?;
        Some(e.http.as_ref()?.backends.first().endpoints().len())
    };
    assert_eq!((set(&table), set(&table2)), (Some(0), Some(1)));
}

#[test]
fn a_merged_host_serves_the_certificate_of_its_oldest_route_with_tls() {
    let mut snap = snapshot(vec![
        route("apps/plain")
            .ingress()
            .created(10)
            .host("app.test")
            .rule(rule("/a").http(address("127.0.0.1:1")))
            .build(),
        route("apps/secure")
            .ingress()
            .created(20)
            .host("app.test")
            .tls("app-tls")
            .rule(rule("/b").http(address("127.0.0.1:2")))
            .build(),
    ]);
    let (cert, key) = self_signed(&["app.test".into()]).unwrap_or_else(|e| panic!("{e}"));
    snap.secrets.push(TlsSecret {
        namespace: "apps".into(),
        name: "app-tls".into(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: None,
    });
    let (table, reports) = compile(&snap);
    assert!(reports.iter().all(|r| r.problems.is_empty()), "{reports:?}");
    assert!(table.certificate("app.test").is_some());
}

#[test]
fn a_merged_hosts_redirect_name_is_added_only_where_no_route_serves_it() {
    let snap = snapshot(vec![
        route("apps/site")
            .ingress()
            .created(10)
            .host("example.test")
            .redirect_host("www.example.test")
            .rule(rule("/").http(address("127.0.0.1:1")))
            .build(),
        route("apps/blog")
            .ingress()
            .created(20)
            .host("blog.test")
            .redirect_host("www.blog.test")
            .rule(rule("/").http(address("127.0.0.1:2")))
            .build(),
        // A newer route serves www.blog.test itself: it keeps it, the redirect is reported.
        route("apps/www-blog")
            .created(30)
            .host("www.blog.test")
            .rule(rule("/").http(address("127.0.0.1:3")))
            .build(),
    ]);
    let (table, reports) = compile(&snap);
    let www = lookup(&table, "www.example.test").unwrap_or_else(|| panic!("www"));
    assert_eq!(www.role, HostRole::Redirect);
    assert_eq!(&*www.route.canonical_host, "example.test");
    assert_eq!(
        backend_at(&table, "www.blog.test", "/").as_deref(),
        Some("127.0.0.1:3")
    );
    let blog = reports
        .iter()
        .find(|r| r.name == "blog")
        .unwrap_or_else(|| panic!("blog"));
    assert!(blog.programmed);
    assert!(
        blog.problems
            .iter()
            .any(|p| p.message.contains("www.blog.test is not redirected")),
        "{:?}",
        blog.problems
    );
}
