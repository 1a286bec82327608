//! Kubernetes `Ingress` objects served by `wsgate controller`, against the in-repo test API
//! server: class selection, merging, paths, ports by name, WebSockets without annotations,
//! ingress-nginx annotations, ignored annotations as Events, last good versions.
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsgate::gateway::Gateway;
use wsgate_test_support::apiserver::{ApiServer, Res};
use wsgate_test_support::*;

async fn controller(server: &ApiServer) -> Gateway {
    controller_with(server, "solo", |_| {}).await
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

/// Service `name` (port 80 named `http`) whose pods are `addrs` (they share one port).
fn service_pods(server: &ApiServer, name: &str, addrs: &[std::net::SocketAddr]) {
    server.apply(
        Res::Services,
        &format!(
            "metadata: {{ name: {name}, namespace: apps }}\nspec:\n  ports: [ {{ name: http, port: 80, targetPort: http }} ]\n"
        ),
    );
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{}\"", a.ip())).collect();
    server.apply(
        Res::Slices,
        &format!(
            "metadata: {{ name: {name}-1, namespace: apps, labels: {{ kubernetes.io/service-name: {name} }} }}\naddressType: IPv4\nports: [ {{ name: http, port: {} }} ]\nendpoints:\n  - addresses: [{}]\n    conditions: {{ ready: true }}\n",
            addrs[0].port(),
            list.join(", ")
        ),
    );
}

/// `n` pods on 127.0.0.`first`.. sharing one port.
async fn pods(first: u8, n: u8) -> Vec<std::net::SocketAddr> {
    let one = pod_at(std::net::SocketAddr::from(([127, 0, 0, first], 0))).await;
    let mut all = vec![one];
    for i in 1..n {
        let at = std::net::SocketAddr::from(([127, 0, 0, first + i], one.port()));
        all.push(pod_at(at).await);
    }
    all
}

async fn get_with(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request("GET", host, path);
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    http(gw.http_addr, req).await
}

#[tokio::test]
async fn the_affinity_cookie_sends_the_first_request_and_its_upgrade_to_one_pod() {
    let server = ApiServer::start().await;
    let pods = pods(21, 3).await;
    service_pods(&server, "chat", &pods);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    let head = concat!(
        "  annotations:\n",
        "    nginx.ingress.kubernetes.io/affinity: cookie\n",
        "    nginx.ingress.kubernetes.io/session-cookie-name: SRV\n",
        "    nginx.ingress.kubernetes.io/session-cookie-max-age: \"600\"\n",
    );
    let root = [("/", "Prefix", "chat", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("chat", head, OURS, "chat.test", &root),
    );
    let gw = controller(&server).await;
    eventually("all three pods are in the table", || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            seen.insert(
                get_with(&gw, "chat.test", "/", &[])
                    .await
                    .header("x-served-by")
                    .to_string(),
            );
        }
        seen.len() == 3
    })
    .await;

    // Socket.IO's first request: long-polling, no cookie yet. wsgate issues one.
    let first = get_with(&gw, "chat.test", "/socket.io/?EIO=4&transport=polling", &[]).await;
    let pod = first.header("x-served-by").to_string();
    let set = first.header("set-cookie").to_string();
    assert!(set.starts_with("SRV="), "{set}");
    assert!(set.contains("; Path=/; Max-Age=600; HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = [("cookie", cookie.as_str())];
    // Every later request with the cookie lands on the same pod, and gets no new cookie.
    for _ in 0..6 {
        let again = get_with(
            &gw,
            "chat.test",
            "/socket.io/?transport=polling",
            &with_cookie,
        )
        .await;
        assert_eq!(again.header("x-served-by"), pod);
        assert_eq!(again.header("set-cookie"), "");
    }
    // The upgrade too.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (mut ws, resp) = ws_handshake(
        stream,
        "chat.test",
        "/socket.io/?transport=websocket",
        &with_cookie,
    )
    .await;
    assert_eq!(resp.headers()["x-served-by"], pod.as_str());
    assert!(!resp.headers().contains_key("set-cookie"));
    echo_roundtrip(&mut ws, Message::text("same pod as the polling")).await;
    // An upgrade without the cookie gets one in its 101 (RFC 6455 §4.1).
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (_ws, resp) = ws_handshake(stream, "chat.test", "/", &[]).await;
    let issued = resp.headers()["set-cookie"].to_str().unwrap();
    let served = resp.headers()["x-served-by"].to_str().unwrap();
    let cookie_of_101 = issued.split(';').next().unwrap().to_string();
    let follow = get_with(&gw, "chat.test", "/", &[("cookie", &cookie_of_101)]).await;
    assert_eq!(follow.header("x-served-by"), served);

    // The pod goes away: the cookie's requests go elsewhere, with a new cookie.
    let rest: Vec<_> = pods
        .iter()
        .copied()
        .filter(|a| a.to_string() != pod)
        .collect();
    service_pods(&server, "chat", &rest);
    eventually("the pod left the table", || async {
        get_with(&gw, "chat.test", "/", &with_cookie)
            .await
            .header("x-served-by")
            != pod
    })
    .await;
    let moved = get_with(&gw, "chat.test", "/", &with_cookie).await;
    assert!(moved.header("set-cookie").starts_with("SRV="));
    assert_ne!(
        moved.header("set-cookie").split(';').next().unwrap(),
        cookie
    );
}

