//! The Gateway API served by `wsgate controller`, against the in-repo test API server:
//! scenarios modelled on the GATEWAY-HTTP core conformance tests and the WebSocket backend
//! protocol test (written from what each upstream test asserts, not copied): status of
//! classes, Gateways, listeners and routes; routing by hostname, path, header, method and
//! query; filters; weighted backends for requests and sockets; references across namespaces.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsgate::gateway::Gateway;
use wsgate_test_support::apiserver::{ApiServer, Res};
use wsgate_test_support::*;

async fn controller(server: &ApiServer) -> Gateway {
    controller_with(server, "solo", |k| {
        k.publish_status_address = vec!["203.0.113.7".into()];
    })
    .await
}

/// Service `ns/name` with one port (and `appProtocol`, if any) whose one pod is `pod`.
fn service(server: &ApiServer, ns: &str, name: &str, port: u16, app: &str, pod: SocketAddr) {
    let app = match app {
        "" => String::new(),
        p => format!(", appProtocol: {p}"),
    };
    server.apply(
        Res::Services,
        &format!(
            "metadata: {{ name: {name}, namespace: {ns} }}\nspec:\n  ports: [ {{ name: p, port: {port}{app} }} ]\n"
        ),
    );
    server.apply(
        Res::Slices,
        &format!(
            "metadata: {{ name: {name}-1, namespace: {ns}, labels: {{ kubernetes.io/service-name: {name} }} }}\naddressType: IPv4\nports: [ {{ name: p, port: {} }} ]\nendpoints:\n  - addresses: [\"{}\"]\n    conditions: {{ ready: true }}\n",
            pod.port(),
            pod.ip()
        ),
    );
}

const CLASS: &str =
    "metadata: { name: wsgate }\nspec: { controllerName: wsgate.dev/gateway-controller }\n";

/// Gateway `infra/gw`: HTTP on 80 for any namespace, HTTPS on 443 for `*.example.com` with
/// Secret `infra/example-tls`.
const GATEWAY: &str = r#"
metadata: { name: gw, namespace: infra }
spec:
  gatewayClassName: wsgate
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      allowedRoutes: { namespaces: { from: All } }
    - name: https
      port: 443
      protocol: HTTPS
      hostname: "*.example.com"
      tls: { mode: Terminate, certificateRefs: [ { kind: Secret, name: example-tls } ] }
      allowedRoutes: { namespaces: { from: All } }
"#;

/// A cluster with the class, the Gateway and its certificate.
fn base(server: &ApiServer, ca: &TestCa) {
    server.apply(Res::GatewayClasses, CLASS);
    server.apply(Res::Gateways, GATEWAY);
    let leaf = ca.leaf(&["*.example.com"]);
    server.apply(Res::Secrets, &secret_yaml("infra", "example-tls", &leaf));
}

/// An HTTPRoute `apps/name` attached to `infra/gw`, with `hostnames` and `rules` (YAML).
fn route(name: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "metadata: {{ name: {name}, namespace: apps }}\nspec:\n  parentRefs: [ {{ name: gw, namespace: infra }} ]\n  hostnames: {hostnames}\n  rules:\n{rules}"
    )
}

/// The condition `type_` of `conditions` as (status, reason, observedGeneration).
fn cond(conditions: &Value, type_: &str) -> Option<(String, String, i64)> {
    let c = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["observedGeneration"].as_i64().unwrap_or(-1),
    ))
}

/// The condition `type_` of the parent entry of `apps/name` that wsgate wrote.
fn route_cond(server: &ApiServer, name: &str, type_: &str) -> Option<(String, String, i64)> {
    let r = server.get(Res::HttpRoutes, "apps", name)?;
    let parents = r["status"]["parents"].as_array()?.clone();
    let ours = parents
        .iter()
        .find(|p| p["controllerName"] == "wsgate.dev/gateway-controller")?;
    cond(&ours["conditions"], type_)
}

