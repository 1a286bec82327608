//! The Kubernetes route source (`wsgate controller`): reflectors over WebSocketRoutes, TLS
//! Secrets, Services and EndpointSlices feed the same pure compile as standalone mode.
//!
//! Any watch event marks the table dirty; a single task coalesces bursts (`debounce`), builds a
//! snapshot from the stores, and publishes it. It fails static: watch errors, a lost API server
//! or a 410 re-list never empty the stores (kube-runtime swaps a re-list in only once it is
//! complete), so the last good table keeps serving while watches retry with backoff. Status and
//! Events are written by the leader only.

mod gateway;
mod ingresses;
pub mod leader;
pub mod status;
mod translations;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api::{DEFAULT_INGRESS_CLASS, WebSocketRoute, WebSocketRouteStatus};
use crate::metrics::Metrics;
use crate::model::{ObjectKind, meta};
use crate::source::Publisher;
use crate::table::{DataRef, JWKS_SECRET_TYPE, RouteReport, Snapshot, TlsSecret, resolve_services};
use leader::{Leadership, LeaseConfig};
use status::{desired_status, has_own_conditions, same_status};

/// Field manager name for server-side apply.
pub const FIELD_MANAGER: &str = "wsgate";
/// How often the table is rebuilt even without events (certificate expiry, DNS refresh).
const RESYNC: Duration = Duration::from_secs(60);
/// How long an ExternalName lookup result is reused.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Controller settings.
#[derive(Clone)]
pub struct KubeOptions {
    /// API client.
    pub client: Client,
    /// Only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Routes whose `ingressClassName` is this are served.
    pub ingress_class: String,
    /// Also serve routes without `ingressClassName`.
    pub watch_unclassed: bool,
    /// Also serve Kubernetes Ingresses of our IngressClasses.
    pub watch_ingresses: bool,
    /// `spec.controller` of the IngressClasses that are ours.
    pub controller_name: String,
    /// The Service in front of wsgate (`namespace/name`), whose addresses go into
    /// `status.loadBalancer` of every served Ingress.
    pub publish_service: Option<(String, String)>,
    /// Addresses for `status.loadBalancer` instead of the Service's (IPs or host names).
    pub publish_status_address: Vec<String>,
    /// Allow `address` backends (off by default in a cluster).
    pub allow_address_backends: bool,
    /// Serve the Gateway API (GatewayClasses naming `gateway_controller`, their Gateways and
    /// HTTPRoutes) when its CRDs are installed.
    pub gateway_api: bool,
    /// `GatewayClass.spec.controllerName` of the classes that are ours.
    pub gateway_controller: String,
    /// The Gateway listener ports that map onto wsgate's HTTP and HTTPS listeners.
    pub gateway_ports: crate::api::gateway::Ports,
    /// Leader election.
    pub lease: LeaseConfig,
    /// How long a burst of changes is collected before one rebuild.
    pub debounce: Duration,
}

impl KubeOptions {
    /// Defaults around a client: all namespaces, class `wsgate`, lease `wsgate-leader` in
    /// `default`, identity from `POD_NAME` or the host name.
    pub fn new(client: Client) -> Self {
        let identity = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| format!("{h}-{}", std::process::id()))
            .unwrap_or_else(|| format!("wsgate-{}", std::process::id()));
        KubeOptions {
            client,
            namespace: None,
            ingress_class: DEFAULT_INGRESS_CLASS.to_string(),
            watch_unclassed: false,
            watch_ingresses: true,
            controller_name: crate::api::ingress::CONTROLLER.to_string(),
            publish_service: None,
            publish_status_address: Vec::new(),
            allow_address_backends: false,
            gateway_api: true,
            gateway_controller: crate::api::gateway::GATEWAY_CONTROLLER.to_string(),
            gateway_ports: crate::api::gateway::Ports::default(),
            lease: LeaseConfig {
                namespace: "default".into(),
                name: "wsgate-leader".into(),
                identity,
                duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(5),
            },
            debounce: Duration::from_millis(100),
        }
    }

    /// Routes, untyped.
    fn routes_api(&self) -> Api<DynamicObject> {
        let ar = route_resource();
        match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

/// What the route watch and status writes address: the WebSocketRoute resource, untyped.
fn route_resource() -> ApiResource {
    ApiResource::erase::<WebSocketRoute>(&())
}

/// The stores the table is built from.
#[derive(Clone)]
struct Stores {
    /// Untyped, so one object that does not decode cannot fail the list (see
    /// [`translations`]).
    routes: Store<DynamicObject>,
    /// Ingresses and IngressClasses (`None` when Ingresses are not watched).
    ingresses: Option<(Store<Ingress>, Store<IngressClass>)>,
    secrets: Store<Secret>,
    /// Secrets of type `wsgate.dev/jwks` and ConfigMaps: where routes' JWKS are.
    jwks_secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// Gateway API objects (`None` when not watched: disabled, or the CRDs are absent).
    gateway: Option<gateway::GatewayStores>,
}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    dirty: Arc<Notify>,
    metrics: &Metrics,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    spawn_watch_with(api, config, kind, dirty, metrics, Writer::default())
}

