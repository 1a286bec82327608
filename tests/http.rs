//! Black-box tests of the HTTP side: redirects, SNI, forwarding, errors and limits, driven over
//! real loopback sockets with real TLS.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use wsgate_test_support::*;

struct Fixture {
    gw: wsgate::gateway::Gateway,
    ca: TestCa,
    chat_leaf: Leaf,
    other_leaf: Leaf,
    backend: HttpBackend,
    _routes: RoutesDir,
}

async fn fixture() -> Fixture {
    let ca = TestCa::new();
    let chat_leaf = ca.leaf(&["chat.test", "www.chat.test"]);
    let other_leaf = ca.leaf(&["other.test"]);
    let backend = http_backend().await;
    let ws = ws_backend().await;
    let dead = dead_address().await;
    let b = backend.addr;
    let routes = RoutesDir::new();
    let chat = route_yaml(
        "chat",
        &format!(
            r#"  hostnames: [chat.test]
  redirectHostnames: [www.chat.test]
  tls: {{ secretName: chat-tls }}
  rules:
    - http: {{ backend: {{ address: "{b}" }} }}
    - pathPrefix: /ws
      websocket: {{ backend: {{ address: "{w}" }} }}
    - pathPrefix: /slow
      http: {{ backend: {{ address: "{b}" }}, timeout: 300ms }}
    - pathPrefix: /dead
      http: {{ backend: {{ address: "{dead}" }} }}
"#,
            w = ws.addr
        ),
    );
    let other = route_yaml(
        "other",
        &format!(
            "  hostnames: [other.test]\n  tls: {{ secretName: other-tls }}\n  rules:\n    - http: {{ backend: {{ address: \"{b}\" }} }}\n"
        ),
    );
    let plain = route_yaml(
        "plain",
        &format!(
            "  hostnames: [plain.test]\n  redirectHostnames: [www.plain.test]\n  rules:\n    - http: {{ backend: {{ address: \"{b}\" }} }}\n"
        ),
    );
    let down = route_yaml(
        "down",
        &format!(
            "  hostnames: [down.test]\n  maintenance: {{ enabled: true, body: \"<h1>Back soon</h1>\" }}\n  rules:\n    - http: {{ backend: {{ address: \"{b}\" }} }}\n      websocket: {{ backend: {{ address: \"{w}\" }} }}\n",
            w = ws.addr
        ),
    );
    routes.write(
        "chat.yaml",
        &format!(
            "{chat}---\n{}",
            secret_yaml("default", "chat-tls", &chat_leaf)
        ),
    );
    routes.write(
        "other.yaml",
        &format!(
            "{other}---\n{}",
            secret_yaml("default", "other-tls", &other_leaf)
        ),
    );
    routes.write("plain.yaml", &format!("{plain}---\n{down}"));
    let gw = start(routes.path()).await;
    Fixture {
        gw,
        ca,
        chat_leaf,
        other_leaf,
        backend,
        _routes: routes,
    }
}

#[tokio::test]
async fn http_listener_redirects_tls_routes_and_www_hosts() {
    let f = fixture().await;
    let cases = [
        (
            "GET",
            "chat.test",
            "/a/b?x=1&y=2",
            301,
            "https://chat.test/a/b?x=1&y=2",
        ),
        ("HEAD", "chat.test:8080", "/", 301, "https://chat.test/"),
        ("POST", "chat.test", "/form", 308, "https://chat.test/form"),
        ("PUT", "Chat.Test", "/x", 308, "https://chat.test/x"),
        (
            "GET",
            "www.chat.test",
            "/p?q=1",
            301,
            "https://chat.test/p?q=1",
        ),
        (
            "GET",
            "www.plain.test:8080",
            "/p",
            301,
            "http://plain.test:8080/p",
        ),
    ];
    for (method, host, path, status, location) in cases {
        let r = http(f.gw.http_addr, request(method, host, path)).await;
        assert_eq!(r.status.as_u16(), status, "{method} {host}{path}");
        assert_eq!(r.header("location"), location, "{method} {host}{path}");
    }
    // A plain route is proxied on HTTP.
    let r = http(f.gw.http_addr, request("GET", "plain.test", "/hello")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().starts_with("GET /hello"), "{}", r.text());
    // On the TLS listener, www goes to the bare host too.
    let r = https(
        f.gw.https_addr,
        f.ca.client_config(),
        request("GET", "www.chat.test", "/p"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.header("location")),
        (301, "https://chat.test/p")
    );
}

