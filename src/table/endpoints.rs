//! Service ports to ready endpoints, from Services and EndpointSlices: the pure half of
//! backend resolution (ExternalName DNS lookups are I/O and belong to the source).
//!
//! A backend names a Service port by number (or by name, resolved through `port_names`). That
//! port's `name` selects the matching port of
//! each EndpointSlice labelled `kubernetes.io/service-name`, whose number is the target port on
//! the pods. Endpoints that are not ready or are terminating are skipped (a missing `ready`
//! condition means ready, per the EndpointSlice API).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::ServiceKey;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port of type ExternalName, to be resolved by DNS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalName {
    /// The Service port.
    pub key: ServiceKey,
    /// `spec.externalName`.
    pub host: String,
}

/// Endpoints of every Service port, and the ExternalName ports still to resolve.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ResolvedServices {
    /// Every known Service port, with its ready endpoints (possibly none), sorted.
    pub endpoints: HashMap<ServiceKey, Vec<SocketAddr>>,
    /// ExternalName Service ports.
    pub external: Vec<ExternalName>,
    /// The number of every named Service port, by (namespace, Service, port name), for
    /// backends that name their port (an Ingress may).
    pub port_names: HashMap<(String, String, String), u16>,
}

/// Resolves Service ports to ready endpoint addresses.
pub fn resolve_services(services: &[Service], slices: &[EndpointSlice]) -> ResolvedServices {
    // (namespace, service) -> slices
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
        let labels = slice.metadata.labels.as_ref();
        if let Some(svc) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service
                .entry((ns, svc.as_str()))
                .or_default()
                .push(slice);
        }
    }
    let mut out = ResolvedServices::default();
    for service in services {
        let ns = service.metadata.namespace.as_deref().unwrap_or("default");
        let Some(name) = service.metadata.name.as_deref() else {
            continue;
        };
        let Some(spec) = &service.spec else { continue };
        for port in spec.ports.iter().flatten() {
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let key = ServiceKey {
                namespace: ns.to_string(),
                name: name.to_string(),
                port: number,
            };
            if let Some(port_name) = port.name.as_ref().filter(|n| !n.is_empty()) {
                out.port_names.insert(
                    (ns.to_string(), name.to_string(), port_name.clone()),
                    number,
                );
            }
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(host) = spec.external_name.clone().filter(|h| !h.is_empty()) {
                    out.external.push(ExternalName {
                        key: key.clone(),
                        host,
                    });
                }
                out.endpoints.insert(key, Vec::new());
                continue;
            }
            let slices = by_service.get(&(ns, name)).map_or(&[][..], Vec::as_slice);
            let mut addrs = ready_addresses(slices, port.name.as_deref().unwrap_or(""));
            addrs.sort();
            addrs.dedup();
            out.endpoints.insert(key, addrs);
        }
    }
    out.external.sort_by(|a, b| {
        (&a.key.namespace, &a.key.name, a.key.port).cmp(&(
            &b.key.namespace,
            &b.key.name,
            b.key.port,
        ))
    });
    out
}

/// Ready, not terminating endpoint addresses of `slices`, at the target port of the slice
/// port named `port_name` (unsorted, possibly repeated).
fn ready_addresses(slices: &[&EndpointSlice], port_name: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let target = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name);
        let Some(target) = target
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let cond = endpoint.conditions.as_ref();
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            addrs.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, target)),
            );
        }
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn docs<T: for<'de> Deserialize<'de>>(yaml: &str) -> Vec<T> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|d| T::deserialize(d).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    const SERVICES: &str = r#"
metadata: { name: chat, namespace: apps }
spec:
  ports:
    - { name: ws, port: 5000, targetPort: ws }
    - { name: metrics, port: 9000 }
---
metadata: { name: empty, namespace: apps }
spec: { ports: [ { port: 80 } ] }
---
metadata: { name: ext, namespace: apps }
spec: { type: ExternalName, externalName: chat.example.net, ports: [ { port: 443 } ] }
"#;

    const SLICES: &str = r#"
metadata: { name: chat-a, namespace: apps, labels: { kubernetes.io/service-name: chat } }
addressType: IPv4
ports: [ { name: ws, port: 8080 }, { name: metrics, port: 9090 } ]
endpoints:
  - addresses: ["10.0.0.2"]
    conditions: { ready: true }
  - addresses: ["10.0.0.1"]
  - addresses: ["10.0.0.3"]
    conditions: { ready: false }
  - addresses: ["10.0.0.4"]
    conditions: { ready: true, terminating: true }
---
metadata: { name: chat-b, namespace: apps, labels: { kubernetes.io/service-name: chat } }
addressType: IPv6
ports: [ { name: ws, port: 8080 } ]
endpoints:
  - addresses: ["fd00::5"]
---
metadata: { name: other-ns, namespace: elsewhere, labels: { kubernetes.io/service-name: chat } }
addressType: IPv4
ports: [ { name: ws, port: 1 } ]
endpoints: [ { addresses: ["192.0.2.1"] } ]
"#;

    fn key(name: &str, port: u16) -> ServiceKey {
        ServiceKey {
            namespace: "apps".into(),
            name: name.into(),
            port,
        }
    }

    #[test]
    fn ready_endpoints_by_port_name() {
        let r = resolve_services(&docs(SERVICES), &docs(SLICES));
        let addrs = |k: &ServiceKey| {
            r.endpoints
                .get(k)
                .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(
            addrs(&key("chat", 5000)),
            Some(vec![
                "10.0.0.1:8080".to_string(),
                "10.0.0.2:8080".into(),
                "[fd00::5]:8080".into()
            ])
        );
        assert_eq!(
            addrs(&key("chat", 9000)),
            Some(vec!["10.0.0.1:9090".to_string(), "10.0.0.2:9090".into()])
        );
        // A Service port without endpoints exists but is empty; an unknown port is absent.
        assert_eq!(addrs(&key("empty", 80)), Some(vec![]));
        assert_eq!(addrs(&key("chat", 1)), None);
        assert_eq!(
            r.external,
            vec![ExternalName {
                key: key("ext", 443),
                host: "chat.example.net".into()
            }]
        );
    }
}
