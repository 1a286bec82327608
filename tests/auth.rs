//! Authentication at the edge, black-box: tokens signed in the test with real keys, a real
//! TLS listener, real WebSocket clients and backends, an https JWKS endpoint and an external
//! auth service on loopback.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use http::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsgate_test_support::jwt::{SigningKey, claims, jwks, now};
use wsgate_test_support::*;

const ISS: &str = "https://id.example";
const AUD: &str = "chat";

/// A ConfigMap holding `body` as `jwks.json`.
fn jwks_config_map(name: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: default }}\ndata:\n  jwks.json: '{body}'\n"
    )
}

/// A route `chat.test` over TLS whose one rule has `auth` (YAML at rule indentation), normal
/// requests to `web` and upgrades to `ws`.
fn auth_route(web: &HttpBackend, ws: &WsBackend, auth: &str) -> String {
    route_yaml(
        "chat",
        &format!(
            "  hostnames: [chat.test]\n  tls: {{ secretName: chat-tls }}\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n      auth:\n{auth}",
            web.addr, ws.addr
        ),
    )
}

const JWT_EVERYWHERE: &str = "        jwt:
          issuer: https://id.example
          audiences: [chat]
          jwks: { configMap: { name: keys } }
          tokenFrom:
            - bearer: true
            - cookie: session
            - query: access_token
            - protocolPrefix: token.
          claimsToHeaders:
            - { claim: sub, header: X-User }
            - { claim: org.id, header: X-Org }
";

struct Setup {
    gw: wsgate::gateway::Gateway,
    ca: TestCa,
    web: HttpBackend,
    ws: WsBackend,
    _routes: RoutesDir,
}

async fn setup(keys: &[&SigningKey], auth: &str, extra: &str) -> Setup {
    let ca = TestCa::new();
    let web = http_backend().await;
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    routes.write(
        "chat.yaml",
        &format!(
            "{}---\n{}---\n{}{extra}",
            auth_route(&web, &ws, auth),
            secret_yaml("default", "chat-tls", &ca.leaf(&["chat.test"])),
            jwks_config_map("keys", &jwks(keys)),
        ),
    );
    let gw = start(routes.path()).await;
    Setup {
        gw,
        ca,
        web,
        ws,
        _routes: routes,
    }
}

