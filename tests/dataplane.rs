//! Data plane II, black-box in standalone mode: HTTP/2 and WebSockets over HTTP/2 (RFC 8441)
//! with a real h2 client, h2c and TLS backends, origin checks, per-client limits, PROXY
//! protocol v1/v2, trusted proxies and HSTS.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use wsgate::gateway::Gateway;
use wsgate_test_support::*;

/// A gateway over `dir` with ProxyConfig tweaks.
async fn start_with(
    dir: &RoutesDir,
    tweak: impl FnOnce(&mut wsgate::proxy::ProxyConfig),
) -> Gateway {
    let mut opts = options(dir.path());
    tweak(&mut opts.proxy);
    Gateway::start(opts).await.unwrap()
}

/// A TLS route `chat.test` with an http and a websocket backend (and `extra` rule fields).
fn tls_route(
    ca: &TestCa,
    http: SocketAddr,
    ws: SocketAddr,
    ws_extra: &str,
    tls_extra: &str,
) -> String {
    let leaf = ca.leaf(&["chat.test"]);
    format!(
        "{}---\n{}",
        route_yaml(
            "chat",
            &format!(
                "  hostnames: [chat.test]\n  tls: {{ secretName: chat-tls{tls_extra} }}\n  rules:\n    - http: {{ backend: {{ address: \"{http}\" }} }}\n      websocket: {{ backend: {{ address: \"{ws}\" }}{ws_extra} }}\n"
            )
        ),
        secret_yaml("default", "chat-tls", &leaf)
    )
}

/// The `chat.test` TLS route over fresh backends, served by a new gateway.
struct Chat {
    ca: TestCa,
    ws: WsBackend,
    gw: Gateway,
    _routes: RoutesDir,
}

async fn chat(ws_extra: &str, tls_extra: &str) -> Chat {
    chat_with(ws_extra, tls_extra, |_| {}).await
}

async fn chat_with(
    ws_extra: &str,
    tls_extra: &str,
    tweak: impl FnOnce(&mut wsgate::proxy::ProxyConfig),
) -> Chat {
    let ca = TestCa::new();
    let (http_be, ws) = (http_backend().await, ws_backend().await);
    let routes = RoutesDir::new();
    routes.write(
        "chat.yaml",
        &tls_route(&ca, http_be.addr, ws.addr, ws_extra, tls_extra),
    );
    let gw = start_with(&routes, tweak).await;
    Chat {
        ca,
        ws,
        gw,
        _routes: routes,
    }
}

async fn h2_connection(
    gw: &Gateway,
    ca: &TestCa,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    h2_over_tls(gw.https_addr, "chat.test", ca.client_config()).await
}

/// An RFC 8441 extended CONNECT for a WebSocket on `chat.test`.
fn extended_connect(path: &str, origin: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://chat.test{path}"))
        .header("sec-websocket-version", "13")
        .header("origin", origin)
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}