async fn route_status_is(server: &ApiServer, name: &str, type_: &str, want: (&str, &str)) {
    eventually(&format!("{name} {type_} {want:?}"), || async {
        route_cond(server, name, type_).is_some_and(|(s, r, _)| (s.as_str(), r.as_str()) == want)
    })
    .await;
}

async fn get(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request("GET", host, path);
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    http(gw.http_addr, req).await
}

#[tokio::test]
async fn a_gateway_serves_an_http_route_over_tls_with_websockets_and_reports_status() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let chat = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    service(&server, "apps", "chat", 8080, "kubernetes.io/ws", chat);
    // Another controller's class and Gateway are none of wsgate's business.
    server.apply(
        Res::GatewayClasses,
        "metadata: { name: other }\nspec: { controllerName: example.com/other }\n",
    );
    server.apply(
        Res::Gateways,
        "metadata: { name: theirs, namespace: infra }\nspec:\n  gatewayClassName: other\n  listeners: [ { name: http, port: 80, protocol: HTTP } ]\n",
    );
    server.apply(
        Res::HttpRoutes,
        &route(
            "chat",
            "[ chat.example.com ]",
            "    - backendRefs: [ { name: chat, port: 8080 } ]\n",
        ),
    );
    let gw = controller(&server).await;

    eventually("the class is accepted", || async {
        let c = server.get(Res::GatewayClasses, "", "wsgate");
        c.and_then(|c| cond(&c["status"]["conditions"], "Accepted"))
            .is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    eventually("the Gateway is programmed with its address", || async {
        let Some(g) = server.get(Res::Gateways, "infra", "gw") else {
            return false;
        };
        let status = &g["status"];
        let programmed = cond(&status["conditions"], "Programmed");
        let listeners = status["listeners"].as_array().cloned().unwrap_or_default();
        programmed.is_some_and(|(s, _, _)| s == "True")
            && status["addresses"][0]["value"] == "203.0.113.7"
            && listeners.len() == 2
            && listeners.iter().all(|l| {
                l["attachedRoutes"] == 1
                    && l["supportedKinds"][0]["kind"] == "HTTPRoute"
                    && cond(&l["conditions"], "ResolvedRefs").is_some_and(|(s, _, _)| s == "True")
            })
    })
    .await;
    route_status_is(&server, "chat", "Accepted", ("True", "Accepted")).await;
    route_status_is(&server, "chat", "ResolvedRefs", ("True", "ResolvedRefs")).await;
    assert_eq!(
        route_cond(&server, "chat", "Accepted").map(|c| c.2),
        Some(1)
    );
    let theirs = server.get(Res::Gateways, "infra", "theirs").unwrap();
    assert!(theirs["status"].is_null(), "{theirs}");

    // Requests on both listeners; the HTTPS one with the Gateway's certificate (the client
    // trusts only the test CA).
    let r = get(&gw, "chat.example.com", "/", &[]).await;
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (StatusCode::OK, &*chat.to_string())
    );
    let r = https(
        gw.https_addr,
        ca.client_config(),
        request("GET", "chat.example.com", "/page"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // A WebSocket through TLS to a `kubernetes.io/ws` backend (GEP-1911).
    let stream = tls(gw.https_addr, "chat.example.com", ca.client_config()).await;
    let (mut ws, answer) = ws_handshake(stream, "chat.example.com", "/socket", &[]).await;
    assert_eq!(answer.headers()["x-served-by"], chat.to_string().as_str());
    echo_roundtrip(&mut ws, Message::text("over a Gateway")).await;

    // An edit bumps observedGeneration; an open socket is not touched.
    server.apply(
        Res::HttpRoutes,
        &route(
            "chat",
            "[ chat.example.com, chat2.example.com ]",
            "    - backendRefs: [ { name: chat, port: 8080 } ]\n",
        ),
    );
    eventually("observedGeneration follows the edit", || async {
        route_cond(&server, "chat", "Accepted").is_some_and(|c| c.2 == 2)
    })
    .await;
    assert_eq!(
        get(&gw, "chat2.example.com", "/", &[]).await.status,
        StatusCode::OK
    );
    echo_roundtrip(&mut ws, Message::text("still open")).await;

    // A route attached to the HTTPS listener alone is not served on plain HTTP.
    server.apply(
        Res::HttpRoutes,
        "metadata: { name: secure, namespace: apps }\nspec:\n  parentRefs: [ { name: gw, namespace: infra, sectionName: https } ]\n  hostnames: [ secure.example.com ]\n  rules: [ { backendRefs: [ { name: chat, port: 8080 } ] } ]\n",
    );
    route_status_is(&server, "secure", "Accepted", ("True", "Accepted")).await;
    eventually("the HTTPS-only route serves over TLS", || async {
        let req = request("GET", "secure.example.com", "/");
        https(gw.https_addr, ca.client_config(), req).await.status == StatusCode::OK
    })
    .await;
    let plain = get(&gw, "secure.example.com", "/", &[]).await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);

    // What the compile finds beyond the Gateway API's reasons (a Service without ready
    // endpoints) is a Warning Event on the route.
    server.apply(
        Res::Services,
        "metadata: { name: empty, namespace: apps }\nspec:\n  ports: [ { name: p, port: 80 } ]\n",
    );
    server.apply(
        Res::Slices,
        "metadata: { name: empty-1, namespace: apps, labels: { kubernetes.io/service-name: empty } }\naddressType: IPv4\nports: [ { name: p, port: 80 } ]\nendpoints: []\n",
    );
    server.apply(
        Res::HttpRoutes,
        &route(
            "empty",
            "[ empty.example.com ]",
            "    - backendRefs: [ { name: empty, port: 80 } ]\n",
        ),
    );
    eventually("a Warning Event names the empty Service", || async {
        server.list(Res::Events).iter().any(|e| {
            e["regarding"]["kind"] == "HTTPRoute"
                && e["regarding"]["name"] == "empty"
                && e["reason"] == "NoReadyEndpoints"
        })
    })
    .await;
    assert_eq!(
        get(&gw, "empty.example.com", "/", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn matches_follow_precedence_and_filters_redirect_modify_and_rewrite() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let (a, b, c) = (
        pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await,
        pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await,
        pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await,
    );
    service(&server, "apps", "a", 80, "", a);
    service(&server, "apps", "b", 80, "", b);
    service(&server, "apps", "c", 80, "", c);
    let rules = r#"
    - backendRefs: [ { name: a, port: 80 } ]
    - matches: [ { path: { type: PathPrefix, value: /m }, method: POST } ]
      backendRefs: [ { name: b, port: 80 } ]
    - matches: [ { headers: [ { name: x-version, value: "2" } ] } ]
      backendRefs: [ { name: b, port: 80 } ]
    - matches: [ { headers: [ { name: x-version, value: "2" }, { name: x-canary, value: "yes" } ] } ]
      backendRefs: [ { name: c, port: 80 } ]
    - matches: [ { queryParams: [ { name: beta, value: "1" } ] } ]
      backendRefs: [ { name: c, port: 80 } ]
    - matches: [ { path: { type: Exact, value: /exact } } ]
      backendRefs: [ { name: c, port: 80 } ]
    - matches: [ { path: { value: /old } } ]
      filters:
        - type: RequestRedirect
          requestRedirect: { scheme: https, hostname: new.example.com, port: 8443, statusCode: 301, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }
    - matches: [ { path: { value: /moved } } ]
      filters:
        - type: RequestRedirect
          requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /landing } }
    - matches: [ { path: { value: /headers } } ]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [ { name: x-set, value: set } ], add: [ { name: x-add, value: added } ], remove: [ x-drop ] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { set: [ { name: x-resp, value: from-route } ], remove: [ x-served-by ] }
      backendRefs: [ { name: a, port: 80 } ]
    - matches: [ { path: { value: /prefix } } ]
      filters: [ { type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /rewritten } } } ]
      backendRefs: [ { name: a, port: 80 } ]
    - matches: [ { path: { value: /full } } ]
      filters: [ { type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /one } } } ]
      backendRefs: [ { name: a, port: 80 } ]