#[tokio::test]
async fn a_hashed_key_keeps_its_pod_through_a_scale_out() {
    let server = ApiServer::start().await;
    let pods = pods(31, 3).await;
    service_pods(&server, "chat", &pods[..2]);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    let head =
        "  annotations: { nginx.ingress.kubernetes.io/upstream-hash-by: \"$http_x_user\" }\n";
    let root = [("/", "Prefix", "chat", "{ number: 80 }")];
    server.apply(
        Res::Ingresses,
        &ingress("chat", head, OURS, "chat.test", &root),
    );
    let gw = controller(&server).await;
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let placement = || async {
        let mut out = Vec::new();
        for u in &users {
            let r = get_with(&gw, "chat.test", "/", &[("x-user", u)]).await;
            out.push(r.header("x-served-by").to_string());
        }
        out
    };
    eventually("both pods serve", || async {
        placement()
            .await
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 2
    })
    .await;
    let before = placement().await;
    assert_eq!(before, placement().await, "the same key, the same pod");
    // Scale out to three pods: a key either stays or moves to the new pod, never between
    // the old ones.
    service_pods(&server, "chat", &pods);
    let new_pod = pods[2].to_string();
    eventually("the new pod takes keys", || async {
        placement().await.contains(&new_pod)
    })
    .await;
    let after = placement().await;
    let moved = (0..users.len()).filter(|&i| after[i] != before[i]).count();
    for i in 0..users.len() {
        assert!(
            after[i] == before[i] || after[i] == new_pod,
            "{} moved between old pods",
            users[i]
        );
    }
    assert!(
        moved > 0 && moved < users.len() * 2 / 3,
        "{moved} of {} moved",
        users.len()
    );
    // An upgrade with the key lands where its requests do.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (mut ws, resp) = ws_handshake(stream, "chat.test", "/", &[("x-user", &users[0])]).await;
    assert_eq!(resp.headers()["x-served-by"], after[0].as_str());
    echo_roundtrip(&mut ws, Message::text("hashed")).await;
}

