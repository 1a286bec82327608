//! Hostile requests never steer the proxy, black-box on loopback: h2c smuggling through a
//! WebSocket upgrade, protocol switches a backend should not make, one authority for routing
//! and forwarding (absolute-form, two Hosts, `:authority` against `host`, `Connection: Host`),
//! and dot segments that would escape a path prefix.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use wsgate::gateway::Gateway;
use wsgate_test_support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3: the accept for [`KEY`].
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket handshake for `path` on `host`, with extra header lines.
fn handshake(host: &str, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// A plain route `hard.test` whose websocket backend is `ws` and http backend `http`.
async fn gateway_for(http: std::net::SocketAddr, ws: std::net::SocketAddr) -> (Gateway, RoutesDir) {
    let routes = RoutesDir::new();
    routes.write(
        "hard.yaml",
        &route_yaml(
            "hard",
            &format!(
                "  hostnames: [hard.test]\n  rules:\n    - http: {{ backend: {{ address: \"{http}\" }} }}\n      websocket: {{ backend: {{ address: \"{ws}\" }} }}\n"
            ),
        ),
    );
    (start(routes.path()).await, routes)
}

#[tokio::test]
async fn an_upgrade_asks_only_for_websocket_and_relays_only_a_websocket_switch() {
    let h2c = canned_backend(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let web = http_backend().await;
    let (gw, _routes) = gateway_for(web.addr, h2c.addr).await;
    let smuggle = handshake(
        "hard.test",
        "/",
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket, h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    );
    // The duplicated Connection/Upgrade lines are combined by the server: `websocket, h2c`.
    let head = raw_head(gw.http_addr, smuggle.as_bytes()).await;
    assert_eq!(status_of(&head), 502, "{head}");
    let seen = h2c.heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].contains("\r\nupgrade: websocket\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        !seen[0].contains("h2c") && !seen[0].contains("http2-settings"),
        "{}",
        seen[0]
    );

    // A websocket 101 whose accept does not answer the key is no handshake either.
    let forged = canned_backend(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
    )
    .await;
    let (gw, _routes) = gateway_for(web.addr, forged.addr).await;
    let head = raw_head(gw.http_addr, handshake("hard.test", "/", "").as_bytes()).await;
    assert_eq!(status_of(&head), 502, "{head}");

    // The right accept is relayed: the control that the canned backend can pass.
    let honest = canned_backend(Box::leak(
        format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n").into_boxed_str(),
    ))
    .await;
    let (gw, _routes) = gateway_for(web.addr, honest.addr).await;
    let head = raw_head(gw.http_addr, handshake("hard.test", "/", "").as_bytes()).await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!(
        "sec-websocket-accept: {}",
        ACCEPT.to_ascii_lowercase()
    )));
}