"#;
    server.apply(Res::HttpRoutes, &route("site", "[ site.test ]", rules));
    let gw = controller(&server).await;
    route_status_is(&server, "site", "Accepted", ("True", "Accepted")).await;
    let served = |r: &Reply| r.header("x-served-by").to_string();
    let (a, b, c) = (a.to_string(), b.to_string(), c.to_string());
    eventually("the route serves", || async {
        get(&gw, "site.test", "/", &[]).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(served(&get(&gw, "site.test", "/m", &[]).await), a);
    let post = http(gw.http_addr, request("POST", "site.test", "/m/x")).await;
    assert_eq!(served(&post), b);
    assert_eq!(
        served(&get(&gw, "site.test", "/", &[("x-version", "2")]).await),
        b
    );
    let both = [("x-version", "2"), ("x-canary", "yes")];
    assert_eq!(served(&get(&gw, "site.test", "/", &both).await), c);
    assert_eq!(served(&get(&gw, "site.test", "/?beta=1", &[]).await), c);
    assert_eq!(served(&get(&gw, "site.test", "/?beta=2", &[]).await), a);
    assert_eq!(served(&get(&gw, "site.test", "/exact", &[]).await), c);
    assert_eq!(served(&get(&gw, "site.test", "/exact/not", &[]).await), a);

    let r = get(&gw, "site.test", "/old/page?q=1", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.header("location"),
        "https://new.example.com:8443/new/page?q=1"
    );
    let r = get(&gw, "site.test", "/moved/x", &[]).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), "http://site.test/landing");

    let r = get(
        &gw,
        "site.test",
        "/headers",
        &[("x-drop", "1"), ("x-set", "client"), ("x-add", "client")],
    )
    .await;
    let seen = r.text();
    assert!(seen.contains("x-set: set"), "{seen}");
    assert!(!seen.contains("x-set: client"), "{seen}");
    assert!(
        seen.contains("x-add: client") && seen.contains("x-add: added"),
        "{seen}"
    );
    assert!(!seen.contains("x-drop"), "{seen}");
    assert_eq!(r.header("x-resp"), "from-route");
    assert_eq!(r.header("x-served-by"), "");

    let r = get(&gw, "site.test", "/prefix/deep/path?k=v", &[]).await;
    assert!(
        r.text().starts_with("GET /rewritten/deep/path?k=v"),
        "{}",
        r.text()
    );
    let r = get(&gw, "site.test", "/full/deep", &[]).await;
    assert!(r.text().starts_with("GET /one\n"), "{}", r.text());
    // The rewrite applies to WebSocket handshakes too: the socket reaches the backend.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (mut ws, _) = ws_handshake(stream, "site.test", "/prefix/ws", &[]).await;
    echo_roundtrip(&mut ws, Message::text("rewritten socket")).await;
    // Response header changes apply to the 101 of a handshake too.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (_ws, answer) = ws_handshake(stream, "site.test", "/headers/ws", &[]).await;
    assert_eq!(answer.headers()["x-resp"], "from-route");
}

