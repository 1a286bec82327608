//! `wsgate controller` against the in-repo test API server (`tests/support/apiserver.rs`):
//! routes, Secrets, Services and EndpointSlices flow into the live table; status, events,
//! leader election, outages and 410 re-lists.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wsgate::gateway::{Gateway, Routes};
use wsgate::source::kube::KubeOptions;
use wsgate_test_support::apiserver::{ApiServer, Res};
use wsgate_test_support::*;

async fn controller(server: &ApiServer, identity: &str) -> Gateway {
    controller_with(server, identity, |_| {}).await
}

fn service(name: &str, port: u16) -> String {
    format!(
        "metadata: {{ name: {name}, namespace: apps }}\nspec:\n  ports: [ {{ name: http, port: {port}, targetPort: http }} ]\n"
    )
}

fn slice(name: &str, service: &str, pods: &[&str], port: u16) -> String {
    let endpoints: Vec<String> = pods
        .iter()
        .map(|ip| format!("  - addresses: [\"{ip}\"]\n    conditions: {{ ready: true }}\n"))
        .collect();
    format!(
        "metadata: {{ name: {name}, namespace: apps, labels: {{ kubernetes.io/service-name: {service} }} }}\naddressType: IPv4\nports: [ {{ name: http, port: {port} }} ]\nendpoints:\n{}",
        endpoints.concat()
    )
}

fn route(name: &str, host: &str, backend: &str) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: {name}, namespace: apps }}\nspec:\n  ingressClassName: wsgate\n  hostnames: [{host}]\n  rules:\n    - http: {{ backend: {backend} }}\n      websocket: {{ backend: {backend} }}\n"
    )
}

/// A Service `name` (port `port`, named http) and its EndpointSlice `name-1` with `pods` ready
/// on `pod_port`.
fn service_with_pods(server: &ApiServer, name: &str, port: u16, pods: &[&str], pod_port: u16) {
    server.apply(Res::Services, &service(name, port));
    server.apply(
        Res::Slices,
        &slice(&format!("{name}-1"), name, pods, pod_port),
    );
}

/// Two echo backends on the same port of 127.0.0.1 and 127.0.0.2: two "pods" of a Service.
async fn two_pods() -> (HttpBackend, HttpBackend, u16) {
    let (mut pods, port) = http_pods(2).await;
    let b = pods.remove(1);
    (pods.remove(0), b, port)
}

/// A port free on 127.0.0.1 ..= 127.0.0.`n`, so `n` "pods" can share it.
fn shared_port(n: u8) -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let rest: Vec<_> = (2..=n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.".to_string() + &i.to_string(), port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return port;
        }
    }
}

fn pod_ip(i: u8) -> String {
    format!("127.0.0.{i}")
}

/// `n` HTTP echo pods on 127.0.0.1 ..= 127.0.0.`n`, one port.
async fn http_pods(n: u8) -> (Vec<HttpBackend>, u16) {
    let port = shared_port(n);
    let mut pods = Vec::new();
    for i in 1..=n {
        pods.push(http_backend_at(SocketAddr::new(pod_ip(i).parse().unwrap(), port)).await);
    }
    (pods, port)
}

async fn served_by(gw: &Gateway, host: &'static str) -> (StatusCode, String) {
    let r = http(gw.http_addr, request("GET", host, "/")).await;
    (r.status, r.header("x-served-by").to_string())
}

