//! Building a rule's [`BackendSet`] from a model backend: its endpoints (a Service port's ready
//! pods or a fixed address), how to pick among them, and TLS towards them.

use std::sync::Arc;
use std::time::Duration;

use super::certs::Certs;
use super::compile::{ServiceKey, Snapshot};
use super::report::{Problem, ProblemKind};
use super::shared::SharedEndpoints;
use super::{
    BackendSet, BackendTlsEntry, Endpoint, backend_client_config, backend_h2_client_config,
};
use crate::model::{
    Backend, BackendProtocol, BackendTarget, BackendTls, Balance, CaRef, Rebalance, ServicePort,
};

/// How an action's backends pick endpoints and connect to them.
#[derive(Clone, Copy)]
pub(super) struct SetOptions<'a> {
    pub(super) balance: &'a Balance,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) max_sockets_per_endpoint: Option<u32>,
    pub(super) rebalance: Option<Rebalance>,
}

/// What building a backend needs from the route being compiled.
pub(super) struct BackendContext<'a, 's, 'c> {
    pub(super) namespace: &'s str,
    pub(super) snapshot: &'a Snapshot,
    pub(super) certs: &'a Certs<'c>,
}

/// The backend set of a model backend; what cannot be resolved is reported, and the set is
/// built anyway (with no endpoints, or with TLS that refuses to connect) so the route serves
/// what it can.
pub(super) fn backend_set<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    backend: &'s Backend,
    on: SetOptions<'_>,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> Arc<BackendSet> {
    let h2 = backend.protocol == BackendProtocol::Http2;
    let (name, endpoints) = match &backend.target {
        BackendTarget::Address(addr) => (
            Arc::from(addr.to_string()),
            Arc::from([shared.address(*addr)]),
        ),
        BackendTarget::Service {
            namespace,
            name,
            port,
        } => {
            let namespace = namespace.as_deref().unwrap_or(ctx.namespace);
            match service_port(ctx, namespace, name, port) {
                Ok(port) => service_endpoints(ctx, namespace, name, port, shared, problems),
                Err(problem) => {
                    let name = format!("service {namespace}/{name}:{port}");
                    problems.push(problem);
                    (Arc::from(name), Arc::from(Vec::new()))
                }
            }
        }
        // Translation reported why; the share of traffic it had gets 500.
        BackendTarget::Unresolved => {
            return Arc::new(BackendSet {
                unresolved: true,
                ..BackendSet::new(format!("{} (unresolved)", backend.field), Vec::new())
            });
        }
    };
    let tls = backend
        .tls
        .as_ref()
        .map(|t| backend_tls(ctx, t, h2, shared, problems));
    Arc::new(BackendSet {
        balance: on.balance.clone(),
        h2c: h2,
        tls,
        connect_timeout: on.connect_timeout,
        max_sockets_per_endpoint: on.max_sockets_per_endpoint,
        rebalance: on.rebalance,
        ..BackendSet::with_endpoints(name, endpoints)
    })
}

/// The number of a Service port named by number or by name.
fn service_port(
    ctx: &BackendContext<'_, '_, '_>,
    namespace: &str,
    service: &str,
    port: &ServicePort,
) -> Result<u16, Problem> {
    match port {
        ServicePort::Number(n) => Ok(*n),
        ServicePort::Name(name) => {
            let key = (namespace.to_string(), service.to_string(), name.to_string());
            ctx.snapshot.port_names.get(&key).copied().ok_or_else(|| Problem {
                kind: ProblemKind::ServiceNotFound,
                message: format!(
                    "service {namespace}/{service} has no port named {name:?} (is the Service created, with that port?)"
                ),
            })
        }
    }
}

fn service_endpoints<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    namespace: &'s str,
    service: &'s str,
    port: u16,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> (Arc<str>, Arc<[Endpoint]>) {
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
    ctx: &BackendContext<'_, '_, '_>,
    tls: &BackendTls,
    h2: bool,
    shared: &mut SharedEndpoints<'_, '_>,
    problems: &mut Vec<Problem>,
) -> Arc<BackendTlsEntry> {
    let build = |ca: Option<&[u8]>| match h2 {
        true => backend_h2_client_config(ca),
        false => backend_client_config(ca),
    };
    let (what, pem) = match &tls.ca {
        None => {
            let config = shared.client_config((None, h2), || build(None)).ok();
            return Arc::new(BackendTlsEntry {
                server_name: tls.server_name.clone(),
                config,
            });
        }
        Some(CaRef::Secret(name)) => (
            format!("backend CA Secret {}/{name}", ctx.namespace),
            ctx.certs.ca(ctx.namespace, name),
        ),
        Some(CaRef::ConfigMap { namespace, name }) => (
            format!("backend CA ConfigMap {namespace}/{name}"),
            ctx.snapshot
                .config_map_cas
                .get(&(namespace.clone(), name.clone()))
                .map(Vec::as_slice),
        ),
    };
    let config = match pem {
        None => {
            problems.push(Problem {
                kind: ProblemKind::CaSecretNotFound,
                message: format!(
                    "{what} not found or without ca.crt; connections to the backend are refused until it is"
                ),
            });
            None
        }
        Some(pem) => {
            let digest = ctx.certs.digest(pem);
            match shared.client_config((Some(digest), h2), || build(Some(pem))) {
                Ok(config) => Some(config),
                Err(e) => {
                    problems.push(Problem {
                        kind: ProblemKind::InvalidCertificate,
                        message: format!(
                            "{what}: {e}; connections to the backend are refused until it is fixed"
                        ),
                    });
                    None
                }
            }
        }
    };
    Arc::new(BackendTlsEntry {
        server_name: tls.server_name.clone(),
        config,
    })
}
