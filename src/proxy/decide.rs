//! The pure half of request handling: (host, path, method, upgrade?, listener) plus the table
//! give a [`Decision`]. No I/O happens here, so every branch is unit-tested; `handler` carries
//! decisions out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::model::{ClientLimits, origin_allowed};
use crate::table::{BackendSet, CompiledRoute, HostBuf, HostRole, RouteTable, normalize_host};

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
    /// Whether this is a WebSocket upgrade (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT).
    pub upgrade: bool,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// Where it arrived.
    pub listener: Listener<'a>,
}

/// Static answers, each with a fixed status and short body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No or malformed Host.
    BadRequest,
    /// No route for the host, or no rule for the path.
    NotFound,
    /// TLS SNI names another route than Host, or a plain-HTTP route was asked over TLS.
    Misdirected,
    /// A normal request to a rule that only serves WebSockets.
    UpgradeRequired,
    /// A WebSocket upgrade from an origin the rule does not allow.
    ForbiddenOrigin,
    /// CONNECT that is not a WebSocket (wsgate is not a forward proxy).
    MethodNotAllowed,
    /// The backend has no endpoint.
    NoEndpoints,
}

impl Reject {
    /// HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            Reject::BadRequest => StatusCode::BAD_REQUEST,
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Reject::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Reject::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Plain-text body of the answer.
    pub fn body(self) -> &'static str {
        match self {
            Reject::BadRequest => "400 bad request: missing or malformed Host\n",
            Reject::NotFound => "404 not found\n",
            Reject::Misdirected => {
                "421 misdirected request: this connection cannot serve that host\n"
            }
            Reject::UpgradeRequired => {
                "426 upgrade required: this path only serves WebSocket connections\n"
            }
            Reject::ForbiddenOrigin => "403 forbidden: this origin may not open a WebSocket here\n",
            Reject::MethodNotAllowed => "405 method not allowed: wsgate is not a forward proxy\n",
            Reject::NoEndpoints => "503 service unavailable: no ready backend\n",
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Answer with a fixed status.
    Reject(Reject, Option<Arc<CompiledRoute>>),
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
    /// Forward a normal request.
    Forward {
        /// Where to.
        backend: Arc<BackendSet>,
        /// Time allowed for the response headers.
        timeout: Duration,
        /// Route, for logs, metrics and HSTS.
        route: Arc<CompiledRoute>,
    },
    /// Relay a WebSocket upgrade.
    Upgrade {
        /// Where to.
        backend: Arc<BackendSet>,
        /// Close the relay after this long without traffic.
        idle_timeout: Option<Duration>,
        /// Per-client limits, with the rule they count under.
        limits: Option<(ClientLimits, usize)>,
        /// Route, for logs, metrics and HSTS.
        route: Arc<CompiledRoute>,
    },
}

impl Decision {
    /// The route the decision was made for, if a route matched.
    pub fn route(&self) -> Option<&Arc<CompiledRoute>> {
        match self {
            Decision::Reject(_, route) => route.as_ref(),
            Decision::Redirect { route, .. }
            | Decision::Maintenance { route, .. }
            | Decision::Forward { route, .. }
            | Decision::Upgrade { route, .. } => Some(route),
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
}

impl RedirectKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Https => "https",
            RedirectKind::Host => "host",
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
    if req.method == Method::CONNECT && !req.upgrade {
        return Decision::Reject(Reject::MethodNotAllowed, None);
    }
    let raw_host = req.host.unwrap_or("");
    let mut buf = HostBuf::default();
    let Some(host) = normalize_host(raw_host, &mut buf) else {
        return Decision::Reject(Reject::BadRequest, None);
    };
    let Some(entry) = table.lookup(host) else {
        return Decision::Reject(Reject::NotFound, None);
    };
    let route = &entry.route;
    let id = || Some(route.clone());
    let redirect_status = if req.method == Method::GET || req.method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let redirect = |scheme: &str, host: &str, port: Option<&str>| Decision::Redirect {
        status: redirect_status,
        location: location(scheme, host, port, req.path, req.query),
        kind: if entry.role == HostRole::Redirect {
            RedirectKind::Host
        } else {
            RedirectKind::Https
        },
        route: route.clone(),
    };
    // The port the client used, kept on same-scheme redirects.
    let client_port = raw_host
        .rsplit_once(':')
        .filter(|(h, _)| !h.contains(':') || h.ends_with(']'))
        .map(|(_, p)| p);
    let https_port_text;
    let https_port = if cfg.https_redirect_port == 443 {
        None
    } else {
        https_port_text = cfg.https_redirect_port.to_string();
        Some(https_port_text.as_str())
    };

    match req.listener {
        Listener::Http => {
            let tls_redirect = route.tls.as_ref().is_some_and(|t| t.http_redirect);
            match (entry.role, tls_redirect) {
                (HostRole::Redirect, true) => {
                    return redirect("https", &route.canonical_host, https_port);
                }
                (HostRole::Redirect, false) => {
                    return redirect("http", &route.canonical_host, client_port);
                }
                (HostRole::Serve, true) => return redirect("https", host, https_port),
                (HostRole::Serve, false) => {}
            }
        }
        Listener::Https { sni } => {
            if route.tls.is_none() {
                return Decision::Reject(Reject::Misdirected, id());
            }
            // A connection whose certificate was chosen for one route must not be used to
            // reach another (RFC 9110 §15.5.20).
            if let Some(sni) = sni {
                let same = table
                    .lookup(sni)
                    .is_some_and(|e| Arc::ptr_eq(&e.route, route));
                if !same {
                    return Decision::Reject(Reject::Misdirected, id());
                }
            }
            if entry.role == HostRole::Redirect {
                return redirect("https", &route.canonical_host, client_port);
            }
        }
    }

    if let Some(body) = &route.maintenance {
        return Decision::Maintenance {
            body: body.clone(),
            route: route.clone(),
        };
    }
    let Some(rule) = route.rule_for(req.path) else {
        return Decision::Reject(Reject::NotFound, id());
    };
    let decision = if req.upgrade {
        match (&rule.websocket, &rule.http) {
            (Some(ws), _) if !origin_allowed(&ws.allowed_origins, req.origin) => {
                Decision::Reject(Reject::ForbiddenOrigin, id())
            }
            (Some(ws), _) => Decision::Upgrade {
                backend: ws.backend.clone(),
                idle_timeout: ws.idle_timeout,
                limits: ws.limits.map(|l| (l, rule.index)),
                route: route.clone(),
            },
            // A rule with only `http` passes upgrades through to the http backend.
            (None, Some(http)) => Decision::Upgrade {
                backend: http.backend.clone(),
                idle_timeout: None,
                limits: None,
                route: route.clone(),
            },
            (None, None) => Decision::Reject(Reject::NotFound, id()),
        }
    } else {
        match &rule.http {
            Some(http) => Decision::Forward {
                backend: http.backend.clone(),
                timeout: http.timeout,
                route: route.clone(),
            },
            None => Decision::Reject(Reject::UpgradeRequired, id()),
        }
    };
    match &decision {
        Decision::Forward { backend, .. } | Decision::Upgrade { backend, .. }
            if backend.endpoints().is_empty() =>
        {
            Decision::Reject(Reject::NoEndpoints, id())
        }
        _ => decision,
    }
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
mod tests {
    use super::*;
    use crate::model::build::{address, origins, route, rule, secs, service};
    use crate::model::{ClientLimits as Limits, Route};
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
            route("apps/optout")
                .host("optout.example.com")
                .tls("chat-tls")
                .no_http_redirect()
                .maintenance("<h1>Back soon</h1>")
                .rule(rule("/").http(address("127.0.0.1:9001")))
                .build(),
        ]
    }