#[tokio::test]
async fn sni_picks_each_routes_certificate() {
    let f = fixture().await;
    let peer_cert = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().map(|c| c[0].clone())
    };
    for (sni, want) in [
        ("chat.test", &f.chat_leaf),
        ("www.chat.test", &f.chat_leaf),
        ("other.test", &f.other_leaf),
    ] {
        // A verifying client: the chain must validate for the name.
        let stream = tls(f.gw.https_addr, sni, f.ca.client_config()).await;
        assert_eq!(peer_cert(&stream), Some(want.der.clone()), "{sni}");
    }
    // An unknown name gets the default certificate, then 404.
    let stream = tls(f.gw.https_addr, "nope.test", trust_anything()).await;
    let served = peer_cert(&stream);
    assert!(served != Some(f.chat_leaf.der.clone()) && served != Some(f.other_leaf.der.clone()));
    let r = send(stream, request("GET", "nope.test", "/")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A connection made for one route cannot be used for another.
    let stream = tls(f.gw.https_addr, "chat.test", f.ca.client_config()).await;
    let r = send(stream, request("GET", "other.test", "/")).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn forwards_with_forwarding_headers_and_keeps_backend_connections_alive() {
    let f = fixture().await;
    let body = Bytes::from(vec![b'a'; 1 << 20]);
    let req = http::Request::builder()
        .method("POST")
        .uri("/upload?x=1")
        .header("host", "chat.test")
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(Full::new(body))
        .unwrap();
    let r = https(f.gw.https_addr, f.ca.client_config(), req).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = r.text();
    assert!(seen.starts_with("POST /upload?x=1"), "{seen}");
    for line in [
        "host: chat.test",
        "x-forwarded-for: 203.0.113.7, 127.0.0.1",
        "x-real-ip: 127.0.0.1",
        "x-forwarded-proto: https",
        "x-forwarded-host: chat.test",
    ] {
        assert!(
            seen.lines().any(|l| l == line),
            "missing {line:?} in\n{seen}"
        );
    }
    assert!(!seen.contains("x-hop"), "hop-by-hop header leaked:\n{seen}");
    assert!(
        seen.ends_with("\n\n1048576"),
        "request body not streamed whole:\n{seen}"
    );
    // A large response streams back whole.
    let r = https(
        f.gw.https_addr,
        f.ca.client_config(),
        request("GET", "chat.test", "/big"),
    )
    .await;
    assert_eq!(r.body.len(), 1 << 20);
    // Backend status codes pass through.
    let r = https(
        f.gw.https_addr,
        f.ca.client_config(),
        request("GET", "chat.test", "/status/418"),
    )
    .await;
    assert_eq!(r.status.as_u16(), 418);
    // Keep-alive to the backend: ten more requests reuse pooled connections.
    let before = f
        .backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        let r = http(f.gw.http_addr, request("GET", "plain.test", "/")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let after = f
        .backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{} new backend connections for 10 requests",
        after - before
    );
}

#[tokio::test]
async fn error_answers() {
    let f = fixture().await;
    let cfg = f.ca.client_config();
    let get = |host: &'static str, path: &'static str| request("GET", host, path);
    // Unknown host, dead backend, slow backend, websocket-only path, maintenance.
    assert_eq!(
        http(f.gw.http_addr, get("unknown.test", "/")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        https(f.gw.https_addr, cfg.clone(), get("chat.test", "/dead"))
            .await
            .status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        https(
            f.gw.https_addr,
            cfg.clone(),
            get("chat.test", "/slow?ms=3000")
        )
        .await
        .status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        https(
            f.gw.https_addr,
            cfg.clone(),
            get("chat.test", "/slow?ms=10")
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = https(f.gw.https_addr, cfg.clone(), get("chat.test", "/ws")).await;
    assert_eq!(
        (r.status, r.header("upgrade")),
        (StatusCode::UPGRADE_REQUIRED, "websocket")
    );
    let r = http(f.gw.http_addr, get("down.test", "/")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "<h1>Back soon</h1>");
    assert!(r.header("content-type").starts_with("text/html"));
    let mut upgrade = get("down.test", "/");
    upgrade
        .headers_mut()
        .insert("connection", "Upgrade".parse().unwrap());
    upgrade
        .headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    upgrade.headers_mut().insert(
        "sec-websocket-key",
        "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
    );
    assert_eq!(
        http(f.gw.http_addr, upgrade).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn malformed_slow_and_oversized_requests() {
    let f = fixture().await;
    let r = raw(f.gw.http_addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");
    let r = raw(f.gw.http_addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "missing Host: {r:?}");
    let r = raw(
        f.gw.http_addr,
        b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "bad Host: {r:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: plain.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(100_000)
    );
    let r = raw(f.gw.http_addr, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{:?}", &r[..r.len().min(80)]);

    // A client that sends half a request head and stops is cut after the header timeout (1 s
    // here), and others are served meanwhile.
    let mut slow = tokio::net::TcpStream::connect(f.gw.http_addr)
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: pla")
        .await
        .unwrap();
    let r = http(f.gw.http_addr, request("GET", "plain.test", "/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut rest = Vec::new();
    // `within` fails the test if the server keeps the connection open.
    let ended = within(
        "header timeout closes the connection",
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut rest),
    )
    .await;
    if ended.is_ok() {
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text:?}"
        );
    }
}
