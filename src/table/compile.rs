//! The pure compile step: a [`Snapshot`] of translated routes, Secrets and endpoints in, a
//! [`RouteTable`] and one [`RouteReport`] per route out. No I/O, no clock, no randomness: the
//! same snapshot always compiles to the same table, which is what makes it safe to rebuild on
//! every change. Routes arrive already parsed ([`crate::model`]); this step only resolves
//! what they refer to and settles conflicts between them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use rustls::ClientConfig;

use super::backends::{BackendContext, backend_set};
use super::balance::AddrMap;
use super::certs::{CertificateCache, Certs};
use super::report::{ProblemKind, RouteReport};
use super::shared::SharedEndpoints;
use super::{
    CompiledRoute, CompiledRule, Endpoint, HostEntry, HostRole, HttpBackend, RouteTable,
    RouteTlsEntry, TlsSecret, WebSocketBackend,
};
use crate::model::{
    BackendTarget, Hsts, PathMatch, Route, Rule, Translated, WeightedBackend, meta,
};

/// Everything the table is compiled from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Routes as translated by their API, in the order the source saw them (the tie-break
    /// after creation time); a route that did not translate is reported and left out.
    pub routes: Vec<Translated>,
    /// TLS Secrets.
    pub secrets: Vec<TlsSecret>,
    /// Ready endpoints of each Service port.
    pub endpoints: HashMap<ServiceKey, Vec<SocketAddr>>,
    /// Current time (Unix seconds) for certificate expiry checks; `None` skips them. Passed in
    /// so the compile stays a pure function of its input.
    pub now: Option<i64>,
    /// Refuse `address` backends (in a cluster they would route to arbitrary IPs).
    pub deny_address_backends: bool,
}

/// A Service port, as a route's backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Namespace of the Service (the route's own).
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Service port number.
    pub port: u16,
}

/// Compiles a snapshot. Invalid routes and the losers of hostname conflicts are left out and
/// reported; everything else is served. Conflicts go to the older route (earlier
/// `creationTimestamp`, then earlier in the snapshot).
pub fn compile(snapshot: &Snapshot) -> (RouteTable, Vec<RouteReport>) {
    compile_with(snapshot, &mut CompileCache::default())
}

/// What one compile hands to the next: parsed certificates and backend TLS configs (so a
/// rebuild only parses what changed) and the endpoint lists, whose per-endpoint runtime state
/// (in-flight counts, passive health) the new table must share with the old one. An unchanged
/// list is reused whole; a changed one keeps the state of the addresses it still has. The
/// table a snapshot compiles to is the same with or without it.
#[derive(Debug, Default)]
pub struct CompileCache {
    certificates: CertificateCache,
    /// Endpoints of each Service port in the last compile.
    pub(super) services: HashMap<ServiceKey, Arc<[Endpoint]>>,
    /// Endpoints of `address` backends in the last compile.
    pub(super) addresses: AddrMap<Endpoint>,
    /// Backend TLS client configs by digest of their CA bundle (`None`: no verification).
    client_configs: HashMap<Option<u64>, Arc<ClientConfig>>,
}