/// Opens a WebSocket with an extended CONNECT on an HTTP/2 connection.
async fn h2_websocket(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    path: &str,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    let mut req = extended_connect(path, "https://chat.test");
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    let resp = within("extended CONNECT", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    let upgraded = within("upgrade", hyper::upgrade::on(resp)).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

#[tokio::test]
async fn http2_requests_and_websockets_over_extended_connect_share_one_connection() {
    let Chat {
        ca,
        ws: ws_be,
        gw,
        _routes,
    } = chat("", "").await;

    let mut sender = h2_connection(&gw, &ca).await;
    // A normal request over HTTP/2, forwarded to an HTTP/1.1 backend.
    let req = Request::builder()
        .uri("https://chat.test/page?x=1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within("h2 GET", sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("GET /page?x=1"), "{text}");
    assert!(text.contains("\nhost: chat.test"), "{text}");
    assert!(text.contains("\nx-forwarded-proto: https"), "{text}");

    // Three WebSockets multiplexed on the same connection, each its own echo.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(h2_websocket(&mut sender, "/ws").await);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echo_roundtrip(ws, Message::text(format!("hello {i}"))).await;
        echo_roundtrip(ws, Message::binary(vec![i as u8; 70_000])).await;
    }
    // The backend saw ordinary HTTP/1.1 handshakes, each with its own key.
    let shakes = ws_be.handshakes.lock().unwrap().clone();
    assert_eq!(shakes.len(), 3);
    let keys: std::collections::HashSet<_> = shakes
        .iter()
        .map(|h| h["sec-websocket-key"].clone())
        .collect();
    assert_eq!(keys.len(), 3);
    for h in &shakes {
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["host"], "chat.test");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
    // Closing one socket leaves the others working.
    let mut first = sockets.remove(0);
    within("close", first.close(None)).await.unwrap();
    echo_roundtrip(&mut sockets[0], Message::text("still here")).await;

    // A plain CONNECT is refused: wsgate is not a forward proxy.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("chat.test:443")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within("CONNECT", sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn h2c_and_tls_backends() {
    let ca = TestCa::new();
    // An h2c backend: HTTP/2 with prior knowledge, answering with the version it saw.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h2c_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let text = format!("{:?} {} {}", req.version(), req.method(), req.uri());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    // TLS backends: the echo servers behind a TLS terminator with a certificate for
    // backend.test from the test CA.
    let backend_leaf = ca.leaf(&["backend.test"]);
    let tls_http = tls_front(http_backend().await.addr, &backend_leaf).await;
    let tls_ws = tls_front(ws_backend().await.addr, &backend_leaf).await;
    // HTTP/2 over TLS: the h2c server behind a front that negotiates only ALPN h2 (gRPC).
    let tls_h2 = tls_front_alpn(h2c_addr, &backend_leaf, &[b"h2"]).await;
    let other_ca = TestCa::new();
    let routes = RoutesDir::new();
    let body = |host: &str, backend: String| {
        format!(
            "  hostnames: [{host}]\n  rules:\n    - http: {{ backend: {backend} }}\n      websocket: {{ backend: {backend} }}\n"
        )
    };
    let verified = format!(
        "{{ address: \"{tls_http}\", tls: {{ sni: backend.test, caSecretName: backend-ca }} }}"
    );
    let verified_ws = format!(
        "{{ address: \"{tls_ws}\", tls: {{ sni: backend.test, caSecretName: backend-ca }} }}"
    );
    routes.write(
        "routes.yaml",
        &[
            route_yaml("h2c", &body("h2c.test", format!("{{ address: \"{h2c_addr}\", protocol: h2c }}"))),
            route_yaml("h2", &format!("  hostnames: [h2.test]\n  rules:\n    - http: {{ backend: {{ address: \"{tls_h2}\", protocol: h2, tls: {{}} }} }}\n")),
            route_yaml(
                "tls",
                &format!(
                    "  hostnames: [tls.test]\n  rules:\n    - http: {{ backend: {verified} }}\n      websocket: {{ backend: {verified_ws} }}\n"
                ),
            ),
            route_yaml("wrongname", &body("wrongname.test", format!("{{ address: \"{tls_http}\", tls: {{ sni: other.test, caSecretName: backend-ca }} }}"))),
            route_yaml("wrongca", &body("wrongca.test", format!("{{ address: \"{tls_http}\", tls: {{ sni: backend.test, caSecretName: other-ca }} }}"))),
            route_yaml("unverified", &body("unverified.test", format!("{{ address: \"{tls_http}\", tls: {{}} }}"))),
            route_yaml("noca", &body("noca.test", format!("{{ address: \"{tls_http}\", tls: {{ caSecretName: missing }} }}"))),
            secret_with_ca_yaml("default", "backend-ca", &ca.leaf(&["x.test"]), &ca.pem()),
            secret_with_ca_yaml("default", "other-ca", &ca.leaf(&["x.test"]), &other_ca.pem()),
        ]
        .join("---\n"),
    );
    let gw = start(routes.path()).await;

    let r = http(gw.http_addr, request("GET", "h2c.test", "/x")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "HTTP/2.0 GET http://h2c.test/x");
    let r = http(gw.http_addr, request("GET", "h2.test", "/rpc")).await;
    assert_eq!(r.text(), "HTTP/2.0 GET http://h2.test/rpc");

    let r = http(gw.http_addr, request("GET", "tls.test", "/secure")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().starts_with("GET /secure"));
    // Keep-alive to a TLS backend: a second request reuses the pooled connection.
    let r = http(gw.http_addr, request("GET", "tls.test", "/again")).await;
    assert_eq!(r.status, StatusCode::OK);
    let tcp = TcpStream::connect(gw.http_addr).await.unwrap();
    let mut ws = ws_over(tcp, "tls.test", "/ws", &[]).await;
    echo_roundtrip(&mut ws, Message::text("over tls")).await;

    for host in ["wrongname.test", "wrongca.test", "noca.test"] {
        let r = http(gw.http_addr, request("GET", host, "/")).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{host}");
    }
    let r = http(gw.http_addr, request("GET", "unverified.test", "/")).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn allowed_origins_guard_upgrades() {
    let origins = ", allowedOrigins: [\"https://chat.test\", \"https://*.example.org\"]";
    let Chat {
        ca,
        ws: ws_be,
        gw,
        _routes,
    } = chat(origins, "").await;
    let cases = [
        (Some("https://chat.test"), true),
        (Some("https://app.example.org"), true),
        (Some("https://evil.test"), false),
        (Some("http://chat.test"), false),
        (Some("https://chat.test.evil.test"), false),
        (Some("null"), false),
        (None, false),
    ];
    for (origin, allowed) in cases {
        let io = tls(gw.https_addr, "chat.test", ca.client_config()).await;
        let mut req = request("GET", "chat.test", "/ws");
        let headers = req.headers_mut();
        headers.insert("connection", "upgrade".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("sec-websocket-version", "13".parse().unwrap());
        headers.insert(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        if let Some(o) = origin {
            headers.insert("origin", o.parse().unwrap());
        }
        let reply = send(io, req).await;
        let want = if allowed {
            StatusCode::SWITCHING_PROTOCOLS
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(reply.status, want, "{origin:?}");
    }
    // Over HTTP/2 the same check applies.
    let mut sender = h2_connection(&gw, &ca).await;
    let req = extended_connect("/ws", "https://evil.test");
    let resp = within("CONNECT", sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let m = scrape(gw.admin_addr).await;
    assert_eq!(
        m["wsgate_websocket_upgrades_total{result=\"forbidden\",route=\"default/chat\"}"],
        6.0
    );
    assert_eq!(ws_be.handshakes.lock().unwrap().len(), 2);
}

/// An upgrade request with an optional X-Forwarded-For, over plain HTTP.
async fn upgrade_status(
    gw: &Gateway,
    xff: Option<&str>,
) -> (StatusCode, String, Option<TcpStream>) {
    let mut tcp = TcpStream::connect(gw.http_addr).await.unwrap();
    let xff = xff.map_or(String::new(), |v| format!("x-forwarded-for: {v}\r\n"));
    let req = format!(
        "GET /ws HTTP/1.1\r\nhost: plain.test\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{xff}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .map(|c| StatusCode::from_u16(c).unwrap())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let open = (status == StatusCode::SWITCHING_PROTOCOLS).then_some(tcp);
    (status, head, open)
}

fn plain_limited_route(http: SocketAddr, ws: SocketAddr, limits: &str) -> String {
    route_yaml(
        "plain",
        &format!(
            "  hostnames: [plain.test]\n  rules:\n    - http: {{ backend: {{ address: \"{http}\" }} }}\n      websocket: {{ backend: {{ address: \"{ws}\" }}, limits: {limits} }}\n"
        ),
    )
}

#[tokio::test]
async fn per_client_connection_limit_with_trusted_proxies() {
    let (http_be, ws_be) = (http_backend().await, ws_backend().await);
    let routes = RoutesDir::new();
    routes.write(
        "plain.yaml",
        &plain_limited_route(http_be.addr, ws_be.addr, "{ maxConnectionsPerClient: 2 }"),
    );
    // The test connects from 127.0.0.1, which is trusted: X-Forwarded-For names the client.
    let gw = start_with(&routes, |p| {
        p.trusted_proxies =
            wsgate::proxy::client_ip::TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
    })
    .await;
    let (a1, _, s1) = upgrade_status(&gw, Some("198.51.100.1")).await;
    let (a2, _, _s2) = upgrade_status(&gw, Some("198.51.100.1")).await;
    let (a3, head, _) = upgrade_status(&gw, Some("198.51.100.1")).await;
    assert_eq!(
        (a1, a2, a3.as_u16()),
        (
            StatusCode::SWITCHING_PROTOCOLS,
            StatusCode::SWITCHING_PROTOCOLS,
            429
        )
    );
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Another client behind the same proxy has its own allowance.
    let (b1, _, _sb) = upgrade_status(&gw, Some("198.51.100.2")).await;
    assert_eq!(b1, StatusCode::SWITCHING_PROTOCOLS);
    // Closing one of the first client's sockets frees a slot.
    drop(s1);
    eventually("a slot is freed", || async {
        upgrade_status(&gw, Some("198.51.100.1")).await.0 == StatusCode::SWITCHING_PROTOCOLS
    })
    .await;
    let m = scrape(gw.admin_addr).await;
    assert!(
        m["wsgate_websocket_upgrades_total{result=\"limited\",route=\"default/plain\"}"] >= 1.0
    );
}

#[tokio::test]
async fn per_client_upgrade_rate_ignores_untrusted_forwarded_for() {
    let (http_be, ws_be) = (http_backend().await, ws_backend().await);
    let routes = RoutesDir::new();
    routes.write(
        "plain.yaml",
        &plain_limited_route(
            http_be.addr,
            ws_be.addr,
            "{ upgradesPerSecondPerClient: 1, burst: 2 }",
        ),
    );
    let gw = start(routes.path()).await;
    // No trusted proxies: a client cannot buy a fresh bucket by claiming another address.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        statuses.push(upgrade_status(&gw, Some(&xff)).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|s| s.0.as_u16()).collect();
    assert_eq!(codes, [101, 101, 429]);
    assert!(
        statuses[2]
            .1
            .to_ascii_lowercase()
            .contains("retry-after: 1")
    );
}

fn proxy_v2_header(client: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(c), SocketAddr::V4(d)) = (client, dest) else {
        panic!("IPv4 only here")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&c.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&c.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_carry_the_client_address() {
    let ca = TestCa::new();
    let (http_be, ws_be) = (http_backend().await, ws_backend().await);
    let routes = RoutesDir::new();
    routes.write(
        "chat.yaml",
        &tls_route(&ca, http_be.addr, ws_be.addr, "", ""),
    );
    routes.write(
        "plain.yaml",
        &route_yaml(
            "plain",
            &format!("  hostnames: [plain.test]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n", http_be.addr),
        ),
    );
    let gw = start_with(&routes, |p| p.proxy_protocol = true).await;

    // v1 on the plain listener.
    let mut tcp = TcpStream::connect(gw.http_addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n")
        .await
        .unwrap();
    let r = send(tcp, request("GET", "plain.test", "/who")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text().contains("\nx-real-ip: 203.0.113.7"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("\nx-forwarded-for: 203.0.113.7"),
        "{}",
        r.text()
    );

    // v2 (binary) before the TLS handshake on the TLS listener, then a WebSocket.
    let mut tcp = TcpStream::connect(gw.https_addr).await.unwrap();
    let header = proxy_v2_header("198.51.100.9:5555".parse().unwrap(), gw.https_addr);
    tcp.write_all(&header).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("chat.test").unwrap();
    let io = tokio_rustls::TlsConnector::from(ca.client_config())
        .connect(name, tcp)
        .await
        .unwrap();
    let mut ws = ws_over(io, "chat.test", "/ws", &[]).await;
    echo_roundtrip(&mut ws, Message::text("via a load balancer")).await;
    let shakes = ws_be.handshakes.lock().unwrap().clone();
    assert_eq!(shakes[0]["x-real-ip"], "198.51.100.9");

    // Without a header the connection is refused: closed with no answer.
    let out = raw(gw.http_addr, b"GET / HTTP/1.1\r\nhost: plain.test\r\n\r\n").await;
    assert_eq!(out, "");
    let out = raw(
        gw.http_addr,
        b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(out, "");
}

#[tokio::test]
async fn hsts_on_https_answers_only() {
    let hsts = ", hsts: { maxAge: 31536000, includeSubDomains: true }";
    let Chat {
        ca, gw, _routes, ..
    } = chat("", hsts).await;
    // Every https answer carries it, the backend's errors too.
    for (path, status) in [
        ("/", StatusCode::OK),
        ("/status/404", StatusCode::NOT_FOUND),
    ] {
        let req = request("GET", "chat.test", path);
        let r = https(gw.https_addr, ca.client_config(), req).await;
        assert_eq!(r.status, status);
        assert_eq!(
            r.header("strict-transport-security"),
            "max-age=31536000; includeSubDomains"
        );
    }
    // Plain HTTP gets the redirect, never the header (RFC 6797 §7.2).
    let r = http(gw.http_addr, request("GET", "chat.test", "/")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("strict-transport-security"), "");
}

/// A client config trusting `ca` that offers `suites` in this order.
fn ordered_suites(
    ca: &TestCa,
    suites: Vec<rustls::SupportedCipherSuite>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn cipher_suites_in_wsgate_order_unless_chacha_first_and_sessions_resume() {
    use rustls::CipherSuite as C;
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    use rustls::version::{TLS12, TLS13};
    let Chat {
        ca, gw, _routes, ..
    } = chat("", "").await;
    let suite = |io: &tokio_rustls::client::TlsStream<TcpStream>| {
        io.get_ref().1.negotiated_cipher_suite().map(|s| s.suite())
    };
    // OpenSSL's default order (curl, Node, Python) puts AES-256 first: wsgate picks AES-128.
    let openssl_like = ordered_suites(
        &ca,
        vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_128_GCM_SHA256,
        ],
        &[&TLS13],
    );
    let io = tls(gw.https_addr, "chat.test", openssl_like.clone()).await;
    assert_eq!(suite(&io), Some(C::TLS13_AES_128_GCM_SHA256));
    // The session tickets it was sent let the next connection skip the full handshake.
    let r = send(io, request("GET", "chat.test", "/")).await;
    assert_eq!(r.status, StatusCode::OK);
    let again = tls(gw.https_addr, "chat.test", openssl_like).await;
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    // A client without AES instructions puts ChaCha20 first and keeps it.
    let chacha_first = ordered_suites(
        &ca,
        vec![
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
        ],
        &[&TLS13],
    );
    let io = tls(gw.https_addr, "chat.test", chacha_first).await;
    assert_eq!(suite(&io), Some(C::TLS13_CHACHA20_POLY1305_SHA256));
    // TLS 1.2 follows the same order.
    let tls12 = ordered_suites(
        &ca,
        vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
        &[&TLS12],
    );
    let io = tls(gw.https_addr, "chat.test", tls12).await;
    assert_eq!(suite(&io), Some(C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
}

#[tokio::test]
async fn a_drain_closes_websockets_over_http2_with_1001() {
    let Chat {
        ca,
        ws,
        gw,
        _routes,
    } = chat("", "").await;
    let mut sender = h2_connection(&gw, &ca).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut socket = h2_websocket(&mut sender, "/ws").await;
        echo_roundtrip(&mut socket, Message::text("before the drain")).await;
        sockets.push(socket);
    }
    let shutdown = tokio::spawn(gw.shutdown());
    for socket in &mut sockets {
        let close = within("close frame", async {
            loop {
                match socket.next().await {
                    Some(Ok(Message::Close(frame))) => return frame,
                    Some(Ok(_)) => continue,
                    other => panic!("stream ended without a Close: {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    }
    // The sockets answer the Close (tungstenite does that on its own); the drain then ends
    // with nothing cut, and the backend saw 1001 too.
    for socket in &mut sockets {
        let _ = within("close reply", socket.next()).await;
    }
    // As a browser does after the close handshake: the streams end.
    drop(sockets);
    drop(sender);
    let report = within("shutdown", shutdown).await.unwrap();
    assert_eq!(report.cut, 0);
    assert_eq!(*ws.closes.lock().unwrap(), vec![1001, 1001]);
}

#[tokio::test]
async fn idle_http2_connections_get_a_goaway() {
    // The first request must come within the header timeout (1 s in tests); later, a
    // connection with no stream open for h2_idle_timeout gets a GOAWAY.
    let Chat {
        ca, gw, _routes, ..
    } = chat_with("", "", |p| {
        p.h2_idle_timeout = std::time::Duration::from_secs(1);
    })
    .await;

    // A connection that never sends a request is closed.
    let io = tls(gw.https_addr, "chat.test", h2_config(ca.client_config())).await;
    let (_silent, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .unwrap();
    let silent = tokio::spawn(conn);
    within("the silent connection closes", silent)
        .await
        .unwrap()
        .unwrap();

    // A connection whose only stream is a relayed WebSocket stays open past both timeouts...
    let mut sender = h2_connection(&gw, &ca).await;
    let mut socket = h2_websocket(&mut sender, "/ws").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    echo_roundtrip(&mut socket, Message::text("still open")).await;
    // ...and idles out once it ends.
    within("close", socket.close(None)).await.unwrap();
    drop(socket);
    eventually("the idle connection closes", || async {
        sender.is_closed()
    })
    .await;
}

#[tokio::test]
async fn keepalive_pings_and_reaps_websockets_over_http2_streams() {
    let Chat {
        ca,
        ws: ws_be,
        gw,
        _routes,
    } = chat(", keepalive: { interval: 300ms, timeout: 300ms }", "").await;
    let mut sender = h2_connection(&gw, &ca).await;
    // One stream read (tungstenite answers the Pings), one never read again.
    let mut healthy = h2_websocket(&mut sender, "/ws").await;
    let _dead = h2_websocket(&mut sender, "/ws").await;
    let pings = within("three pings on the healthy stream", async {
        let mut pings = 0;
        while pings < 3 {
            match healthy.next().await {
                Some(Ok(Message::Ping(p))) => {
                    assert_eq!(p.len(), 8);
                    pings += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        pings
    })
    .await;
    assert_eq!(pings, 3);
    eventually(
        "the silent stream is reaped with 1001 to the backend",
        || async { ws_be.closes.lock().unwrap().as_slice() == [1001] },
    )
    .await;
    // An echo still comes back (past any Ping of ours that crosses it).
    within("send", healthy.send(Message::text("alive")))
        .await
        .unwrap();
    let echo = within("echo", next_past_pings(&mut healthy)).await;
    assert_eq!(echo.unwrap().unwrap(), Message::text("alive"));
    let controls = ws_be.controls.lock().unwrap().clone();
    assert!(
        !controls.iter().any(|m| matches!(m, Message::Pong(_))),
        "{controls:?}"
    );
}

#[tokio::test]
async fn post_quantum_key_exchange_for_clients_that_offer_it_classic_groups_for_the_rest() {
    use rustls::NamedGroup;
    use rustls::crypto::aws_lc_rs::kx_group;
    let Chat {
        ca, gw, _routes, ..
    } = chat("", "").await;
    // A client that offers only `groups`, never resuming: every connection does the key
    // exchange.
    let with_groups = |groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: groups,
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        std::sync::Arc::new(config)
    };
    let group = |io: &tokio_rustls::client::TlsStream<TcpStream>| {
        io.get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    };
    // What Chrome and Firefox send first today: the hybrid X25519MLKEM768 (with X25519 too).
    let pq = with_groups(vec![kx_group::X25519MLKEM768, kx_group::X25519]);
    let io = tls(gw.https_addr, "chat.test", pq).await;
    assert_eq!(group(&io), Some(NamedGroup::X25519MLKEM768));
    let r = send(io, request("GET", "chat.test", "/")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Older clients: X25519, or P-256 alone.
    for (groups, want) in [
        (vec![kx_group::X25519], NamedGroup::X25519),
        (vec![kx_group::SECP256R1], NamedGroup::secp256r1),
    ] {
        let io = tls(gw.https_addr, "chat.test", with_groups(groups)).await;
        assert_eq!(group(&io), Some(want));
    }
}