fn spawn_watch_with<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    dirty: Arc<Notify>,
    metrics: &Metrics,
    writer: Writer<K>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    let reader = writer.as_reader();
    let events = metrics.kube_watch_events.with_label_values(&[kind]);
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(watcher(api, config).default_backoff().reflect(writer));
        while let Some(event) = stream.next().await {
            match event {
                // A (re-)list in progress: the store swaps it in at InitDone.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => events.inc(),
                Ok(_) => {
                    events.inc();
                    dirty.notify_one();
                }
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff, the last good routing table keeps serving");
                }
            }
        }
    });
    (reader, task)
}

/// Starts the watches, waits for their first full sync, publishes the first table, and keeps
/// it current. Returns once the first table is live.
pub async fn start(opts: KubeOptions, publisher: Publisher, metrics: Arc<Metrics>) -> Controller {
    let dirty = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    let cfg = watcher::Config::default();
    let (routes, t) = spawn_watch_with(
        opts.routes_api(),
        cfg.clone(),
        "WebSocketRoute",
        dirty.clone(),
        &metrics,
        Writer::new(route_resource()),
    );
    tasks.push(t);
    // Only TLS Secrets are ever listed or cached.
    let secret_cfg = cfg.clone().fields("type=kubernetes.io/tls");
    let (secrets, t) = spawn_watch(
        opts.api::<Secret>(),
        secret_cfg,
        "Secret",
        dirty.clone(),
        &metrics,
    );
    tasks.push(t);
    // JWKS in Secrets: only those of wsgate's own type, so no other Secret is ever listed.
    let (jwks_secrets, t) = spawn_watch(
        opts.api::<Secret>(),
        cfg.clone().fields(&format!("type={JWKS_SECRET_TYPE}")),
        "Secret",
        dirty.clone(),
        &metrics,
    );
    tasks.push(t);
    let (config_maps, t) = spawn_watch(
        opts.api::<ConfigMap>(),
        cfg.clone(),
        "ConfigMap",
        dirty.clone(),
        &metrics,
    );
    tasks.push(t);
    let (services, t) = spawn_watch(
        opts.api::<Service>(),
        cfg.clone(),
        "Service",
        dirty.clone(),
        &metrics,
    );
    tasks.push(t);
    let (slices, t) = spawn_watch(
        opts.api::<EndpointSlice>(),
        cfg,
        "EndpointSlice",
        dirty.clone(),
        &metrics,
    );
    tasks.push(t);
    let ingresses = if opts.watch_ingresses {
        let (ingresses, t) = spawn_watch(
            opts.api::<Ingress>(),
            watcher::Config::default(),
            "Ingress",
            dirty.clone(),
            &metrics,
        );
        tasks.push(t);
        let (classes, t) = spawn_watch(
            Api::<IngressClass>::all(opts.client.clone()),
            watcher::Config::default(),
            "IngressClass",
            dirty.clone(),
            &metrics,
        );
        tasks.push(t);
        Some((ingresses, classes))
    } else {
        None
    };
    let gateway = match opts.gateway_api {
        true => {
            let ns = opts.namespace.as_deref();
            gateway::spawn(&opts.client, ns, &dirty, &metrics, &mut tasks, &config_maps).await
        }
        false => None,
    };
    let stores = Stores {
        routes,
        ingresses,
        secrets,
        jwks_secrets,
        config_maps,
        services,
        slices,
        gateway,
    };

    // A new replica must never serve an empty table: wait for every first list.
    let _ = stores.routes.wait_until_ready().await;
    if let Some((ingresses, classes)) = &stores.ingresses {
        let _ = ingresses.wait_until_ready().await;
        let _ = classes.wait_until_ready().await;
    }
    let _ = stores.secrets.wait_until_ready().await;
    let _ = stores.jwks_secrets.wait_until_ready().await;
    let _ = stores.config_maps.wait_until_ready().await;
    let _ = stores.services.wait_until_ready().await;
    let _ = stores.slices.wait_until_ready().await;
    if let Some(gateway) = &stores.gateway {
        gateway.ready().await;
    }

    let leadership = Arc::new(Leadership::default());
    let leases = Api::namespaced(opts.client.clone(), &opts.lease.namespace);
    let election = tokio::spawn(leader::run(
        leases,
        opts.lease.clone(),
        leadership.clone(),
        metrics.leader.clone(),
    ));

    let mut builder = Builder {
        opts,
        stores,
        publisher,
        leadership: leadership.clone(),
        dns: HashMap::new(),
        translations: Default::default(),
        ingress_translations: Default::default(),
        published_events: Default::default(),
        gateway: Default::default(),
        last: None,
        reports: Vec::new(),
        recorder: None,
    };
    builder.rebuild(true).await;
    tasks.push(tokio::spawn(builder.run(dirty)));
    Controller {
        tasks,
        election: Some(election),
        leadership,
    }
}