#[tokio::test]
async fn a_switch_nobody_asked_for_is_502_and_a_handshake_with_a_body_or_no_key_is_400() {
    let switcher = canned_backend(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    let ws = ws_backend().await;
    let (gw, _routes) = gateway_for(switcher.addr, ws.addr).await;
    let reply = http(gw.http_addr, request("GET", "hard.test", "/")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let with_body = handshake("hard.test", "/", "Content-Length: 5\r\n") + "hello";
    assert_eq!(
        status_of(&raw_head(gw.http_addr, with_body.as_bytes()).await),
        400
    );
    let no_key = "GET / HTTP/1.1\r\nHost: hard.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(
        status_of(&raw_head(gw.http_addr, no_key.as_bytes()).await),
        400
    );
    assert!(ws.handshakes.lock().unwrap().is_empty());
}

/// `main.test` proxies to the echo backend; `down.test` is in maintenance.
async fn two_routes() -> (Gateway, RoutesDir, HttpBackend) {
    let web = http_backend().await;
    let routes = RoutesDir::new();
    let main = route_yaml(
        "main",
        &format!(
            "  hostnames: [main.test]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n    - pathPrefix: /public\n      http: {{ backend: {{ address: \"{}\" }} }}\n",
            web.addr, web.addr
        ),
    );
    let down = route_yaml(
        "down",
        &format!(
            "  hostnames: [down.test]\n  maintenance: {{ enabled: true }}\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n",
            web.addr
        ),
    );
    routes.write("routes.yaml", &format!("{main}---\n{down}"));
    (start(routes.path()).await, routes, web)
}

/// The `host` line of the echo backend's answer in `text`.
fn echoed_host(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no host in {text:?}"))
}

#[tokio::test]
async fn the_host_the_backend_sees_is_the_one_the_route_was_chosen_by() {
    let (gw, _routes, _web) = two_routes().await;
    // RFC 9112 §3.2.2: an absolute-form target wins, and the backend sees it as Host.
    let text = raw(
        gw.http_addr,
        b"GET http://main.test/x HTTP/1.1\r\nHost: down.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(echoed_host(&text), "main.test");
    // ... and the other way round it is the maintenance page, never main's backend.
    let text = raw(
        gw.http_addr,
        b"GET http://down.test/x HTTP/1.1\r\nHost: main.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    // RFC 9112 §3.2: two Hosts are a 400, whichever comes first.
    for pair in [
        "main.test\r\nHost: down.test",
        "down.test\r\nHost: main.test",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {pair}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            status_of(&raw_head(gw.http_addr, req.as_bytes()).await),
            400,
            "{pair}"
        );
    }
    // Connection may not name Host away.
    let text = raw(
        gw.http_addr,
        b"GET /x HTTP/1.1\r\nHost: main.test\r\nConnection: close, Host\r\n\r\n",
    )
    .await;
    assert_eq!(echoed_host(&text), "main.test");
}

#[tokio::test]
async fn http2_authority_wins_and_a_host_contradicting_it_is_400() {
    let ca = TestCa::new();
    let web = http_backend().await;
    let leaf = ca.leaf(&["main.test", "down.test"]);
    let routes = RoutesDir::new();
    let main = route_yaml(
        "main",
        &format!(
            "  hostnames: [main.test]\n  tls: {{ secretName: both }}\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n",
            web.addr
        ),
    );
    let down = route_yaml(
        "down",
        "  hostnames: [down.test]\n  tls: { secretName: both }\n  maintenance: { enabled: true }\n  rules:\n    - http: { backend: { address: \"127.0.0.1:9\" } }\n",
    );
    routes.write(
        "routes.yaml",
        &format!(
            "{main}---\n{down}---\n{}",
            secret_yaml("default", "both", &leaf)
        ),
    );
    let gw = start(routes.path()).await;
    let mut h2 = h2_over_tls(gw.https_addr, "main.test", ca.client_config()).await;
    let get = |host: Option<&str>| {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("https://main.test/x");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.body(Full::new(Bytes::new())).unwrap()
    };
    let ok = within("h2 GET", h2.send_request(get(None))).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let same = within("h2 GET", h2.send_request(get(Some("MAIN.test"))))
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
    let other = within("h2 GET", h2.send_request(get(Some("down.test"))))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dot_segments_never_escape_a_path_prefix() {
    let (gw, _routes, _web) = two_routes().await;
    let path_of = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("GET "))
            .unwrap_or("")
            .to_string()
    };
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: main.test\r\nConnection: close\r\n\r\n");
    // Forwarded normalised, so the backend sees the path its rule matched.
    for (sent, forwarded) in [
        ("/public/a/../b", "GET /public/b"),
        ("/public/%2e%2e/admin", "GET /admin"),
        ("/public/./x?q=/../y", "GET /public/x?q=/../y"),
        ("/%70ublic/x", "GET /public/x"),
    ] {
        let text = raw(gw.http_addr, get(sent).as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{sent}: {text}");
        assert_eq!(path_of(&text), forwarded, "{sent}");
    }
    for climbing in [
        "/../etc/passwd",
        "/public/../../x",
        "/public/..%2Fadmin",
        "/public/%2e%2e%2f..%2fx",
    ] {
        let head = raw_head(gw.http_addr, get(climbing).as_bytes()).await;
        assert_eq!(status_of(&head), 400, "{climbing}");
    }
}

#[tokio::test]
async fn an_http2_websocket_the_backend_answers_with_a_page_gets_no_tunnel() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["hard.test"]);
    let page = canned_backend("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").await;
    let refuse = canned_backend("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno").await;
    let routes = RoutesDir::new();
    let route = route_yaml(
        "hard",
        &format!(
            "  hostnames: [hard.test]\n  tls: {{ secretName: hard }}\n  rules:\n    - pathPrefix: /page\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n    - pathPrefix: /refuse\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n",
            page.addr, refuse.addr
        ),
    );
    routes.write(
        "hard.yaml",
        &format!("{route}---\n{}", secret_yaml("default", "hard", &leaf)),
    );
    let gw = start(routes.path()).await;
    let mut h2 = h2_over_tls(gw.https_addr, "hard.test", ca.client_config()).await;
    let connect = |path: &str| {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://hard.test{path}"))
            .header("sec-websocket-version", "13")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req
    };
    // A 2xx would tell the client its socket is open (RFC 8441 §5): 502 instead.
    let resp = within("CONNECT", h2.send_request(connect("/page")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    // A refusal is passed on as it is.
    let resp = within("CONNECT", h2.send_request(connect("/refuse")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(page.heads.lock().unwrap().len(), 1);
}

/// Waits (bounded) for the server to close a connection on which the client sent `bytes`.
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut sink = [0u8; 64];
    // Only the server closing ends this read; within() fails the test if it never does.
    loop {
        match within("server closes", tcp.read(&mut sink)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn silent_clients_are_cut_at_the_tls_and_proxy_header_timeouts() {
    let web = http_backend().await;
    let routes = RoutesDir::new();
    routes.write(
        "r.yaml",
        &route_yaml(
            "r",
            &format!(
                "  hostnames: [r.test]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n",
                web.addr
            ),
        ),
    );
    // Far below the 10 s defaults and the test deadline.
    let mut opts = options(routes.path());
    opts.proxy.tls_handshake_timeout = std::time::Duration::from_millis(300);
    let gw = Gateway::start(opts).await.unwrap();
    closed_after(gw.https_addr, b"").await;

    let mut opts = options(routes.path());
    opts.proxy.proxy_protocol = true;
    opts.proxy.proxy_header_timeout = std::time::Duration::from_millis(300);
    let gw = Gateway::start(opts).await.unwrap();
    // Half a PROXY v1 line, then silence.
    closed_after(gw.http_addr, b"PROXY TCP4 192.0.2.1").await;
}
