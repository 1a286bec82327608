//! Metrics move as traffic flows: drive HTTP, WebSocket, idle-timeout and dead-backend traffic
//! through a gateway, scrape `/metrics`, parse the exposition format and check the values.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use futures_util::StreamExt;
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use wsgate_test_support::*;

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_http_websocket_tls_and_reload_traffic() {
    let ca = TestCa::new();
    let leaf = ca.leaf_until(&["obs.test"], (2030, 6, 15));
    let web = http_backend().await;
    let ws = ws_backend().await;
    let dead = dead_address().await;
    let routes = RoutesDir::new();
    let route = route_yaml(
        "obs",
        &format!(
            "  hostnames: [obs.test]\n  tls: {{ secretName: obs-tls }}\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n    - pathPrefix: /idle\n      websocket: {{ backend: {{ address: \"{}\" }}, idleTimeout: 500ms }}\n    - pathPrefix: /dead\n      http: {{ backend: {{ address: \"{dead}\" }} }}\n",
            web.addr, ws.addr, ws.addr
        ),
    );
    routes.write(
        "obs.yaml",
        &format!("{route}---\n{}", secret_yaml("default", "obs-tls", &leaf)),
    );
    let gw = start(routes.path()).await;
    let r = "route=\"default/obs\"";

    let before = scrape(gw.admin_addr).await;
    assert_eq!(value(&before, "wsgate_routes{state=\"programmed\"}"), 1.0);
    assert_eq!(value(&before, "wsgate_routes{state=\"rejected\"}"), 0.0);
    assert_eq!(
        value(
            &before,
            "wsgate_config_reloads_total{result=\"success\",source=\"files\"}"
        ),
        1.0
    );
    assert!(value(&before, "wsgate_config_last_reload_timestamp_seconds") > 1.7e9);
    // 2030-06-15T00:00:00Z
    assert_eq!(
        value(
            &before,
            "wsgate_tls_certificate_expiry_timestamp_seconds{secret=\"default/obs-tls\"}"
        ),
        1_907_712_000.0
    );
    assert!(value(&before, "process_resident_memory_bytes") > 0.0);

    // HTTP: three 200s over TLS, a redirect, an unknown host, a dead backend.
    for _ in 0..3 {
        let reply = https(
            gw.https_addr,
            ca.client_config(),
            request("GET", "obs.test", "/"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(
        http(gw.http_addr, request("GET", "obs.test", "/x"))
            .await
            .status,
        StatusCode::MOVED_PERMANENTLY
    );
    assert_eq!(
        http(gw.http_addr, request("GET", "nobody.test", "/"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let reply = https(
        gw.https_addr,
        ca.client_config(),
        request("GET", "obs.test", "/dead"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    // WebSocket: one opened, used and closed by the client; one left idle until the timeout.
    let mut open = ws_over(
        tls(gw.https_addr, "obs.test", ca.client_config()).await,
        "obs.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut open, Message::text("x".repeat(1000))).await;
    let during = scrape(gw.admin_addr).await;
    assert_eq!(
        value(
            &during,
            &format!("wsgate_websocket_connections_active{{{r}}}")
        ),
        1.0
    );
    assert!(
        value(
            &during,
            &format!("wsgate_websocket_bytes_total{{direction=\"to_backend\",{r}}}")
        ) >= 1000.0
    );
    assert!(
        value(
            &during,
            &format!("wsgate_websocket_bytes_total{{direction=\"to_client\",{r}}}")
        ) >= 1000.0
    );
    // A browser-like close: send Close, read the reply and the end of the stream, drop.
    open.close(None).await.unwrap();
    while let Some(Ok(_)) = within("close reply", open.next()).await {}
    drop(open);
    let idle = ws_over(
        tls(gw.https_addr, "obs.test", ca.client_config()).await,
        "obs.test",
        "/idle",
        &[],
    )
    .await;

    eventually("both WebSockets ended", || async {
        let m = scrape(gw.admin_addr).await;
        value(
            &m,
            &format!("wsgate_websocket_closes_total{{reason=\"client\",{r}}}"),
        ) == 1.0
            && value(
                &m,
                &format!("wsgate_websocket_closes_total{{reason=\"idle_timeout\",{r}}}"),
            ) == 1.0
    })
    .await;
    drop(idle);
    let m = scrape(gw.admin_addr).await;
    let expect = [
        (
            format!("wsgate_http_requests_total{{code=\"200\",{r}}}"),
            3.0,
        ),
        (
            format!("wsgate_http_requests_total{{code=\"301\",{r}}}"),
            1.0,
        ),
        (
            format!("wsgate_http_requests_total{{code=\"502\",{r}}}"),
            1.0,
        ),
        (
            format!("wsgate_http_requests_total{{code=\"101\",{r}}}"),
            2.0,
        ),
        (
            "wsgate_http_requests_total{code=\"404\",route=\"none\"}".into(),
            1.0,
        ),
        ("wsgate_http_redirects_total{kind=\"https\"}".into(), 1.0),
        (
            format!("wsgate_websocket_upgrades_total{{result=\"upgraded\",{r}}}"),
            2.0,
        ),
        (format!("wsgate_websocket_connections_active{{{r}}}"), 0.0),
        (
            format!("wsgate_websocket_connection_duration_seconds_count{{{r}}}"),
            2.0,
        ),
        (format!("wsgate_backend_connect_errors_total{{{r}}}"), 1.0),
        // The answers wsgate made itself, by where the failure came from.
        (
            "wsgate_local_responses_total{reason=\"not_found\",source=\"client\"}".into(),
            1.0,
        ),
        (
            "wsgate_local_responses_total{reason=\"unreachable\",source=\"backend\"}".into(),
            1.0,
        ),
        // 3 + 1 (dead) + 2 WebSockets, each on its own connection.
        ("wsgate_tls_handshakes_total{result=\"ok\"}".into(), 6.0),
    ];
    for (key, want) in expect {
        assert_eq!(value(&m, &key), want, "{key}");
    }
    // Only those two: proxied answers, upgrades and redirects are not local failures.
    let local: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("wsgate_local_responses_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(local, 2.0);
    // Requests that ended are in the duration histogram (the 101s end when sent).
    assert!(
        value(
            &m,
            &format!("wsgate_http_request_duration_seconds_count{{{r}}}")
        ) >= 7.0
    );
    // The 24 h bucket exists for WebSocket lifetimes.
    assert_eq!(
        value(
            &m,
            &format!("wsgate_websocket_connection_duration_seconds_bucket{{le=\"86400\",{r}}}")
        ),
        2.0
    );

    // A reload with a broken file counts as an error and keeps the route.
    routes.write(
        "obs.yaml",
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nspec: [",
    );
    eventually("the failed reload is counted", || async {
        value(
            &scrape(gw.admin_addr).await,
            "wsgate_config_reloads_total{result=\"error\",source=\"files\"}",
        ) >= 1.0
    })
    .await;
    let reply = https(
        gw.https_addr,
        ca.client_config(),
        request("GET", "obs.test", "/"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[test]
fn grafana_dashboard_queries_wsgate_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/grafana/wsgate-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for metric in [
        "wsgate_websocket_connections_active",
        "wsgate_websocket_upgrades_total",
        "wsgate_websocket_connection_duration_seconds_bucket",
        "wsgate_http_requests_total",
        "wsgate_http_request_duration_seconds_bucket",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel uses {metric}"
        );
    }
}

/// An idle routes folder causes no rebuild: wsgate's own re-read of the files (access events)
/// must not count as a change. After one real edit the reload counter settles and stays put.
#[tokio::test]
async fn an_idle_routes_folder_is_not_reloaded() {
    let web = http_backend().await;
    let routes = RoutesDir::new();
    let body = |host: &str| {
        route_yaml(
            "idle",
            &format!(
                "  hostnames: [{host}]\n  tls: {{ secretName: missing-tls }}\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n",
                web.addr
            ),
        )
    };
    routes.write("idle.yaml", &body("idle.test"));
    let gw = start(routes.path()).await;
    let reloads = |m: &HashMap<String, f64>| {
        value(
            m,
            "wsgate_config_reloads_total{result=\"success\",source=\"files\"}",
        )
    };
    routes.write("idle.yaml", &body("idle2.test"));
    eventually("the edit is reloaded", || async {
        reloads(&scrape(gw.admin_addr).await) >= 2.0
    })
    .await;
    // Let the edit's own burst of events settle (the watcher coalesces for 150 ms).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let settled = reloads(&scrape(gw.admin_addr).await);
    // The quiet period being measured: with the bug, ~7 reloads a second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(reloads(&scrape(gw.admin_addr).await), settled);
}