/// A running controller: its background tasks and its part in the leader election.
pub struct Controller {
    /// Watches and the table builder; they end with the process.
    pub tasks: Vec<JoinHandle<()>>,
    /// Taken by [`Controller::step_down`]; aborted on drop otherwise.
    election: Option<JoinHandle<()>>,
    leadership: Arc<Leadership>,
}

impl Controller {
    /// On shutdown: stop writing status and release the lease, so another replica takes over
    /// at once. Waits (bounded) for the release to reach the API server.
    pub async fn step_down(&mut self) {
        self.leadership.step_down();
        if let Some(election) = self.election.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(election) = &self.election {
            election.abort();
        }
    }
}

/// Whether a route is ours: its class is `class`, or it has none and `unclassed` says so. Read
/// from the untyped object, so a route that does not decode is still claimed (and reported)
/// by its own class only.
fn wanted(route: &DynamicObject, class: &str, unclassed: bool) -> bool {
    let named = route
        .data
        .get("spec")
        .and_then(|s| s.get("ingressClassName"));
    match named.and_then(serde_json::Value::as_str) {
        Some(c) => c == class,
        None => unclassed,
    }
}

/// Builds and publishes tables, and writes status when leading.
struct Builder {
    opts: KubeOptions,
    stores: Stores,
    publisher: Publisher,
    leadership: Arc<Leadership>,
    dns: HashMap<(String, u16), (Vec<SocketAddr>, Instant)>,
    translations: translations::Translations,
    ingress_translations: ingresses::IngressTranslations,
    /// Problems of Ingresses and HTTPRoutes already published as Events: (kind, namespace,
    /// name, generation, message).
    published_events: std::collections::HashSet<(ObjectKind, String, String, Option<i64>, String)>,
    gateway: gateway::GatewayState,
    last: Option<Snapshot>,
    reports: Vec<RouteReport>,
    recorder: Option<Recorder>,
}

impl Builder {
    async fn run(mut self, dirty: Arc<Notify>) {
        let mut resync = tokio::time::interval(RESYNC);
        resync.reset();
        let leadership = self.leadership.clone();
        loop {
            let force = tokio::select! {
                _ = dirty.notified() => false,
                _ = leadership.gained.notified() => true,
                _ = resync.tick() => true,
            };
            // Coalesce a burst of events into one rebuild.
            tokio::time::sleep(self.opts.debounce).await;
            self.rebuild(force).await;
        }
    }

