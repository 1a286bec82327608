//! The Gateway API objects: watched untyped when their CRDs are installed, decoded one by one,
//! translated together ([`crate::api::gateway::translate`]), and given their status by the
//! leader: GatewayClass and Gateway conditions, listener status, and one `status.parents`
//! entry per Gateway of ours on each HTTPRoute (entries of other controllers are kept).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::status::same_conditions;
use super::{Builder, FIELD_MANAGER, spawn_watch, spawn_watch_with};
use crate::api::gateway::{
    self, Cond, GatewayStatusAddress, ListenerStatus, Object, ParentReference, PolicyReport, Ports,
    RouteParentStatus, ServicePortInfo, ServicePorts, Translation, World,
};
use crate::api::policy::{AncestorRef, PolicyAncestorStatus, PolicyStatus, WebSocketPolicy};
use crate::metrics::Metrics;
use crate::model::{Rejected, Route, Translated};

/// The Gateway API resources wsgate watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GatewayClass,
    Gateway,
    HttpRoute,
    ReferenceGrant,
    BackendTlsPolicy,
    /// wsgate's own policy CRD, watched with the Gateway API it extends.
    WebSocketPolicy,
}

impl Kind {
    fn resource(self) -> ApiResource {
        if self == Kind::WebSocketPolicy {
            return ApiResource::erase::<WebSocketPolicy>(&());
        }
        let (version, kind, plural) = match self {
            Kind::GatewayClass => ("v1", "GatewayClass", "gatewayclasses"),
            Kind::Gateway => ("v1", "Gateway", "gateways"),
            Kind::HttpRoute => ("v1", "HTTPRoute", "httproutes"),
            Kind::ReferenceGrant => ("v1beta1", "ReferenceGrant", "referencegrants"),
            Kind::BackendTlsPolicy => ("v1", "BackendTLSPolicy", "backendtlspolicies"),
            Kind::WebSocketPolicy => ("v1alpha1", "WebSocketPolicy", "websocketpolicies"),
        };
        let gvk = GroupVersionKind::gvk(gateway::GATEWAY_GROUP, version, kind);
        ApiResource::from_gvk_with_plural(&gvk, plural)
    }

