//! Kubernetes `Ingress` objects served by `wsgate controller`, against the in-repo test API
//! server: class selection, merging, paths, ports by name, WebSockets without annotations,
//! ingress-nginx annotations, ignored annotations as Events, last good versions.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsgate::gateway::{Gateway, Routes};
use wsgate::source::kube::KubeOptions;
use wsgate_test_support::apiserver::{ApiServer, Res};
use wsgate_test_support::*;

async fn controller(server: &ApiServer) -> Gateway {
    let dir = RoutesDir::new();
    let mut opts = options(dir.path());
    let mut kube = KubeOptions::new(server.client());
    kube.lease.identity = "solo".into();
    kube.lease.duration = Duration::from_secs(2);
    kube.lease.renew_every = Duration::from_millis(200);
    kube.debounce = Duration::from_millis(20);
    opts.routes = Routes::Kube(Box::new(kube));
    within("controller start", Gateway::start(opts))
        .await
        .unwrap()
}

/// Service `name` with port 80 named `http`, its pods at `addrs` (one port).
fn service(server: &ApiServer, name: &str, addr: std::net::SocketAddr) {
    server.apply(
        Res::Services,
        &format!(
            "metadata: {{ name: {name}, namespace: apps }}\nspec:\n  ports: [ {{ name: http, port: 80, targetPort: http }} ]\n"
        ),
    );
    server.apply(
        Res::Slices,
        &format!(
            "metadata: {{ name: {name}-1, namespace: apps, labels: {{ kubernetes.io/service-name: {name} }} }}\naddressType: IPv4\nports: [ {{ name: http, port: {} }} ]\nendpoints:\n  - addresses: [\"{}\"]\n    conditions: {{ ready: true }}\n",
            addr.port(),
            addr.ip()
        ),
    );
}

fn class(server: &ApiServer, name: &str, controller: &str, default: bool) {
    server.apply(
        Res::IngressClasses,
        &format!(
            "metadata:\n  name: {name}\n  annotations: {{ ingressclass.kubernetes.io/is-default-class: \"{default}\" }}\nspec: {{ controller: {controller} }}\n"
        ),
    );
}