impl Setup {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = request("GET", "chat.test", path);
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().append(name, v.parse().unwrap());
        }
        https(self.gw.https_addr, self.ca.client_config(), req).await
    }

    /// A `GET` with `Authorization: Bearer token`.
    async fn get_bearer(&self, path: &str, token: &str) -> Reply {
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    /// A WebSocket handshake; `Ok` with the socket, or `Err` with the refusal's status and
    /// `WWW-Authenticate`.
    async fn ws(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        (StatusCode, String),
    > {
        let io = tls(self.gw.https_addr, "chat.test", self.ca.client_config()).await;
        match ws_attempt(io, "chat.test", path, headers).await {
            Ok((ws, _)) => Ok(ws),
            Err(refused) => {
                let www = refused.headers().get("www-authenticate");
                let www = www.map(|v| v.to_str().unwrap().to_string());
                Err((refused.status(), www.unwrap_or_default()))
            }
        }
    }
}

#[tokio::test]
async fn tokens_from_every_place_open_sockets_and_requests_with_claims_in_headers() {
    let es = SigningKey::ec("es", "ES256");
    let rsa = SigningKey::rsa("rsa", "RS256");
    let ed = SigningKey::ed25519("ed");
    let s = setup(&[&es, &rsa, &ed], JWT_EVERYWHERE, "").await;
    let mut c = claims(ISS, AUD, 600);
    c["org"] = json!({"id": "acme"});
    let token = es.sign(&c);

    // No token: 401 with a bare Bearer challenge (RFC 6750 §3.1), for requests and upgrades.
    let r = s.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), "Bearer");
    assert_eq!(
        s.ws("/ws", &[]).await.err().unwrap(),
        (StatusCode::UNAUTHORIZED, "Bearer".into())
    );
    assert!(
        s.ws.handshakes.lock().unwrap().is_empty(),
        "a refused upgrade never reaches the backend"
    );

    // Authorization: Bearer, with a spoofed X-User removed and the claims set.
    let bearer = format!("Bearer {token}");
    let r = s
        .get(
            "/page",
            &[("authorization", &bearer), ("x-user", "mallory")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("\nx-user: alice"), "{}", r.text());
    assert!(!r.text().contains("mallory"), "{}", r.text());
    assert!(r.text().contains("\nx-org: acme"), "{}", r.text());

    // A cookie, on a socket.
    let cookie = format!("theme=dark; session={token}");
    let mut sock = s
        .ws("/ws", &[("cookie", &cookie), ("x-user", "mallory")])
        .await
        .unwrap();
    echo_roundtrip(&mut sock, Message::text("by cookie")).await;
    let seen = s.ws.handshakes.lock().unwrap().last().unwrap().clone();
    assert_eq!(seen["x-user"], "alice");
    assert_eq!(seen.get_all("x-user").iter().count(), 1);

    // A query parameter, removed before forwarding (the rest of the query stays).
    let path = format!("/ws?room=1&access_token={token}");
    let mut sock = s.ws(&path, &[]).await.unwrap();
    echo_roundtrip(&mut sock, Message::text("by query")).await;
    assert_eq!(s.ws.targets.lock().unwrap().last().unwrap(), "/ws?room=1");
    let r = s.get(&format!("/page?access_token={token}"), &[]).await;
    assert!(r.text().starts_with("GET /page\n"), "{}", r.text());

    // A Sec-WebSocket-Protocol entry: taken out, the application's protocol passed on and
    // chosen by the backend.
    let proto = format!("chat, token.{}", rsa.sign(&claims(ISS, AUD, 600)));
    let mut sock = s
        .ws("/ws", &[("sec-websocket-protocol", &proto)])
        .await
        .unwrap();
    echo_roundtrip(&mut sock, Message::text("by protocol")).await;
    let seen = s.ws.handshakes.lock().unwrap().last().unwrap().clone();
    assert_eq!(seen["sec-websocket-protocol"], "chat");

    // Ed25519 too.
    let r = s.get_bearer("/", &ed.sign(&claims(ISS, AUD, 60))).await;
    assert_eq!(r.status, StatusCode::OK);

    let m = scrape(s.gw.admin_addr).await;
    let allowed =
        m["wsgate_auth_decisions_total{method=\"jwt\",result=\"allow\",route=\"default/chat\"}"];
    assert!(allowed >= 6.0, "{allowed}");
    assert_eq!(
        m["wsgate_auth_decisions_total{method=\"jwt\",result=\"missing\",route=\"default/chat\"}"],
        2.0
    );
}