fn conditions(server: &ApiServer, name: &str) -> Vec<(String, String, String)> {
    let Some(obj) = server.get(Res::Routes, "apps", name) else {
        return vec![];
    };
    obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                    (s("type"), s("status"), s("reason"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until route `name` has condition `type_` with `status` and `reason`.
async fn wait_condition(server: &ApiServer, name: &str, type_: &str, status: &str, reason: &str) {
    let what = format!("{name}: {type_}={status} ({reason})");
    eventually(&what, || async {
        has(&conditions(server, name), type_, status, reason)
    })
    .await;
}

fn has(conds: &[(String, String, String)], t: &str, status: &str, reason: &str) -> bool {
    conds
        .iter()
        .any(|(a, b, c)| a == t && b == status && c == reason)
}

#[tokio::test]
async fn routes_services_and_endpoints_flow_into_the_table_with_status() {
    let server = ApiServer::start().await;
    let (pod1, pod2, port) = two_pods().await;
    let other = http_backend().await;
    server.apply(Res::Services, &service("web", 80));
    server.apply(Res::Slices, &slice("web-1", "web", &["127.0.0.1"], port));
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    let gw = controller(&server, "solo").await;

    // Served right after start (the first full sync happened before readiness).
    assert_eq!(
        served_by(&gw, "web.test").await,
        (StatusCode::OK, pod1.addr.to_string())
    );
    eventually("status Programmed", || async {
        let c = conditions(&server, "web");
        has(&c, "Accepted", "True", "Accepted")
            && has(&c, "ResolvedRefs", "True", "ResolvedRefs")
            && has(&c, "Programmed", "True", "Programmed")
    })
    .await;
    assert_eq!(
        server.get(Res::Routes, "apps", "web").unwrap()["status"]["observedGeneration"],
        1
    );

    // Scale out: traffic spreads over both pods.
    server.apply(
        Res::Slices,
        &slice("web-1", "web", &["127.0.0.1", "127.0.0.2"], port),
    );
    eventually("both pods serve", || async {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            seen.insert(served_by(&gw, "web.test").await.1);
        }
        seen == BTreeSet::from([pod1.addr.to_string(), pod2.addr.to_string()])
    })
    .await;

    // Edit the spec: a new backend Service, observedGeneration follows.
    service_with_pods(&server, "other", 8080, &["127.0.0.1"], other.addr.port());
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: other, port: 8080 }"),
    );
    eventually("the new backend serves", || async {
        served_by(&gw, "web.test").await.1 == other.addr.to_string()
    })
    .await;
    eventually("observedGeneration 2", || async {
        server.get(Res::Routes, "apps", "web").unwrap()["status"]["observedGeneration"] == 2
    })
    .await;

    // Problems become conditions (and Warning events); the route keeps or loses service.
    server.apply(
        Res::Routes,
        &route("missing", "missing.test", "{ service: nope, port: 80 }"),
    );
    server.apply(
        Res::Routes,
        &route("direct", "direct.test", "{ address: \"127.0.0.1:1\" }"),
    );
    server.apply(Res::Services, &service("empty", 80));
    server.apply(
        Res::Routes,
        &route("empty", "empty.test", "{ service: empty, port: 80 }"),
    );
    let mut foreign = route("foreign", "foreign.test", "{ service: web, port: 80 }");
    foreign = foreign.replace("ingressClassName: wsgate", "ingressClassName: nginx");
    server.apply(Res::Routes, &foreign);
    eventually("problem conditions", || async {
        has(
            &conditions(&server, "missing"),
            "ResolvedRefs",
            "False",
            "ServiceNotFound",
        ) && has(
            &conditions(&server, "direct"),
            "Accepted",
            "False",
            "AddressBackendNotAllowed",
        ) && has(
            &conditions(&server, "direct"),
            "Programmed",
            "False",
            "AddressBackendNotAllowed",
        ) && has(
            &conditions(&server, "empty"),
            "ResolvedRefs",
            "False",
            "NoReadyEndpoints",
        )
    })
    .await;
    assert_eq!(
        served_by(&gw, "missing.test").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        served_by(&gw, "empty.test").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(served_by(&gw, "direct.test").await.0, StatusCode::NOT_FOUND);
    // Another class's route is neither served nor touched.
    assert_eq!(
        served_by(&gw, "foreign.test").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        server
            .get(Res::Routes, "apps", "foreign")
            .unwrap()
            .get("status")
            .is_none()
    );
    assert!(server.count("POST", "/apis/events.k8s.io/v1/namespaces/apps/events") >= 3);

    // Deleted → 404.
    server.delete(Res::Routes, "apps", "web");
    eventually("deleted route is gone", || async {
        served_by(&gw, "web.test").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let metrics = scrape(gw.admin_addr).await;
    assert_eq!(metrics.get("wsgate_leader"), Some(&1.0));
    assert!(
        metrics
            .get("wsgate_kube_watch_events_total{kind=\"WebSocketRoute\"}")
            .copied()
            .unwrap_or(0.0)
            >= 6.0
    );
}

#[tokio::test]
async fn secret_rotation_serves_the_new_certificate_and_keeps_open_websockets() {
    let server = ApiServer::start().await;
    let ca = TestCa::new();
    let ws = ws_backend().await;
    let first = ca.leaf(&["chat.test"]);
    let second = ca.leaf(&["chat.test"]);
    let secret = |leaf: &Leaf| {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "metadata: {{ name: chat-tls, namespace: apps }}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&leaf.cert_pem),
            b64(&leaf.key_pem)
        )
    };
    server.apply(Res::Secrets, &secret(&first));
    // An unrelated Opaque Secret is never listed by the controller.
    server.apply(
        Res::Secrets,
        "metadata: { name: password, namespace: apps }\ntype: Opaque\ndata: { p: aHVudGVyMg== }\n",
    );
    service_with_pods(&server, "chat", 5000, &["127.0.0.1"], ws.addr.port());
    let chat = route("chat", "chat.test", "{ service: chat, port: 5000 }")
        .replace("  rules:", "  tls: { secretName: chat-tls }\n  rules:");
    server.apply(Res::Routes, &chat);
    let gw = controller(&server, "solo").await;

    let cert_of = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().map(|c| c[0].clone())
    };
    let stream = tls(gw.https_addr, "chat.test", ca.client_config()).await;
    assert_eq!(cert_of(&stream), Some(first.der.clone()));
    let mut open = ws_over(stream, "chat.test", "/", &[]).await;
    echo_roundtrip(&mut open, Message::text("before rotation")).await;

    server.apply(Res::Secrets, &secret(&second));
    eventually("new handshakes get the new certificate", || async {
        cert_of(&tls(gw.https_addr, "chat.test", ca.client_config()).await)
            == Some(second.der.clone())
    })
    .await;
    echo_roundtrip(&mut open, Message::text("after rotation")).await;
    // Secrets are only listed by type: TLS ones, and wsgate's own JWKS type.
    let by_type = |t: &str| {
        server.count(
            "GET",
            &format!("fieldSelector=type%3D{}", t.replace('/', "%2F")),
        ) + server.count("GET", &format!("fieldSelector=type={t}"))
    };
    assert_eq!(
        by_type("kubernetes.io/tls") + by_type("wsgate.dev/jwks"),
        server.count("GET", "/api/v1/secrets")
    );
}

#[tokio::test]
async fn readiness_waits_for_the_first_sync() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], web.addr.port());
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    server.stop();
    let admin = dead_address().await;
    let dir = RoutesDir::new();
    let mut opts = options(dir.path());
    opts.admin_listen = admin;
    opts.routes = Routes::Kube(Box::new(kube_options(&server, "solo")));
    let starting = tokio::spawn(Gateway::start(opts));
    eventually("admin answers while the API server is down", || async {
        match tokio::net::TcpStream::connect(admin).await {
            Ok(io) => {
                send(io, request("GET", "admin", "/readyz")).await.status
                    == StatusCode::SERVICE_UNAVAILABLE
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(!starting.is_finished());
    server.restart().await;
    let gw = within("start after the API server is back", starting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        http(admin, request("GET", "admin", "/readyz")).await.status,
        StatusCode::OK
    );
    assert_eq!(served_by(&gw, "web.test").await.0, StatusCode::OK);
}

#[tokio::test]
async fn fails_static_through_an_api_outage_and_a_410_relist() {
    let server = ApiServer::start().await;
    let a = http_backend().await;
    let b = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], a.addr.port());
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    let gw = controller(&server, "solo").await;
    assert_eq!(served_by(&gw, "web.test").await.1, a.addr.to_string());

    // 30 s without an API server: the table keeps serving the whole time.
    server.stop();
    let outage = tokio::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            served_by(&gw, "web.test").await,
            (StatusCode::OK, a.addr.to_string())
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Changes made while it was away arrive once it is back.
    server.apply(
        Res::Slices,
        &slice("web-1", "web", &["127.0.0.1"], b.addr.port()),
    );
    server.restart().await;
    within_long("resync after the outage", async {
        while served_by(&gw, "web.test").await.1 != b.addr.to_string() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // History compacted: resumed watches get 410 Gone, re-list, and pick up the change.
    let lists_before = server.count_where("GET", |p| {
        p.contains("/endpointslices") && !p.contains("watch=true")
    });
    server.compact();
    server.apply(
        Res::Slices,
        &slice("web-1", "web", &["127.0.0.1"], a.addr.port()),
    );
    eventually("re-listed after 410", || async {
        served_by(&gw, "web.test").await.1 == a.addr.to_string()
    })
    .await;
    let lists_after = server.count_where("GET", |p| {
        p.contains("/endpointslices") && !p.contains("watch=true")
    });
    let log: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(_, p)| p.contains("endpointslices"))
        .collect();
    assert!(
        lists_after > lists_before,
        "no re-list after 410 ({lists_before} → {lists_after}): {log:#?}"
    );
}

/// Like `within`, for the watch backoff after an outage (kube-runtime backs off up to 30 s).
async fn within_long<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(90), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Ingress `apps/site` of class `class`, all of it to Service `web`.
fn site_ingress(server: &ApiServer, class: &str) {
    server.apply(
        Res::Ingresses,
        &format!(
            "metadata: {{ name: site, namespace: apps }}\nspec:\n  ingressClassName: {class}\n  defaultBackend: {{ service: {{ name: web, port: {{ number: 80 }} }} }}\n"
        ),
    );
}

#[tokio::test]
async fn two_controllers_serve_but_only_the_leader_writes_status() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    let other = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], web.addr.port());
    service_with_pods(&server, "other", 80, &["127.0.0.1"], other.addr.port());
    // A lease far longer than any wait here: a takeover in time proves the lease was
    // released, not left to expire.
    // Each replica would publish its own address in Ingress status: whose address the
    // status shows says who wrote it.
    let replica = |address: &'static str| {
        move |k: &mut KubeOptions| {
            k.lease.duration = Duration::from_secs(120);
            k.publish_status_address = vec![address.into()];
        }
    };
    server.apply(
        Res::IngressClasses,
        "metadata: { name: wsgate }\nspec: { controller: wsgate.dev/ingress-controller }\n",
    );
    site_ingress(&server, "wsgate");
    let a = controller_with(&server, "replica-a", replica("192.0.2.1")).await;
    let b = controller_with(&server, "replica-b", replica("192.0.2.2")).await;
    let published = || {
        server.get(Res::Ingresses, "apps", "site").unwrap()["status"]["loadBalancer"]["ingress"][0]
            ["ip"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let address_of = |holder: &str| match holder {
        "replica-a" => "192.0.2.1",
        _ => "192.0.2.2",
    };
    let leaders = || async {
        let mut n = 0.0;
        for gw in [&a, &b] {
            n += scrape(gw.admin_addr)
                .await
                .get("wsgate_leader")
                .copied()
                .unwrap_or(0.0);
        }
        n
    };
    eventually("one leader", || async { leaders().await == 1.0 }).await;

    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    eventually("both replicas serve it, status written", || async {
        served_by(&a, "web.test").await.1 == web.addr.to_string()
            && served_by(&b, "web.test").await.1 == web.addr.to_string()
            && has(
                &conditions(&server, "web"),
                "Programmed",
                "True",
                "Programmed",
            )
    })
    .await;
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: other, port: 80 }"),
    );
    eventually("both replicas moved, status for generation 2", || async {
        served_by(&a, "web.test").await.1 == other.addr.to_string()
            && served_by(&b, "web.test").await.1 == other.addr.to_string()
            && server.get(Res::Routes, "apps", "web").unwrap()["status"]["observedGeneration"] == 2
    })
    .await;
    // Both replicas saw both generations; only one wrote, once per generation.
    let status_writes = || server.count("PATCH", "/namespaces/apps/websocketroutes/web/status");
    assert_eq!(status_writes(), 2);
    assert_eq!(leaders().await, 1.0);
    let lease: Value = server.get(Res::Leases, "default", "wsgate-leader").unwrap();
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    // Both replicas rebuilt twice since the Ingress appeared; only the leader wrote its status.
    assert_eq!(published(), address_of(&holder));

    // The leader shuts down and releases its lease; the other takes over at its next check
    // and writes status.
    let (gone, stays) = if holder == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    let _ = gone.shutdown().await;
    let lease = server.get(Res::Leases, "default", "wsgate-leader").unwrap();
    assert!(
        lease["spec"]["holderIdentity"].as_str() != Some(holder.as_str()),
        "the lease is still held by {holder} after its shutdown: {lease}"
    );
    eventually("the other replica leads", || async {
        scrape(stays.admin_addr).await.get("wsgate_leader") == Some(&1.0)
    })
    .await;
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    eventually("status for generation 3", || async {
        server.get(Res::Routes, "apps", "web").unwrap()["status"]["observedGeneration"] == 3
    })
    .await;
    assert_eq!(status_writes(), 3);
    let new_holder = if holder == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    eventually("the new leader publishes its address", || async {
        published() == address_of(new_holder)
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_leaving_its_slice_does_not_cut_its_websockets() {
    let server = ApiServer::start().await;
    let ws = ws_backend().await;
    service_with_pods(&server, "chat", 5000, &["127.0.0.1"], ws.addr.port());
    server.apply(
        Res::Routes,
        &route("chat", "chat.test", "{ service: chat, port: 5000 }"),
    );
    let gw = controller(&server, "solo").await;
    let mut open = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "chat.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut open, Message::text("before")).await;

    // The pod leaves the slice (scale-down, rollout): new upgrades have nowhere to go...
    server.apply(Res::Slices, &slice("chat-1", "chat", &[], ws.addr.port()));
    eventually("no endpoint left for new connections", || async {
        served_by(&gw, "chat.test").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // ...but the WebSocket already relayed to it keeps working.
    echo_roundtrip(&mut open, Message::text("after the endpoint left")).await;
}

/// (apiGroup, resource[/subresource], verb) of one API request.
fn rbac_triple(method: &str, path_and_query: &str) -> Option<(String, String, String)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub] => (format!("{plural}/{sub}"), true),
        _ => return None,
    };
    let verb = match (method, named) {
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

#[tokio::test]
async fn install_manifest_rbac_covers_exactly_the_api_calls_the_controller_makes() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    let gw = controller_with(&server, "solo", |k| {
        k.publish_service = Some(("apps".into(), "front".into()));
    })
    .await;
    // A served Ingress gets the published Service's address in its status.
    server.apply(
        Res::Services,
        "metadata: { name: front, namespace: apps }\nspec:\n  clusterIP: 10.96.0.10\n  ports: [ { name: http, port: 80 } ]\n",
    );
    server.apply(
        Res::IngressClasses,
        "metadata: { name: wsgate }\nspec: { controller: wsgate.dev/ingress-controller }\n",
    );
    site_ingress(&server, "wsgate");
    eventually("the Ingress's status carries the address", || async {
        server.get(Res::Ingresses, "apps", "site").unwrap()["status"]["loadBalancer"]["ingress"][0]
            ["ip"]
            == "10.96.0.10"
    })
    .await;
    // Handed to another controller: the address wsgate published is withdrawn.
    site_ingress(&server, "other");
    eventually(
        "the Ingress's status no longer points at wsgate",
        || async {
            server.get(Res::Ingresses, "apps", "site").unwrap()["status"]["loadBalancer"]["ingress"]
                .is_null()
        },
    )
    .await;
    // A route whose Service is missing (Warning event), then present, then missing again (the
    // same event again: the recorder patches its series).
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    wait_condition(&server, "web", "ResolvedRefs", "False", "ServiceNotFound").await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], web.addr.port());
    wait_condition(&server, "web", "ResolvedRefs", "True", "ResolvedRefs").await;
    server.delete(Res::Services, "apps", "web");
    wait_condition(&server, "web", "ResolvedRefs", "False", "ServiceNotFound").await;
    // The Gateway API: a class, a Gateway, a route and a policy, each given its status.
    server.apply(
        Res::GatewayClasses,
        "metadata: { name: wsgate }\nspec: { controllerName: wsgate.dev/gateway-controller }\n",
    );
    server.apply(
        Res::Gateways,
        "metadata: { name: gw, namespace: apps }\nspec:\n  gatewayClassName: wsgate\n  listeners: [ { name: http, port: 80, protocol: HTTP } ]\n",
    );
    server.apply(
        Res::HttpRoutes,
        "metadata: { name: gwr, namespace: apps }\nspec:\n  parentRefs: [ { name: gw } ]\n  hostnames: [ gwr.test ]\n  rules: [ { backendRefs: [ { name: web, port: 80 } ] }, { matches: [ { path: { value: /front } } ], backendRefs: [ { name: front, port: 80 } ] } ]\n",
    );
    server.apply(
        Res::Policies,
        "metadata: { name: sockets, namespace: apps }\nspec:\n  targetRefs: [ { group: gateway.networking.k8s.io, kind: HTTPRoute, name: gwr } ]\n  idleTimeout: 1h\n",
    );
    server.apply(
        Res::BackendTlsPolicies,
        "metadata: { name: web-tls, namespace: apps }\nspec:\n  targetRefs: [ { group: \"\", kind: Service, name: front } ]\n  validation: { caCertificateRefs: [ { group: \"\", kind: ConfigMap, name: web-ca } ], hostname: web.internal }\n",
    );
    eventually("every Gateway API object has a status", || async {
        let has = |res, ns, name| {
            server
                .get(res, ns, name)
                .is_some_and(|o: serde_json::Value| !o["status"].is_null())
        };
        has(Res::GatewayClasses, "", "wsgate")
            && has(Res::Gateways, "apps", "gw")
            && has(Res::HttpRoutes, "apps", "gwr")
            && has(Res::BackendTlsPolicies, "apps", "web-tls")
            && server
                .get(Res::Policies, "apps", "sockets")
                .is_some_and(|p| {
                    p["status"]["ancestors"][0]["conditions"][0]["reason"] == "Accepted"
                })
    })
    .await;
    eventually("the event was patched and the lease renewed", || async {
        server.count("PATCH", "/apis/events.k8s.io/v1/namespaces/apps/events/") >= 1
            && server.count("PUT", "/leases/wsgate-leader") >= 1
    })
    .await;
    drop(gw);

    let used: BTreeSet<(String, String, String)> = server
        .requests()
        .iter()
        .filter_map(|(m, p)| rbac_triple(m, p))
        .collect();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/install.yaml"
    ))
    .unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&manifest) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if !matches!(v["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        for rule in v["rules"].as_sequence().unwrap() {
            let list = |k: &str| {
                rule[k]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for verb in list("verbs") {
                        granted.insert((g.clone(), r.clone(), verb));
                    }
                }
            }
        }
    }
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "the controller makes calls the manifest does not allow: {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "the manifest grants more than the controller uses: {unused:?}"
    );
}

