use super::*;
use crate::model::build::{address, origins, route, rule, secs, service};
use crate::model::{ClientLimits as Limits, PathRewrite, RequestRedirect, Route};
use crate::table::{Snapshot, TlsSecret, compile, self_signed};

fn routes() -> Vec<Route> {
    vec![
        route("apps/chat")
            .host("chat.example.com")
            .redirect_host("www.chat.example.com")
            .tls("chat-tls")
            .rule(
                rule("/")
                    .http(address("127.0.0.1:8080"))
                    .websocket_with(address("127.0.0.1:5000"), |w| {
                        w.idle_timeout = Some(secs(3600))
                    }),
            )
            .rule(
                rule("/live").websocket_with(address("127.0.0.1:5001"), |w| {
                    w.allowed_origins = origins(&["https://chat.example.com"]);
                    w.limits = Some(Limits {
                        max_connections: Some(5),
                        rate: None,
                        burst: 1,
                    });
                }),
            )
            .rule(rule("/legacy").http(address("127.0.0.1:8081")))
            .rule(rule("/api").http(service("api", 80)))
            .build(),
        route("apps/plain")
            .host("plain.example.com")
            .redirect_host("www.plain.example.com")
            .rule(rule("/app").http(address("127.0.0.1:9000")))
            .build(),
        route("apps/rewrite")
            .host("rw.example.com")
            .rule(rewriting(rule("/app"), "/"))
            .rule(rewriting(rule("/v1"), "/api/v1/"))
            .rule(rewriting(rule("/"), "/root"))
            .rule(rewriting(rule("/x").exact(), "/y"))
            .rule(
                rule("/private")
                    .http_with(address("127.0.0.1:9002"), |h| {
                        h.max_body = Some(1024);
                        h.limits = Some(Limits {
                            max_connections: None,
                            rate: Some(3),
                            burst: 15,
                        });
                    })
                    .sources(&["10.0.0.0/8"]),
            )
            .build(),
        route("apps/gw")
            .host("gw.example.com")
            .rule(rule("/m").http(address("10.0.0.1:1")))
            .rule(rule("/m").method(Method::POST).http(address("10.0.0.2:1")))
            .rule(rule("/h").http(address("10.0.0.3:1")))
            .rule(
                rule("/h")
                    .header("x-env", "canary")
                    .http(address("10.0.0.4:1")),
            )
            .rule(
                rule("/h")
                    .header("x-env", "canary")
                    .header("x-user", "7")
                    .http(address("10.0.0.5:1")),
            )
            .rule(rule("/h").query("v", "2").http(address("10.0.0.6:1")))
            .rule(rule("/h/deeper").http(address("10.0.0.7:1")))
            .rule(rule("/h").exact().http(address("10.0.0.8:1")))
            .rule(rule("/old").redirect(RequestRedirect {
                scheme: Some("https"),
                hostname: Some(crate::model::Hostname::parse("new.example.com").unwrap()),
                port: None,
                path: Some(PathRewrite::Prefix("/new".into())),
                status: StatusCode::FOUND,
            }))
            .rule(rule("/port").redirect(RequestRedirect {
                scheme: None,
                hostname: None,
                port: Some(8443),
                path: Some(PathRewrite::Full("/elsewhere".into())),
                status: StatusCode::MOVED_PERMANENTLY,
            }))
            .rule(rule("/same").redirect(RequestRedirect {
                scheme: None,
                hostname: Some(crate::model::Hostname::parse("other.example.com").unwrap()),
                port: None,
                path: None,
                status: StatusCode::SEE_OTHER,
            }))
            .rule(rule("/timed").websocket_with(address("10.0.0.10:1"), |w| {
                w.handshake_timeout = Some(secs(5));
                w.max_lifetime = Some(crate::model::Lifetime {
                    max: secs(3600),
                    jitter_percent: 10,
                });
            }))
            .rule(rule("/full").http_with(address("10.0.0.9:1"), |h| {
                h.filters.rewrite = Some(PathRewrite::Full("/fixed".into()))
            }))
            .build(),
        route("apps/optout")
            .host("optout.example.com")
            .tls("chat-tls")
            .no_http_redirect()
            .maintenance("<h1>Back soon</h1>")
            .rule(rule("/").http(address("127.0.0.1:9001")))
            .build(),
    ]
}

