//! Control-plane scale: translate 10,000 routes and compile a table from them, 10,000 TLS
//! Secrets and 50,000 endpoints (2,000 Services × 25 ready pods), as the controller does on
//! every change.
//! Also prints the resident memory the inputs plus the table take.
//!
//! `cargo bench --bench compile`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use wsgate::api::{WebSocketRoute, translate};
use wsgate::table::{
    CompileCache, Snapshot, TlsSecret, compile, compile_with, resolve_services, self_signed,
};

const ROUTES: usize = 10_000;
const SERVICES: usize = 2_000;
const PODS_PER_SERVICE: usize = 25;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn from_yaml<T: for<'de> Deserialize<'de>>(yaml: &str) -> T {
    T::deserialize(serde_yaml::Deserializer::from_str(yaml)).unwrap_or_else(|e| panic!("{e}"))
}

fn inputs() -> (
    Vec<WebSocketRoute>,
    Vec<TlsSecret>,
    Vec<Service>,
    Vec<EndpointSlice>,
) {
    let routes = (0..ROUTES)
        .map(|i| {
            from_yaml(&format!(
                "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: r{i}, namespace: ns{} }}\nspec:\n  hostnames: [h{i}.example.com]\n  redirectHostnames: [www.h{i}.example.com]\n  tls: {{ secretName: s{i} }}\n  rules:\n    - http: {{ backend: {{ service: svc{}, port: 80 }} }}\n    - pathPrefix: /ws\n      websocket: {{ backend: {{ service: svc{}, port: 80 }}, idleTimeout: 1h }}\n",
                i % 100,
                i % SERVICES,
                i % SERVICES
            ))
        })
        .collect();
    let secrets = (0..ROUTES)
        .map(|i| {
            let names = vec![format!("h{i}.example.com"), format!("www.h{i}.example.com")];
            let (cert, key) = self_signed(&names).unwrap_or_else(|e| panic!("{e}"));
            TlsSecret {
                namespace: format!("ns{}", i % 100),
                name: format!("s{i}"),
                cert_pem: cert.into_bytes(),
                key_pem: key.into_bytes(),
                ca_pem: None,
            }
        })
        .collect();
    // Every namespace that has routes needs every Service its routes name: route i lives in
    // ns(i % 100) and uses svc(i % 2000), so Service j lives in ns(j % 100).
    let services = (0..SERVICES)
        .map(|j| from_yaml(&format!("metadata: {{ name: svc{j}, namespace: ns{} }}\nspec: {{ ports: [ {{ name: http, port: 80 }} ] }}\n", j % 100)))
        .collect();
    let slices = (0..SERVICES)
        .map(|j| {
            let endpoints: String = (0..PODS_PER_SERVICE)
                .map(|p| format!("  - addresses: [\"10.{}.{}.{p}\"]\n    conditions: {{ ready: true }}\n", j / 250, j % 250))
                .collect();
            from_yaml(&format!(
                "metadata: {{ name: svc{j}-1, namespace: ns{}, labels: {{ kubernetes.io/service-name: svc{j} }} }}\naddressType: IPv4\nports: [ {{ name: http, port: 8080 }} ]\nendpoints:\n{endpoints}",
                j % 100
            ))
        })
        .collect();
    (routes, secrets, services, slices)
}

fn main() {
    let before = rss_bytes();
    let (routes, secrets, services, slices) = inputs();
    let resolved = resolve_services(&services, &slices);
    let endpoint_count: usize = resolved.endpoints.values().map(Vec::len).sum();
    assert_eq!(endpoint_count, SERVICES * PODS_PER_SERVICE);
    let mut snapshot = Snapshot {
        routes: routes.iter().map(|r| Arc::new(translate(r))).collect(),
        secrets,
        endpoints: resolved.endpoints,
        port_names: resolved.port_names,
        config_map_cas: Default::default(),
        now: Some(1_800_000_000),
        deny_address_backends: true,
        auth_data: Default::default(),
    };
    let mut cache = CompileCache::default();
    let (table, reports) = compile_with(&snapshot, &mut cache);
    assert_eq!(table.routes().len(), ROUTES);
    assert!(reports.iter().all(|r| r.problems.is_empty()));
    let after = rss_bytes();
    eprintln!(
        "resident memory for {ROUTES} routes, {ROUTES} TLS Secrets, {SERVICES} Services and {endpoint_count} endpoints (objects + table + certificate cache): {:.1} MiB",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0)
    );
    drop(table);

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .configure_from_args();
    c.bench_function("resolve_services: 2k Services, 50k endpoints", |b| {
        b.iter(|| black_box(resolve_services(black_box(&services), black_box(&slices))))
    });
    c.bench_function("translate: 10k routes", |b| {
        b.iter(|| black_box(routes.iter().map(translate).collect::<Vec<_>>()))
    });
    // After a change the controller reuses the translations of unchanged objects and the
    // parsed certificates: a rebuild is the compile alone.
    c.bench_function(
        "rebuild: 10k routes, 10k TLS Secrets, 50k endpoints (translations and certificates cached)",
        |b| b.iter(|| black_box(compile_with(black_box(&snapshot), &mut cache))),
    );
    // At startup every route is translated and every key parsed.
    c.bench_function(
        "first compile: translate 10k routes, 10k TLS Secrets, 50k endpoints (every key parsed)",
        |b| {
            b.iter(|| {
                snapshot.routes = routes.iter().map(|r| Arc::new(translate(r))).collect();
                black_box(compile(black_box(&snapshot)))
            })
        },
    );
    c.final_summary();
}