/// A route `name` on `host` whose http and websocket targets both name Service `svc` port 80,
/// with `lb` as each target's extra fields.
fn balanced_route(name: &str, host: &str, http_lb: &str, ws_lb: &str) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: {name}, namespace: apps }}\nspec:\n  ingressClassName: wsgate\n  hostnames: [{host}]\n  rules:\n    - http: {{ backend: {{ service: {name}, port: 80 }}{http_lb} }}\n      websocket: {{ backend: {{ service: {name}, port: 80 }}{ws_lb} }}\n"
    )
}

async fn post_served_by(gw: &Gateway, host: &str) -> (StatusCode, String) {
    let r = http(gw.http_addr, request("POST", host, "/")).await;
    (r.status, r.header("x-served-by").to_string())
}

#[tokio::test]
async fn round_robin_retries_idempotent_requests_and_ejects_a_dead_pod() {
    let server = ApiServer::start().await;
    // Three pods in the slice; nothing listens on the third.
    let (pods, port) = http_pods(2).await;
    let ips = [pod_ip(1), pod_ip(2), pod_ip(3)];
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    service_with_pods(&server, "web", 80, &ips, port);
    server.apply(Res::Routes, &balanced_route("web", "web.test", "", ""));
    let gw = controller(&server, "solo").await;
    let live: BTreeSet<String> = pods.iter().map(|p| p.addr.to_string()).collect();

    // Upgrades that meet the dead pod are retried on another (these pods are plain HTTP and
    // answer 200 instead of 101, which wsgate passes on).
    for _ in 0..3 {
        let mut req = request("GET", "web.test", "/ws");
        for (k, v) in [
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        let r = http(gw.http_addr, req).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(live.contains(r.header("x-served-by")));
    }
    // A POST is not idempotent: the one that meets the dead pod gets 502, not a retry.
    let mut posts = Vec::new();
    for _ in 0..3 {
        posts.push(post_served_by(&gw, "web.test").await.0);
    }
    posts.sort();
    assert_eq!(
        posts,
        [StatusCode::OK, StatusCode::OK, StatusCode::BAD_GATEWAY]
    );
    // GETs that meet it are retried once on another pod: all succeed, on live pods only.
    for _ in 0..9 {
        let (status, by) = served_by(&gw, "web.test").await;
        assert_eq!(status, StatusCode::OK);
        assert!(live.contains(&by), "{by}");
    }
    let m = scrape(gw.admin_addr).await;
    assert!(m["wsgate_backend_retries_total{route=\"apps/web\"}"] >= 2.0);
    assert!(m["wsgate_backend_connect_errors_total{route=\"apps/web\"}"] >= 3.0);
    // Three consecutive connect failures ejected it: now POSTs only meet live pods.
    assert_eq!(m["wsgate_backend_ejections_total"], 1.0);
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let (status, by) = post_served_by(&gw, "web.test").await;
        assert_eq!(status, StatusCode::OK);
        seen.insert(by);
    }
    assert_eq!(seen, live, "round robin over the live pods");
}

