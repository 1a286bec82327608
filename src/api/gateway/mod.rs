//! The Gateway API (`gateway.networking.k8s.io`): GatewayClasses naming wsgate's controller,
//! their Gateways, the HTTPRoutes attached to them and the ReferenceGrants that open other
//! namespaces, translated in one pure step into model routes and the status every object
//! should have ([`translate`]).
//!
//! wsgate's own two listeners serve every Gateway of its classes: a Gateway listener with
//! protocol `HTTP` on the HTTP port, or `HTTPS` on the HTTPS port ([`Ports`]), maps onto them;
//! any other is `Accepted: False` (`PortUnavailable` or `UnsupportedProtocol`).

mod attach;
mod policies;
mod rules;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

pub use attach::{intersect, namespace_selected};
pub use policies::PolicyReport;
pub use types::*;

use crate::model::{Hostname, ObjectKind, Route, RouteMeta, RouteTls, Translated};

/// `GatewayClass.spec.controllerName` of classes wsgate serves.
pub const GATEWAY_CONTROLLER: &str = "wsgate.dev/gateway-controller";

/// The Gateway listener ports that map onto wsgate's listeners (the ports of the Service in
/// front of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Port of `HTTP` listeners.
    pub http: u16,
    /// Port of `HTTPS` listeners.
    pub https: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: 80,
            https: 443,
        }
    }
}

/// The ports of Services, by (namespace, name).
pub type ServicePorts = HashMap<(String, String), Vec<ServicePortInfo>>;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    /// `port`.
    pub number: u16,
    /// `name`.
    pub name: Option<String>,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// Everything the translation reads.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// The controller name classes must name.
    pub controller: &'a str,
    /// Listener port mapping.
    pub ports: Ports,
    /// Every GatewayClass.
    pub classes: &'a [Object<GatewayClassSpec>],
    /// Every Gateway.
    pub gateways: &'a [Object<GatewaySpec>],
    /// Every HTTPRoute.
    pub routes: &'a [Object<HttpRouteSpec>],
    /// Every ReferenceGrant.
    pub grants: &'a [Object<ReferenceGrantSpec>],
    /// Every WebSocketPolicy.
    pub policies: &'a [Object<crate::api::policy::WebSocketPolicySpec>],
    /// Every BackendTLSPolicy.
    pub backend_tls: &'a [Object<BackendTlsPolicySpec>],
    /// ConfigMaps with a `ca.crt`, by (namespace, name).
    pub config_maps: &'a HashSet<(String, String)>,
    /// Namespace labels.
    pub namespaces: &'a NamespaceLabels,
    /// Service ports.
    pub services: &'a ServicePorts,
    /// TLS Secrets present, by (namespace, name).
    pub secrets: &'a HashSet<(String, String)>,
}

/// One condition to write, before timestamps: the source adds `lastTransitionTime` and
/// `observedGeneration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// `type`.
    pub type_: &'static str,
    /// `status`: True or False.
    pub status: bool,
    /// `reason`.
    pub reason: &'static str,
    /// `message`.
    pub message: String,
}

impl Cond {
    fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

/// What a GatewayClass of ours should say.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    /// Its name.
    pub name: String,
    /// Its generation.
    pub generation: Option<i64>,
    /// `Accepted`, `SupportedVersion`.
    pub conditions: Vec<Cond>,
}

/// What a Gateway of ours should say (addresses are the source's to fill in).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its generation.
    pub generation: Option<i64>,
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Cond>,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerReport>,
}

/// What one listener should say.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerReport {
    /// Its name.
    pub name: String,
    /// Route kinds that may attach.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Cond>,
}

/// What an HTTPRoute should say about the parents that are ours.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRouteReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its generation.
    pub generation: Option<i64>,
    /// One per parentRef that names a Gateway of ours.
    pub parents: Vec<(ParentReference, Vec<Cond>)>,
}

/// The translation of every Gateway API object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// Model routes, one per HTTPRoute attached to at least one listener.
    pub routes: Vec<Translated>,
    /// GatewayClasses of ours.
    pub classes: Vec<ClassReport>,
    /// Gateways of those classes.
    pub gateways: Vec<GatewayReport>,
    /// HTTPRoutes naming those Gateways.
    pub http_routes: Vec<HttpRouteReport>,
    /// Every WebSocketPolicy.
    pub policies: Vec<PolicyReport>,
    /// BackendTLSPolicies used by a route of a Gateway of ours.
    pub backend_tls: Vec<PolicyReport>,
}

/// Who an HTTPRoute is, as a model route.
pub fn http_route_meta<S>(route: &Object<S>) -> RouteMeta {
    RouteMeta {
        kind: ObjectKind::HttpRoute,
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        generation: route.generation,
        created: route.created,
    }
}

