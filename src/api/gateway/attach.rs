//! Gateways and their listeners, and attaching routes to them: `parentRefs` with
//! `sectionName` and `port`, `allowedRoutes`, and hostname intersection (Gateway API spec,
//! `HTTPRouteSpec.hostnames` and `Listener.hostname`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::types::*;
use super::{Cond, GatewayReport, ListenerReport, World};
use crate::model::Hostname;

/// A Gateway being translated, with what its listeners are and how many routes attached.
pub(super) struct GatewayState<'a> {
    gateway: &'a Object<GatewaySpec>,
    listeners: Vec<ListenerState<'a>>,
}

struct ListenerState<'a> {
    spec: &'a Listener,
    /// Why the listener cannot serve at all.
    refused: Option<Cond>,
    /// Why a reference of it does not resolve (it then serves nothing).
    unresolved: Option<Cond>,
    conflicted: bool,
    hostname: Option<Hostname>,
    kinds: Vec<RouteGroupKind>,
    /// The certificate Secret of an HTTPS listener, when it resolves.
    cert: Option<(String, String)>,
    attached: i32,
}

impl ListenerState<'_> {
    fn serves(&self) -> bool {
        self.refused.is_none() && self.unresolved.is_none() && !self.conflicted
    }
}

/// A hostname a route serves through one listener (`name: None`: any host), with the
/// certificate of that listener.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Host {
    pub(super) name: Option<Hostname>,
    pub(super) cert: Option<(String, String)>,
    /// How specific the listener is: HTTPS over HTTP, an exact name over a wildcard over none.
    rank: (bool, u8, usize),
}

/// What attaching one route gave.
pub(super) struct Attached {
    /// Each parentRef naming a Gateway of ours, with its `Accepted` condition.
    pub(super) parents: Vec<(ParentReference, Cond)>,
    /// The hosts the route serves, each through its most specific listener.
    pub(super) hosts: Vec<Host>,
    /// Whether it serves through an HTTP listener (else only on HTTPS).
    pub(super) plain_http: bool,
}

const HTTP_ROUTE: &str = "HTTPRoute";

fn group_of(group: &Option<String>) -> &str {
    group.as_deref().unwrap_or(GATEWAY_GROUP)
}

impl<'a> GatewayState<'a> {
    pub(super) fn new(world: &World<'_>, gateway: &'a Object<GatewaySpec>) -> Self {
        let mut listeners: Vec<ListenerState<'a>> = gateway
            .spec
            .listeners
            .iter()
            .map(|l| listener_state(world, gateway, l))
            .collect();
        // Two listeners of one port with the same hostname cannot be told apart.
        for i in 0..listeners.len() {
            let clash = listeners.iter().enumerate().any(|(j, other)| {
                j != i
                    && other.spec.port == listeners[i].spec.port
                    && other.spec.hostname == listeners[i].spec.hostname
            });
            listeners[i].conflicted = clash;
        }
        GatewayState { gateway, listeners }
    }

    pub(super) fn report(self) -> GatewayReport {
        let valid = self.listeners.iter().any(|l| l.refused.is_none());
        let programmed = self.listeners.iter().any(ListenerState::serves);
        let conditions = vec![
            match valid || self.listeners.is_empty() {
                true => Cond::yes("Accepted", "Accepted", "served by wsgate"),
                false => Cond::no(
                    "Accepted",
                    "ListenersNotValid",
                    "no listener can be served by wsgate",
                ),
            },
            match programmed {
                true => Cond::yes("Programmed", "Programmed", "in wsgate's routing table"),
                false => Cond::no("Programmed", "Invalid", "no listener is programmed"),
            },
        ];
        let listeners = self
            .listeners
            .into_iter()
            .map(|l| {
                let serves = l.serves();
                let accepted = l
                    .refused
                    .clone()
                    .unwrap_or_else(|| Cond::yes("Accepted", "Accepted", "listener accepted"));
                let resolved = l.unresolved.clone().unwrap_or_else(|| {
                    Cond::yes("ResolvedRefs", "ResolvedRefs", "references resolved")
                });
                let conflicted = match l.conflicted {
                    true => Cond::yes(
                        "Conflicted",
                        "HostnameConflict",
                        "another listener has the same port and hostname",
                    ),
                    false => Cond::no("Conflicted", "NoConflicts", "no conflicts"),
                };
                let programmed = match serves {
                    true => Cond::yes("Programmed", "Programmed", "in wsgate's routing table"),
                    false => Cond::no("Programmed", "Invalid", "the listener cannot serve"),
                };
                ListenerReport {
                    name: l.spec.name.clone(),
                    supported_kinds: l.kinds,
                    attached_routes: l.attached,
                    conditions: vec![accepted, programmed, resolved, conflicted],
                }
            })
            .collect();
        GatewayReport {
            namespace: self.gateway.namespace.clone(),
            name: self.gateway.name.clone(),
            generation: self.gateway.generation,
            conditions,
            listeners,
        }
    }
}

