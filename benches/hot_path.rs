//! Data-plane micro-benchmarks: host + path lookup in a table of 10,000 routes (exact and
//! wildcard hosts, mixed case and ports as clients send them), the whole per-request decision,
//! WebSocket upgrade detection, and the header rewrite of a forwarded request.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;

use criterion::Criterion;
use http::{HeaderMap, HeaderValue, Method};
use serde::Deserialize;
use wsgate::api::WebSocketRoute;
use wsgate::proxy::decide::{DecideConfig, Listener, RequestFacts, decide};
use wsgate::proxy::headers::{Forwarded, is_websocket_upgrade, prepare_request};
use wsgate::table::{HostBuf, RuleInput, Snapshot, compile, normalize_host};

fn table() -> wsgate::table::RouteTable {
    let routes = (0..10_000)
        .map(|i| {
            let host = if i % 10 == 0 { format!("*.w{i}.example.com") } else { format!("h{i}.example.com") };
            let yaml = format!(
                "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: r{i} }}\nspec:\n  hostnames: [\"{host}\"]\n  rules:\n    - http: {{ backend: {{ address: \"10.0.0.1:80\" }} }}\n    - pathPrefix: /ws\n      websocket: {{ backend: {{ address: \"10.0.0.1:81\" }} }}\n    - pathPrefix: /api/v1\n      http: {{ backend: {{ address: \"10.0.0.1:82\" }} }}\n"
            );
            let route = WebSocketRoute::deserialize(serde_yaml::Deserializer::from_str(&yaml)).unwrap_or_else(|e| panic!("{e}"));
            std::sync::Arc::new(wsgate::api::translate(&route))
        })
        .collect();
    compile(&Snapshot {
        routes,
        ..Default::default()
    })
    .0
}

fn main() {
    let table = table();
    let hosts: Vec<String> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!("H{}.Example.com:443", i * 7 + 1),
            1 => format!("chat.w{}.example.com", (i * 10) % 10_000),
            _ => format!("h{}.example.com", i * 9 + 3),
        })
        .collect();
    let mut c = Criterion::default().configure_from_args();
    let no_headers = HeaderMap::new();
    c.bench_function("lookup: host + longest prefix, 10k routes", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % hosts.len();
            let mut buf = HostBuf::default();
            let host = normalize_host(black_box(&hosts[i]), &mut buf).unwrap_or("");
            let entry = table.lookup(host);
            let input = RuleInput {
                path: black_box("/ws/room/42"),
                method: &Method::GET,
                headers: &no_headers,
                query: None,
            };
            black_box(entry.and_then(|e| e.route.rule_for(&input).map(|r| r.index)))
        })
    });
    let cfg = DecideConfig {
        https_redirect_port: 443,
    };
    c.bench_function("decide: a forwarded request, 10k routes", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % hosts.len();
            let facts = RequestFacts {
                host: Some(&hosts[i]),
                path: "/api/v1/users",
                query: Some("page=2"),
                method: &Method::GET,
                headers: &no_headers,
                upgrade: false,
                malformed: false,
                listener: Listener::Https { sni: None },
            };
            black_box(decide(&table, black_box(&facts), &cfg))
        })
    });
    let mut firefox = HeaderMap::new();
    firefox.insert(
        "connection",
        HeaderValue::from_static("keep-alive, Upgrade"),
    );
    firefox.insert("upgrade", HeaderValue::from_static("websocket"));
    let mut plain = HeaderMap::new();
    plain.insert("connection", HeaderValue::from_static("keep-alive"));
    plain.insert("accept", HeaderValue::from_static("text/html"));
    c.bench_function("upgrade detection: Firefox-style handshake", |b| {
        b.iter(|| black_box(is_websocket_upgrade(black_box(&firefox))))
    });
    c.bench_function("upgrade detection: normal request", |b| {
        b.iter(|| black_box(is_websocket_upgrade(black_box(&plain))))
    });
    // What curl sends, as a request arrives from a client.
    let mut curl = HeaderMap::new();
    curl.insert("host", HeaderValue::from_static("chat.example.com"));
    curl.insert("user-agent", HeaderValue::from_static("curl/7.88.1"));
    curl.insert("accept", HeaderValue::from_static("*/*"));
    let peer_value = HeaderValue::from_static("192.0.2.1");
    let host = HeaderValue::from_static("chat.example.com");
    let fwd = Forwarded {
        peer: [192, 0, 2, 1].into(),
        peer_value: &peer_value,
        client_value: &peer_value,
        proto: "https",
        host: Some(&host),
        port: 443,
    };
    c.bench_function("request headers for the backend: curl-like request", |b| {
        b.iter_batched(
            || curl.clone(),
            |mut h| {
                prepare_request(&mut h, false, &fwd);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.final_summary();
}