/// Translates the Gateway API objects. Pure: the same world gives the same routes and
/// reports.
pub fn translate(world: &World<'_>) -> Translation {
    let mut out = Translation::default();
    let ours: HashSet<&str> = world
        .classes
        .iter()
        .filter(|c| c.spec.controller_name == world.controller)
        .map(|c| c.name.as_str())
        .collect();
    for class in world.classes.iter().filter(|c| ours.contains(&*c.name)) {
        out.classes.push(ClassReport {
            name: class.name.clone(),
            generation: class.generation,
            conditions: vec![
                Cond::yes("Accepted", "Accepted", "served by wsgate"),
                Cond::yes(
                    "SupportedVersion",
                    "SupportedVersion",
                    "wsgate reads Gateway API v1",
                ),
            ],
        });
    }
    let mut gateways: Vec<attach::GatewayState<'_>> = world
        .gateways
        .iter()
        .filter(|g| ours.contains(&*g.spec.gateway_class_name))
        .map(|g| attach::GatewayState::new(world, g))
        .collect();
    let mut policies = policies::Policies::new(world.policies);
    // The Gateways of the routes that use each BackendTLSPolicy.
    let mut backend_tls: Vec<Vec<(String, String)>> = vec![Vec::new(); world.backend_tls.len()];
    for route in world.routes {
        let attached = attach::attach(world, route, &mut gateways);
        if attached.parents.is_empty() {
            continue;
        }
        let mut resolved = rules::translate_rules(world, route);
        let attached_to: Vec<(String, String)> = attached
            .parents
            .iter()
            .filter(|(_, accepted)| accepted.status)
            .map(|(p, _)| {
                let ns = p
                    .namespace
                    .clone()
                    .unwrap_or_else(|| route.namespace.clone());
                (ns, p.name.clone())
            })
            .collect();
        policies.apply(route, &mut resolved.rules, &attached_to);
        for &i in &resolved.backend_tls_used {
            backend_tls[i].extend(attached_to.iter().cloned());
        }
        let mut parents = Vec::with_capacity(attached.parents.len());
        for (parent, accepted) in attached.parents {
            let accepted = match (&accepted, &resolved.unsupported) {
                (Cond { status: true, .. }, Some(why)) => {
                    Cond::no("Accepted", "UnsupportedValue", why.clone())
                }
                _ => accepted,
            };
            parents.push((parent, vec![accepted, resolved.refs.clone()]));
        }
        out.http_routes.push(HttpRouteReport {
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            generation: route.generation,
            parents,
        });
        match (resolved.unsupported, attached.hosts.is_empty()) {
            (Some(why), _) => out.routes.push(Err(Box::new(crate::model::Rejected {
                meta: http_route_meta(route),
                problems: vec![crate::model::FieldError {
                    path: "spec".into(),
                    message: why,
                }],
                last_good: None,
            }))),
            (None, true) => {}
            (None, false) => {
                let plain = attached.plain_http;
                let model = model_route(route, attached.hosts, plain, resolved.rules);
                out.routes.push(Ok(model))
            }
        }
    }
    out.gateways = gateways
        .into_iter()
        .map(attach::GatewayState::report)
        .collect();
    out.policies = policies.reports();
    out.backend_tls = world
        .backend_tls
        .iter()
        .zip(backend_tls)
        .filter(|(_, gateways)| !gateways.is_empty())
        .map(|(policy, mut gateways)| {
            gateways.sort();
            gateways.dedup();
            let conds = rules::backend_tls_conditions(world, policy);
            PolicyReport {
                namespace: policy.namespace.clone(),
                name: policy.name.clone(),
                generation: policy.generation,
                ancestors: gateways.into_iter().map(|g| (g, conds.clone())).collect(),
            }
        })
        .collect();
    out
}

/// The model route of an attached HTTPRoute: its hosts (merged with other routes of the same
/// hosts, as the Gateway API merges rules across routes), TLS from the most specific HTTPS
/// listener it attached to; without an HTTP listener (`plain_http`), plain HTTP gets 404.
fn model_route(
    route: &Object<HttpRouteSpec>,
    hosts: Vec<attach::Host>,
    plain_http: bool,
    rules: Vec<crate::model::Rule>,
) -> Route {
    let tls = hosts
        .iter()
        .find_map(|h| h.cert.clone())
        .map(|(namespace, name)| RouteTls {
            secret: Some(name),
            secret_namespace: Some(namespace),
            http_redirect: false,
            https_only: !plain_http,
            hsts: None,
        });
    let catch_all = hosts.iter().any(|h| h.name.is_none());
    let mut hostnames: Vec<Hostname> = hosts.into_iter().filter_map(|h| h.name).collect();
    hostnames.dedup();
    Route {
        meta: http_route_meta(route),
        hostnames,
        catch_all,
        merge: true,
        redirect_hostnames: Vec::new(),
        tls,
        maintenance: None,
        rules,
        warnings: Vec::new(),
    }
}