    async fn snapshot(&mut self) -> Snapshot {
        // Translated from the objects: status and bookkeeping fields are not part of the
        // model, so a status write never changes the snapshot (and never triggers a rebuild).
        let objects = self.stores.routes.state();
        let (class, unclassed) = (&self.opts.ingress_class, self.opts.watch_unclassed);
        let wanted = objects.iter().filter(|r| wanted(r, class, unclassed));
        let mut routes = self.translations.of(wanted.map(|r| &**r));
        if let Some((ingresses, classes)) = &self.stores.ingresses {
            let classes = classes.state();
            let ours = crate::api::ingress::Classes::from_classes(
                classes.iter().map(|c| &**c),
                &self.opts.controller_name,
                &self.opts.ingress_class,
            );
            let objects = ingresses.state();
            let claimed = objects.iter().filter(|i| ours.claims(i)).map(|i| &**i);
            routes.extend(self.ingress_translations.of(claimed));
        }
        if let Some(gateway) = &self.stores.gateway {
            routes.extend(gateway.translate(
                &self.opts.gateway_controller,
                self.opts.gateway_ports,
                &self.stores.services,
                &self.stores.secrets,
                &mut self.gateway,
            ));
        }
        routes.sort_by(|a, b| {
            let (a, b) = (meta(a), meta(b));
            (&a.namespace, &a.name, a.kind.as_str()).cmp(&(&b.namespace, &b.name, b.kind.as_str()))
        });
        let mut secrets: Vec<TlsSecret> = self
            .stores
            .secrets
            .state()
            .iter()
            .map(|s| tls_secret(s))
            .collect();
        secrets.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let services: Vec<Service> = self
            .stores
            .services
            .state()
            .iter()
            .map(|s| Service::clone(s))
            .collect();
        let slices: Vec<EndpointSlice> = self
            .stores
            .slices
            .state()
            .iter()
            .map(|s| EndpointSlice::clone(s))
            .collect();
        let mut resolved = resolve_services(&services, &slices);
        for ext in resolved.external {
            let addrs = self.lookup(&ext.host, ext.key.port).await;
            resolved.endpoints.insert(ext.key, addrs);
        }
        Snapshot {
            secrets,
            endpoints: resolved.endpoints,
            port_names: resolved.port_names,
            config_map_cas: self
                .stores
                .gateway
                .as_ref()
                .map(gateway::GatewayStores::config_map_cas)
                .unwrap_or_default(),
            now: None,
            deny_address_backends: !self.opts.allow_address_backends,
            auth_data: self.auth_data(&routes),
            routes,
        }
    }

    /// The ConfigMap and Secret keys the routes' auth names, as the stores have them.
    fn auth_data(&self, routes: &[Arc<crate::model::Translated>]) -> HashMap<DataRef, Vec<u8>> {
        let mut out = HashMap::new();
        for at in DataRef::named_by(routes) {
            let bytes = match at.secret {
                true => self
                    .stores
                    .jwks_secrets
                    .get(&ObjectRef::new(&at.name).within(&at.namespace))
                    .and_then(|s| {
                        let data = s
                            .data
                            .as_ref()
                            .and_then(|d| d.get(&at.key))
                            .map(|b| b.0.clone());
                        data.or_else(|| {
                            let text = s.string_data.as_ref()?.get(&at.key)?;
                            Some(text.clone().into_bytes())
                        })
                    }),
                false => self
                    .stores
                    .config_maps
                    .get(&ObjectRef::new(&at.name).within(&at.namespace))
                    .and_then(|m| {
                        let text = m.data.as_ref().and_then(|d| d.get(&at.key));
                        text.map(|t| t.clone().into_bytes())
                            .or_else(|| Some(m.binary_data.as_ref()?.get(&at.key)?.0.clone()))
                    }),
            };
            if let Some(bytes) = bytes {
                out.insert(at, bytes);
            }
        }
        out
    }