    fn api(self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = self.resource();
        match (self, namespace) {
            (Kind::GatewayClass, _) | (_, None) => Api::all_with(client.clone(), &ar),
            (_, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        }
    }

    fn namespaced_api(self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        match self {
            Kind::GatewayClass => Api::all_with(client.clone(), &self.resource()),
            _ => Api::namespaced_with(client.clone(), namespace, &self.resource()),
        }
    }
}

/// The stores of the Gateway API objects.
#[derive(Clone)]
pub(super) struct GatewayStores {
    classes: Store<DynamicObject>,
    gateways: Store<DynamicObject>,
    routes: Store<DynamicObject>,
    grants: Store<DynamicObject>,
    /// `None` when the WebSocketPolicy CRD is not installed.
    policies: Option<Store<DynamicObject>>,
    /// BackendTLSPolicies and the ConfigMaps their CAs are in (the controller's one ConfigMap
    /// store); `None` when the BackendTLSPolicy CRD is not installed.
    backend_tls: Option<(Store<DynamicObject>, Store<ConfigMap>)>,
    namespaces: Store<Namespace>,
}

/// What the controller keeps between rebuilds.
#[derive(Default)]
pub(super) struct GatewayState {
    /// The last translation, for status.
    pub(super) last: Translation,
    /// The last version of each HTTPRoute that translated, kept serving through a bad edit.
    good: HashMap<(String, String), Route>,
    /// (kind, namespace/name, resourceVersion) of objects that did not decode, logged once.
    undecodable: HashSet<(String, String, Option<String>)>,
}

/// Starts the watches if the Gateway API CRDs are installed (a GatewayClass list answers);
/// `None` otherwise, logged once: wsgate then serves its own routes and Ingresses only.
pub(super) async fn spawn(
    client: &Client,
    namespace: Option<&str>,
    dirty: &Arc<Notify>,
    metrics: &Metrics,
    tasks: &mut Vec<JoinHandle<()>>,
    config_maps: &Store<ConfigMap>,
) -> Option<GatewayStores> {
    let probe = Kind::GatewayClass.api(client, None);
    if let Err(e) = probe.list(&ListParams::default().limit(1)).await {
        tracing::info!(error = %e, "the Gateway API CRDs are not installed (or not readable): Gateways and HTTPRoutes are not watched; install them and restart wsgate to serve them");
        return None;
    }
    let probe = Kind::BackendTlsPolicy.api(client, None);
    let with_backend_tls = probe.list(&ListParams::default().limit(1)).await.is_ok();
    let cfg = watcher::Config::default();
    let mut watch = |kind: Kind, name: &'static str| {
        let (store, task) = spawn_watch_with(
            kind.api(client, namespace),
            cfg.clone(),
            name,
            dirty.clone(),
            metrics,
            Writer::new(kind.resource()),
        );
        tasks.push(task);
        store
    };
    let classes = watch(Kind::GatewayClass, "GatewayClass");
    let gateways = watch(Kind::Gateway, "Gateway");
    let routes = watch(Kind::HttpRoute, "HTTPRoute");
    let grants = watch(Kind::ReferenceGrant, "ReferenceGrant");
    let probe = Kind::WebSocketPolicy.api(client, None);
    let policies = match probe.list(&ListParams::default().limit(1)).await {
        Ok(_) => Some(watch(Kind::WebSocketPolicy, "WebSocketPolicy")),
        Err(e) => {
            tracing::warn!(error = %e, "the WebSocketPolicy CRD is not installed (kubectl apply -f crds/websocketpolicy.yaml): policies are not watched");
            None
        }
    };
    let backend_tls = match with_backend_tls {
        true => {
            let policies = watch(Kind::BackendTlsPolicy, "BackendTLSPolicy");
            Some((policies, config_maps.clone()))
        }
        false => {
            tracing::info!(
                "the BackendTLSPolicy CRD is not installed: TLS to backends is set by appProtocol only"
            );
            None
        }
    };
    let (namespaces, task) = spawn_watch(
        Api::<Namespace>::all(client.clone()),
        cfg,
        "Namespace",
        dirty.clone(),
        metrics,
    );
    tasks.push(task);
    Some(GatewayStores {
        classes,
        gateways,
        routes,
        grants,
        policies,
        backend_tls,
        namespaces,
    })
}

impl GatewayStores {
    /// `ca.crt` of every ConfigMap that has one, by (namespace, name).
    pub(super) fn config_map_cas(&self) -> HashMap<(String, String), Vec<u8>> {
        let Some((_, maps)) = &self.backend_tls else {
            return HashMap::new();
        };
        maps.state()
            .iter()
            .filter_map(|m| {
                let pem = m.data.as_ref()?.get("ca.crt")?;
                let key = (m.namespace().unwrap_or_default(), m.name_any());
                Some((key, pem.clone().into_bytes()))
            })
            .collect()
    }

    /// An HTTPRoute as an Event's subject.
    pub(super) fn http_route_reference(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        let resource = Kind::HttpRoute.resource();
        let key = ObjectRef::new_with(name, resource.clone()).within(namespace);
        let object = self.routes.get(&key)?;
        Some(kube::Resource::object_ref(&*object, &resource))
    }

    /// Waits for every first list.
    pub(super) async fn ready(&self) {
        let _ = self.classes.wait_until_ready().await;
        let _ = self.gateways.wait_until_ready().await;
        let _ = self.routes.wait_until_ready().await;
        let _ = self.grants.wait_until_ready().await;
        if let Some(policies) = &self.policies {
            let _ = policies.wait_until_ready().await;
        }
        if let Some((policies, maps)) = &self.backend_tls {
            let _ = policies.wait_until_ready().await;
            let _ = maps.wait_until_ready().await;
        }
        let _ = self.namespaces.wait_until_ready().await;
    }
}