/// [`compile`], reusing what earlier compiles parsed and sharing endpoint state with them.
pub fn compile_with(
    snapshot: &Snapshot,
    cache: &mut CompileCache,
) -> (RouteTable, Vec<RouteReport>) {
    let mut order: Vec<usize> = (0..snapshot.routes.len()).collect();
    order.sort_by_key(|&i| {
        let created = meta(&snapshot.routes[i]).created;
        (created.is_none(), created, i)
    });

    let mut certs = Certs::new(&snapshot.secrets, snapshot.now, &mut cache.certificates);
    // This compile's lists replace the last one's: what no route uses any more is forgotten.
    let mut shared = SharedEndpoints {
        ports: HashMap::new(),
        old_services: std::mem::take(&mut cache.services),
        services: &mut cache.services,
        old_addresses: std::mem::take(&mut cache.addresses),
        addresses: &mut cache.addresses,
        client_configs: &mut cache.client_configs,
    };
    let mut table = RouteTable::default();
    let mut owners: HashMap<&str, Arc<str>> = HashMap::new();
    let mut reports = Vec::with_capacity(order.len());

    for i in order {
        let route = match &snapshot.routes[i] {
            Ok(route) => route,
            Err(rejected) => {
                let mut report = RouteReport::new(&rejected.meta);
                for problem in &rejected.problems {
                    report.add(ProblemKind::InvalidSpec, problem.to_string());
                }
                reports.push(report);
                continue;
            }
        };
        let mut report = RouteReport::new(&route.meta);
        refuse(route, snapshot, &owners, &mut report);
        if !report.problems.is_empty() {
            reports.push(report);
            continue;
        }
        let compiled = Arc::new(compile_route(
            route,
            snapshot,
            &mut certs,
            &mut shared,
            &mut report,
        ));
        let served = route.hostnames.iter().map(|h| (h, HostRole::Serve));
        let redirected = route
            .redirect_hostnames
            .iter()
            .map(|h| (h, HostRole::Redirect));
        for (host, role) in served.chain(redirected) {
            owners.insert(host.as_str(), compiled.id.clone());
            let entry = HostEntry {
                route: compiled.clone(),
                role,
            };
            match host.wildcard_parent() {
                Some(parent) => table.wildcard.insert(parent.into(), entry),
                None => table.exact.insert(host.as_str().into(), entry),
            };
        }
        table.routes.push(compiled);
        report.programmed = true;
        reports.push(report);
    }
    table.certificates = certs.served();
    cache.client_configs.retain(|_, c| Arc::strong_count(c) > 1);
    (table, reports)
}

/// What keeps a translated route out of the table: a value this data plane does not serve,
/// an address backend where they are refused, or a hostname an older route already owns.
fn refuse(
    route: &Route,
    snapshot: &Snapshot,
    owners: &HashMap<&str, Arc<str>>,
    report: &mut RouteReport,
) {
    for rule in &route.rules {
        for why in unsupported(rule) {
            report.add(
                ProblemKind::Unsupported,
                format!("rule {}: {why} is not supported yet", rule.index),
            );
        }
        if snapshot.deny_address_backends {
            for b in rule_backends(rule) {
                if matches!(b.backend.target, BackendTarget::Address(_)) {
                    report.add(
                        ProblemKind::AddressBackendNotAllowed,
                        format!(
                            "{}.address: address backends are disabled in this cluster; use service+port (or start the controller with --allow-address-backends)",
                            b.backend.field
                        ),
                    );
                }
            }
        }
    }
    if !report.problems.is_empty() {
        return;
    }
    for host in route.hostnames.iter().chain(&route.redirect_hostnames) {
        if let Some(owner) = owners.get(host.as_str()) {
            report.add(
                ProblemKind::HostnameConflict,
                format!("hostname {host} is already served by route {owner}"),
            );
        }
    }
}

/// Every backend a rule names.
fn rule_backends(rule: &Rule) -> impl Iterator<Item = &WeightedBackend> {
    let http = rule.http.iter().flat_map(|h| &h.backends);
    http.chain(rule.websocket.iter().flat_map(|w| &w.backends))
}

/// The parts of a rule that the model expresses but the data plane does not serve yet. A
/// route using one is refused rather than served without it.
fn unsupported(rule: &Rule) -> Vec<&'static str> {
    let mut found = Vec::new();
    if matches!(rule.matches.path, PathMatch::Exact(_)) {
        found.push("an exact path match");
    }
    if !rule.matches.headers.is_empty() {
        found.push("a header match");
    }
    if rule.matches.method.is_some() {
        found.push("a method match");
    }
    let http_backends = rule.http.as_ref().map_or(1, |h| h.backends.len());
    let ws_backends = rule.websocket.as_ref().map_or(1, |w| w.backends.len());
    if http_backends != 1 || ws_backends != 1 {
        found.push("a rule without exactly one backend");
    }
    let filters = [
        rule.http.as_ref().map(|h| &h.filters),
        rule.websocket.as_ref().map(|w| &w.filters),
    ];
    if filters.into_iter().flatten().any(|f| !f.is_empty()) {
        found.push("a filter (redirect or header change)");
    }
    found
}