#[tokio::test]
async fn least_connections_sends_new_websockets_to_the_emptiest_pod() {
    let server = ApiServer::start().await;
    let port = shared_port(2);
    let mut pods = Vec::new();
    for i in 1..=2 {
        pods.push(ws_backend_at(SocketAddr::new(pod_ip(i).parse().unwrap(), port)).await);
    }
    service_with_pods(&server, "chat", 80, &[&pod_ip(1), &pod_ip(2)], port);
    // No loadBalancing: LeastConnections is the websocket default.
    server.apply(Res::Routes, &balanced_route("chat", "chat.test", "", ""));
    let gw = controller(&server, "solo").await;
    let open = |gw: &Gateway| {
        let addr = gw.http_addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            ws_over(tcp, "chat.test", "/", &[]).await
        }
    };
    let handshakes = |i: usize| pods[i].handshakes.lock().unwrap().len();
    // Four sockets spread two and two.
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open(&gw).await);
    }
    assert_eq!((handshakes(0), handshakes(1)), (2, 2));
    // Pod 1's two sockets end (sockets 0 and 2 went there: ties alternate).
    let mut on_pod1 = vec![sockets.remove(2), sockets.remove(0)];
    for ws in &mut on_pod1 {
        within("close", ws.close(None)).await.unwrap();
    }
    drop(on_pod1);
    eventually("wsgate saw both relays end", || async {
        let m = scrape(gw.admin_addr).await;
        m.get("wsgate_websocket_connections_active{route=\"apps/chat\"}") == Some(&2.0)
    })
    .await;
    // The next two both go to the emptier pod (round robin would split them).
    for _ in 0..2 {
        sockets.push(open(&gw).await);
    }
    assert_eq!((handshakes(0), handshakes(1)), (4, 2));
    for ws in &mut sockets {
        echo_roundtrip(ws, Message::text("still fine")).await;
    }
}