/// An Ingress `name` in `apps`: `head` goes into metadata (annotations) and spec (class), one
/// host with `paths` (`(path, pathType, service, port)`).
fn ingress(
    name: &str,
    head: &str,
    class: &str,
    host: &str,
    paths: &[(&str, &str, &str, &str)],
) -> String {
    let paths: String = paths
        .iter()
        .map(|(path, kind, svc, port)| {
            format!("          - path: {path}\n            pathType: {kind}\n            backend: {{ service: {{ name: {svc}, port: {port} }} }}\n")
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: apps\n{head}spec:\n{class}  rules:\n    - host: {host}\n      http:\n        paths:\n{paths}"
    )
}

const OURS: &str = "  ingressClassName: wsgate\n";

async fn get(gw: &Gateway, host: &'static str, path: &str) -> (StatusCode, String) {
    let r = http(gw.http_addr, request("GET", host, path)).await;
    (r.status, r.header("x-served-by").to_string())
}

#[tokio::test]
async fn ingresses_are_chosen_by_class_in_all_four_forms() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    service(&server, "web", web.addr);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    class(&server, "nginx", "k8s.io/ingress-nginx", false);
    let root = [("/", "Prefix", "web", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("named", "", OURS, "named.test", &root),
    );
    server.apply(
        Res::Ingresses,
        &ingress(
            "other",
            "",
            "  ingressClassName: nginx\n",
            "other.test",
            &root,
        ),
    );
    let legacy = "  annotations: { kubernetes.io/ingress.class: wsgate }\n";
    server.apply(
        Res::Ingresses,
        &ingress("legacy", legacy, "", "legacy.test", &root),
    );
    server.apply(Res::Ingresses, &ingress("none", "", "", "none.test", &root));
    let gw = controller(&server).await;
    let want = web.addr.to_string();
    assert_eq!(
        get(&gw, "named.test", "/").await,
        (StatusCode::OK, want.clone())
    );
    assert_eq!(
        get(&gw, "legacy.test", "/").await,
        (StatusCode::OK, want.clone())
    );
    assert_eq!(get(&gw, "other.test", "/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&gw, "none.test", "/").await.0, StatusCode::NOT_FOUND);
    // Our class becomes the default: the Ingress without a class is ours now.
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, true);
    eventually("the unclassed Ingress is served", || async {
        get(&gw, "none.test", "/").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(get(&gw, "other.test", "/").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ingresses_for_one_host_merge_and_websockets_need_no_annotation() {
    let server = ApiServer::start().await;
    let (web, api, chat) = (
        http_backend().await,
        http_backend().await,
        ws_backend().await,
    );
    service(&server, "web", web.addr);
    service(&server, "api", api.addr);
    service(&server, "chat", chat.addr);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    server.apply(
        Res::Ingresses,
        &ingress(
            "site",
            "  creationTimestamp: \"2026-01-01T00:00:00Z\"\n",
            OURS,
            "app.test",
            &[
                ("/", "Prefix", "web", "{ number: 80 }"),
                ("/api", "Prefix", "api", "{ name: http }"),
            ],
        ),
    );
    let gw = controller(&server).await;
    // A newer Ingress adds /socket for the same host and claims /api again.
    server.apply(
        Res::Ingresses,
        &ingress(
            "chat",
            "",
            OURS,
            "app.test",
            &[
                ("/socket", "Prefix", "chat", "{ number: 80 }"),
                ("/api", "Prefix", "web", "{ number: 80 }"),
                ("/exact", "Exact", "api", "{ number: 80 }"),
            ],
        ),
    );
    eventually("the second Ingress's paths are merged in", || async {
        get(&gw, "app.test", "/exact").await.1 == api.addr.to_string()
    })
    .await;
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let mut ws = ws_over(stream, "app.test", "/socket/room", &[]).await;
    echo_roundtrip(&mut ws, Message::text("hello through an Ingress")).await;
    // The older Ingress keeps /api (port by name); the newer one's claim is reported.
    assert_eq!(
        get(&gw, "app.test", "/api/v1").await.1,
        api.addr.to_string()
    );
    assert_eq!(get(&gw, "app.test", "/").await.1, web.addr.to_string());
    assert_eq!(get(&gw, "app.test", "/exact").await.1, api.addr.to_string());
    assert_eq!(
        get(&gw, "app.test", "/exact/x").await.1,
        web.addr.to_string()
    );
    eventually(
        "the path conflict is an Event on the newer Ingress",
        || async {
            events(&server, "chat")
                .iter()
                .any(|(reason, note)| reason == "PathConflict" && note.contains("apps/site"))
        },
    )
    .await;

    // Editing an Ingress never touches open sockets.
    server.apply(
        Res::Ingresses,
        &ingress(
            "chat",
            "  annotations: { nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\" }\n",
            OURS,
            "app.test",
            &[("/socket", "Prefix", "chat", "{ number: 80 }")],
        ),
    );
    eventually("the edit is live (the conflict is gone)", || async {
        get(&gw, "app.test", "/exact").await.1 == web.addr.to_string()
    })
    .await;
    echo_roundtrip(&mut ws, Message::text("still open after the edit")).await;
}

/// (reason, note) of the Events about Ingress `name`.
fn events(server: &ApiServer, name: &str) -> Vec<(String, String)> {
    server
        .list(Res::Events)
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "Ingress" && e["regarding"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["note"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn annotations_idle_sockets_out_and_ignored_ones_become_events() {
    let server = ApiServer::start().await;
    let chat = ws_backend().await;
    service(&server, "chat", chat.addr);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    let head = concat!(
        "  annotations:\n",
        "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"1\"\n",
        "    nginx.ingress.kubernetes.io/configuration-snippet: \"more_set_headers X: y\"\n",
    );
    let root = [("/", "Prefix", "chat", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("chat", head, OURS, "chat.test", &root),
    );
    let gw = controller(&server).await;
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let mut ws = ws_over(stream, "chat.test", "/", &[]).await;
    echo_roundtrip(&mut ws, Message::text("hi")).await;
    // Idle for longer than proxy-read-timeout: wsgate closes the socket.
    within("the idle socket is closed", async {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    eventually("the ignored annotation is an Event", || async {
        events(&server, "chat")
            .iter()
            .any(|(reason, note)| reason == "Ignored" && note.contains("configuration-snippet"))
    })
    .await;
}

#[tokio::test]
async fn a_bad_edit_keeps_the_last_good_version_and_never_empties_the_table() {
    let server = ApiServer::start().await;
    let (web, other) = (http_backend().await, http_backend().await);
    service(&server, "web", web.addr);
    service(&server, "other", other.addr);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    let root = [("/", "Prefix", "web", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("site", "", OURS, "site.test", &root),
    );
    let gw = controller(&server).await;
    assert_eq!(get(&gw, "site.test", "/").await.1, web.addr.to_string());
    // An edit with a bad annotation value and a new backend: the old version serves on.
    let bad = "  annotations: { nginx.ingress.kubernetes.io/proxy-read-timeout: \"1m\" }\n";
    let moved = [("/", "Prefix", "other", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("site", bad, OURS, "site.test", &moved),
    );
    eventually("the bad edit is reported", || async {
        events(&server, "site")
            .iter()
            .any(|(reason, note)| reason == "InvalidSpec" && note.contains("proxy-read-timeout"))
    })
    .await;
    assert_eq!(get(&gw, "site.test", "/").await.1, web.addr.to_string());
    // Fixed: the new version serves.
    server.apply(
        Res::Ingresses,
        &ingress("site", "", OURS, "site.test", &moved),
    );
    eventually("the fixed edit serves", || async {
        get(&gw, "site.test", "/").await.1 == other.addr.to_string()
    })
    .await;
}

#[tokio::test]
async fn the_ingress_nginx_websocket_example_is_served_unchanged() {
    let server = ApiServer::start().await;
    let (chat, web) = (ws_backend().await, http_backend().await);
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ingress-nginx/websocket-chat.yaml"
    ))
    .unwrap();
    for (name, port_name, port, addr) in [
        ("chat", "ws", 5000, chat.addr),
        ("chat-web", "http", 80, web.addr),
    ] {
        server.apply(
            Res::Services,
            &format!("metadata: {{ name: {name} }}\nspec:\n  ports: [ {{ name: {port_name}, port: {port} }} ]\n"),
        );
        server.apply(
            Res::Slices,
            &format!(
                "metadata: {{ name: {name}-1, labels: {{ kubernetes.io/service-name: {name} }} }}\naddressType: IPv4\nports: [ {{ name: {port_name}, port: {} }} ]\nendpoints:\n  - addresses: [\"127.0.0.1\"]\n",
                addr.port()
            ),
        );
    }
    let ca = TestCa::new();
    let leaf = ca.leaf(&["chat.example.com"]);
    server.apply(Res::Secrets, &secret_yaml("default", "chat-tls", &leaf));
    server.apply(
        Res::IngressClasses,
        "metadata: { name: wsgate }\nspec: { controller: wsgate.dev/ingress-controller }\n",
    );
    server.apply(Res::Ingresses, &fixture);
    let gw = controller(&server).await;
    // ssl-redirect: plain HTTP goes to https.
    let r = http(gw.http_addr, request("GET", "chat.example.com", "/")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    // https: the page from chat-web (port by name), the socket from chat, with the
    // Ingress's certificate.
    let r = https(
        gw.https_addr,
        ca.client_config(),
        request("GET", "chat.example.com", "/"),
    )
    .await;
    assert_eq!(r.header("x-served-by"), web.addr.to_string());
    // The client trusts only the test CA: the handshake proves the Ingress's certificate.
    let stream = tls(gw.https_addr, "chat.example.com", ca.client_config()).await;
    let mut ws = ws_over(stream, "chat.example.com", "/ws", &[]).await;
    echo_roundtrip(&mut ws, Message::text("chat over an unchanged Ingress")).await;
}