/// A route that passed [`refuse`], with what it refers to resolved.
fn compile_route<'s>(
    route: &'s Route,
    snapshot: &'s Snapshot,
    certs: &mut Certs<'_>,
    shared: &mut SharedEndpoints<'s, '_>,
    report: &mut RouteReport,
) -> CompiledRoute {
    let namespace = route.meta.namespace.as_str();
    let tls = route.tls.as_ref().map(|t| RouteTlsEntry {
        cert: certs.get(namespace, &t.secret, &mut report.problems),
        http_redirect: t.http_redirect,
    });
    let hsts = route.tls.as_ref().and_then(|t| t.hsts).and_then(hsts_value);
    let ctx = BackendContext {
        namespace,
        snapshot,
        certs,
    };
    let mut rules = Vec::with_capacity(route.rules.len());
    for rule in &route.rules {
        let problems = &mut report.problems;
        // `refuse` made sure each action has exactly one backend.
        let http = rule
            .http
            .as_ref()
            .zip(rule.http.as_ref().and_then(|h| h.backends.first()));
        let websocket = rule
            .websocket
            .as_ref()
            .zip(rule.websocket.as_ref().and_then(|w| w.backends.first()));
        rules.push(CompiledRule {
            prefix: rule.matches.path.as_str().into(),
            index: rule.index,
            http: http.map(|(h, b)| HttpBackend {
                backend: backend_set(&ctx, &b.backend, h.balance.clone(), shared, problems),
                timeout: h.timeout,
            }),
            websocket: websocket.map(|(w, b)| WebSocketBackend {
                backend: backend_set(&ctx, &b.backend, w.balance.clone(), shared, problems),
                idle_timeout: w.idle_timeout,
                allowed_origins: w.allowed_origins.as_slice().into(),
                limits: w.limits,
            }),
        });
    }
    // Longest prefix first; the stable sort keeps the object's order among equals.
    rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    CompiledRoute {
        id: format!("{namespace}/{}", route.meta.name).into(),
        // Translation guarantees at least one hostname.
        canonical_host: route.hostnames.first().map_or("", |h| h.as_str()).into(),
        tls,
        hsts,
        maintenance: route.maintenance.clone(),
        rules,
    }
}

