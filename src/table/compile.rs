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
    BackendTarget, Hsts, PathMatch, Rejected, Route, Rule, Translated, WeightedBackend, meta,
};

/// Everything the table is compiled from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Routes as translated by their API, in the order the source saw them (the tie-break
    /// after creation time); a route that did not translate is reported and left out.
    /// Shared: a source keeps the translations of unchanged objects between rebuilds.
    pub routes: Vec<Arc<Translated>>,
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

impl Snapshot {
    /// The routes that translated.
    pub fn accepted(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter_map(|r| r.as_ref().as_ref().ok())
    }
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

/// The report of a rejected version whose last good version is served: the new generation
/// is the one described, with each problem and which generation still serves.
fn last_good_report(rejected: &Rejected, last: &Route) -> RouteReport {
    let mut report = RouteReport::new(&rejected.meta);
    let still = match last.meta.generation {
        Some(g) => format!("generation {g} is still served"),
        None => "the last good version is still served".to_string(),
    };
    for problem in &rejected.problems {
        report.add(ProblemKind::InvalidSpec, format!("{problem}; {still}"));
    }
    report
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
        let (route, mut report) = match &*snapshot.routes[i] {
            Ok(route) => (route, RouteReport::new(&route.meta)),
            Err(rejected) => match &rejected.last_good {
                // An invalid edit of a live route: the last good version serves, the report
                // says why the new one does not.
                Some(last) => (last, last_good_report(rejected, last)),
                None => {
                    let mut report = RouteReport::new(&rejected.meta);
                    for problem in &rejected.problems {
                        report.add(ProblemKind::InvalidSpec, problem.to_string());
                    }
                    reports.push(report);
                    continue;
                }
            },
        };
        let invalid = report.problems.len();
        refuse(route, snapshot, &owners, &mut report);
        if report.problems.len() > invalid {
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
            .and_then(|h| Some((h, h.backends.first()?)));
        let websocket = rule
            .websocket
            .as_ref()
            .and_then(|w| Some((w, w.backends.first()?)));
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
mod cluster_tests;
#[cfg(test)]
mod tests;