/// The pod serving each user (by the `x-user` header).
async fn pods_of(gw: &Gateway, users: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for user in users {
        let mut req = request("GET", "api.test", "/");
        req.headers_mut().insert("x-user", user.parse().unwrap());
        out.push(
            http(gw.http_addr, req)
                .await
                .header("x-served-by")
                .to_string(),
        );
    }
    out
}

/// Waits until [`pods_of`] satisfies `done` (a table update has no other signal).
async fn pods_once(gw: &Gateway, users: &[String], what: &str, done: impl Fn(&[String]) -> bool) {
    let start = tokio::time::Instant::now();
    loop {
        if done(&pods_of(gw, users).await) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn consistent_hash_keeps_keys_on_their_pod_and_moves_few_when_pods_change() {
    let server = ApiServer::start().await;
    let (pods, port) = http_pods(5).await;
    let four: Vec<String> = (1..=4).map(pod_ip).collect();
    let four: Vec<&str> = four.iter().map(String::as_str).collect();
    service_with_pods(&server, "api", 80, &four, port);
    let hashed = ", loadBalancing: { policy: ConsistentHash, hashOn: { header: x-user } }";
    server.apply(Res::Routes, &balanced_route("api", "api.test", hashed, ""));
    let gw = controller(&server, "solo").await;
    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let before = pods_of(&gw, &users).await;
    // Stable: asked again, every key lands where it did, and all four pods are used.
    assert_eq!(pods_of(&gw, &users).await, before);
    assert_eq!(before.iter().collect::<BTreeSet<_>>().len(), 4);

    // A fifth pod joins: only keys that move to it move, about 1/5 of them.
    let five: Vec<String> = (1..=5).map(pod_ip).collect();
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    server.apply(Res::Slices, &slice("api-1", "api", &five, port));
    let newcomer = pods[4].addr.to_string();
    pods_once(&gw, &users, "the fifth pod takes some keys", |a| {
        a.contains(&newcomer)
    })
    .await;
    // Asked again once the new table is surely in (the pass above may straddle the swap).
    let after = pods_of(&gw, &users).await;
    let moved: Vec<usize> = (0..users.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        moved.iter().all(|&i| after[i] == newcomer),
        "keys moved between old pods"
    );
    assert!(
        (3..=24).contains(&moved.len()),
        "{} of 60 moved",
        moved.len()
    );

    // Pod 2 leaves: only its keys move.
    let gone = pods[1].addr.to_string();
    let without: Vec<&str> = five
        .iter()
        .copied()
        .filter(|ip| *ip != "127.0.0.2")
        .collect();
    server.apply(Res::Slices, &slice("api-1", "api", &without, port));
    pods_once(&gw, &users, "pod 2 is out", |a| !a.contains(&gone)).await;
    let last = pods_of(&gw, &users).await;
    for i in 0..users.len() {
        if after[i] != gone {
            assert_eq!(
                last[i], after[i],
                "{} moved though its pod stayed",
                users[i]
            );
        }
    }
    // Requests without the key still spread (round robin).
    let mut spread = BTreeSet::new();
    for _ in 0..8 {
        spread.insert(served_by(&gw, "api.test").await.1);
    }
    assert!(spread.len() >= 2);
}

/// A route whose websocket rule carries `extra` (for objects the schema lets through but this
/// build cannot decode).
fn route_with_ws(name: &str, host: &str, extra: &str) -> String {
    route(name, host, "{ service: web, port: 80 }").replace(
        "websocket: { backend: { service: web, port: 80 } }",
        &format!("websocket: {{ backend: {{ service: web, port: 80 }}{extra} }}"),
    )
}

#[tokio::test]
async fn a_route_that_does_not_decode_is_reported_and_never_blocks_the_others() {
    let server = ApiServer::start().await;
    let pod = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], pod.addr.port());
    server.apply(
        Res::Routes,
        &route("good", "good.test", "{ service: web, port: 80 }"),
    );
    // uint32 in the schema, which the API server does not enforce.
    server.apply(
        Res::Routes,
        &route_with_ws(
            "huge",
            "huge.test",
            ", limits: { maxConnectionsPerClient: 5000000000 }",
        ),
    );
    // An enum value from a newer CRD than this binary.
    server.apply(
        Res::Routes,
        &route_with_ws(
            "future",
            "future.test",
            ", loadBalancing: { policy: Random }",
        ),
    );
    // Started while both exist: it becomes ready and serves the good route.
    let gw = controller(&server, "solo").await;
    assert_eq!(served_by(&gw, "good.test").await.0, StatusCode::OK);
    assert_eq!(served_by(&gw, "huge.test").await.0, StatusCode::NOT_FOUND);
    for name in ["huge", "future"] {
        wait_condition(&server, name, "Accepted", "False", "InvalidSpec").await;
    }
    let message = |name: &str| {
        let obj = server.get(Res::Routes, "apps", name).unwrap();
        obj["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!(
        message("huge").contains("spec.rules[0].websocket.limits.maxConnectionsPerClient"),
        "{}",
        message("huge")
    );
    assert!(
        message("future").contains("Random"),
        "{}",
        message("future")
    );

    // A re-list (history compacted, 410) with the bad objects still there goes through, and a
    // route added meanwhile is served.
    server.compact();
    server.apply(
        Res::Routes,
        &route("later", "later.test", "{ service: web, port: 80 }"),
    );
    eventually("the route added after the re-list serves", || async {
        served_by(&gw, "later.test").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(served_by(&gw, "good.test").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_route_moved_to_another_class_loses_this_wsgates_conditions_only() {
    let server = ApiServer::start().await;
    let pod = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], pod.addr.port());
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    // Served by another wsgate (class nginx), which wrote its own conditions.
    let mut theirs = route("theirs", "theirs.test", "{ service: web, port: 80 }")
        .replace("ingressClassName: wsgate", "ingressClassName: nginx");
    theirs.push_str("status:\n  controller: wsgate.dev/nginx\n  conditions: [ { type: Programmed, status: \"True\", reason: Programmed, message: theirs, lastTransitionTime: \"2026-01-01T00:00:00Z\" } ]\n");
    server.apply(Res::Routes, &theirs);
    let gw = controller(&server, "solo").await;
    wait_condition(&server, "web", "Programmed", "True", "Programmed").await;
    assert_eq!(
        server.get(Res::Routes, "apps", "web").unwrap()["status"]["controller"],
        "wsgate.dev/wsgate"
    );

    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }")
            .replace("ingressClassName: wsgate", "ingressClassName: nginx"),
    );
    eventually(
        "the moved route has no conditions and is not served",
        || async {
            conditions(&server, "web").is_empty()
                && served_by(&gw, "web.test").await.0 == StatusCode::NOT_FOUND
        },
    )
    .await;
    assert_eq!(conditions(&server, "theirs").len(), 1);
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_good_version_serving() {
    let server = ApiServer::start().await;
    let (a, b) = (http_backend().await, http_backend().await);
    service_with_pods(&server, "web", 80, &["127.0.0.1"], a.addr.port());
    service_with_pods(&server, "other", 80, &["127.0.0.1"], b.addr.port());
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: web, port: 80 }"),
    );
    let gw = controller(&server, "solo").await;
    assert_eq!(served_by(&gw, "web.test").await.1, a.addr.to_string());

    // Generation 2 points at another Service but has a path the model refuses.
    let broken = route("web", "web.test", "{ service: other, port: 80 }")
        .replace("    - http:", "    - pathPrefix: no-slash\n      http:");
    server.apply(Res::Routes, &broken);
    wait_condition(&server, "web", "Accepted", "False", "InvalidSpec").await;
    let obj = server.get(Res::Routes, "apps", "web").unwrap();
    let accepted = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
        .cloned()
        .unwrap();
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("generation 1 is still served"),
        "{accepted}"
    );
    assert_eq!(obj["status"]["observedGeneration"], 2);
    assert!(has(
        &conditions(&server, "web"),
        "Programmed",
        "True",
        "Programmed"
    ));
    assert_eq!(served_by(&gw, "web.test").await.1, a.addr.to_string());

    // Fixed: generation 3 serves.
    server.apply(
        Res::Routes,
        &route("web", "web.test", "{ service: other, port: 80 }"),
    );
    eventually("generation 3 serves", || async {
        served_by(&gw, "web.test").await.1 == b.addr.to_string()
    })
    .await;
    wait_condition(&server, "web", "Accepted", "True", "Accepted").await;
}