    fn table() -> RouteTable {
        let (cert, key) =
            self_signed(&["chat.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
        let secrets = vec![TlsSecret {
            namespace: "apps".into(),
            name: "chat-tls".into(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            ca_pem: None,
        }];
        compile(&Snapshot {
            routes: routes().into_iter().map(Ok).collect(),
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
        upgrade: bool,
        origin: Option<&'static str>,
        listener: Listener<'static>,
    }

    fn get(host: &'static str, path: &'static str) -> Req {
        Req {
            host: Some(host),
            path,
            query: None,
            method: Method::GET,
            upgrade: false,
            origin: None,
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
        fn query(mut self, q: &'static str) -> Self {
            self.query = Some(q);
            self
        }
        fn origin(mut self, o: &'static str) -> Self {
            self.origin = Some(o);
            self
        }
    }

    fn run(req: Req, port: u16) -> Decision {
        let facts = RequestFacts {
            host: req.host,
            path: req.path,
            query: req.query,
            method: &req.method,
            upgrade: req.upgrade,
            origin: req.origin,
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

    fn reject_of(d: Decision) -> Reject {
        match d {
            Decision::Reject(r, _) => r,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    fn backend_of(d: Decision) -> (&'static str, String, Option<Duration>) {
        match d {
            Decision::Forward { backend, .. } => ("forward", backend.name.to_string(), None),
            Decision::Upgrade {
                backend,
                idle_timeout,
                ..
            } => ("upgrade", backend.name.to_string(), idle_timeout),
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
        assert_eq!(reject_of(run(live, 443)), Reject::UpgradeRequired);
        live = get("chat.example.com", "/live").tls(None).upgrade();
        assert_eq!(reject_of(run(live, 443)), Reject::ForbiddenOrigin);
        live = get("chat.example.com", "/live")
            .tls(None)
            .upgrade()
            .origin("https://chat.example.com");
        match run(live, 443) {
            Decision::Upgrade {
                backend, limits, ..
            } => {
                assert_eq!(&*backend.name, "127.0.0.1:5001");
                let (limits, rule) = limits.unwrap_or_else(|| panic!("limits"));
                assert_eq!((limits.max_connections, rule), (Some(5), 1));
            }
            other => panic!("{other:?}"),
        }
        // Origins only guard upgrades: a page may fetch from anywhere the rule serves.
        let other_origin = get("chat.example.com", "/")
            .tls(None)
            .origin("https://evil.example");
        assert_eq!(backend_of(run(other_origin, 443)).1, "127.0.0.1:8080");
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
            Reject::NotFound
        );
        // httpRedirect: false serves plain HTTP (here: in maintenance).
        assert!(matches!(
            run(get("optout.example.com", "/"), 443),
            Decision::Maintenance { .. }
        ));
    }

    #[test]
    fn rejects() {
        let cases: Vec<(Req, Reject)> = vec![
            (
                Req {
                    host: None,
                    ..get("x", "/")
                },
                Reject::BadRequest,
            ),
            (get("bad host", "/"), Reject::BadRequest),
            (
                get("chat.example.com", "/").method(Method::CONNECT),
                Reject::MethodNotAllowed,
            ),
            (get("unknown.example.org", "/"), Reject::NotFound),
            (
                get("chat.example.com", "/").tls(Some("optout.example.com")),
                Reject::Misdirected,
            ),
            (
                get("plain.example.com", "/app").tls(None),
                Reject::Misdirected,
            ),
            (
                get("chat.example.com", "/api/users").tls(None),
                Reject::NoEndpoints,
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
}
