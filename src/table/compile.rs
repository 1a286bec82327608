//! The pure compile step: a [`Snapshot`] of objects in, a [`RouteTable`] and one
//! [`RouteReport`] per route out. No I/O, no clock, no randomness: the same snapshot always
//! compiles to the same table, which is what makes it safe to rebuild on every change.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rustls::ClientConfig;
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use super::balance::AddrMap;
use super::{
    BackendSet, BackendTlsEntry, Balance, CertificateInfo, ClientLimits, CompiledRoute,
    CompiledRule, DEFAULT_HTTP_TIMEOUT, Endpoint, HashKey, HostEntry, HostRole, HttpBackend,
    OriginPattern, RouteTable, RouteTlsEntry, TlsSecret, WebSocketBackend, backend_client_config,
    certified_key_from_pem, not_after,
};
use crate::api::{
    Backend, BackendProtocol, Hsts, LoadBalancing, LoadBalancingPolicy, WebSocketRoute,
    normalize_path_prefix, parse_duration, validate,
};

/// Everything the table is compiled from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Routes, in the order the source saw them (the tie-break after creation time).
    pub routes: Vec<WebSocketRoute>,
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

/// What happened to one route in a compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    /// Namespace of the route.
    pub namespace: String,
    /// Name of the route.
    pub name: String,
    /// `metadata.generation` that was compiled.
    pub generation: Option<i64>,
    /// Whether the route is in the table.
    pub programmed: bool,
    /// Everything wrong with it, most important first.
    pub problems: Vec<Problem>,
}

/// One problem with a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem, which decides the status condition it lands in.
    pub kind: ProblemKind,
    /// What a user can do about it.
    pub message: String,
}

/// Kinds of route problems; each maps to a condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The spec fails validation.
    InvalidSpec,
    /// An older route already serves one of its hostnames.
    HostnameConflict,
    /// `tls.secretName` names no TLS Secret in the route's namespace.
    SecretNotFound,
    /// `backend.tls.caSecretName` names no TLS Secret with a `ca.crt` in the route's namespace.
    CaSecretNotFound,
    /// The Secret's certificate or key cannot be served.
    InvalidCertificate,
    /// A backend Service port is unknown.
    ServiceNotFound,
    /// A backend Service has no ready endpoint.
    NoReadyEndpoints,
    /// An `address` backend where only Service backends are allowed.
    AddressBackendNotAllowed,
}

impl ProblemKind {
    /// The CamelCase condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            ProblemKind::InvalidSpec => "InvalidSpec",
            ProblemKind::HostnameConflict => "HostnameConflict",
            ProblemKind::SecretNotFound => "SecretNotFound",
            ProblemKind::CaSecretNotFound => "CaSecretNotFound",
            ProblemKind::InvalidCertificate => "InvalidCertificate",
            ProblemKind::ServiceNotFound => "ServiceNotFound",
            ProblemKind::NoReadyEndpoints => "NoReadyEndpoints",
            ProblemKind::AddressBackendNotAllowed => "AddressBackendNotAllowed",
        }
    }

    /// Whether the problem keeps the route out of the table (rather than degrading it).
    pub fn rejects_route(self) -> bool {
        matches!(
            self,
            ProblemKind::InvalidSpec
                | ProblemKind::HostnameConflict
                | ProblemKind::AddressBackendNotAllowed
        )
    }

    /// Whether the problem is about the route itself (`Accepted`) rather than what it refers
    /// to (`ResolvedRefs`).
    pub fn is_acceptance(self) -> bool {
        self.rejects_route()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.message)
    }
}

impl RouteReport {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
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
    services: HashMap<ServiceKey, Arc<[Endpoint]>>,
    /// Endpoints of `address` backends in the last compile.
    addresses: AddrMap<Endpoint>,
    /// Backend TLS client configs by digest of their CA bundle (`None`: no verification).
    client_configs: HashMap<Option<u64>, Arc<ClientConfig>>,
}