/// The status line and `Retry-After` of a WebSocket handshake to `host`.
async fn upgrade_head(gw: &Gateway, host: &str) -> (String, String) {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let head = raw_head(gw.http_addr, head.as_bytes()).await;
    let status = head.lines().next().unwrap_or("").to_string();
    let retry = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or("")
        .to_string();
    (status, retry)
}

#[tokio::test]
async fn capacity_caps_answer_503_with_retry_after_at_the_exact_limit() {
    let server = ApiServer::start().await;
    let a = pod_at(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let b = pod_at(std::net::SocketAddr::from(([127, 0, 0, 2], a.port()))).await;
    service_with_pods(&server, "caps", 80, &["127.0.0.1", "127.0.0.2"], a.port());
    server.apply(
        Res::Routes,
        &balanced_route(
            "caps",
            "caps.test",
            "",
            ", loadBalancing: { policy: ConsistentHash, hashOn: { header: x-user } }, limits: { maxConnectionsPerEndpoint: 2 }",
        ),
    );
    server.apply(
        Res::Routes,
        &balanced_route("caps", "total.test", "", ", limits: { maxConnections: 3 }")
            .replace("name: caps,", "name: total,"),
    );
    let gw = controller(&server, "solo").await;
    // One user: consistent hashing sends every socket to the same pod, until it is full.
    let open = |host: &'static str| {
        let addr = gw.http_addr;
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            ws_handshake(stream, host, "/", &[("x-user", "ada")]).await
        }
    };
    eventually("both routes serve", || async {
        upgrade_head(&gw, "caps.test")
            .await
            .0
            .starts_with("HTTP/1.1 101")
            && upgrade_head(&gw, "total.test")
                .await
                .0
                .starts_with("HTTP/1.1 101")
    })
    .await;
    // Two per pod: the first two on the user's pod, the next two on the other (balancing
    // skips a full pod); the fifth finds both full.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (ws, answer) = open("caps.test").await;
        held.push((
            ws,
            answer.headers()["x-served-by"]
                .to_str()
                .unwrap()
                .to_string(),
        ));
    }
    let by: Vec<&str> = held.iter().map(|(_, by)| by.as_str()).collect();
    assert_eq!(by[0], by[1], "{by:?}");
    assert_eq!(by[2], by[3], "{by:?}");
    assert_ne!(by[0], by[2], "{by:?}");
    assert!(by.contains(&a.to_string().as_str()) && by.contains(&b.to_string().as_str()));
    // The per-endpoint gauge shows two sockets on each pod.
    eventually("two sockets per pod in the gauge", || async {
        let m = scrape(gw.admin_addr).await;
        let on = |pod: std::net::SocketAddr| {
            m.get(&format!(
                "wsgate_websocket_endpoint_connections{{endpoint=\"{pod}\"}}"
            ))
            .copied()
        };
        on(a) == Some(2.0) && on(b) == Some(2.0)
    })
    .await;
    assert_eq!(
        upgrade_head(&gw, "caps.test").await,
        (
            "HTTP/1.1 503 Service Unavailable".to_string(),
            "1".to_string()
        )
    );
    // A place frees when a socket on pod b closes: the next one lands there.
    let at = held
        .iter()
        .position(|(_, by)| *by == b.to_string())
        .unwrap();
    let (ws, _) = held.remove(at);
    close_then_admitted(&gw, ws, "caps.test").await;

    // Three for the rule, whoever the clients are.
    let mut total = Vec::new();
    for _ in 0..3 {
        total.push(open("total.test").await.0);
    }
    assert_eq!(upgrade_head(&gw, "total.test").await.1, "1");
    assert!(upgrade_head(&gw, "total.test").await.0.contains("503"));
    close_then_admitted(&gw, total.remove(0), "total.test").await;
}