fn listener_state<'a>(
    world: &World<'_>,
    gateway: &Object<GatewaySpec>,
    l: &'a Listener,
) -> ListenerState<'a> {
    let mut state = ListenerState {
        spec: l,
        refused: None,
        unresolved: None,
        conflicted: false,
        hostname: None,
        kinds: Vec::new(),
        cert: None,
        attached: 0,
    };
    let port = u16::try_from(l.port).unwrap_or(0);
    let wanted_port = match l.protocol.as_str() {
        "HTTP" => Some(world.ports.http),
        "HTTPS" => Some(world.ports.https),
        _ => None,
    };
    state.refused = match wanted_port {
        None => Some(Cond::no(
            "Accepted",
            "UnsupportedProtocol",
            format!("protocol {} is not served; use HTTP or HTTPS", l.protocol),
        )),
        Some(p) if p != port => Some(Cond::no(
            "Accepted",
            "PortUnavailable",
            format!(
                "wsgate serves {} on port {p} only (its Service port); port {} is not available",
                l.protocol, l.port
            ),
        )),
        Some(_) => None,
    };
    if let Some(h) = &l.hostname {
        match Hostname::parse(h) {
            Ok(h) => state.hostname = Some(h),
            Err(why) => {
                state.refused = Some(Cond::no(
                    "Accepted",
                    "UnsupportedValue",
                    format!("hostname: {why}"),
                ))
            }
        }
    }
    let allowed = l.allowed_routes.as_ref().map(|a| a.kinds.as_slice());
    match allowed {
        None | Some([]) => state.kinds.push(RouteGroupKind {
            group: Some(GATEWAY_GROUP.into()),
            kind: HTTP_ROUTE.into(),
        }),
        Some(kinds) => {
            for k in kinds {
                if group_of(&k.group) == GATEWAY_GROUP && k.kind == HTTP_ROUTE {
                    state.kinds.push(RouteGroupKind {
                        group: Some(GATEWAY_GROUP.into()),
                        kind: HTTP_ROUTE.into(),
                    });
                } else {
                    state.unresolved = Some(Cond::no(
                        "ResolvedRefs",
                        "InvalidRouteKinds",
                        format!("route kind {} is not supported; use HTTPRoute", k.kind),
                    ));
                }
            }
            state.kinds.dedup();
        }
    }
    if l.protocol == "HTTPS" {
        match certificate(world, gateway, l) {
            Ok(cert) => state.cert = Some(cert),
            Err(why) => state.unresolved = Some(why),
        }
    }
    state
}