/// [`compile`], reusing what earlier compiles parsed and sharing endpoint state with them.
pub fn compile_with(
    snapshot: &Snapshot,
    cache: &mut CompileCache,
) -> (RouteTable, Vec<RouteReport>) {
    let table = compile_inner(snapshot, cache);
    cache.client_configs.retain(|_, c| Arc::strong_count(c) > 1);
    table
}

fn compile_inner<'s>(
    snapshot: &'s Snapshot,
    cache: &mut CompileCache,
) -> (RouteTable, Vec<RouteReport>) {
    let mut order: Vec<usize> = (0..snapshot.routes.len()).collect();
    order.sort_by_key(|&i| {
        let ts = snapshot.routes[i].metadata.creation_timestamp.as_ref();
        (ts.is_none(), ts.map(|t| t.0), i)
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
        let route = &snapshot.routes[i];
        let namespace = route.metadata.namespace.as_deref().unwrap_or("default");
        let name = route.metadata.name.as_deref().unwrap_or("");
        let id = format!("{namespace}/{name}");
        let mut report = RouteReport {
            namespace: namespace.to_string(),
            name: name.to_string(),
            generation: route.metadata.generation,
            programmed: false,
            problems: Vec::new(),
        };
        let spec = &route.spec;
        report
            .problems
            .extend(validate(spec).into_iter().map(|e| Problem {
                kind: ProblemKind::InvalidSpec,
                message: e.to_string(),
            }));
        if snapshot.deny_address_backends {
            for (i, rule) in spec.rules.iter().enumerate() {
                let backends = [
                    ("http", rule.http.as_ref().map(|h| &h.backend)),
                    ("websocket", rule.websocket.as_ref().map(|w| &w.backend)),
                ];
                for (kind, backend) in backends {
                    if backend.is_some_and(|b| b.address.is_some()) {
                        report.problems.push(Problem {
                            kind: ProblemKind::AddressBackendNotAllowed,
                            message: format!(
                                "spec.rules[{i}].{kind}.backend.address: address backends are disabled in this cluster; use service+port (or start the controller with --allow-address-backends)"
                            ),
                        });
                    }
                }
            }
        }
        if report.problems.is_empty() {
            let all_hosts = spec.hostnames.iter().chain(&spec.redirect_hostnames);
            for host in all_hosts {
                if let Some(owner) = owners.get(host.as_str()) {
                    report.problems.push(Problem {
                        kind: ProblemKind::HostnameConflict,
                        message: format!("hostname {host} is already served by route {owner}"),
                    });
                }
            }
        }
        if !report.problems.is_empty() {
            reports.push(report);
            continue;
        }

        let tls = spec.tls.as_ref().map(|t| RouteTlsEntry {
            cert: certs.get(namespace, &t.secret_name, &mut report.problems),
            http_redirect: t.redirects_http(),
        });
        let hsts = spec
            .tls
            .as_ref()
            .and_then(|t| t.hsts.as_ref())
            .and_then(hsts_value);
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (index, rule) in spec.rules.iter().enumerate() {
            let problems = &mut report.problems;
            let mut backend = |b: &'s Backend, lb: &Option<LoadBalancing>, default| {
                let ctx = BackendContext {
                    namespace,
                    snapshot,
                    certs: &certs,
                };
                let balance = balance(lb.as_ref(), default);
                backend_set(&ctx, b, balance, &mut shared, problems)
            };
            let http = rule.http.as_ref().map(|h| HttpBackend {
                backend: backend(&h.backend, &h.load_balancing, Balance::RoundRobin),
                timeout: h
                    .timeout
                    .as_deref()
                    .and_then(|t| parse_duration(t).ok())
                    .unwrap_or(DEFAULT_HTTP_TIMEOUT),
            });
            let websocket = rule.websocket.as_ref().map(|w| WebSocketBackend {
                backend: backend(&w.backend, &w.load_balancing, Balance::LeastConnections),
                idle_timeout: w
                    .idle_timeout
                    .as_deref()
                    .and_then(|t| parse_duration(t).ok()),
                allowed_origins: w
                    .allowed_origins
                    .iter()
                    .filter_map(|o| OriginPattern::parse(o))
                    .collect(),
                limits: w.limits.as_ref().map(|l| ClientLimits {
                    max_connections: l.max_connections_per_client,
                    rate: l.upgrades_per_second_per_client,
                    burst: l
                        .burst
                        .or(l.upgrades_per_second_per_client)
                        .unwrap_or(1)
                        .max(1),
                }),
            });
            rules.push(CompiledRule {
                prefix: normalize_path_prefix(rule.prefix()).into(),
                index,
                http,
                websocket,
            });
        }
        // Longest prefix first; the stable sort keeps spec order among equals.
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));

        let compiled = Arc::new(CompiledRoute {
            id: id.as_str().into(),
            canonical_host: spec.hostnames[0].as_str().into(),
            tls,
            hsts,
            maintenance: spec
                .maintenance
                .as_ref()
                .filter(|m| m.enabled)
                .map(|m| Bytes::from(m.body.clone().unwrap_or_else(default_maintenance_body))),
            rules,
        });
        let served = spec.hostnames.iter().map(|h| (h, HostRole::Serve));
        let redirected = spec
            .redirect_hostnames
            .iter()
            .map(|h| (h, HostRole::Redirect));
        for (host, role) in served.chain(redirected) {
            owners.insert(host.as_str(), compiled.id.clone());
            let entry = HostEntry {
                route: compiled.clone(),
                role,
            };
            match host.strip_prefix("*.") {
                Some(parent) => table.wildcard.insert(parent.into(), entry),
                None => table.exact.insert(host.as_str().into(), entry),
            };
        }
        table.routes.push(compiled);
        report.programmed = true;
        reports.push(report);
    }
    table.certificates = certs.served();
    (table, reports)
}

