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

use super::auth::{RemoteKeyCache, compile_auth};
use super::backends::{BackendContext, SetOptions, backend_set};
use super::balance::AddrMap;
use super::certs::{CertificateCache, Certs};
use super::report::{Problem, ProblemKind, RouteReport};
use super::shared::SharedEndpoints;
use super::{
    BackendSet, CompiledRoute, CompiledRule, Conditions, Endpoint, HeaderFilters, HostEntry,
    HostRole, HttpBackend, RouteTable, RouteTlsEntry, Split, TlsSecret, WebSocketBackend,
};
use crate::model::{
    BackendTarget, Filters, Hsts, JwksSource, PathMatch, Rejected, Route, Rule, Translated,
    WeightedBackend, meta,
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
    /// `ca.crt` of ConfigMaps, by (namespace, name): the CAs BackendTLSPolicies name.
    pub config_map_cas: HashMap<(String, String), Vec<u8>>,
    /// Named Service ports: (namespace, Service, port name) to port number.
    pub port_names: HashMap<(String, String, String), u16>,
    /// Current time (Unix seconds) for certificate expiry checks; `None` skips them. Passed in
    /// so the compile stays a pure function of its input.
    pub now: Option<i64>,
    /// Refuse `address` backends (in a cluster they would route to arbitrary IPs).
    pub deny_address_backends: bool,
    /// The ConfigMap and Secret keys that routes' auth names (JWKS documents), as found.
    pub auth_data: HashMap<DataRef, Vec<u8>>,
}

/// The type of the Secrets a route's JWKS may be in: only Secrets of this type are ever read
/// for auth, so no application's other Secrets are listed.
pub const JWKS_SECRET_TYPE: &str = "wsgate.dev/jwks";

/// A key of a ConfigMap or Secret that a route names (a JWKS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataRef {
    /// A Secret (else a ConfigMap).
    pub secret: bool,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The key.
    pub key: String,
}

impl DataRef {
    /// A ConfigMap key.
    pub fn config_map(namespace: &str, name: &str, key: &str) -> Self {
        Self::new(false, namespace, name, key)
    }

    /// A Secret key.
    pub fn secret(namespace: &str, name: &str, key: &str) -> Self {
        Self::new(true, namespace, name, key)
    }

    /// A key of a Secret (`secret`) or a ConfigMap.
    pub fn new(secret: bool, namespace: &str, name: &str, key: &str) -> Self {
        DataRef {
            secret,
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
        }
    }

    /// Every object key the routes' auth names (also of last good versions that still
    /// serve), for a source to look up.
    pub fn named_by(routes: &[Arc<Translated>]) -> Vec<DataRef> {
        let mut refs: Vec<DataRef> = routes
            .iter()
            .filter_map(|t| match &**t {
                Ok(route) => Some(route),
                Err(rejected) => rejected.last_good.as_ref(),
            })
            .flat_map(|route| {
                let ns = route.meta.namespace.as_str();
                route.rules.iter().filter_map(move |rule| {
                    match &rule.auth.as_ref()?.jwt.as_ref()?.jwks {
                        JwksSource::ConfigMap { name, key } => {
                            Some(DataRef::config_map(ns, name, key))
                        }
                        JwksSource::Secret { name, key } => Some(DataRef::secret(ns, name, key)),
                        JwksSource::Url { .. } => None,
                    }
                })
            })
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }
}