/// The Secret an HTTPS listener serves: the first `certificateRefs` entry, a core Secret in
/// the Gateway's namespace or one a ReferenceGrant opens, present with a certificate.
fn certificate(
    world: &World<'_>,
    gateway: &Object<GatewaySpec>,
    l: &Listener,
) -> Result<(String, String), Cond> {
    let invalid = |m: String| Cond::no("ResolvedRefs", "InvalidCertificateRef", m);
    let tls = l.tls.as_ref();
    if tls
        .and_then(|t| t.mode.as_deref())
        .is_some_and(|m| m != "Terminate")
    {
        return Err(invalid("only tls.mode Terminate is supported".into()));
    }
    let Some(r) = tls.and_then(|t| t.certificate_refs.first()) else {
        return Err(invalid(
            "an HTTPS listener needs tls.certificateRefs".into(),
        ));
    };
    let core = matches!(r.group.as_deref(), None | Some(""));
    if !core || r.kind.as_deref().is_some_and(|k| k != "Secret") {
        return Err(invalid(format!(
            "certificate {}: only core Secrets are supported",
            r.name
        )));
    }
    let namespace = r
        .namespace
        .clone()
        .unwrap_or_else(|| gateway.namespace.clone());
    if namespace != gateway.namespace
        && !granted(
            world,
            ("Gateway", &gateway.namespace),
            ("Secret", &namespace, &r.name),
        )
    {
        return Err(Cond::no(
            "ResolvedRefs",
            "RefNotPermitted",
            format!(
                "Secret {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                r.name
            ),
        ));
    }
    if !world.secrets.contains(&(namespace.clone(), r.name.clone())) {
        return Err(invalid(format!(
            "Secret {namespace}/{} not found or not a kubernetes.io/tls Secret",
            r.name
        )));
    }
    Ok((namespace, r.name.clone()))
}

/// Whether a ReferenceGrant in `to.1` lets a `from.0` in namespace `from.1` (a Gateway API
/// kind) refer to the core `to.0` named `to.2`.
pub(super) fn granted(world: &World<'_>, from: (&str, &str), to: (&str, &str, &str)) -> bool {
    let (from_kind, from_ns) = from;
    let (to_kind, to_ns, to_name) = to;
    world
        .grants
        .iter()
        .filter(|g| g.namespace == to_ns)
        .any(|g| {
            let from_ok =
                g.spec.from.iter().any(|f| {
                    f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns
                });
            let to_ok = g.spec.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == to_name)
            });
            from_ok && to_ok
        })
}

/// Attaches `route` to the Gateways of ours its parentRefs name, counting it on each listener
/// it attaches to.
pub(super) fn attach(
    world: &World<'_>,
    route: &Object<HttpRouteSpec>,
    gateways: &mut [GatewayState<'_>],
) -> Attached {
    let mut out = Attached {
        parents: Vec::new(),
        hosts: Vec::new(),
        plain_http: false,
    };
    let mut route_names = Vec::new();
    for h in &route.spec.hostnames {
        // The CRD validates hostnames; one that does not parse can match no listener.
        if let Ok(h) = Hostname::parse(h) {
            route_names.push(h);
        }
    }
    for parent in &route.spec.parent_refs {
        let is_gateway = group_of(&parent.group) == GATEWAY_GROUP
            && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway";
        let namespace = parent.namespace.as_deref().unwrap_or(&route.namespace);
        let gateway = gateways
            .iter_mut()
            .find(|g| g.gateway.namespace == namespace && g.gateway.name == parent.name);
        let (true, Some(gateway)) = (is_gateway, gateway) else {
            continue;
        };
        let accepted = attach_to(world, route, parent, &route_names, gateway, &mut out.hosts);
        out.parents.push((parent.clone(), accepted));
    }
    out.plain_http = out.hosts.iter().any(|h| h.cert.is_none());
    // Each host through its most specific listener; the rest of its listeners would serve
    // the same rules with another certificate.
    out.hosts.sort_by_key(|h| std::cmp::Reverse(h.rank));
    let mut seen: Vec<Option<Hostname>> = Vec::new();
    out.hosts.retain(|h| {
        let new = !seen.contains(&h.name);
        if new {
            seen.push(h.name.clone());
        }
        new
    });
    out
}

fn attach_to(
    world: &World<'_>,
    route: &Object<HttpRouteSpec>,
    parent: &ParentReference,
    route_names: &[Hostname],
    gateway: &mut GatewayState<'_>,
    hosts: &mut Vec<Host>,
) -> Cond {
    let gateway_ns = gateway.gateway.namespace.clone();
    let named = |l: &&mut ListenerState<'_>| {
        parent
            .section_name
            .as_ref()
            .is_none_or(|s| *s == l.spec.name)
            && parent.port.is_none_or(|p| p == l.spec.port)
    };
    let mut candidates: Vec<&mut ListenerState<'_>> =
        gateway.listeners.iter_mut().filter(named).collect();
    if candidates.is_empty() {
        return Cond::no(
            "Accepted",
            "NoMatchingParent",
            "no listener of the Gateway has that sectionName and port",
        );
    }
    candidates
        .retain(|l| l.refused.is_none() && allows(world, l.spec, &gateway_ns, &route.namespace));
    if candidates.is_empty() {
        return Cond::no(
            "Accepted",
            "NotAllowedByListeners",
            "no listener allows HTTPRoutes from this namespace",
        );
    }
    let mut any = false;
    for l in candidates {
        let names = intersect(l.hostname.as_ref(), route_names);
        if names.is_empty() {
            continue;
        }
        any = true;
        l.attached += 1;
        if !l.serves() {
            continue;
        }
        let https = l.spec.protocol == "HTTPS";
        let rank = match &l.hostname {
            None => (https, 0, 0),
            Some(h) if h.is_wildcard() => (https, 1, h.as_str().len()),
            Some(h) => (https, 2, h.as_str().len()),
        };
        for name in names {
            hosts.push(Host {
                name,
                cert: l.cert.clone(),
                rank,
            });
        }
    }
    match any {
        true => Cond::yes("Accepted", "Accepted", "attached"),
        false => Cond::no(
            "Accepted",
            "NoMatchingListenerHostname",
            "no hostname of the route matches a listener's hostname",
        ),
    }
}