fn default_maintenance_body() -> String {
    "<!doctype html><title>Maintenance</title><h1>Down for maintenance</h1><p>Back soon.</p>\n"
        .to_string()
}

/// `Strict-Transport-Security` for a route.
fn hsts_value(hsts: &Hsts) -> Option<HeaderValue> {
    let mut value = format!("max-age={}", hsts.max_age.max(0));
    if hsts.include_sub_domains == Some(true) {
        value.push_str("; includeSubDomains");
    }
    if hsts.preload == Some(true) {
        value.push_str("; preload");
    }
    HeaderValue::try_from(value).ok()
}

fn balance(lb: Option<&LoadBalancing>, default: Balance) -> Balance {
    let Some(lb) = lb else { return default };
    match lb.policy {
        None => default,
        Some(LoadBalancingPolicy::RoundRobin) => Balance::RoundRobin,
        Some(LoadBalancingPolicy::LeastConnections) => Balance::LeastConnections,
        Some(LoadBalancingPolicy::ConsistentHash) => {
            let on = lb.hash_on.as_ref();
            let header = on
                .and_then(|o| o.header.as_deref())
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok());
            let key = match (header, on.and_then(|o| o.cookie.as_deref())) {
                (Some(h), _) => HashKey::Header(h),
                (None, Some(c)) => HashKey::Cookie(c.into()),
                (None, None) => HashKey::SourceIp,
            };
            Balance::ConsistentHash(key)
        }
    }
}

/// What building a backend needs from the route being compiled.
struct BackendContext<'a, 's> {
    namespace: &'s str,
    snapshot: &'a Snapshot,
    certs: &'a Certs<'a>,
}

fn backend_set<'s>(
    ctx: &BackendContext<'_, 's>,
    backend: &'s Backend,
    balance: Balance,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> Arc<BackendSet> {
    let (name, endpoints) = if let Some(addr) = backend.address.as_deref() {
        let endpoints = addr
            .parse::<SocketAddr>()
            .into_iter()
            .map(|a| shared.address(a))
            .collect();
        (Arc::from(addr), endpoints)
    } else {
        service_endpoints(ctx, backend, shared, problems)
    };
    let tls = backend
        .tls
        .as_ref()
        .map(|t| backend_tls(ctx, backend, t, shared, problems));
    Arc::new(BackendSet {
        balance,
        h2c: backend.protocol == Some(BackendProtocol::H2c),
        tls,
        ..BackendSet::with_endpoints(name, endpoints)
    })
}