#[tokio::test]
async fn weighted_backends_split_requests_and_new_sockets() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let stable = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let canary = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let never = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    service(&server, "apps", "stable", 80, "", stable);
    service(&server, "apps", "canary", 80, "", canary);
    service(&server, "apps", "never", 80, "", never);
    let rules = "    - backendRefs: [ { name: stable, port: 80, weight: 3 }, { name: canary, port: 80, weight: 1 }, { name: never, port: 80, weight: 0 } ]\n";
    server.apply(Res::HttpRoutes, &route("split", "[ split.test ]", rules));
    let gw = controller(&server).await;
    route_status_is(&server, "split", "Accepted", ("True", "Accepted")).await;
    eventually("the route serves", || async {
        get(&gw, "split.test", "/", &[]).await.status == StatusCode::OK
    })
    .await;
    let (stable, canary) = (stable.to_string(), canary.to_string());
    let mut counts = (0, 0);
    for _ in 0..200 {
        let by = get(&gw, "split.test", "/", &[])
            .await
            .header("x-served-by")
            .to_string();
        match by {
            s if s == stable => counts.0 += 1,
            s if s == canary => counts.1 += 1,
            other => panic!("served by {other}"),
        }
    }
    // 3:1 of 200 is 150:50; the split is exact within a few requests.
    assert!((140..=160).contains(&counts.0), "{counts:?}");
    let mut sockets = (0, 0);
    let mut open = Vec::new();
    for _ in 0..40 {
        let stream = TcpStream::connect(gw.http_addr).await.unwrap();
        let (ws, answer) = ws_handshake(stream, "split.test", "/ws", &[]).await;
        match answer.headers()["x-served-by"].to_str().unwrap() {
            s if s == stable => sockets.0 += 1,
            s if s == canary => sockets.1 += 1,
            other => panic!("socket on {other}"),
        }
        open.push(ws);
    }
    assert!((26..=34).contains(&sockets.0), "{sockets:?}");
}