/// Decodes every object of a store; one that does not fit is logged and left out (an
/// HTTPRoute that does not decode is also reported as a rejected route).
fn decoded<S: DeserializeOwned>(
    store: &Store<DynamicObject>,
    out: &mut Decoding<'_>,
    kind: &str,
) -> Vec<Object<S>> {
    let mut objects: Vec<Object<S>> = Vec::new();
    for object in store.state() {
        let json = serde_json::to_value(&*object).unwrap_or_default();
        match gateway::decode::<S>(json) {
            Ok(o) => objects.push(o),
            Err(problem) => {
                let id = format!(
                    "{}/{}",
                    object.namespace().unwrap_or_default(),
                    object.name_any()
                );
                // Once per version of the object, not at every rebuild.
                let version = (kind.to_string(), id.clone(), object.resource_version());
                if !out.logged.contains(&version) {
                    tracing::warn!(kind, object = %id, %problem, "object does not decode; left out");
                }
                out.failing.insert(version);
                let rejected = &mut *out.rejected;
                if kind == "HTTPRoute" {
                    let meta = Object {
                        namespace: object.namespace().unwrap_or_default(),
                        name: object.name_any(),
                        generation: object.metadata.generation,
                        created: None,
                        spec: (),
                    };
                    rejected.push(Err(Box::new(Rejected {
                        meta: gateway::http_route_meta(&meta),
                        problems: vec![problem],
                        last_good: None,
                    })));
                }
            }
        }
    }
    objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    objects
}

/// Where [`decoded`] reports: HTTPRoutes that do not decode, and which versions of which
/// objects failed (logged only when new).
struct Decoding<'a> {
    rejected: &'a mut Vec<Translated>,
    /// Versions that failed in the last rebuild, already logged.
    logged: &'a HashSet<(String, String, Option<String>)>,
    /// Versions failing now.
    failing: HashSet<(String, String, Option<String>)>,
}