fn service_endpoints<'s>(
    ctx: &BackendContext<'_, 's>,
    backend: &'s Backend,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> (Arc<str>, Arc<[Endpoint]>) {
    let namespace = ctx.namespace;
    let service = backend.service.as_deref().unwrap_or_default();
    let port = backend
        .port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    let (name, endpoints) = match shared.ports.get(&(namespace, service, port)) {
        Some(resolved) => resolved.clone(),
        None => {
            let key = ServiceKey {
                namespace: namespace.to_string(),
                name: service.to_string(),
                port,
            };
            let addrs = ctx.snapshot.endpoints.get(&key);
            let endpoints = addrs.map(|addrs| shared.service(key, addrs));
            let resolved = (
                Arc::from(format!("service {namespace}/{service}:{port}")),
                endpoints,
            );
            shared
                .ports
                .insert((namespace, service, port), resolved.clone());
            resolved
        }
    };
    match &endpoints {
        None => problems.push(Problem {
            kind: ProblemKind::ServiceNotFound,
            message: format!("{name} not found (is the Service created, with that port?)"),
        }),
        Some(list) if list.is_empty() => problems.push(Problem {
            kind: ProblemKind::NoReadyEndpoints,
            message: format!("{name} has no ready endpoints; requests get 503"),
        }),
        Some(_) => {}
    }
    (name, endpoints.unwrap_or_else(|| Arc::from(Vec::new())))
}

/// TLS towards a backend. A CA Secret that is missing or unusable leaves no config: the
/// proxy then refuses to connect (502) rather than silently skipping verification.
fn backend_tls(
    ctx: &BackendContext<'_, '_>,
    backend: &Backend,
    tls: &crate::api::BackendTls,
    shared: &mut SharedEndpoints<'_, '_>,
    problems: &mut Vec<Problem>,
) -> Arc<BackendTlsEntry> {
    let namespace = ctx.namespace;
    let server_name = match (&tls.sni, &backend.service, &backend.address) {
        (Some(sni), _, _) => ServerName::try_from(sni.clone()).ok(),
        (None, Some(service), _) => ServerName::try_from(format!("{service}.{namespace}.svc")).ok(),
        (None, None, Some(addr)) => addr
            .parse::<SocketAddr>()
            .ok()
            .map(|a| ServerName::IpAddress(a.ip().into())),
        (None, None, None) => None,
    }
    .unwrap_or_else(|| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()));
    let config = match tls.ca_secret_name.as_deref() {
        None => shared
            .client_config(None, || backend_client_config(None))
            .ok(),
        Some(name) => match ctx.certs.ca(namespace, name) {
            None => {
                problems.push(Problem {
                    kind: ProblemKind::CaSecretNotFound,
                    message: format!(
                        "backend CA Secret {namespace}/{name} not found or without ca.crt; connections to the backend are refused until it is"
                    ),
                });
                None
            }
            Some(pem) => {
                let digest = ctx.certs.digest(pem);
                match shared.client_config(Some(digest), || backend_client_config(Some(pem))) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        problems.push(Problem {
                            kind: ProblemKind::InvalidCertificate,
                            message: format!(
                                "backend CA Secret {namespace}/{name}: {e}; connections to the backend are refused until it is fixed"
                            ),
                        });
                        None
                    }
                }
            }
        },
    };
    Arc::new(BackendTlsEntry {
        server_name,
        config,
    })
}

/// Parsed certificates kept between compiles, so a rebuild only parses Secrets whose bytes
/// changed (parsing a private key is the most expensive part of a compile). The output of a
/// compile is the same with or without it.
#[derive(Debug, Default)]
pub struct CertificateCache {
    /// Randomly keyed, so Secret contents cannot be crafted to collide.
    hasher: RandomState,
    /// namespace → name → entry: lookups of unchanged Secrets allocate nothing.
    entries: HashMap<String, HashMap<String, CachedCert>>,
}

#[derive(Debug)]
struct CachedCert {
    digest: u64,
    parsed: Result<(Arc<CertifiedKey>, Option<i64>), String>,
    used: bool,
}