#[tokio::test]
async fn allow_lists_body_limits_request_rates_rewrites_and_www_redirects() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    let (chat, uploads) = (ws_backend().await, http_backend().await);
    service(&server, "web", web.addr);
    service(&server, "chat", chat.addr);
    service(&server, "uploads", uploads.addr);
    class(&server, "wsgate", wsgate::api::ingress::CONTROLLER, false);
    let root = [("/", "Prefix", "web", "{ number: 80 }")];
    let annotated = |name: &str,
                     host: &str,
                     annotations: &[(&str, &str)],
                     paths: &[(&str, &str, &str, &str)]| {
        let list: String = annotations
            .iter()
            .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
            .collect();
        ingress(name, &format!("  annotations:\n{list}"), OURS, host, paths)
    };
    let both = [
        ("/", "Prefix", "web", "{ number: 80 }"),
        ("/ws", "Prefix", "chat", "{ number: 80 }"),
    ];
    server.apply(
        Res::Ingresses,
        &annotated(
            "closed",
            "closed.test",
            &[("whitelist-source-range", "10.0.0.0/8")],
            &both,
        ),
    );
    server.apply(
        Res::Ingresses,
        &annotated(
            "open",
            "open.test",
            &[("allowlist-source-range", "10.0.0.0/8, 127.0.0.0/8")],
            &root,
        ),
    );
    server.apply(
        Res::Ingresses,
        &annotated(
            "upload",
            "upload.test",
            &[("proxy-body-size", "1k")],
            &[("/", "Prefix", "uploads", "{ number: 80 }")],
        ),
    );
    server.apply(
        Res::Ingresses,
        &annotated("rate", "rate.test", &[("limit-rps", "1")], &root),
    );
    server.apply(
        Res::Ingresses,
        &annotated(
            "sockets",
            "sockets.test",
            &[("limit-connections", "1")],
            &[("/", "Prefix", "chat", "{ number: 80 }")],
        ),
    );
    server.apply(
        Res::Ingresses,
        &annotated(
            "forced",
            "forced.test",
            &[("force-ssl-redirect", "true")],
            &root,
        ),
    );
    server.apply(
        Res::Ingresses,
        &annotated(
            "app",
            "app.test",
            &[("rewrite-target", "/"), ("from-to-www-redirect", "true")],
            &[("/app", "Prefix", "web", "{ number: 80 }")],
        ),
    );
    let gw = controller(&server).await;
    eventually("every Ingress is served", || async {
        get(&gw, "app.test", "/app").await.0 == StatusCode::OK
    })
    .await;

    // Allow-lists: 127.0.0.1 is outside 10/8 for requests and upgrades alike.
    assert_eq!(get(&gw, "closed.test", "/").await.0, StatusCode::FORBIDDEN);
    let upgrade = raw_head(
        gw.http_addr,
        b"GET /ws HTTP/1.1\r\nHost: closed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(upgrade.starts_with("HTTP/1.1 403"), "{upgrade}");
    assert!(
        chat.handshakes.lock().unwrap().is_empty(),
        "refused before any backend"
    );
    assert_eq!(get(&gw, "open.test", "/").await.0, StatusCode::OK);

    // Bodies: a declared length over 1k is refused before the backend; a streamed one is cut.
    let post = |len: usize| {
        let mut req = request("POST", "upload.test", "/");
        *req.body_mut() = http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; len]));
        req
    };
    // The uploads backend has seen nothing yet: the refusal must not reach it.
    let connections = || {
        uploads
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(
        http(gw.http_addr, post(1025)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(connections(), 0, "refused before any backend");
    let fits = http(gw.http_addr, post(1024)).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert!(fits.text().ends_with("\n\n1024"), "{}", fits.text());
    let chunk = "x".repeat(2000);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: upload.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let head = raw_head(gw.http_addr, chunked.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // limit-rps 1 (burst 5): a burst of ten requests meets 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = get_with(&gw, "rate.test", "/", &[]).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("ten requests at once were never limited"));
    assert!(!limited.header("retry-after").is_empty());

    // rewrite-target /: the matched prefix is replaced, the rest and the query kept.
    let r = get_with(&gw, "app.test", "/app/chat/room?x=1", &[]).await;
    assert!(r.text().starts_with("GET /chat/room?x=1\n"), "{}", r.text());
    let r = get_with(&gw, "app.test", "/app", &[]).await;
    assert!(r.text().starts_with("GET /\n"), "{}", r.text());

    // from-to-www-redirect: www.app.test goes to app.test.
    let r = get_with(&gw, "www.app.test", "/app/x?y=2", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), "http://app.test/app/x?y=2");

    // force-ssl-redirect: to https although the Ingress has no tls entry; https then serves
    // with the default certificate.
    let r = get_with(&gw, "forced.test", "/p", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert!(
        r.header("location").starts_with("https://forced.test"),
        "{}",
        r.header("location")
    );
    let r = https(
        gw.https_addr,
        trust_anything(),
        request("GET", "forced.test", "/p"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // limit-connections 1: a second socket from the same client gets 429 while the first is
    // open, and a socket once the first closed.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let first = ws_over(stream, "sockets.test", "/", &[]).await;
    let second = raw_head(
        gw.http_addr,
        b"GET / HTTP/1.1\r\nHost: sockets.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
    drop(first);
    eventually("the slot is free again", || async {
        let head = raw_head(
            gw.http_addr,
            b"GET / HTTP/1.1\r\nHost: sockets.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
        head.starts_with("HTTP/1.1 101")
    })
    .await;
}