/// `Strict-Transport-Security` for a route.
fn hsts_value(hsts: Hsts) -> Option<HeaderValue> {
    let mut value = format!("max-age={}", hsts.max_age);
    if hsts.include_sub_domains {
        value.push_str("; includeSubDomains");
    }
    if hsts.preload {
        value.push_str("; preload");
    }
    HeaderValue::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build::{address, origins, route, rule, secs, service};
    use crate::model::{Balance, ClientLimits, FieldError, HashKey, Rejected};
    use crate::table::{HostBuf, ProblemKind, normalize_host, self_signed};

    fn snapshot(routes: Vec<Route>) -> Snapshot {
        Snapshot {
            routes: routes.into_iter().map(Ok).collect(),
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
        let (cert, key) =
            self_signed(&["chat.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
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
        let prefix = |p: &str| route.rule_for(p).map(|r| &*r.prefix);
        assert_eq!(prefix("/ws/room"), Some("/ws"));
        assert_eq!(prefix("/wsx"), Some("/"));
        assert_eq!(prefix("/api"), Some("/api"));
        let ws = route.rule_for("/ws").and_then(|r| r.websocket.as_ref());
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
                .rule_for("/api")
                .and_then(|r| r.http.as_ref())
                .is_some_and(|h| h.backend.pick(None, 0, None).is_none())
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
            .and_then(|e| e.route.rule_for("/api/x"))
            .and_then(|r| r.http.as_ref())
            .unwrap_or_else(|| panic!("api rule"));
        assert_eq!(api.backend.pick(None, 0, None).map(|e| e.addr), Some(ep));
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
        snap.routes.push(Err(Box::new(Rejected {
            meta,
            problems: vec![problem("spec.hostnames[0]"), problem("spec.rules")],
        })));
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
    fn unsupported_model_values_refuse_the_route() {
        use crate::model::{HeaderMatch, PathMatch, WeightedBackend};
        type Edit = fn(&mut Route);
        let edits: [Edit; 4] = [
            |r| r.rules[0].matches.path = PathMatch::Exact("/".into()),
            |r| r.rules[0].matches.method = Some(http::Method::POST),
            |r| {
                r.rules[0].matches.headers.push(HeaderMatch {
                    name: http::header::ACCEPT,
                    value: HeaderValue::from_static("x"),
                })
            },
            |r| {
                if let Some(h) = r.rules[0].http.as_mut() {
                    h.backends.push(WeightedBackend {
                        backend: address("127.0.0.1:2"),
                        weight: 1,
                    });
                }
            },
        ];
        for edit in edits {
            let mut routes = chat();
            edit(&mut routes[0]);
            let (table, reports) = compile(&snapshot(routes));
            assert!(table.routes().iter().all(|r| &*r.id != "apps/chat"));
            assert!(!reports[0].programmed);
            assert_eq!(reports[0].problems[0].kind, ProblemKind::Unsupported);
        }
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
                ca_secret: ca.map(Into::into),
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
            protocol: crate::model::BackendProtocol::H2c,
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
            .rule(rule("/grpc").http_with(grpc, |h| h.balance = Balance::LeastConnections))
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
        let root = route.rule_for("/").unwrap_or_else(|| panic!("rule"));
        let http = root.http.as_ref().unwrap_or_else(|| panic!("http"));
        let ws = root.websocket.as_ref().unwrap_or_else(|| panic!("ws"));
        assert_eq!(http.backend.balance, Balance::RoundRobin);
        assert_eq!(
            ws.backend.balance,
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
        let ws_tls = ws.backend.tls.as_ref().unwrap_or_else(|| panic!("tls"));
        assert_eq!(ws_tls.server_name.to_str(), "api.apps.svc");
        assert!(ws_tls.config.is_some());
        let http_tls = http.backend.tls.as_ref().unwrap_or_else(|| panic!("tls"));
        assert!(http_tls.config.is_none());
        assert!(
            reports[0]
                .problems
                .iter()
                .any(|p| p.kind == ProblemKind::CaSecretNotFound
                    && p.message.contains("backend CA Secret apps/api-ca"))
        );
        let grpc = route.rule_for("/grpc/x").and_then(|r| r.http.as_ref());
        let grpc = grpc.unwrap_or_else(|| panic!("grpc"));
        assert!(grpc.backend.h2c);
        assert_eq!(grpc.backend.balance, Balance::LeastConnections);
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
                .and_then(|e| e.route.rule_for("/"))
                .and_then(|r| r.http.as_ref())
                .and_then(|h| h.backend.tls.clone())
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
            let rule = lookup(table, "lb.example.com").and_then(|e| e.route.rule_for("/"));
            let ws = rule.and_then(|r| r.websocket.as_ref());
            let ws = ws.unwrap_or_else(|| panic!("ws"));
            let config = ws.backend.tls.as_ref().and_then(|t| t.config.clone());
            (ws.backend.endpoints()[0].state.clone(), config)
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
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::model::build::{address, route, rule};
    use crate::table::{ProblemKind, self_signed};

    #[test]
    fn address_backends_can_be_refused() {
        let r = route("a/r")
            .host("a.test")
            .rule(rule("/").websocket(address("10.1.2.3:80")))
            .build();
        let mut snap = Snapshot {
            routes: vec![Ok(r)],
            ..Default::default()
        };
        assert!(compile(&snap).1[0].programmed);
        snap.deny_address_backends = true;
        let (table, reports) = compile(&snap);
        assert_eq!(table.routes().len(), 0);
        assert_eq!(
            reports[0].problems[0].kind,
            ProblemKind::AddressBackendNotAllowed
        );
        assert!(
            reports[0].problems[0]
                .message
                .starts_with("spec.rules[0].websocket.backend.address")
        );
    }

    #[test]
    fn expired_certificates_are_reported_not_loaded() {
        let r = route("a/r")
            .host("a.test")
            .tls("s")
            .rule(rule("/").http(address("10.1.2.3:80")))
            .build();
        let (cert, key) = self_signed(&["a.test".into()]).unwrap_or_else(|e| panic!("{e}"));
        let secret = TlsSecret {
            namespace: "a".into(),
            name: "s".into(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            ca_pem: None,
        };
        let mut snap = Snapshot {
            routes: vec![Ok(r)],
            secrets: vec![secret],
            ..Default::default()
        };
        // rcgen's default notAfter is 4096-01-01: fine today, expired in the year 5000.
        snap.now = Some(1_800_000_000);
        assert!(compile(&snap).0.certificate("a.test").is_some());
        snap.now = Some(95_617_584_000);
        let (table, reports) = compile(&snap);
        assert!(table.certificate("a.test").is_none());
        assert_eq!(reports[0].problems[0].kind, ProblemKind::InvalidCertificate);
        assert!(
            reports[0].problems[0].message.contains("expired"),
            "{}",
            reports[0].problems[0].message
        );
    }
}