impl CertificateCache {
    fn parse(&mut self, secret: &TlsSecret) -> &Result<(Arc<CertifiedKey>, Option<i64>), String> {
        let digest = self.hasher.hash_one((&secret.cert_pem, &secret.key_pem));
        if !self.entries.contains_key(&secret.namespace) {
            self.entries
                .insert(secret.namespace.clone(), HashMap::new());
        }
        // Present: inserted just above. (Looking up before inserting keeps hits allocation-free;
        // `entry` would need an owned key on every call.)
        let names = self
            .entries
            .get_mut(&secret.namespace)
            .unwrap_or_else(|| unreachable!());
        if !names.contains_key(&secret.name) {
            let fresh = CachedCert {
                digest: digest.wrapping_add(1),
                parsed: Err(String::new()),
                used: false,
            };
            names.insert(secret.name.clone(), fresh);
        }
        let entry = names
            .get_mut(&secret.name)
            .unwrap_or_else(|| unreachable!());
        if entry.digest != digest {
            entry.digest = digest;
            entry.parsed = certified_key_from_pem(&secret.cert_pem, &secret.key_pem)
                .map(|cert| {
                    let expiry = cert.end_entity_cert().ok().and_then(|der| not_after(der));
                    (cert, expiry)
                })
                .map_err(|e| e.to_string());
        }
        entry.used = true;
        &entry.parsed
    }

    /// Forgets Secrets the last compile did not use.
    fn sweep(&mut self) {
        for names in self.entries.values_mut() {
            names.retain(|_, e| std::mem::take(&mut e.used));
        }
        self.entries.retain(|_, names| !names.is_empty());
    }
}

/// The Secrets of one compile, parsed through the cache, with expiry checked against `now`.
struct Certs<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a TlsSecret>,
    now: Option<i64>,
    cache: &'a mut CertificateCache,
    served: BTreeMap<String, Option<i64>>,
}

impl<'a> Certs<'a> {
    /// `ca.crt` of a Secret, when the Secret exists and has one.
    fn ca(&self, namespace: &str, name: &str) -> Option<&'a [u8]> {
        self.secrets
            .get(&(namespace, name))
            .and_then(|s| s.ca_pem.as_deref())
    }

    /// A digest of some bytes, keyed like the certificate cache.
    fn digest(&self, bytes: &[u8]) -> u64 {
        self.cache.hasher.hash_one(bytes)
    }

    fn new(secrets: &'a [TlsSecret], now: Option<i64>, cache: &'a mut CertificateCache) -> Self {
        Certs {
            secrets: secrets
                .iter()
                .map(|s| ((s.namespace.as_str(), s.name.as_str()), s))
                .collect(),
            now,
            cache,
            served: BTreeMap::new(),
        }
    }

    /// Every certificate in use, with its expiry, sorted by Secret.
    fn served(self) -> Vec<CertificateInfo> {
        self.cache.sweep();
        self.served
            .into_iter()
            .map(|(secret, not_after)| CertificateInfo { secret, not_after })
            .collect()
    }

    fn get(
        &mut self,
        namespace: &str,
        name: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<CertifiedKey>> {
        let Some(secret) = self.secrets.get(&(namespace, name)).copied() else {
            problems.push(Problem {
                kind: ProblemKind::SecretNotFound,
                message: format!(
                    "TLS Secret {namespace}/{name} not found; the default certificate is served"
                ),
            });
            return None;
        };
        let why = match self.cache.parse(secret) {
            Ok((cert, expiry)) => match (self.now, *expiry) {
                (Some(now), Some(t)) if t < now => format!(
                    "the certificate in tls.crt expired {} days ago",
                    (now - t) / 86_400
                ),
                _ => {
                    let cert = cert.clone();
                    self.served.insert(format!("{namespace}/{name}"), *expiry);
                    return Some(cert);
                }
            },
            Err(why) => why.clone(),
        };
        problems.push(Problem {
            kind: ProblemKind::InvalidCertificate,
            message: format!(
                "TLS Secret {namespace}/{name}: {why}; the default certificate is served"
            ),
        });
        None
    }
}