#[tokio::test]
async fn references_across_namespaces_need_a_grant_and_bad_references_answer_500() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let shared = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    service(&server, "backends", "shared", 80, "", shared);
    let rules = r#"
    - matches: [ { path: { value: /cross } } ]
      backendRefs: [ { name: shared, namespace: backends, port: 80 } ]
    - matches: [ { path: { value: /kind } } ]
      backendRefs: [ { group: example.com, kind: Bucket, name: b } ]
    - matches: [ { path: { value: /missing } } ]
      backendRefs: [ { name: nowhere, port: 80 } ]
"#;
    server.apply(Res::HttpRoutes, &route("refs", "[ refs.test ]", rules));
    let gw = controller(&server).await;
    route_status_is(
        &server,
        "refs",
        "ResolvedRefs",
        ("False", "RefNotPermitted"),
    )
    .await;
    route_status_is(&server, "refs", "Accepted", ("True", "Accepted")).await;
    for path in ["/cross", "/kind", "/missing"] {
        let r = get(&gw, "refs.test", path, &[]).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    server.apply(
        Res::ReferenceGrants,
        "metadata: { name: apps-to-shared, namespace: backends }\nspec:\n  from: [ { group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps } ]\n  to: [ { group: \"\", kind: Service, name: shared } ]\n",
    );
    eventually("the grant opens the Service", || async {
        get(&gw, "refs.test", "/cross", &[]).await.status == StatusCode::OK
    })
    .await;
    // The next unresolved reference is reported now.
    route_status_is(&server, "refs", "ResolvedRefs", ("False", "InvalidKind")).await;

    // A listener whose Secret is in another namespace without a grant, and one on a port
    // wsgate does not listen on.
    server.apply(
        Res::Gateways,
        r#"
metadata: { name: odd, namespace: infra }
spec:
  gatewayClassName: wsgate
  listeners:
    - { name: cross-cert, port: 443, protocol: HTTPS, hostname: odd.test, tls: { certificateRefs: [ { name: example-tls, namespace: elsewhere } ] } }
    - { name: missing-cert, port: 443, protocol: HTTPS, hostname: odd2.test, tls: { certificateRefs: [ { name: nope } ] } }
    - { name: high, port: 8080, protocol: HTTP }
"#,
    );
    eventually("the odd listeners report why", || async {
        let Some(g) = server.get(Res::Gateways, "infra", "odd") else {
            return false;
        };
        let l = g["status"]["listeners"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let reason = |i: usize, t: &str| cond(&l[i]["conditions"], t).map(|c| c.1);
        l.len() == 3
            && reason(0, "ResolvedRefs").as_deref() == Some("RefNotPermitted")
            && reason(1, "ResolvedRefs").as_deref() == Some("InvalidCertificateRef")
            && reason(2, "Accepted").as_deref() == Some("PortUnavailable")
            && reason(2, "Programmed").as_deref() == Some("Invalid")
    })
    .await;
}

#[tokio::test]
async fn a_bad_edit_is_reported_and_the_last_good_version_keeps_serving() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let web = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    service(&server, "apps", "web", 80, "", web);
    let good = "    - backendRefs: [ { name: web, port: 80 } ]\n";
    server.apply(Res::HttpRoutes, &route("web", "[ web.test ]", good));
    let gw = controller(&server).await;
    eventually("the route serves", || async {
        get(&gw, "web.test", "/", &[]).await.status == StatusCode::OK
    })
    .await;
    let bad = "    - filters: [ { type: RequestMirror, requestMirror: { backendRef: { name: web, port: 80 } } } ]\n      backendRefs: [ { name: web, port: 80 } ]\n";
    server.apply(Res::HttpRoutes, &route("web", "[ web.test ]", bad));
    route_status_is(&server, "web", "Accepted", ("False", "UnsupportedValue")).await;
    assert_eq!(get(&gw, "web.test", "/", &[]).await.status, StatusCode::OK);
    // An object this build cannot decode (a port that is no number) is left out on its own:
    // everything else keeps serving, and a later good route is served.
    server.apply(
        Res::HttpRoutes,
        &route(
            "odd",
            "[ odd.test ]",
            "    - backendRefs: [ { name: web, port: eighty } ]\n",
        ),
    );
    server.apply(Res::HttpRoutes, &route("later", "[ later.test ]", good));
    eventually("the later route serves", || async {
        get(&gw, "later.test", "/", &[]).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(get(&gw, "web.test", "/", &[]).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw, "odd.test", "/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // Hostnames no listener takes: not accepted, and nothing is served for them.
    let other = "metadata: { name: elsewhere, namespace: apps }\nspec:\n  parentRefs: [ { name: gw, namespace: infra, sectionName: https } ]\n  hostnames: [ web.example.org ]\n  rules: [ { backendRefs: [ { name: web, port: 80 } ] } ]\n";
    server.apply(Res::HttpRoutes, other);
    route_status_is(
        &server,
        "elsewhere",
        "Accepted",
        ("False", "NoMatchingListenerHostname"),
    )
    .await;
    assert_eq!(
        get(&gw, "web.example.org", "/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_websocket_policy_sets_origins_and_limits_on_the_routes_sockets() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    let chat = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    service(&server, "apps", "chat", 80, "", chat);
    let rules = "    - name: live\n      matches: [ { path: { value: /live } } ]\n      backendRefs: [ { name: chat, port: 80 } ]\n    - backendRefs: [ { name: chat, port: 80 } ]\n";
    server.apply(Res::HttpRoutes, &route("chat", "[ chat.test ]", rules));
    server.apply(
        Res::Policies,
        "metadata: { name: live-sockets, namespace: apps }\nspec:\n  targetRefs: [ { group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: live } ]\n  allowedOrigins: [ \"https://chat.test\" ]\n  limits: { maxConnectionsPerClient: 2 }\n",
    );
    let gw = controller(&server).await;
    eventually("the policy is accepted on the Gateway", || async {
        server
            .get(Res::Policies, "apps", "live-sockets")
            .is_some_and(|p| {
                let a = &p["status"]["ancestors"][0];
                a["ancestorRef"]["name"] == "gw"
                    && a["controllerName"] == "wsgate.dev/gateway-controller"
                    && cond(&a["conditions"], "Accepted").is_some_and(|c| c.0 == "True")
            })
    })
    .await;
    let upgrade = |origin: &'static str, path: &'static str| {
        let addr = gw.http_addr;
        async move {
            let head = format!(
                "GET {path} HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
            );
            raw_head(addr, head.as_bytes()).await
        }
    };
    eventually("the policy is in the table", || async {
        upgrade("https://evil.test", "/live")
            .await
            .starts_with("HTTP/1.1 403")
    })
    .await;
    // The rule the policy names enforces it; the other rule of the route does not.
    assert!(
        upgrade("https://evil.test", "/other")
            .await
            .starts_with("HTTP/1.1 101")
    );
    let origin = [("origin", "https://chat.test")];
    let mut open = Vec::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(gw.http_addr).await.unwrap();
        open.push(ws_handshake(stream, "chat.test", "/live", &origin).await.0);
    }
    let third = upgrade("https://chat.test", "/live").await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    echo_roundtrip(&mut open[0], Message::text("still fine")).await;
}

#[tokio::test]
async fn a_backend_tls_policy_verifies_the_backend_and_fails_closed() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    base(&server, &ca);
    // The pod speaks TLS with a certificate for secure.internal from its own CA.
    let backend_ca = TestCa::new();
    let pod = pod_at(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let front = tls_front(pod, &backend_ca.leaf(&["secure.internal"])).await;
    service(&server, "apps", "secure", 8443, "", front);
    let ca_map = |name: &str, pem: &str| {
        let pem = pem.replace('\n', "\\n");
        format!("metadata: {{ name: {name}, namespace: apps }}\ndata: {{ ca.crt: \"{pem}\" }}\n")
    };
    server.apply(Res::ConfigMaps, &ca_map("backend-ca", &backend_ca.pem()));
    server.apply(Res::ConfigMaps, &ca_map("other-ca", &TestCa::new().pem()));
    let policy = |ca: &str, hostname: &str| {
        format!(
            "metadata: {{ name: secure-tls, namespace: apps }}\nspec:\n  targetRefs: [ {{ group: \"\", kind: Service, name: secure, sectionName: p }} ]\n  validation: {{ caCertificateRefs: [ {{ group: \"\", kind: ConfigMap, name: {ca} }} ], hostname: {hostname} }}\n"
        )
    };
    server.apply(
        Res::BackendTlsPolicies,
        &policy("backend-ca", "secure.internal"),
    );
    let rules = "    - backendRefs: [ { name: secure, port: 8443 } ]\n";
    server.apply(Res::HttpRoutes, &route("secure", "[ secure.test ]", rules));
    let gw = controller(&server).await;
    eventually("requests reach the pod over verified TLS", || async {
        let r = get(&gw, "secure.test", "/", &[]).await;
        r.status == StatusCode::OK && r.header("x-served-by") == pod.to_string()
    })
    .await;
    // So do WebSockets.
    let stream = TcpStream::connect(gw.http_addr).await.unwrap();
    let (mut ws, _) = ws_handshake(stream, "secure.test", "/ws", &[]).await;
    echo_roundtrip(&mut ws, Message::text("through verified TLS")).await;
    eventually("the policy is accepted at the Gateway", || async {
        server
            .get(Res::BackendTlsPolicies, "apps", "secure-tls")
            .is_some_and(|p| {
                let a = &p["status"]["ancestors"][0];
                a["ancestorRef"]["name"] == "gw"
                    && cond(&a["conditions"], "Accepted").is_some_and(|c| c.0 == "True")
            })
    })
    .await;
    // A CA that did not sign the backend's certificate: the connection is refused (502).
    server.apply(
        Res::BackendTlsPolicies,
        &policy("other-ca", "secure.internal"),
    );
    eventually("an unverifiable backend gets 502", || async {
        get(&gw, "secure.test", "/", &[]).await.status == StatusCode::BAD_GATEWAY
    })
    .await;
    // A CA ConfigMap that does not exist: 500, never a fallback to plaintext.
    server.apply(
        Res::BackendTlsPolicies,
        &policy("missing-ca", "secure.internal"),
    );
    eventually("a policy without its CA fails closed", || async {
        get(&gw, "secure.test", "/", &[]).await.status == StatusCode::INTERNAL_SERVER_ERROR
    })
    .await;
    eventually("the policy says why", || async {
        server
            .get(Res::BackendTlsPolicies, "apps", "secure-tls")
            .is_some_and(|p| {
                let c = &p["status"]["ancestors"][0]["conditions"];
                cond(c, "ResolvedRefs").is_some_and(|c| c.1 == "InvalidCACertificateRef")
            })
    })
    .await;
}