#[tokio::test]
async fn bad_tokens_get_401_with_the_reason() {
    let key = SigningKey::ec("es", "ES256");
    let s = setup(&[&key], JWT_EVERYWHERE, "").await;
    let t = now();
    let stranger = SigningKey::ec("es", "ES256");
    let cases = [
        (
            key.sign(&claims("https://evil.example", AUD, 60)),
            "wrong issuer",
        ),
        (key.sign(&claims(ISS, "other", 60)), "wrong audience"),
        (
            key.sign(&json!({"iss": ISS, "aud": AUD, "exp": t - 120})),
            "token expired",
        ),
        (
            key.sign(&json!({"iss": ISS, "aud": AUD, "exp": t + 600, "nbf": t + 300})),
            "token not yet valid",
        ),
        (stranger.sign(&claims(ISS, AUD, 60)), "bad signature"),
        (
            SigningKey::ec("other", "ES256").sign(&claims(ISS, AUD, 60)),
            "no key for the token",
        ),
        ("not.a.token".to_string(), "malformed token"),
        // HS256 on a route that did not allow it, whatever the secret.
        (
            SigningKey::hmac("es", &[1u8; 32]).sign(&claims(ISS, AUD, 60)),
            "algorithm not allowed",
        ),
    ];
    for (token, why) in cases {
        let want = format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
        let r = s.get_bearer("/", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(r.header("www-authenticate"), want);
        let refused = s.ws(&format!("/ws?access_token={token}"), &[]).await.err();
        assert_eq!(refused, Some((StatusCode::UNAUTHORIZED, want)));
    }
    // `alg: none`, with the kid of a real key.
    let none = format!(
        "{}.{}.",
        jwt::b64(json!({"alg": "none", "kid": "es"}).to_string()),
        jwt::b64(claims(ISS, AUD, 60).to_string())
    );
    let r = s.get_bearer("/", &none).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .contains("algorithm not allowed")
    );
    assert!(s.ws.handshakes.lock().unwrap().is_empty());
    let m = scrape(s.gw.admin_addr).await;
    assert_eq!(
        m["wsgate_auth_decisions_total{method=\"jwt\",result=\"expired\",route=\"default/chat\"}"],
        2.0
    );
    assert_eq!(
        m["wsgate_auth_decisions_total{method=\"jwt\",result=\"signature\",route=\"default/chat\"}"],
        2.0
    );
}

#[tokio::test]
async fn hs256_from_a_typed_secret_when_allowed() {
    let hmac = SigningKey::hmac("h", &[42u8; 32]);
    let auth = "        jwt:
          jwks: { secret: { name: hmac-keys, key: keys } }
          allowHS256: true
";
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: hmac-keys, namespace: default }}\ntype: wsgate.dev/jwks\nstringData:\n  keys: '{}'\n",
        jwks(&[&hmac])
    );
    let s = setup(&[], auth, &secret).await;
    let ok = hmac.sign(&claims(ISS, AUD, 60));
    let r = s.get_bearer("/", &ok).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let forged = SigningKey::hmac("h", &[41u8; 32]).sign(&claims(ISS, AUD, 60));
    let r = s.get_bearer("/", &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_socket_closes_with_1008_when_its_token_expires_and_a_longer_one_stays() {
    let key = SigningKey::ed25519("ed");
    let auth = "        jwt:
          jwks: { configMap: { name: keys } }
          clockSkew: 0s
          tokenFrom: [ { query: access_token } ]
";
    let s = setup(&[&key], auth, "").await;
    let exp = now() + 2;
    let short = key.sign(&json!({"sub": "a", "exp": exp}));
    let long = key.sign(&json!({"sub": "b", "exp": now() + 600}));
    let mut brief = s
        .ws(&format!("/ws?access_token={short}"), &[])
        .await
        .unwrap();
    let mut lasting = s
        .ws(&format!("/ws?access_token={long}"), &[])
        .await
        .unwrap();
    echo_roundtrip(&mut brief, Message::text("before")).await;
    let close = within("close at expiry", next_past_pings(&mut brief)).await;
    let closed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected Close 1008, got {other:?}"),
    }
    // Within a second of `exp` (whole seconds), never before it.
    assert!(
        closed_at >= Duration::from_secs(exp),
        "closed early: {closed_at:?} < {exp}"
    );
    assert!(
        closed_at < Duration::from_secs(exp + 1) + Duration::from_millis(500),
        "{closed_at:?}"
    );
    // Answering the Close ends the socket.
    within("the close handshake", async {
        while brief.next().await.is_some() {}
    })
    .await;
    drop(brief);
    // The backend was told the client is going away.
    eventually("backend saw 1001", || async {
        s.ws.closes.lock().unwrap().contains(&1001)
    })
    .await;
    echo_roundtrip(&mut lasting, Message::text("still here")).await;
    let key = "wsgate_websocket_closes_total{reason=\"token_expired\",route=\"default/chat\"}";
    eventually("the close counted", || async {
        scrape(s.gw.admin_addr).await.get(key) == Some(&1.0)
    })
    .await;
    assert!(
        futures_util::FutureExt::now_or_never(lasting.next()).is_none(),
        "the longer token's socket stays open"
    );
}