/// Per Service port named in one compile: its display name and endpoints (`None`: no such
/// Service port), shared by every backend that names it; the last compile's endpoint lists
/// and the new ones; and the backend TLS configs.
struct SharedEndpoints<'s, 'c> {
    ports: HashMap<(&'s str, &'s str, u16), ResolvedPort>,
    old_services: HashMap<ServiceKey, Arc<[Endpoint]>>,
    services: &'c mut HashMap<ServiceKey, Arc<[Endpoint]>>,
    old_addresses: AddrMap<Endpoint>,
    addresses: &'c mut AddrMap<Endpoint>,
    client_configs: &'c mut HashMap<Option<u64>, Arc<ClientConfig>>,
}

impl SharedEndpoints<'_, '_> {
    /// The cached client config for a CA digest, built on first use.
    fn client_config(
        &mut self,
        digest: Option<u64>,
        build: impl FnOnce() -> Result<Arc<ClientConfig>, super::TlsError>,
    ) -> Result<Arc<ClientConfig>, super::TlsError> {
        if let Some(config) = self.client_configs.get(&digest) {
            return Ok(config.clone());
        }
        let config = build()?;
        self.client_configs.insert(digest, config.clone());
        Ok(config)
    }

    /// The endpoint of an `address` backend, with the last compile's state.
    fn address(&mut self, addr: SocketAddr) -> Endpoint {
        let endpoint = self
            .old_addresses
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| Endpoint::new(addr));
        self.addresses.insert(addr, endpoint.clone());
        endpoint
    }

    /// The endpoints of a Service port: the last compile's list when the addresses are the
    /// same (the common case: a rebuild for some other object), else a new list that keeps the
    /// state of addresses the old one had.
    fn service(&mut self, key: ServiceKey, addrs: &[SocketAddr]) -> Arc<[Endpoint]> {
        let old = self.old_services.get(&key);
        let same = old.is_some_and(|o| {
            o.len() == addrs.len() && o.iter().zip(addrs).all(|(e, a)| e.addr == *a)
        });
        let list = match old {
            Some(old) if same => old.clone(),
            _ => {
                let previous: AddrMap<&Endpoint> = old
                    .iter()
                    .flat_map(|o| o.iter())
                    .map(|e| (e.addr, e))
                    .collect();
                addrs
                    .iter()
                    .map(|&a| match previous.get(&a) {
                        Some(e) => (*e).clone(),
                        None => Endpoint::new(a),
                    })
                    .collect()
            }
        };
        self.services.insert(key, list.clone());
        list
    }
}

/// A Service port's display name and endpoints (`None`: no such Service port).
type ResolvedPort = (Arc<str>, Option<Arc<[Endpoint]>>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{HostBuf, normalize_host, self_signed};

    /// Parses multi-document YAML fixtures into a snapshot (the same shape users write).
    fn snapshot(yaml: &str) -> Snapshot {
        let routes = serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| WebSocketRoute::deserialize(doc).unwrap_or_else(|e| panic!("fixture: {e}")))
            .collect();
        Snapshot {
            routes,
            ..Default::default()
        }
    }
    use serde::Deserialize;

    const CHAT: &str = r#"
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: chat, namespace: apps }
spec:
  hostnames: ["chat.example.com"]
  redirectHostnames: ["www.chat.example.com"]
  tls: { secretName: chat-tls }
  rules:
    - http: { backend: { address: "127.0.0.1:8080" } }
    - pathPrefix: /ws/
      websocket: { backend: { address: "127.0.0.1:5000" }, idleTimeout: 24h }
    - pathPrefix: /api
      http: { backend: { service: api, port: 80 }, timeout: 5s }
---
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: wild, namespace: apps }
spec:
  hostnames: ["*.example.com"]
  rules:
    - http: { backend: { address: "127.0.0.1:9000" } }