impl std::fmt::Display for DataRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.secret {
            true => "Secret (type wsgate.dev/jwks)",
            false => "ConfigMap",
        };
        write!(
            f,
            "{kind} {}/{} key {}",
            self.namespace, self.name, self.key
        )
    }
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
    client_configs: HashMap<(Option<u64>, bool), Arc<ClientConfig>>,
    /// Fetched JWKS, whose last good set must survive a rebuild.
    remote_keys: RemoteKeyCache,
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
        old_remote_keys: std::mem::take(&mut cache.remote_keys),
        remote_keys: &mut cache.remote_keys,
    };
    let mut table = RouteTable::default();
    let mut owners: HashMap<&str, Owner> = HashMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
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
        for warning in &route.warnings {
            report.add(ProblemKind::Ignored, warning.to_string());
        }
        let invalid = report.problems.len();
        refuse(route, snapshot, &owners, &mut report);
        if report.problems.len() > invalid {
            reports.push(report);
            continue;
        }
        if route.merge {
            // Joins the merged host of each of its names (made on first use); the hosts are
            // compiled once every route has joined.
            let hosts = route.hostnames.iter().map(|h| Some(h.as_str()));
            let catch_all = route.catch_all.then_some(None);
            for host in hosts.chain(catch_all) {
                let key = host.unwrap_or(CATCH_ALL);
                let at = match owners.get(key) {
                    Some(Owner::Group(at)) => *at,
                    _ => {
                        groups.push(Group {
                            host,
                            members: Vec::new(),
                        });
                        owners.insert(key, Owner::Group(groups.len() - 1));
                        groups.len() - 1
                    }
                };
                groups[at].members.push((route, reports.len()));
            }
            report.programmed = true;
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
            owners.insert(host.as_str(), Owner::Route(compiled.id.clone()));
            table.insert(host, compiled.clone(), role);
        }
        table.routes.push(compiled);
        report.programmed = true;
        reports.push(report);
    }
    for group in &groups {
        let compiled = Arc::new(compile_group(
            group,
            snapshot,
            &mut certs,
            &mut shared,
            &mut reports,
        ));
        let entry = |role| HostEntry {
            route: compiled.clone(),
            role,
        };
        match group.host.and_then(|h| group.hostname(h)) {
            Some(host) => table.insert(host, compiled.clone(), HostRole::Serve),
            None => table.catch_all = Some(entry(HostRole::Serve)),
        }
        // Redirect names go last, so a name another route serves is never taken from it.
        for (route, at) in &group.members {
            for host in &route.redirect_hostnames {
                match owners.get(host.as_str()) {
                    None => {
                        owners.insert(host.as_str(), Owner::Route(compiled.id.clone()));
                        table.insert(host, compiled.clone(), HostRole::Redirect);
                    }
                    Some(owner) if !owner.is(&compiled) => reports[*at].add(
                        ProblemKind::HostnameConflict,
                        format!(
                            "{host} is not redirected to {}: it is served by {}",
                            compiled.canonical_host,
                            owner.name(&groups)
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        table.routes.push(compiled);
    }
    table.certificates = certs.served();
    cache.client_configs.retain(|_, c| Arc::strong_count(c) > 1);
    (table, reports)
}

/// The key of the catch-all host in `owners` (no hostname is empty).
const CATCH_ALL: &str = "";

/// Who serves a hostname in the table being compiled.
enum Owner {
    /// A route of its own.
    Route(Arc<str>),
    /// The merged routes of `groups[i]`.
    Group(usize),
}

impl Owner {
    fn is(&self, compiled: &CompiledRoute) -> bool {
        matches!(self, Owner::Route(id) if *id == compiled.id)
    }

    fn name(&self, groups: &[Group<'_>]) -> String {
        match self {
            Owner::Route(id) => format!("route {id}"),
            Owner::Group(at) => groups[*at].name(),
        }
    }
}

/// A hostname served by several routes with merged rules (Ingress semantics), or the
/// catch-all host (`host: None`).
struct Group<'s> {
    host: Option<&'s str>,
    /// The routes, oldest first, with the index of each one's report.
    members: Vec<(&'s Route, usize)>,
}

impl<'s> Group<'s> {
    /// The parsed hostname of `host`, from its first member.
    fn hostname(&self, host: &str) -> Option<&'s crate::model::Hostname> {
        let (route, _) = self.members.first()?;
        route.hostnames.iter().find(|h| h.as_str() == host)
    }

    /// Who serves the host, for problems.
    fn name(&self) -> String {
        match self.members.first() {
            Some((route, _)) => format!(
                "{} {}/{}",
                route.meta.kind.as_str(),
                route.meta.namespace,
                route.meta.name
            ),
            None => "another route".into(),
        }
    }
}

/// What keeps a translated route out of the table: an address backend where they are
/// refused, or a hostname an older route already owns.
fn refuse(
    route: &Route,
    snapshot: &Snapshot,
    owners: &HashMap<&str, Owner>,
    report: &mut RouteReport,
) {
    for rule in &route.rules {
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
    // A merged route's redirect names never conflict: they are only added where free.
    let redirects = (!route.merge).then_some(&route.redirect_hostnames);
    for host in route
        .hostnames
        .iter()
        .chain(redirects.into_iter().flatten())
    {
        match owners.get(host.as_str()) {
            Some(Owner::Group(_)) if route.merge => {}
            Some(Owner::Route(owner)) => report.add(
                ProblemKind::HostnameConflict,
                format!("hostname {host} is already served by route {owner}"),
            ),
            Some(Owner::Group(_)) => report.add(
                ProblemKind::HostnameConflict,
                format!("hostname {host} is already served by an older Ingress"),
            ),
            None => {}
        }
    }
}

/// Every backend a rule names.
fn rule_backends(rule: &Rule) -> impl Iterator<Item = &WeightedBackend> {
    let http = rule.http.iter().flat_map(|h| &h.backends);
    http.chain(rule.websocket.iter().flat_map(|w| &w.backends))
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
        cert: t.secret.as_ref().and_then(|secret| {
            let ns = t.secret_namespace.as_deref().unwrap_or(namespace);
            certs.get(ns, secret, &mut report.problems)
        }),
        http_redirect: t.http_redirect,
        https_only: t.https_only,
    });
    let hsts = route.tls.as_ref().and_then(|t| t.hsts).and_then(hsts_value);
    let ctx = BackendContext {
        namespace,
        snapshot,
        certs,
    };
    let rules = route
        .rules
        .iter()
        .map(|rule| compile_rule(&ctx, rule, shared, &mut report.problems))
        .collect();
    CompiledRoute {
        id: format!("{namespace}/{}", route.meta.name).into(),
        // Translation guarantees at least one hostname.
        canonical_host: route.hostnames.first().map_or("", |h| h.as_str()).into(),
        tls,
        hsts,
        maintenance: route.maintenance.clone(),
        rules: sorted(rules),
    }
}

/// The routes merged into one hostname, as one route: the rules of all of them (a path two
/// claim goes to the older, unless the older's is only a fallback), TLS, HSTS and maintenance
/// from the oldest that sets them. Each rule's backends resolve in its own route's namespace.
fn compile_group<'s>(
    group: &Group<'s>,
    snapshot: &'s Snapshot,
    certs: &mut Certs<'_>,
    shared: &mut SharedEndpoints<'s, '_>,
    reports: &mut [RouteReport],
) -> CompiledRoute {
    // The winner of each path: (route, report index, rule).
    let mut chosen: Vec<(&'s Route, usize, &'s Rule)> = Vec::new();
    for &(route, at) in &group.members {
        for rule in &route.rules {
            let same = chosen
                .iter()
                .position(|(_, _, r)| r.matches == rule.matches);
            match same {
                None => chosen.push((route, at, rule)),
                Some(i) if chosen[i].2.fallback && !rule.fallback => chosen[i] = (route, at, rule),
                Some(_) if rule.fallback => {}
                Some(i) => {
                    let owner = chosen[i].0;
                    reports[at].add(
                        ProblemKind::PathConflict,
                        format!(
                            "path {} on {} is already served by {} {}/{}; this one is left out",
                            rule.matches.path.as_str(),
                            group.host.unwrap_or("the catch-all host"),
                            owner.meta.kind.as_str(),
                            owner.meta.namespace,
                            owner.meta.name
                        ),
                    );
                }
            }
        }
    }
    let mut tls = None;
    let mut hsts = None;
    // The oldest member naming a Secret, else the oldest with TLS at all (https forced with
    // the default certificate).
    let with_secret =
        |(r, _): &&(&Route, usize)| r.tls.as_ref().is_some_and(|t| t.secret.is_some());
    let member = group.members.iter().find(with_secret);
    let member = member.or_else(|| group.members.iter().find(|(r, _)| r.tls.is_some()));
    if let Some(&(route, at)) = member {
        if let Some(t) = &route.tls {
            let namespace = route.meta.namespace.as_str();
            let problems = &mut reports[at].problems;
            tls = Some(RouteTlsEntry {
                cert: t.secret.as_ref().and_then(|secret| {
                    let ns = t.secret_namespace.as_deref().unwrap_or(namespace);
                    certs.get(ns, secret, problems)
                }),
                http_redirect: t.http_redirect,
                https_only: t.https_only,
            });
            hsts = t.hsts.and_then(hsts_value);
        }
    }
    if group.host.is_none() {
        // The catch-all host answers on https too, with the listener's default certificate.
        tls.get_or_insert(RouteTlsEntry {
            cert: None,
            http_redirect: false,
            https_only: false,
        });
    }
    let mut rules = Vec::with_capacity(chosen.len());
    for (route, at, rule) in chosen {
        let ctx = BackendContext {
            namespace: route.meta.namespace.as_str(),
            snapshot,
            certs,
        };
        rules.push(compile_rule(&ctx, rule, shared, &mut reports[at].problems));
    }
    let first = group.members.first().map(|(r, _)| r);
    let id = match first {
        Some(route) if group.members.len() == 1 => {
            format!("{}/{}", route.meta.namespace, route.meta.name)
        }
        Some(route) => format!(
            "{}/{}+{}",
            route.meta.namespace,
            route.meta.name,
            group.members.len() - 1
        ),
        None => String::new(),
    };
    CompiledRoute {
        id: id.into(),
        canonical_host: group.host.unwrap_or("").into(),
        tls,
        hsts,
        maintenance: group
            .members
            .iter()
            .find_map(|(r, _)| r.maintenance.clone()),
        rules: sorted(rules),
    }
}

/// One rule with its backends resolved.
fn compile_rule<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    rule: &'s Rule,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> CompiledRule {
    let m = &rule.matches;
    let conditions =
        (m.method.is_some() || !m.headers.is_empty() || !m.query.is_empty()).then(|| {
            Box::new(Conditions {
                method: m.method.clone(),
                headers: m.headers.as_slice().into(),
                query: m.query.as_slice().into(),
            })
        });
    let redirect = [
        rule.http.as_ref().map(|h| &h.filters),
        rule.websocket.as_ref().map(|w| &w.filters),
    ]
    .into_iter()
    .flatten()
    .find_map(|f| f.redirect.clone());
    let http = rule.http.as_ref().and_then(|h| {
        let on = SetOptions {
            balance: &h.balance,
            connect_timeout: h.connect_timeout,
            max_sockets_per_endpoint: None,
            rebalance: None,
        };
        Some(HttpBackend {
            backends: split(ctx, &h.backends, on, shared, problems)?,
            timeout: h.timeout,
            max_body: h.max_body,
            limits: h.limits,
            rewrite: h.filters.rewrite.clone(),
            headers: header_filters(&h.filters),
        })
    });
    let websocket = rule.websocket.as_ref().and_then(|w| {
        let on = SetOptions {
            balance: &w.balance,
            connect_timeout: w.connect_timeout,
            max_sockets_per_endpoint: w.capacity.max_per_endpoint,
            rebalance: w.rebalance,
        };
        Some(WebSocketBackend {
            backends: split(ctx, &w.backends, on, shared, problems)?,
            idle_timeout: w.idle_timeout,
            handshake_timeout: w.handshake_timeout,
            max_lifetime: w.max_lifetime,
            keepalive: w.keepalive,
            max_connections: w.capacity.max_connections,
            allowed_origins: w.allowed_origins.as_slice().into(),
            limits: w.limits,
            rewrite: w.filters.rewrite.clone(),
            headers: header_filters(&w.filters),
        })
    });
    let auth = rule
        .auth
        .as_ref()
        .map(|a| Arc::new(compile_auth(ctx, a, shared, problems)));
    CompiledRule {
        prefix: m.path.as_str().into(),
        exact: matches!(m.path, PathMatch::Exact(_)),
        conditions,
        index: rule.index,
        // `None` rather than an empty list: the common case costs no reference count.
        allowed_sources: (!rule.allowed_sources.is_empty())
            .then(|| rule.allowed_sources.as_slice().into()),
        redirect: redirect.map(Box::new),
        http,
        websocket,
        auth,
    }
}

/// The weighted backends of an action; `None` when it has none (a redirect). When every
/// weight is zero the action has nowhere to go, and its traffic gets 500 (Gateway API).
fn split<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    backends: &'s [WeightedBackend],
    on: SetOptions<'_>,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> Option<Split> {
    if backends.is_empty() {
        return None;
    }
    let sets: Vec<_> = backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| {
            let set = backend_set(ctx, &b.backend, on, shared, problems);
            (set, b.weight)
        })
        .collect();
    Split::weighted(sets).or_else(|| {
        let nowhere = BackendSet {
            unresolved: true,
            ..BackendSet::new("no backend with a weight", Vec::new())
        };
        Some(Split::single(Arc::new(nowhere)))
    })
}

/// The header changes of an action, if it makes any.
fn header_filters(filters: &Filters) -> Option<Arc<HeaderFilters>> {
    let changes = HeaderFilters {
        request: filters.request_headers.clone(),
        response: filters.response_headers.clone(),
    };
    (changes != HeaderFilters::default()).then(|| Arc::new(changes))
}

/// Rules in match order: the longest path first, an exact match before a prefix of the same
/// path (the Ingress rule; and as an exact match is never shorter than a prefix that also
/// matches, every exact match wins first, as the Gateway API asks); then a rule with a method,
/// then more header matches, then more query matches (Gateway API precedence). The stable
/// sort keeps the older route and the object's order among equals.
fn sorted(mut rules: Vec<CompiledRule>) -> Vec<CompiledRule> {
    use std::cmp::Reverse;
    rules.sort_by_key(|r| {
        let c = r.conditions.as_deref();
        (
            Reverse(r.prefix.len()),
            !r.exact,
            c.is_none_or(|c| c.method.is_none()),
            Reverse(c.map_or(0, |c| c.headers.len())),
            Reverse(c.map_or(0, |c| c.query.len())),
        )
    });
    rules
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
