//! Zero-drop operations: configuration changes never touch open connections, and SIGTERM
//! drains WebSockets with Close 1001 spread over the drain window.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsgate::api::WebSocketRoute;
use wsgate::table::{RouteTable, Snapshot, TlsSecret, compile};
use wsgate_test_support::*;

#[tokio::test]
async fn rebuilds_and_certificate_rotations_never_touch_open_websockets() {
    let ca = TestCa::new();
    let ws = ws_backend().await;
    let other = ws_backend().await;
    let routes = RoutesDir::new();
    let gw = start(routes.path()).await;
    let table: Arc<ArcSwap<RouteTable>> = gw.table.clone();
    // Tables are swapped in directly: 100 rebuilds, alternating the route's backend, with the
    // certificate rotated every 20th.
    let snapshot = |backend: SocketAddr, leaf: &Leaf| {
        let route: WebSocketRoute = serde_yaml::from_str(&route_yaml(
            "chat",
            &format!("  hostnames: [chat.test]\n  tls: {{ secretName: chat-tls }}\n  rules:\n    - websocket: {{ backend: {{ address: \"{backend}\" }} }}\n"),
        ))
        .unwrap();
        let secret = TlsSecret {
            namespace: "default".into(),
            name: "chat-tls".into(),
            cert_pem: leaf.cert_pem.clone().into_bytes(),
            key_pem: leaf.key_pem.clone().into_bytes(),
            ca_pem: None,
        };
        Snapshot {
            routes: vec![std::sync::Arc::new(wsgate::api::translate(&route))],
            secrets: vec![secret],
            ..Default::default()
        }
    };
    let leaves: Vec<Leaf> = (0..6).map(|_| ca.leaf(&["chat.test"])).collect();
    table.store(Arc::new(compile(&snapshot(ws.addr, &leaves[0])).0));

    // 200 WebSockets, each echoing numbered messages until the rebuilds are over.
    let done = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for c in 0..200 {
        let io = tls(gw.https_addr, "chat.test", ca.client_config()).await;
        let mut socket = ws_over(io, "chat.test", "/", &[]).await;
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let stop = done.notified();
            tokio::pin!(stop);
            let mut n = 0u64;
            loop {
                let msg = Message::text(format!("{c}:{n}"));
                socket
                    .send(msg.clone())
                    .await
                    .unwrap_or_else(|e| panic!("client {c} lost its connection: {e}"));
                let back = within("echo", socket.next()).await;
                assert_eq!(
                    back.map(|m| m.unwrap()),
                    Some(msg),
                    "client {c}: message {n} lost or reordered"
                );
                n += 1;
                if n >= 5 && futures_util::poll!(stop.as_mut()).is_ready() {
                    break;
                }
            }
            socket.close(None).await.unwrap();
            n
        }));
    }
    for i in 1..=100 {
        let leaf = &leaves[i / 20];
        let backend = if i % 2 == 0 { ws.addr } else { other.addr };
        table.store(Arc::new(compile(&snapshot(backend, leaf)).0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.notify_waiters();
    let mut total = 0;
    for client in clients {
        total += within("client", client).await.unwrap();
    }
    assert!(total >= 1000, "only {total} echoes");
    // New handshakes get the last certificate; all 200 sockets stayed on their first backend.
    let stream = tls(gw.https_addr, "chat.test", ca.client_config()).await;
    assert_eq!(
        stream.get_ref().1.peer_certificates().map(|c| c[0].clone()),
        Some(leaves[5].der.clone())
    );
    assert_eq!(ws.handshakes.lock().unwrap().len(), 200);
    assert_eq!(other.handshakes.lock().unwrap().len(), 0);
}

fn ws_http_route(ws: SocketAddr, web: SocketAddr) -> String {
    route_yaml(
        "r",
        &format!(
            "  hostnames: [r.test]\n  rules:\n    - http: {{ backend: {{ address: \"{web}\" }} }}\n      websocket: {{ backend: {{ address: \"{ws}\" }} }}\n"
        ),
    )
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_spread_over_the_window() {
    let ws = ws_backend().await;
    let web = http_backend().await;
    let routes = RoutesDir::new();
    routes.write("r.yaml", &ws_http_route(ws.addr, web.addr));
    let window = Duration::from_secs(3);
    let bin = spawn_wsgate_run(
        env!("CARGO_BIN_EXE_wsgate"),
        routes.path(),
        &[
            "--drain-delay",
            "1s",
            "--drain-window",
            "3s",
            "--drain-timeout",
            "20s",
        ],
    );
    let (http_addr, admin) = (bin.http, bin.admin);

    let mut clients = Vec::new();
    for i in 0..100 {
        let mut c = ws_over(
            tokio::net::TcpStream::connect(http_addr).await.unwrap(),
            "r.test",
            "/",
            &[],
        )
        .await;
        echo_roundtrip(&mut c, Message::text(format!("hello {i}"))).await;
        clients.push(c);
    }
    let in_flight =
        tokio::spawn(
            async move { http(http_addr, request("GET", "r.test", "/slow?ms=2000")).await },
        );
    eventually("the slow request reached the backend", || async {
        web.connections.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;

    let signalled = Instant::now();
    bin.terminate();
    // Not ready at once, still accepting during the delay.
    eventually("/readyz turns 503", || async {
        send(
            tokio::net::TcpStream::connect(admin).await.unwrap(),
            request("GET", "admin", "/readyz"),
        )
        .await
        .status
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let during_delay = http(http_addr, request("GET", "r.test", "/")).await;
    assert_eq!(during_delay.status, StatusCode::OK);

    // Every client gets Close 1001 (a frame, not a reset), at times spread over the window.
    let mut waits = Vec::new();
    for mut c in clients {
        waits.push(tokio::spawn(async move {
            let msg = tokio::time::timeout(Duration::from_secs(15), c.next())
                .await
                .expect("no close within the drain");
            let at = Instant::now();
            let code = match msg {
                Some(Ok(Message::Close(Some(frame)))) => frame.code,
                other => panic!("expected Close 1001, got {other:?}"),
            };
            // Answer the close, as a browser does, and see the connection end cleanly.
            while let Some(Ok(_)) = c.next().await {}
            (at, code)
        }));
    }
    let mut times = Vec::new();
    for w in waits {
        let (at, code) = w.await.unwrap();
        assert_eq!(code, CloseCode::Away);
        times.push(at - signalled);
    }
    times.sort();
    let (first, last) = (times[0], times[times.len() - 1]);
    assert!(
        first >= Duration::from_millis(900),
        "closes started before the drain delay: {first:?}"
    );
    assert!(
        last - first >= window / 2,
        "closes not spread: {first:?}..{last:?}"
    );
    let middle = times
        .iter()
        .filter(|t| **t > first + window / 4 && **t < first + window * 3 / 4)
        .count();
    assert!(
        middle >= 25,
        "only {middle} of 100 closes in the middle half of the window"
    );

    let reply = within("in-flight request", in_flight).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("connection"),
        "close",
        "keep-alive not ended on the draining connection"
    );
    let (code, log) = bin.wait().await;
    assert_eq!(code, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(20));
    // The backend saw a Close from wsgate on every connection.
    assert_eq!(
        ws.closes
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == 1001)
            .count(),
        100
    );
    let drained = log
        .iter()
        .filter(|l| l.contains("\"close_reason\":\"drain\""))
        .count();
    assert_eq!(drained, 100);
}

#[tokio::test]
async fn a_client_that_never_answers_the_close_is_cut_at_the_timeout() {
    let ws = ws_backend().await;
    let web = http_backend().await;
    let routes = RoutesDir::new();
    routes.write("r.yaml", &ws_http_route(ws.addr, web.addr));
    let bin = spawn_wsgate_run(
        env!("CARGO_BIN_EXE_wsgate"),
        routes.path(),
        &[
            "--drain-delay",
            "0s",
            "--drain-window",
            "0s",
            "--drain-timeout",
            "2s",
        ],
    );
    let http_addr = bin.http;
    // Handshake done, then silence: this client never reads, so it never answers the Close.
    let silent = ws_over(
        tokio::net::TcpStream::connect(http_addr).await.unwrap(),
        "r.test",
        "/",
        &[],
    )
    .await;
    let signalled = Instant::now();
    bin.terminate();
    assert_eq!(bin.wait().await.0, Some(0));
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "exited before the drain timeout: {waited:?}"
    );
    drop(silent);
}