/// Closes `ws` and waits until an upgrade to `host` is admitted again (its place freed).
async fn close_then_admitted<S>(
    gw: &Gateway,
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    host: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(None).await.unwrap();
    while futures_util::StreamExt::next(&mut ws).await.is_some() {}
    drop(ws);
    eventually("a closed socket frees its place", || async {
        upgrade_head(gw, host).await.0.starts_with("HTTP/1.1 101")
    })
    .await;
}

#[tokio::test]
async fn a_scale_out_from_two_to_four_pods_moves_only_the_excess_with_1012() {
    const SOCKETS: usize = 200;
    let server = ApiServer::start().await;
    let port = shared_port(4);
    let mut pods = Vec::new();
    for i in 1..=4u8 {
        pods.push(pod_at(SocketAddr::from(([127, 0, 0, i], port))).await);
    }
    service_with_pods(&server, "grow", 80, &["127.0.0.1", "127.0.0.2"], port);
    server.apply(
        Res::Routes,
        &balanced_route(
            "grow",
            "grow.test",
            "",
            ", rebalance: { tolerance: 0.2, window: 2s }",
        ),
    );
    let gw = controller(&server, "solo").await;
    eventually("the route serves", || async {
        upgrade_head(&gw, "grow.test")
            .await
            .0
            .starts_with("HTTP/1.1 101")
    })
    .await;
    // Each client reconnects when closed with 1012, as a chat client would; every Close
    // code any client gets is reported.
    let (codes_tx, mut codes) = tokio::sync::mpsc::unbounded_channel();
    let (open_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let addr = gw.http_addr;
    let mut clients = Vec::new();
    for _ in 0..SOCKETS {
        let (codes_tx, open_tx) = (codes_tx.clone(), open_tx.clone());
        let (mut ws, _) = ws_handshake(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            "grow.test",
            "/",
            &[],
        )
        .await;
        clients.push(tokio::spawn(async move {
            let _ = open_tx.send(());
            loop {
                let code = match futures_util::StreamExt::next(&mut ws).await {
                    Some(Ok(Message::Close(frame))) => frame.map_or(1005, |f| u16::from(f.code)),
                    _ => 0,
                };
                let _ = codes_tx.send(code);
                if code != 1012 {
                    return;
                }
                // Let the close handshake finish, then come back.
                while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                ws = ws_handshake(stream, "grow.test", "/", &[]).await.0;
            }
        }));
    }
    for _ in 0..SOCKETS {
        within("sockets open", opened.recv()).await;
    }
    let per_pod = |m: &std::collections::HashMap<String, f64>| -> Vec<f64> {
        pods.iter()
            .map(|p| {
                m.get(&format!(
                    "wsgate_websocket_endpoint_connections{{endpoint=\"{p}\"}}"
                ))
                .copied()
                .unwrap_or(0.0)
            })
            .collect()
    };
    eventually(
        "LeastConnections put half on each of the two pods",
        || async { per_pod(&scrape(gw.admin_addr).await) == [100.0, 100.0, 0.0, 0.0] },
    )
    .await;
    // Scale out: four ready pods.
    server.apply(
        Res::Slices,
        &slice(
            "grow-1",
            "grow",
            &["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
            port,
        ),
    );
    // Mean 50: 50 move off each old pod, spread over the 2 s window; no one else.
    let mut closed = Vec::new();
    while closed.len() < 100 {
        closed.push(within("rebalancing closes", codes.recv()).await.unwrap());
    }
    assert!(closed.iter().all(|c| *c == 1012), "{closed:?}");
    eventually("every moved client is back, the pods even", || async {
        let counts = per_pod(&scrape(gw.admin_addr).await);
        counts.iter().sum::<f64>() == SOCKETS as f64 && counts.iter().all(|n| *n <= 60.0)
    })
    .await;
    // Nothing more moves once even: after two more looks, no further close.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(codes.try_recv().is_err(), "only the excess was closed");
    let counts = per_pod(&scrape(gw.admin_addr).await);
    assert!(
        counts.iter().all(|n| (40.0..=60.0).contains(n)),
        "{counts:?}"
    );
    let metrics = scrape(gw.admin_addr).await;
    let moved: f64 = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("wsgate_websocket_closes_total") && k.contains("rebalance"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(moved, 100.0);
    for c in clients {
        c.abort();
    }
}

/// A ConfigMap `keys` in `apps` holding `body` as `jwks.json`.
fn jwks_map(body: &str) -> String {
    let quoted = serde_json::to_string(body).unwrap();
    format!("metadata: {{ name: keys, namespace: apps }}\ndata:\n  jwks.json: {quoted}\n")
}

#[tokio::test]
async fn jwt_keys_come_from_a_configmap_and_rotate_with_it() {
    use wsgate_test_support::jwt::{SigningKey, claims, jwks};
    let server = ApiServer::start().await;
    let web = http_backend().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], web.addr.port());
    let old = SigningKey::ec("old", "ES256");
    let new = SigningKey::ed25519("new");
    let auth = "\n      auth: { jwt: { jwks: { configMap: { name: keys } }, claimsToHeaders: [ { claim: sub, header: X-User } ] } }\n";
    server.apply(
        Res::Routes,
        &format!(
            "{}{auth}",
            route("web", "web.test", "{ service: web, port: 80 }").trim_end()
        ),
    );
    let gw = controller(&server, "solo").await;
    let get = |token: String| {
        let mut req = request("GET", "web.test", "/");
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        http(gw.http_addr, req)
    };
    // No ConfigMap yet: every token gets 401, and the route says why.
    let r = get(old.sign(&claims("iss", "aud", 60))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    eventually("InvalidKeys in status", || async {
        has(
            &conditions(&server, "web"),
            "ResolvedRefs",
            "False",
            "InvalidKeys",
        )
    })
    .await;
    server.apply(Res::ConfigMaps, &jwks_map(&jwks(&[&old])));
    eventually("the old key verifies", || async {
        get(old.sign(&claims("iss", "aud", 60))).await.status == StatusCode::OK
    })
    .await;
    let r = get(old.sign(&claims("iss", "aud", 60))).await;
    assert!(r.text().contains("\nx-user: alice"), "{}", r.text());
    // The ConfigMap rotates to the new key alone: the old one stops verifying.
    server.apply(Res::ConfigMaps, &jwks_map(&jwks(&[&new])));
    eventually("the new key verifies", || async {
        get(new.sign(&claims("iss", "aud", 60))).await.status == StatusCode::OK
    })
    .await;
    let r = get(old.sign(&claims("iss", "aud", 60))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_ingress_auth_url_guards_its_paths() {
    let server = ApiServer::start().await;
    let web = http_backend().await;
    let auth = auth_server().await;
    service_with_pods(&server, "web", 80, &["127.0.0.1"], web.addr.port());
    server.apply(
        Res::IngressClasses,
        "metadata: { name: wsgate }\nspec: { controller: wsgate.dev/ingress-controller }\n",
    );
    server.apply(
        Res::Ingresses,
        &format!(
            "metadata:\n  name: site\n  namespace: apps\n  annotations:\n    nginx.ingress.kubernetes.io/auth-url: \"http://{}/check\"\n    nginx.ingress.kubernetes.io/auth-response-headers: X-User\nspec:\n  ingressClassName: wsgate\n  defaultBackend: {{ service: {{ name: web, port: {{ number: 80 }} }} }}\n",
            auth.addr
        ),
    );
    let gw = controller(&server, "solo").await;
    let mut req = request("GET", "any.test", "/");
    req.headers_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    let r = http(gw.http_addr, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("\nx-user: alice"), "{}", r.text());
    let r = http(gw.http_addr, request("GET", "any.test", "/")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.text(), "who are you");
}