#[tokio::test]
async fn jwks_from_an_https_url_rotates_on_a_new_kid_and_survives_a_failing_fetch() {
    let old = SigningKey::ec("old", "ES256");
    let new = SigningKey::rsa("new", "RS256");
    let server = jwks_server(jwks(&[&old])).await;
    let ca = TestCa::new();
    let front = tls_front(server.addr, &ca.leaf(&["127.0.0.1"])).await;
    let auth = format!(
        "        jwt:
          jwks: {{ url: \"https://127.0.0.1:{}/jwks.json\", caSecretName: idp-ca, refreshInterval: 300ms }}
",
        front.port()
    );
    let idp_ca = secret_with_ca_yaml("default", "idp-ca", &ca.leaf(&["idp"]), &ca.pem());
    let s = setup(&[], &auth, &format!("---\n{idp_ca}")).await;
    let r = s.get_bearer("/", &old.sign(&claims(ISS, AUD, 60))).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{} {}",
        r.text(),
        r.header("www-authenticate")
    );

    // The provider rotates: a token with the new kid makes wsgate fetch the set at once.
    *server.body.lock().unwrap() = jwks(&[&old, &new]);
    let r = s.get_bearer("/", &new.sign(&claims(ISS, AUD, 60))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // The provider fails: after a failed refresh the last good set still verifies.
    server.failing.store(true, Ordering::SeqCst);
    let before = server.hits.load(Ordering::SeqCst);
    eventually("a refresh against the failing provider", || async {
        server.hits.load(Ordering::SeqCst) > before + 1
    })
    .await;
    let r = s.get_bearer("/", &new.sign(&claims(ISS, AUD, 60))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = scrape(s.gw.admin_addr).await;
    assert!(m["wsgate_auth_jwks_fetches_total{result=\"error\"}"] >= 1.0);
    let age = format!(
        "wsgate_auth_jwks_age_seconds{{url=\"https://127.0.0.1:{}/jwks.json\"}}",
        front.port()
    );
    assert!(m.contains_key(&age), "{m:?}");
}

fn external_auth(auth: &AuthServer, extra: &str) -> String {
    format!(
        "        external:
          backend: {{ address: \"{}\" }}
          path: /check
          responseHeaders: [X-User]
          timeout: 500ms
{extra}",
        auth.addr
    )
}

#[tokio::test]
async fn external_auth_allows_denies_and_fails_closed() {
    let auth = auth_server().await;
    let s = setup(&[], &external_auth(&auth, ""), "").await;
    // Allowed: the named answer header is copied in, a client-sent copy removed.
    let r = s
        .get(
            "/page?x=1",
            &[("authorization", "Bearer good"), ("x-user", "mallory")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("\nx-user: alice"), "{}", r.text());
    assert!(!r.text().contains("mallory"));
    assert!(
        !r.text().contains("x-team"),
        "only the named headers are copied"
    );
    let (method, target, headers) = auth.seen.lock().unwrap()[0].clone();
    assert_eq!((method.as_str(), target.as_str()), ("GET", "/check"));
    assert_eq!(headers["x-original-url"], "https://chat.test/page?x=1");
    assert_eq!(headers["x-original-method"], "GET");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "chat.test");
    assert_eq!(headers["host"], auth.addr.to_string().as_str());
    assert!(
        headers.get("authorization").is_some(),
        "the request's headers go along"
    );
    // The same for an upgrade.
    let mut sock = s
        .ws("/ws", &[("authorization", "Bearer good")])
        .await
        .unwrap();
    echo_roundtrip(&mut sock, Message::text("allowed")).await;
    assert_eq!(s.ws.handshakes.lock().unwrap()[0]["x-user"], "alice");
    // Denied: the service's answer goes back as it came.
    let r = s.get("/", &[("authorization", "Bearer bad")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "nope");
    assert_eq!(r.header("x-reason"), "banned");
    let r = s.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.text(), "who are you");
    assert_eq!(
        s.ws("/ws", &[("authorization", "Bearer bad")])
            .await
            .err()
            .map(|e| e.0),
        Some(StatusCode::FORBIDDEN)
    );
    // The service does not answer in time: 503, never the backend.
    let before = s.web.connections.load(Ordering::SeqCst);
    let r = s
        .get("/", &[("authorization", "Bearer good"), ("x-slow", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.web.connections.load(Ordering::SeqCst), before);
    let m = scrape(s.gw.admin_addr).await;
    let count = |result: &str| {
        m[&format!(
            "wsgate_auth_decisions_total{{method=\"external\",result=\"{result}\",route=\"default/chat\"}}"
        )]
    };
    assert_eq!(count("allow"), 2.0);
    assert_eq!(count("deny"), 3.0);
    assert_eq!(count("unavailable"), 1.0);
}

#[tokio::test]
async fn external_auth_unreachable_fails_closed_and_signin_redirects_browsers() {
    let dead = dead_address().await;
    let web = http_backend().await;
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    let auth = auth_server().await;
    let route = |name: &str, host: &str, to: &str, extra: &str| {
        route_yaml(
            name,
            &format!(
                "  hostnames: [{host}]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n      auth:\n        external:\n          backend: {{ address: \"{to}\" }}\n{extra}",
                web.addr, ws.addr
            ),
        )
    };
    routes.write(
        "routes.yaml",
        &format!(
            "{}---\n{}",
            route("down", "down.test", &dead.to_string(), ""),
            route(
                "login",
                "login.test",
                &auth.addr.to_string(),
                "          signinURL: https://login.example/start\n"
            ),
        ),
    );
    let gw = start(routes.path()).await;
    let r = http(gw.http_addr, request("GET", "down.test", "/")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(web.connections.load(Ordering::SeqCst), 0);
    let r = http(gw.http_addr, request("GET", "login.test", "/room?id=7")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.header("location"),
        "https://login.example/start?rd=http%3A%2F%2Flogin.test%2Froom%3Fid%3D7"
    );
}

#[tokio::test]
async fn external_auth_answers_are_cached_by_key() {
    let auth = auth_server().await;
    let cache = "          cache: { header: Authorization, duration: 1m }\n";
    let s = setup(&[], &external_auth(&auth, cache), "").await;
    for _ in 0..3 {
        let r = s.get("/", &[("authorization", "Bearer good")]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().contains("\nx-user: alice"));
    }
    assert_eq!(
        auth.hits.load(Ordering::SeqCst),
        1,
        "one ask, two answers from the cache"
    );
    // Another key asks again; denials are not cached.
    for _ in 0..2 {
        let r = s.get("/", &[("authorization", "Bearer bad")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(auth.hits.load(Ordering::SeqCst), 3);
    let m = scrape(s.gw.admin_addr).await;
    assert_eq!(
        m["wsgate_auth_decisions_total{method=\"external\",result=\"allow_cached\",route=\"default/chat\"}"],
        2.0
    );
}

#[tokio::test]
async fn jwt_first_then_external_auth() {
    let key = SigningKey::ec("es", "ES256");
    let auth = auth_server().await;
    let both = format!(
        "        jwt:\n          jwks: {{ configMap: {{ name: keys }} }}\n          tokenFrom: [ {{ cookie: session }} ]\n{}",
        external_auth(&auth, "")
    );
    let s = setup(&[&key], &both, "").await;
    // No token: refused by the JWT check without asking the service.
    let r = s.get("/", &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(auth.hits.load(Ordering::SeqCst), 0);
    let cookie = format!("session={}", key.sign(&claims(ISS, AUD, 60)));
    let r = s
        .get(
            "/",
            &[("authorization", "Bearer good"), ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(auth.hits.load(Ordering::SeqCst), 1);
}