/// The ports of every Service, with their `appProtocol`.
fn service_ports(services: &Store<Service>) -> ServicePorts {
    let mut out = ServicePorts::new();
    for s in services.state() {
        let ports = s.spec.as_ref().and_then(|spec| spec.ports.as_ref());
        let ports = ports.iter().flat_map(|p| p.iter());
        let list = ports
            .filter_map(|p| {
                Some(ServicePortInfo {
                    number: u16::try_from(p.port).ok()?,
                    name: p.name.clone(),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        out.insert((s.namespace().unwrap_or_default(), s.name_any()), list);
    }
    out
}

impl GatewayStores {
    /// Translates every Gateway API object; HTTPRoutes that no longer translate keep their
    /// last good version serving.
    pub(super) fn translate(
        &self,
        controller: &str,
        ports: Ports,
        services: &Store<Service>,
        secrets: &Store<Secret>,
        state: &mut GatewayState,
    ) -> Vec<Arc<Translated>> {
        let mut routes: Vec<Translated> = Vec::new();
        let mut out = Decoding {
            rejected: &mut routes,
            logged: &state.undecodable,
            failing: HashSet::new(),
        };
        let classes = decoded(&self.classes, &mut out, "GatewayClass");
        let gateways = decoded(&self.gateways, &mut out, "Gateway");
        let http_routes = decoded(&self.routes, &mut out, "HTTPRoute");
        let grants = decoded(&self.grants, &mut out, "ReferenceGrant");
        let policies = match &self.policies {
            Some(store) => decoded(store, &mut out, "WebSocketPolicy"),
            None => Vec::new(),
        };
        let backend_tls = match &self.backend_tls {
            Some((store, _)) => decoded(store, &mut out, "BackendTLSPolicy"),
            None => Vec::new(),
        };
        let failing = std::mem::take(&mut out.failing);
        state.undecodable = failing;
        let config_maps: HashSet<(String, String)> = self.config_map_cas().into_keys().collect();
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
            .collect();
        let services = service_ports(services);
        let secrets: HashSet<(String, String)> = secrets
            .state()
            .iter()
            .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        let mut translation = gateway::translate(&World {
            controller,
            ports,
            classes: &classes,
            gateways: &gateways,
            routes: &http_routes,
            grants: &grants,
            policies: &policies,
            backend_tls: &backend_tls,
            config_maps: &config_maps,
            namespaces: &namespaces,
            services: &services,
            secrets: &secrets,
        });
        routes.append(&mut translation.routes);
        let mut good = HashMap::new();
        for route in &mut routes {
            let meta = crate::model::meta(route);
            let key = (meta.namespace.clone(), meta.name.clone());
            match route {
                Ok(r) => {
                    good.insert(key, r.clone());
                }
                Err(rejected) => {
                    rejected.last_good = state.good.get(&key).cloned();
                    if let Some(last) = &rejected.last_good {
                        good.insert(key, last.clone());
                    }
                }
            }
        }
        state.good = good;
        state.last = translation;
        routes.into_iter().map(Arc::new).collect()
    }
}

/// Conditions as Kubernetes stores them: a condition whose status did not change keeps its
/// `lastTransitionTime`.
fn conditions(
    desired: &[Cond],
    current: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = current
                .iter()
                .find(|old| old.type_ == c.type_ && old.status == status)
                .map_or_else(|| now.clone(), |old| old.last_transition_time.clone());
            Condition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason.to_string(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

fn status_conditions(object: &DynamicObject, at: &str) -> Vec<Condition> {
    let value = object.data.get("status").and_then(|s| s.get(at));
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

impl Builder {
    /// Writes the status of every Gateway API object of ours whose status changed. Leader
    /// only; stops at once if leadership is lost.
    pub(super) async fn write_gateway_statuses(&mut self, addresses: Vec<GatewayStatusAddress>) {
        let Some(stores) = self.stores.gateway.clone() else {
            return;
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let last = std::mem::take(&mut self.gateway.last);
        for class in &last.classes {
            let key = ObjectRef::new_with(&class.name, Kind::GatewayClass.resource());
            let Some(object) = stores.classes.get(&key) else {
                continue;
            };
            let current = status_conditions(&object, "conditions");
            let desired = conditions(&class.conditions, &current, class.generation, &now);
            if same_conditions(&current, &desired) {
                continue;
            }
            let status = serde_json::json!({ "conditions": desired });
            self.patch_status(Kind::GatewayClass, "", &class.name, status)
                .await;
        }
        for gw in &last.gateways {
            let key = ObjectRef::new_with(&gw.name, Kind::Gateway.resource()).within(&gw.namespace);
            let Some(object) = stores.gateways.get(&key) else {
                continue;
            };
            let current: gateway::GatewayStatus = object
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            let listeners: Vec<ListenerStatus> = gw
                .listeners
                .iter()
                .map(|l| {
                    let old = current.listeners.iter().find(|o| o.name == l.name);
                    let old = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
                    ListenerStatus {
                        name: l.name.clone(),
                        supported_kinds: l.supported_kinds.clone(),
                        attached_routes: l.attached_routes,
                        conditions: conditions(&l.conditions, old, gw.generation, &now),
                    }
                })
                .collect();
            let desired = gateway::GatewayStatus {
                addresses: addresses.clone(),
                conditions: conditions(&gw.conditions, &current.conditions, gw.generation, &now),
                listeners,
            };
            let same = current.addresses == desired.addresses
                && same_conditions(&current.conditions, &desired.conditions)
                && current.listeners.len() == desired.listeners.len()
                && current
                    .listeners
                    .iter()
                    .zip(&desired.listeners)
                    .all(|(a, b)| {
                        (a.name == b.name
                            && a.supported_kinds == b.supported_kinds
                            && a.attached_routes == b.attached_routes)
                            && same_conditions(&a.conditions, &b.conditions)
                    });
            if same {
                continue;
            }
            let status = serde_json::to_value(&desired).unwrap_or_default();
            self.patch_status(Kind::Gateway, &gw.namespace, &gw.name, status)
                .await;
        }
        for route in &last.http_routes {
            let key = ObjectRef::new_with(&route.name, Kind::HttpRoute.resource())
                .within(&route.namespace);
            let Some(object) = stores.routes.get(&key) else {
                continue;
            };
            let current: gateway::RouteStatus = object
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            let controller = gateway::GATEWAY_CONTROLLER;
            let ours = |p: &RouteParentStatus| p.controller_name == controller;
            let mut parents: Vec<RouteParentStatus> = current
                .parents
                .iter()
                .filter(|p| !ours(p))
                .cloned()
                .collect();
            for (parent, conds) in &route.parents {
                let old = current
                    .parents
                    .iter()
                    .find(|p| ours(p) && same_parent(&p.parent_ref, parent));
                let old = old.map(|p| p.conditions.as_slice()).unwrap_or_default();
                parents.push(RouteParentStatus {
                    parent_ref: parent.clone(),
                    controller_name: controller.to_string(),
                    conditions: conditions(conds, old, route.generation, &now),
                });
            }
            let same = parents.len() == current.parents.len()
                && parents.iter().all(|p| {
                    current.parents.iter().any(|c| {
                        c.controller_name == p.controller_name
                            && same_parent(&c.parent_ref, &p.parent_ref)
                            && same_conditions(&c.conditions, &p.conditions)
                    })
                });
            if same {
                continue;
            }
            let status = serde_json::json!({ "parents": parents });
            self.patch_status(Kind::HttpRoute, &route.namespace, &route.name, status)
                .await;
        }
        if let Some(store) = &stores.policies {
            self.write_policy_statuses(Kind::WebSocketPolicy, store, &last.policies, &now)
                .await;
        }
        if let Some((store, _)) = &stores.backend_tls {
            self.write_policy_statuses(Kind::BackendTlsPolicy, store, &last.backend_tls, &now)
                .await;
        }
        self.gateway.last = last;
    }

    /// `status.ancestors` of policies of `kind`: one entry per Gateway, other controllers'
    /// entries kept.
    async fn write_policy_statuses(
        &self,
        kind: Kind,
        store: &Store<DynamicObject>,
        reports: &[PolicyReport],
        now: &Time,
    ) {
        let controller = gateway::GATEWAY_CONTROLLER;
        for policy in reports {
            let key = ObjectRef::new_with(&policy.name, kind.resource()).within(&policy.namespace);
            let Some(object) = store.get(&key) else {
                continue;
            };
            let current: PolicyStatus = object
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            let mut ancestors: Vec<PolicyAncestorStatus> = current
                .ancestors
                .iter()
                .filter(|a| a.controller_name != controller)
                .cloned()
                .collect();
            for ((namespace, name), conds) in &policy.ancestors {
                let ancestor_ref = AncestorRef {
                    group: gateway::GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                };
                let old = current
                    .ancestors
                    .iter()
                    .find(|a| a.controller_name == controller && a.ancestor_ref == ancestor_ref);
                let old = old.map(|a| a.conditions.as_slice()).unwrap_or_default();
                ancestors.push(PolicyAncestorStatus {
                    ancestor_ref,
                    controller_name: controller.to_string(),
                    conditions: conditions(conds, old, policy.generation, now),
                });
            }
            let same = ancestors.len() == current.ancestors.len()
                && ancestors.iter().zip(&current.ancestors).all(|(a, b)| {
                    a.ancestor_ref == b.ancestor_ref
                        && a.controller_name == b.controller_name
                        && same_conditions(&a.conditions, &b.conditions)
                });
            if !same {
                let status = serde_json::json!({ "ancestors": ancestors });
                self.patch_status(kind, &policy.namespace, &policy.name, status)
                    .await;
            }
        }
    }

    async fn patch_status(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        status: serde_json::Value,
    ) {
        if !self.leadership.is_leader() {
            return;
        }
        let api = kind.namespaced_api(&self.opts.client, namespace);
        let ar = kind.resource();
        let patch = serde_json::json!({
            "apiVersion": ar.api_version,
            "kind": ar.kind,
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&patch)).await {
            tracing::warn!(kind = ar.kind, object = %format!("{namespace}/{name}"), error = %e, "writing status failed; retrying on the next rebuild");
        }
    }
}

/// Whether two parentRefs name the same parent (defaults filled in).
fn same_parent(a: &ParentReference, b: &ParentReference) -> bool {
    let norm = |p: &ParentReference| {
        (
            p.group
                .clone()
                .unwrap_or_else(|| gateway::GATEWAY_GROUP.into()),
            p.kind.clone().unwrap_or_else(|| "Gateway".into()),
            p.namespace.clone(),
            p.name.clone(),
            p.section_name.clone(),
            p.port,
        )
    };
    norm(a) == norm(b)
}