/// Whether a listener's `allowedRoutes` takes HTTPRoutes from `route_ns`.
fn allows(world: &World<'_>, l: &Listener, gateway_ns: &str, route_ns: &str) -> bool {
    let allowed = l.allowed_routes.as_ref();
    let kinds = allowed.map(|a| a.kinds.as_slice()).unwrap_or_default();
    let kind_ok = kinds.is_empty()
        || kinds
            .iter()
            .any(|k| group_of(&k.group) == GATEWAY_GROUP && k.kind == HTTP_ROUTE);
    let namespaces = allowed.and_then(|a| a.namespaces.as_ref());
    let ns_ok = match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route_ns == gateway_ns,
        "Selector" => {
            let labels = world.namespaces.get(route_ns);
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            selector.is_some_and(|s| namespace_selected(s, labels))
        }
        _ => false,
    };
    kind_ok && ns_ok
}

/// Whether a namespace with `labels` is selected (matchLabels and matchExpressions with
/// In, NotIn, Exists, DoesNotExist).
pub fn namespace_selected(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

/// The hostnames a route serves through a listener (spec: `HTTPRouteSpec.hostnames`):
/// without a listener hostname, the route's own (or any host, `None`, when it has none);
/// without route hostnames, the listener's; with both, each route name that matches the
/// listener's, the more specific of the two when one is a wildcard covering the other.
/// Empty: the route does not attach to the listener.
pub fn intersect(listener: Option<&Hostname>, route: &[Hostname]) -> Vec<Option<Hostname>> {
    match (listener, route) {
        (None, []) => vec![None],
        (None, names) => names.iter().cloned().map(Some).collect(),
        (Some(l), []) => vec![Some(l.clone())],
        (Some(l), names) => names
            .iter()
            .filter_map(|r| match (covers(l, r), covers(r, l)) {
                (true, _) => Some(Some(r.clone())),
                (_, true) => Some(Some(l.clone())),
                _ => None,
            })
            .collect(),
    }
}

/// Whether `wide` covers `name`: equal, or `wide` is `*.suffix` and `name` ends in `.suffix`
/// with at least one more label (a Gateway API wildcard covers one or more labels).
fn covers(wide: &Hostname, name: &Hostname) -> bool {
    if wide == name {
        return true;
    }
    let Some(suffix) = wide.wildcard_parent() else {
        return false;
    };
    let name = name.as_str();
    let name = name.strip_prefix("*.").unwrap_or(name);
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}