    /// ExternalName DNS, cached for [`DNS_TTL`]; a failed lookup keeps the last answer.
    async fn lookup(&mut self, host: &str, port: u16) -> Vec<SocketAddr> {
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.dns.get(&key) {
            if at.elapsed() < DNS_TTL {
                return addrs.clone();
            }
        }
        let looked = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host, port)),
        )
        .await;
        match looked {
            Ok(Ok(found)) => {
                let mut addrs: Vec<SocketAddr> = found.collect();
                addrs.sort();
                addrs.dedup();
                self.dns.insert(key, (addrs.clone(), Instant::now()));
                addrs
            }
            _ => {
                tracing::warn!(host, "ExternalName lookup failed; keeping the last answer");
                self.dns
                    .get(&key)
                    .map(|(a, _)| a.clone())
                    .unwrap_or_default()
            }
        }
    }

    async fn rebuild(&mut self, force: bool) {
        let mut snapshot = self.snapshot().await;
        let changed = self.last.as_ref() != Some(&snapshot);
        if changed || force {
            let compared = snapshot.clone();
            snapshot.now = Some(unix_now());
            self.reports = self.publisher.publish(&snapshot);
            self.publisher.record_reload(true);
            self.last = Some(compared);
        }
        if self.leadership.is_leader() {
            self.write_statuses().await;
        }
    }

    /// Writes each route's status if it changed (server-side apply on the status
    /// subresource), and a Warning Event for each new problem. Stops at once if leadership is
    /// lost.
    async fn write_statuses(&mut self) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let reports = std::mem::take(&mut self.reports);
        for report in &reports {
            if !self.leadership.is_leader() {
                break;
            }
            if report.kind != ObjectKind::WebSocketRoute {
                self.problem_events(report).await;
                continue;
            }
            let key = ObjectRef::<DynamicObject>::new_with(&report.name, route_resource())
                .within(&report.namespace);
            let Some(route) = self.stores.routes.get(&key) else {
                continue;
            };
            // A status this build cannot read is replaced, as if there were none.
            let current: Option<WebSocketRouteStatus> = route
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            let current = current.as_ref();
            let desired = desired_status(report, current, &now, &self.controller_name());
            if same_status(current, &desired) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(
                self.opts.client.clone(),
                &report.namespace,
                &route_resource(),
            );
            let patch = serde_json::json!({
                "apiVersion": "wsgate.dev/v1alpha1",
                "kind": "WebSocketRoute",
                "status": desired,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            if let Err(e) = api
                .patch_status(&report.name, &params, &Patch::Apply(&patch))
                .await
            {
                tracing::warn!(route = %report.id(), error = %e, "writing status failed; retrying on the next rebuild");
                continue;
            }
            self.warn_events(&route, report, current).await;
        }
        self.publish_addresses(&reports).await;
        self.reports = reports;
        let addresses = self.gateway_addresses();
        self.write_gateway_statuses(addresses).await;
        self.clear_statuses().await;
    }

    /// The addresses Ingresses are reachable at: `--publish-status-address`, else the
    /// published Service's load-balancer ingress, external IPs, or cluster IP, as
    /// ingress-nginx reports them. `None` when nothing is to be published.
    fn published_addresses(&self) -> Option<Vec<serde_json::Value>> {
        let entry = |a: &str| match a.parse::<std::net::IpAddr>() {
            Ok(_) => serde_json::json!({ "ip": a }),
            Err(_) => serde_json::json!({ "hostname": a }),
        };
        if !self.opts.publish_status_address.is_empty() {
            return Some(
                self.opts
                    .publish_status_address
                    .iter()
                    .map(|a| entry(a))
                    .collect(),
            );
        }
        let (namespace, name) = self.opts.publish_service.as_ref()?;
        let key = ObjectRef::<Service>::new(name).within(namespace);
        let service = self.stores.services.get(&key)?;
        let balancer = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .filter(|l| !l.is_empty());
        if let Some(list) = balancer {
            return Some(
                list.iter()
                    .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
                    .map(entry)
                    .collect(),
            );
        }
        let spec = service.spec.as_ref()?;
        let external = spec.external_ips.iter().flatten();
        let list: Vec<_> = external.map(|a| entry(a)).collect();
        if !list.is_empty() {
            return Some(list);
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None");
        Some(cluster_ip.map(entry).into_iter().collect())
    }

    /// The published addresses as a Gateway's `status.addresses`.
    fn gateway_addresses(&self) -> Vec<crate::api::gateway::GatewayStatusAddress> {
        let entries = self.published_addresses().unwrap_or_default();
        entries
            .iter()
            .filter_map(|e| {
                let (type_, value) = match (e.get("ip"), e.get("hostname")) {
                    (Some(ip), _) => ("IPAddress", ip),
                    (_, Some(host)) => ("Hostname", host),
                    _ => return None,
                };
                Some(crate::api::gateway::GatewayStatusAddress {
                    type_: type_.into(),
                    value: value.as_str()?.to_string(),
                })
            })
            .collect()
    }

    /// Writes `status.loadBalancer` of every served Ingress whose addresses differ.
    async fn publish_addresses(&self, reports: &[RouteReport]) {
        let (Some(addresses), Some((ingresses, _))) =
            (self.published_addresses(), &self.stores.ingresses)
        else {
            return;
        };
        let desired = serde_json::json!({ "ingress": addresses });
        let mut done = std::collections::HashSet::new();
        for report in reports {
            if report.kind != ObjectKind::Ingress || !report.programmed {
                continue;
            }
            if !done.insert((&report.namespace, &report.name)) || !self.leadership.is_leader() {
                continue;
            }
            let key = ObjectRef::<Ingress>::new(&report.name).within(&report.namespace);
            let Some(object) = ingresses.get(&key) else {
                continue;
            };
            if published(&object) == desired.get("ingress").cloned() {
                continue;
            }
            self.patch_load_balancer(&report.namespace, &report.name, &desired)
                .await;
        }
        // An Ingress that is no longer ours (another class, no longer served) must not keep
        // pointing clients at wsgate: the addresses we published are withdrawn.
        if !self.leadership.is_leader() {
            return;
        }
        let ours: std::collections::HashSet<(&str, &str)> = reports
            .iter()
            .filter(|r| r.kind == ObjectKind::Ingress)
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect();
        for object in ingresses.state() {
            let (Some(namespace), Some(name)) = (&object.metadata.namespace, &object.metadata.name)
            else {
                continue;
            };
            if ours.contains(&(namespace.as_str(), name.as_str())) {
                continue;
            }
            if published(&object) == desired.get("ingress").cloned() {
                let empty = serde_json::json!({});
                self.patch_load_balancer(namespace, name, &empty).await;
            }
        }
    }

    /// Sets `status.loadBalancer` of one Ingress (server-side apply, our field manager).
    async fn patch_load_balancer(&self, namespace: &str, name: &str, value: &serde_json::Value) {
        let api: Api<Ingress> = Api::namespaced(self.opts.client.clone(), namespace);
        let patch = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "status": { "loadBalancer": value },
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&patch)).await {
            tracing::warn!(ingress = %format!("{namespace}/{name}"), error = %e, "writing the Ingress address failed; retrying on the next rebuild");
        }
    }

    /// `wsgate.dev/<class>`: who wrote a route's conditions.
    fn controller_name(&self) -> String {
        format!("wsgate.dev/{}", self.opts.ingress_class)
    }

    /// Removes this wsgate's conditions from routes it no longer serves (moved to another
    /// class), so `kubectl get` never shows a stale `Programmed: True`. Conditions another
    /// wsgate wrote are left alone; those without a writer come from a version before the
    /// `controller` field and are taken as ours.
    async fn clear_statuses(&mut self) {
        let (class, unclassed) = (&self.opts.ingress_class, self.opts.watch_unclassed);
        let ours = self.controller_name();
        let stale: Vec<(String, String)> = self
            .stores
            .routes
            .state()
            .iter()
            .filter(|r| {
                !wanted(r, class, unclassed) && has_own_conditions(r.data.get("status"), &ours)
            })
            .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
            .collect();
        for (namespace, name) in stale {
            if !self.leadership.is_leader() {
                break;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.opts.client.clone(), &namespace, &route_resource());
            // Applying an empty status drops every status field this field manager owns.
            let patch = serde_json::json!({
                "apiVersion": "wsgate.dev/v1alpha1",
                "kind": "WebSocketRoute",
                "status": {},
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api
                .patch_status(&name, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(route = %format!("{namespace}/{name}"), "no longer served by this wsgate (class changed): its conditions are removed")
                }
                Err(e) => {
                    tracing::warn!(route = %format!("{namespace}/{name}"), error = %e, "removing stale conditions failed; retrying on the next rebuild")
                }
            }
        }
    }

    /// Publishes each new problem of an Ingress or an HTTPRoute as a Warning Event on it (an
    /// Ingress has no conditions; an HTTPRoute's carry only the Gateway API's reasons, not
    /// what the compile found, such as a Service without ready endpoints); each is published
    /// once per generation.
    async fn problem_events(&mut self, report: &RouteReport) {
        let reference: ObjectReference = match report.kind {
            ObjectKind::Ingress => {
                let Some((ingresses, _)) = &self.stores.ingresses else {
                    return;
                };
                let key = ObjectRef::<Ingress>::new(&report.name).within(&report.namespace);
                let Some(object) = ingresses.get(&key) else {
                    return;
                };
                object.object_ref(&())
            }
            ObjectKind::HttpRoute => {
                let Some(gateway) = &self.stores.gateway else {
                    return;
                };
                match gateway.http_route_reference(&report.namespace, &report.name) {
                    Some(reference) => reference,
                    None => return,
                }
            }
            ObjectKind::WebSocketRoute => return,
        };
        for problem in &report.problems {
            let seen = (
                report.kind,
                report.namespace.clone(),
                report.name.clone(),
                report.generation,
                problem.message.clone(),
            );
            if self.published_events.contains(&seen) {
                continue;
            }
            if self.warn(problem, &reference).await {
                self.published_events.insert(seen);
            }
        }
    }

    /// Publishes `problem` as a Warning Event on `reference`; whether it was published.
    async fn warn(&mut self, problem: &crate::table::Problem, reference: &ObjectReference) -> bool {
        let recorder = self.recorder.get_or_insert_with(|| {
            Recorder::new(
                self.opts.client.clone(),
                Reporter {
                    controller: "wsgate".into(),
                    instance: Some(self.opts.lease.identity.clone()),
                },
            )
        });
        let event = Event {
            type_: EventType::Warning,
            reason: problem.kind.reason().to_string(),
            note: Some(problem.message.chars().take(1000).collect()),
            action: "Programming".into(),
            secondary: None,
        };
        match recorder.publish(&event, reference).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(object = %reference.name.as_deref().unwrap_or(""), error = %e, "publishing an event failed");
                false
            }
        }
    }

    async fn warn_events(
        &mut self,
        route: &DynamicObject,
        report: &RouteReport,
        previous: Option<&WebSocketRouteStatus>,
    ) {
        let reference: ObjectReference = route.object_ref(&route_resource());
        for problem in &report.problems {
            let already = previous.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.message.contains(&problem.message))
            });
            if already {
                continue;
            }
            self.warn(problem, &reference).await;
        }
    }
}

fn tls_secret(secret: &Secret) -> TlsSecret {
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    TlsSecret {
        namespace: secret.namespace().unwrap_or_else(|| "default".into()),
        name: secret.name_any(),
        cert_pem: field("tls.crt"),
        key_pem: field("tls.key"),
        ca_pem: Some(field("ca.crt")).filter(|pem| !pem.is_empty()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `status.loadBalancer.ingress` of an Ingress, as JSON.
fn published(ingress: &Ingress) -> Option<serde_json::Value> {
    let balancer = ingress.status.as_ref()?.load_balancer.as_ref()?;
    serde_json::to_value(balancer.ingress.as_ref()?).ok()
}