/// `r` with an http and a websocket backend that both replace its prefix with `to`.
fn rewriting(r: crate::model::build::RuleBuilder, to: &str) -> crate::model::build::RuleBuilder {
    let rewrite = Some(crate::model::PathRewrite::Prefix(to.into()));
    let ws_rewrite = rewrite.clone();
    r.http_with(address("127.0.0.1:9003"), |h| h.filters.rewrite = rewrite)
        .websocket_with(address("127.0.0.1:9004"), |w| {
            w.filters.rewrite = ws_rewrite
        })
}

fn table() -> RouteTable {
    let (cert, key) = self_signed(&["chat.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
    let secrets = vec![TlsSecret {
        namespace: "apps".into(),
        name: "chat-tls".into(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: None,
    }];
    compile(&Snapshot {
        routes: routes().into_iter().map(|r| Arc::new(Ok(r))).collect(),
        secrets,
        ..Default::default()
    })
    .0
}

struct Req {
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    method: Method,
    headers: HeaderMap,
    upgrade: bool,
    malformed: bool,
    listener: Listener<'static>,
}

fn get(host: &'static str, path: &'static str) -> Req {
    Req {
        host: Some(host),
        path,
        query: None,
        method: Method::GET,
        headers: HeaderMap::new(),
        upgrade: false,
        malformed: false,
        listener: Listener::Http,
    }
}

impl Req {
    fn tls(mut self, sni: Option<&'static str>) -> Self {
        self.listener = Listener::Https { sni };
        self
    }
    fn upgrade(mut self) -> Self {
        self.upgrade = true;
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn malformed(mut self) -> Self {
        self.malformed = true;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        let value = http::HeaderValue::from_static(value);
        self.headers
            .append(http::HeaderName::from_static(name), value);
        self
    }
    fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
}

fn run(req: Req, port: u16) -> Decision {
    let facts = RequestFacts {
        host: req.host,
        path: req.path,
        query: req.query,
        method: &req.method,
        headers: &req.headers,
        upgrade: req.upgrade,
        malformed: req.malformed,
        listener: req.listener,
    };
    decide(
        &table(),
        &facts,
        &DecideConfig {
            https_redirect_port: port,
        },
    )
}

fn redirect_of(d: Decision) -> (u16, String) {
    match d {
        Decision::Redirect {
            status, location, ..
        } => (status.as_u16(), location),
        other => panic!("expected a redirect, got {other:?}"),
    }
}

fn reject_of(d: Decision) -> ClientFault {
    match d {
        Decision::Reject(r, _) => r,
        other => panic!("expected a reject, got {other:?}"),
    }
}

fn backend_of(d: Decision) -> (&'static str, String, Option<Duration>) {
    match d {
        Decision::Forward(ForwardPlan { backend, .. }) => {
            ("forward", backend.name.to_string(), None)
        }
        Decision::Upgrade(UpgradePlan {
            backend,
            idle_timeout,
            ..
        }) => ("upgrade", backend.name.to_string(), idle_timeout),
        other => panic!("expected a backend, got {other:?}"),
    }
}

#[test]
fn redirect_matrix() {
    let https = |p: &str| format!("https://chat.example.com{p}");
    let cases: Vec<(Req, u16, (u16, String))> = vec![
        // HTTP listener, tls route: to https, 301 for GET/HEAD, 308 for the rest.
        (
            get("chat.example.com", "/a").query("x=1&y=2"),
            443,
            (301, https("/a?x=1&y=2")),
        ),
        (
            get("chat.example.com:8080", "/a").method(Method::HEAD),
            443,
            (301, https("/a")),
        ),
        (
            get("chat.example.com", "/a").method(Method::POST),
            443,
            (308, https("/a")),
        ),
        (
            get("chat.example.com", "/a").method(Method::DELETE),
            443,
            (308, https("/a")),
        ),
        (
            get("CHAT.example.com", "/"),
            8443,
            (301, "https://chat.example.com:8443/".into()),
        ),
        // Upgrades over plain HTTP are redirected too (browsers will then use wss://).
        (
            get("chat.example.com", "/ws").upgrade(),
            443,
            (301, https("/ws")),
        ),
        // www → bare host over https in one hop, from either listener.
        (
            get("www.chat.example.com", "/p").query("q"),
            443,
            (301, https("/p?q")),
        ),
        (
            get("www.chat.example.com:8080", "/p"),
            8443,
            (301, "https://chat.example.com:8443/p".into()),
        ),
        (
            get("www.chat.example.com", "/p").tls(Some("www.chat.example.com")),
            443,
            (301, https("/p")),
        ),
        (
            get("www.chat.example.com:8443", "/p").tls(None),
            443,
            (301, "https://chat.example.com:8443/p".into()),
        ),
        // Plain route: www → bare over http, keeping the client's port.
        (
            get("www.plain.example.com:8080", "/app"),
            443,
            (301, "http://plain.example.com:8080/app".into()),
        ),
    ];
    for (req, port, want) in cases {
        let label = format!("{:?} {} {:?}", req.host, req.path, req.listener);
        assert_eq!(redirect_of(run(req, port)), want, "{label}");
    }
}

#[test]
fn routing_by_path_and_upgrade() {
    let t = |host| get(host, "/").tls(Some("chat.example.com"));
    let mut r = t("chat.example.com");
    assert_eq!(backend_of(run(r, 443)).1, "127.0.0.1:8080");
    r = t("chat.example.com").upgrade();
    assert_eq!(
        backend_of(run(r, 443)),
        (
            "upgrade",
            "127.0.0.1:5000".into(),
            Some(Duration::from_secs(3600))
        )
    );
    // Longest prefix wins; websocket-only rule answers 426 to normal requests.
    let mut live = get("chat.example.com", "/live/room1").tls(None);
    assert_eq!(reject_of(run(live, 443)), ClientFault::UpgradeRequired);
    // The rule's origins and limits travel with the decision, for the admit phase.
    live = get("chat.example.com", "/live").tls(None).upgrade();
    match run(live, 443) {
        Decision::Upgrade(UpgradePlan {
            backend,
            allowed_origins,
            access,
            ..
        }) => {
            assert_eq!(&*backend.name, "127.0.0.1:5001");
            assert_eq!(allowed_origins.len(), 1);
            let limits = access.and_then(|a| a.limits);
            let (limits, rule) = limits.unwrap_or_else(|| panic!("limits"));
            assert_eq!((limits.max_connections, rule), (Some(5), 1));
        }
        other => panic!("{other:?}"),
    }
    // A backend without endpoints is still chosen: the connect phase answers 503.
    let api = get("chat.example.com", "/api/users").tls(None);
    assert_eq!(backend_of(run(api, 443)).1, "service apps/api:80");
    // http-only rule takes upgrades to its http backend, without an idle timeout.
    let legacy = get("chat.example.com", "/legacy/socket")
        .tls(None)
        .upgrade();
    assert_eq!(
        backend_of(run(legacy, 443)),
        ("upgrade", "127.0.0.1:8081".into(), None)
    );
    // Segment matching: /livex is not /live.
    let livex = get("chat.example.com", "/livex").tls(None);
    assert_eq!(backend_of(run(livex, 443)).1, "127.0.0.1:8080");
    // Plain route served on HTTP; a path outside its rules is 404.
    assert_eq!(
        backend_of(run(get("plain.example.com", "/app/x"), 443)).1,
        "127.0.0.1:9000"
    );
    assert_eq!(
        reject_of(run(get("plain.example.com", "/other"), 443)),
        ClientFault::NotFound
    );
    // httpRedirect: false serves plain HTTP (here: in maintenance).
    assert!(matches!(
        run(get("optout.example.com", "/"), 443),
        Decision::Maintenance { .. }
    ));
}

#[test]
fn rejects() {
    let cases: Vec<(Req, ClientFault)> = vec![
        (
            Req {
                host: None,
                ..get("x", "/")
            },
            ClientFault::BadRequest,
        ),
        (get("bad host", "/"), ClientFault::BadRequest),
        (
            get("chat.example.com", "/").method(Method::CONNECT),
            ClientFault::MethodNotAllowed,
        ),
        (get("unknown.example.org", "/"), ClientFault::NotFound),
        (
            get("chat.example.com", "/").tls(Some("optout.example.com")),
            ClientFault::Misdirected,
        ),
        (
            get("plain.example.com", "/app").tls(None),
            ClientFault::Misdirected,
        ),
    ];
    for (req, want) in cases {
        let label = format!("{:?} {}", req.host, req.path);
        assert_eq!(reject_of(run(req, 443)), want, "{label}");
    }
}

#[test]
fn maintenance_answers_normal_requests_and_upgrades() {
    for req in [
        get("optout.example.com", "/").tls(None),
        get("optout.example.com", "/").tls(None).upgrade(),
    ] {
        match run(req, 443) {
            Decision::Maintenance { body, route } => {
                assert_eq!(&body[..], b"<h1>Back soon</h1>");
                assert_eq!(&*route.id, "apps/optout");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_malformed_target_is_400_before_any_route_is_looked_at() {
    // Even for a host that would redirect or serve: nothing about the request is trusted.
    for req in [
        get("chat.example.com", "/").malformed(),
        get("chat.example.com", "/ws").upgrade().malformed(),
        get("nobody.example.com", "/").tls(None).malformed(),
    ] {
        assert!(
            matches!(
                run(req, 443),
                Decision::Reject(ClientFault::BadRequest, None)
            ),
            "malformed"
        );
    }
}

fn access_of(d: Decision) -> Access {
    match d {
        Decision::Forward(plan) => plan.access.map(|a| *a).unwrap_or_default(),
        Decision::Upgrade(plan) => plan.access.map(|a| *a).unwrap_or_default(),
        other => panic!("expected forward or upgrade, got {other:?}"),
    }
}

#[test]
fn a_rewritten_prefix_keeps_the_rest_of_the_path_for_requests_and_upgrades() {
    for (path, want) in [
        ("/app", "/"),
        ("/app/", "/"),
        ("/app/chat/room", "/chat/room"),
        ("/v1", "/api/v1/"),
        ("/v1/users", "/api/v1/users"),
        ("/other", "/root/other"),
        ("/", "/root/"),
        ("/x", "/y"),
    ] {
        let plain = access_of(run(get("rw.example.com", path), 443));
        assert_eq!(plain.rewritten_path.as_deref(), Some(want), "{path}");
        let upgrade = access_of(run(get("rw.example.com", path).upgrade(), 443));
        assert_eq!(upgrade.rewritten_path.as_deref(), Some(want), "{path}");
    }
    // Rules without a rewrite leave the path alone.
    let chat = access_of(run(get("chat.example.com", "/x").tls(None), 443));
    assert_eq!(chat.rewritten_path, None);
}

#[test]
fn sources_body_limit_and_request_rate_travel_with_a_forward() {
    let access = access_of(run(get("rw.example.com", "/private/doc"), 443));
    assert_eq!(access.max_body, Some(1024));
    assert_eq!(access.allowed_sources.as_deref().map(<[_]>::len), Some(1));
    let (limits, rule) = access.limits.unwrap_or_else(|| panic!("limits"));
    assert_eq!(
        (limits.rate, limits.max_connections, rule),
        (Some(3), None, 4)
    );
    // A rule that checks nothing carries nothing.
    match run(get("chat.example.com", "/").tls(None), 443) {
        Decision::Forward(plan) => assert!(plan.access.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn method_header_and_query_matches_follow_gateway_precedence() {
    let at = |req: Req| backend_of(run(req, 443)).1;
    let gw = |path| get("gw.example.com", path);
    // A method match outranks none.
    assert_eq!(at(gw("/m").method(Method::POST)), "10.0.0.2:1");
    assert_eq!(at(gw("/m")), "10.0.0.1:1");
    // More header matches outrank fewer; headers outrank query parameters only by count
    // after the method; a longer prefix and an exact path outrank any condition.
    assert_eq!(at(gw("/h/x")), "10.0.0.3:1");
    assert_eq!(at(gw("/h/x").header("x-env", "canary")), "10.0.0.4:1");
    assert_eq!(
        at(gw("/h/x").header("x-env", "canary").header("x-user", "7")),
        "10.0.0.5:1"
    );
    assert_eq!(at(gw("/h/x").header("x-env", "Canary")), "10.0.0.3:1");
    assert_eq!(at(gw("/h/x").query("v=2")), "10.0.0.6:1");
    assert_eq!(at(gw("/h/x").query("a=1&v=%32")), "10.0.0.6:1");
    // The first parameter of a name counts.
    assert_eq!(at(gw("/h/x").query("v=1&v=2")), "10.0.0.3:1");
    assert_eq!(
        at(gw("/h/x").query("v=2").header("x-env", "canary")),
        "10.0.0.4:1"
    );
    assert_eq!(at(gw("/h/deeper").header("x-env", "canary")), "10.0.0.7:1");
    assert_eq!(at(gw("/h").header("x-env", "canary")), "10.0.0.8:1");
    // A repeated header is compared as its joined value.
    let repeated = gw("/h/x").header("x-env", "canary").header("x-env", "b");
    assert_eq!(at(repeated), "10.0.0.3:1");
}

#[test]
fn a_redirect_filter_answers_with_the_parts_it_sets() {
    let gw = |path| get("gw.example.com", path);
    let cases = [
        // Scheme, host and prefix replaced; a changed scheme drops the client's port.
        (
            gw("/old/page").query("a=1"),
            (302, "https://new.example.com/new/page?a=1"),
        ),
        (gw("/old"), (302, "https://new.example.com/new")),
        // Only the port and the whole path.
        (gw("/port/x"), (301, "http://gw.example.com:8443/elsewhere")),
        // Unchanged scheme keeps the port the client used.
        (
            get("gw.example.com:8080", "/same/x"),
            (303, "http://other.example.com:8080/same/x"),
        ),
        (
            get("gw.example.com:80", "/same/x"),
            (303, "http://other.example.com/same/x"),
        ),
        // Upgrades are redirected too.
        (
            gw("/old/ws").upgrade(),
            (302, "https://new.example.com/new/ws"),
        ),
    ];
    for (req, (status, location)) in cases {
        assert_eq!(redirect_of(run(req, 443)), (status, location.to_string()));
    }
}

#[test]
fn a_full_path_rewrite_replaces_the_whole_path() {
    let access = access_of(run(get("gw.example.com", "/full/a/b"), 443));
    assert_eq!(access.rewritten_path.as_deref(), Some("/fixed"));
}

#[test]
fn an_upgrade_plan_carries_the_rules_handshake_timeout_and_lifetime() {
    match run(get("gw.example.com", "/timed").upgrade(), 443) {
        Decision::Upgrade(plan) => {
            assert_eq!(plan.handshake_timeout, Some(secs(5)));
            assert_eq!(plan.max_lifetime.map(|l| l.max), Some(secs(3600)));
        }
        other => panic!("{other:?}"),
    }
}