"#;

    fn lookup<'t>(table: &'t RouteTable, host: &str) -> Option<&'t HostEntry> {
        let mut buf = HostBuf::default();
        table.lookup(normalize_host(host, &mut buf)?)
    }

    #[test]
    fn compiles_hosts_rules_and_reports() {
        let mut snap = snapshot(CHAT);
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
        let mut snap = snapshot(CHAT);
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
        let yaml = r#"
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: newer, namespace: a, creationTimestamp: "2026-02-01T00:00:00Z" }
spec:
  hostnames: ["x.example.com"]
  rules: [ { http: { backend: { address: "127.0.0.1:1" } } } ]
---
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: older, namespace: b, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  hostnames: ["x.example.com"]
  rules: [ { http: { backend: { address: "127.0.0.1:2" } } } ]
"#;
        let (table, reports) = compile(&snapshot(yaml));
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
        let mut swapped = snapshot(yaml);
        swapped.routes.reverse();
        let (table2, _) = compile(&swapped);
        assert_eq!(
            lookup(&table2, "x.example.com").map(|e| &*e.route.id),
            Some("b/older")
        );
    }

    #[test]
    fn invalid_route_is_left_out_and_others_keep_serving() {
        let yaml = format!(
            "{CHAT}---\napiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: bad }}\nspec:\n  hostnames: [\"Bad Host\"]\n  rules: []\n"
        );
        let (table, reports) = compile(&snapshot(&yaml));
        assert!(lookup(&table, "chat.example.com").is_some());
        let bad = reports
            .iter()
            .find(|r| r.name == "bad")
            .unwrap_or_else(|| panic!("report"));
        assert!(!bad.programmed);
        assert_eq!(bad.namespace, "default");
        let messages: Vec<_> = bad.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("spec.hostnames[0]:"));
        assert!(messages[1].starts_with("spec.rules:"));
    }

    #[test]
    fn broken_certificate_is_reported_not_loaded() {
        let mut snap = snapshot(CHAT);
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
    fn maintenance_body_defaults() {
        let yaml = CHAT.replacen(
            "  tls: { secretName: chat-tls }",
            "  maintenance: { enabled: true }",
            1,
        );
        let (table, _) = compile(&snapshot(&yaml));
        let body = lookup(&table, "chat.example.com").and_then(|e| e.route.maintenance.clone());
        assert!(body.is_some_and(|b| b.starts_with(b"<!doctype html>")));
    }

    const BALANCED: &str = r#"
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: lb, namespace: apps }
spec:
  hostnames: ["lb.example.com"]
  tls: { secretName: lb-tls, hsts: { maxAge: 600, includeSubDomains: true } }
  rules:
    - http: { backend: { service: api, port: 80, tls: { caSecretName: api-ca } } }
      websocket:
        backend: { service: api, port: 80, tls: {} }
        loadBalancing: { policy: ConsistentHash, hashOn: { cookie: room } }
        allowedOrigins: ["https://lb.example.com"]
        limits: { upgradesPerSecondPerClient: 4 }
    - pathPrefix: /grpc
      http: { backend: { address: "10.0.0.9:8080", protocol: h2c }, loadBalancing: { policy: LeastConnections } }
"#;

    fn balanced_snapshot() -> Snapshot {
        let mut snap = snapshot(BALANCED);
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
    use crate::table::self_signed;
    use serde::Deserialize;

    fn route(yaml: &str) -> WebSocketRoute {
        WebSocketRoute::deserialize(serde_yaml::Deserializer::from_str(yaml))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn address_backends_can_be_refused() {
        let r = route(
            "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: { name: r, namespace: a }\nspec:\n  hostnames: [a.test]\n  rules: [ { websocket: { backend: { address: \"10.1.2.3:80\" } } } ]\n",
        );
        let mut snap = Snapshot {
            routes: vec![r],
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
        let r = route(
            "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: { name: r, namespace: a }\nspec:\n  hostnames: [a.test]\n  tls: { secretName: s }\n  rules: [ { http: { backend: { address: \"10.1.2.3:80\" } } } ]\n",
        );
        let (cert, key) = self_signed(&["a.test".into()]).unwrap_or_else(|e| panic!("{e}"));
        let secret = TlsSecret {
            namespace: "a".into(),
            name: "s".into(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            ca_pem: None,
        };
        let mut snap = Snapshot {
            routes: vec![r],
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
