//! Black-box WebSocket tests: real TLS, a real WebSocket client and echo backend, through the
//! gateway on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use wsgate_test_support::*;

fn ws_route(name: &str, host: &str, tls: bool, rules: &str) -> String {
    let tls = if tls {
        format!("  tls: {{ secretName: {name}-tls }}\n")
    } else {
        String::new()
    };
    route_yaml(
        name,
        &format!("  hostnames: [{host}]\n{tls}  rules:\n{rules}"),
    )
}

#[tokio::test]
async fn wss_relays_text_binary_and_large_frames_with_a_firefox_handshake() {
    let ca = TestCa::new();
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    let rules = format!(
        "    - websocket: {{ backend: {{ address: \"{}\" }} }}\n",
        ws.addr
    );
    routes.write(
        "chat.yaml",
        &format!(
            "{}---\n{}",
            ws_route("chat", "chat.test", true, &rules),
            secret_yaml("default", "chat-tls", &ca.leaf(&["chat.test"]))
        ),
    );
    let gw = start(routes.path()).await;
    let stream = tls(gw.https_addr, "chat.test", ca.client_config()).await;
    // Firefox sends `Connection: keep-alive, Upgrade`.
    let mut client = ws_over(
        stream,
        "chat.test",
        "/room?id=1",
        &[
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-protocol", "chat"),
        ],
    )
    .await;
    echo_roundtrip(&mut client, Message::text("hello")).await;
    echo_roundtrip(&mut client, Message::binary(vec![0u8, 1, 2, 255])).await;
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    echo_roundtrip(&mut client, Message::binary(big)).await;
    for i in 0..100 {
        echo_roundtrip(&mut client, Message::text(format!("message {i}"))).await;
    }
    client.close(None).await.unwrap();

    let seen = ws.handshakes.lock().unwrap()[0].clone();
    let get = |n: &str| {
        seen.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(get("host"), "chat.test");
    assert_eq!(get("upgrade"), "websocket");
    assert_eq!(get("connection"), "upgrade");
    assert_eq!(get("sec-websocket-protocol"), "chat");
    assert_eq!(get("x-forwarded-proto"), "https");
    assert_eq!(get("x-forwarded-for"), "127.0.0.1");
    assert_eq!(get("x-real-ip"), "127.0.0.1");
}

#[tokio::test]
async fn upgrade_routing_refusals_and_dead_backends() {
    let ws = ws_backend().await;
    let web = http_backend().await;
    let dead = dead_address().await;
    let routes = RoutesDir::new();
    let rules = format!(
        "    - http: {{ backend: {{ address: \"{web}\" }} }}\n      websocket: {{ backend: {{ address: \"{ws}\" }} }}\n    - pathPrefix: /legacy\n      http: {{ backend: {{ address: \"{ws}\" }} }}\n    - pathPrefix: /dead\n      websocket: {{ backend: {{ address: \"{dead}\" }} }}\n",
        web = web.addr,
        ws = ws.addr
    );
    routes.write(
        "plain.yaml",
        &ws_route("plain", "plain.test", false, &rules),
    );
    let gw = start(routes.path()).await;
    // Plain ws:// on a route without TLS; normal requests on the same path go to the web backend.
    let mut c = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "plain.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut c, Message::text("plain")).await;
    let r = http(gw.http_addr, request("GET", "plain.test", "/")).await;
    assert!(r.text().starts_with("GET /"), "{}", r.text());
    // A rule with only `http` passes the upgrade to its http backend.
    let mut c = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "plain.test",
        "/legacy",
        &[],
    )
    .await;
    echo_roundtrip(&mut c, Message::text("legacy")).await;
    // The backend's refusal comes back as a normal response.
    let mut refuse = request("GET", "plain.test", "/reject");
    for (k, v) in [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ] {
        refuse.headers_mut().insert(k, v.parse().unwrap());
    }
    let r = http(gw.http_addr, refuse).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Nothing listening at the backend: 502.
    let mut dead_req = request("GET", "plain.test", "/dead");
    for (k, v) in [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ] {
        dead_req.headers_mut().insert(k, v.parse().unwrap());
    }
    assert_eq!(
        http(gw.http_addr, dead_req).await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn idle_timeout_closes_only_idle_connections() {
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    let rules = format!(
        "    - websocket: {{ backend: {{ address: \"{}\" }}, idleTimeout: 1s }}\n",
        ws.addr
    );
    routes.write("r.yaml", &ws_route("idle", "idle.test", false, &rules));
    let gw = start(routes.path()).await;
    let connect = || async {
        ws_over(
            tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
            "idle.test",
            "/",
            &[],
        )
        .await
    };
    let mut busy = connect().await;
    let mut idle = connect().await;
    // 2.4 s of traffic every 300 ms keeps `busy` open past the 1 s limit.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        echo_roundtrip(&mut busy, Message::text(format!("ping {i}"))).await;
    }
    // `idle` sent nothing: the relay has closed it (the stream ends or errors, no echo).
    let next = within("idle close", idle.next()).await;
    assert!(
        matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{next:?}"
    );
    echo_roundtrip(&mut busy, Message::text("still here")).await;
}

#[tokio::test]
async fn hot_reload_keeps_open_websockets_and_broken_files_keep_last_good_routes() {
    let first = ws_backend().await;
    let second = ws_backend().await;
    let routes = RoutesDir::new();
    let rules = |addr| format!("    - websocket: {{ backend: {{ address: \"{addr}\" }} }}\n");
    routes.write(
        "a.yaml",
        &ws_route("a", "a.test", false, &rules(first.addr)),
    );
    let gw = start(routes.path()).await;
    let mut open = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "a.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut open, Message::text("before")).await;

    // Move route a to the second backend and add route b.
    routes.write(
        "a.yaml",
        &ws_route("a", "a.test", false, &rules(second.addr)),
    );
    routes.write(
        "b.yaml",
        &ws_route("b", "b.test", false, &rules(second.addr)),
    );
    eventually("route b is served", || async {
        http(gw.http_addr, request("GET", "b.test", "/"))
            .await
            .status
            == StatusCode::UPGRADE_REQUIRED
    })
    .await;
    // The open socket still works, still on the first backend.
    echo_roundtrip(&mut open, Message::text("after reload")).await;
    let mut fresh = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "a.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut fresh, Message::text("new")).await;
    assert_eq!(first.handshakes.lock().unwrap().len(), 1);
    assert_eq!(second.handshakes.lock().unwrap().len(), 1);

    // A broken edit of a.yaml leaves its last good route serving; other files still apply.
    routes.write("a.yaml", "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: { name: a }\nspec:\n  hostnames: [a.test]\n  rules: [ { websocket: { backend: { address: nope } } } ]\n");
    routes.write(
        "c.yaml",
        &ws_route("c", "c.test", false, &rules(second.addr)),
    );
    eventually("route c is served", || async {
        http(gw.http_addr, request("GET", "c.test", "/"))
            .await
            .status
            == StatusCode::UPGRADE_REQUIRED
    })
    .await;
    let mut again = ws_over(
        tokio::net::TcpStream::connect(gw.http_addr).await.unwrap(),
        "a.test",
        "/",
        &[],
    )
    .await;
    echo_roundtrip(&mut again, Message::text("still routed")).await;
    echo_roundtrip(&mut open, Message::text("and the first socket too")).await;
    open.send(Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn demo_chat_room_broadcasts_between_two_clients_over_wss() {
    use wsgate::gateway::{Gateway, Routes};
    let app = wsgate::demo::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let routes = RoutesDir::new();
    let mut opts = options(routes.path());
    opts.routes = Routes::Fixed(Box::new(wsgate::demo::snapshot(app).unwrap()));
    let gw = Gateway::start(opts).await.unwrap();
    // The page itself.
    let page = https(
        gw.https_addr,
        trust_anything(),
        request("GET", "localhost", "/"),
    )
    .await;
    assert!(page.text().contains("new WebSocket("), "not the chat page");
    let join = |nick: &'static str| async move {
        let io = tls(gw.https_addr, "localhost", trust_anything()).await;
        ws_over(io, "localhost", &format!("/ws?room=r1&nick={nick}"), &[]).await
    };
    let mut alice = join("alice").await;
    let mut bob = join("bob").await;
    // Each sees events in order; wait until bob's join reached alice, then talk.
    loop {
        let e = next_event(&mut alice).await;
        if e.kind == "join" && e.nick == "bob" {
            break;
        }
    }
    alice.send(Message::text("hi bob")).await.unwrap();
    loop {
        let e = next_event(&mut bob).await;
        if e.kind == "message" {
            assert_eq!((e.nick.as_str(), e.text.as_str()), ("alice", "hi bob"));
            break;
        }
    }
    bob.send(Message::text("hi alice")).await.unwrap();
    loop {
        let e = next_event(&mut alice).await;
        if e.kind == "message" && e.nick == "bob" {
            assert_eq!(e.text, "hi alice");
            break;
        }
    }
    // A clean close: the app answers alice's Close frame with its own (no 1006 for her).
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    alice
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    loop {
        match within("close reply", alice.next()).await {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("no Close frame back: {other:?}"),
        }
    }
}

async fn next_event<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> wsgate::demo::ChatEvent
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let msg = within("chat event", ws.next()).await.unwrap().unwrap();
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn sockets_past_their_max_lifetime_get_close_1001_at_spread_moments() {
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    let rules = format!(
        "    - websocket: {{ backend: {{ address: \"{}\" }}, maxLifetime: 2s, lifetimeJitter: 50% }}\n",
        ws.addr
    );
    routes.write("life.yaml", &ws_route("life", "life.test", false, &rules));
    let gw = start(routes.path()).await;
    let opened = std::time::Instant::now();
    let mut waits = Vec::new();
    for i in 0..12 {
        let stream = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
        let mut c = ws_over(stream, "life.test", "/", &[]).await;
        echo_roundtrip(&mut c, Message::text(format!("hello {i}"))).await;
        waits.push(tokio::spawn(async move {
            let msg = within("the lifetime close", c.next()).await;
            let at = opened.elapsed();
            let code = match msg {
                Some(Ok(Message::Close(Some(frame)))) => u16::from(frame.code),
                other => panic!("expected a Close frame, got {other:?}"),
            };
            while let Some(Ok(_)) = c.next().await {}
            (at, code)
        }));
    }
    let mut times = Vec::new();
    for w in waits {
        let (at, code) = w.await.unwrap();
        assert_eq!(code, 1001);
        times.push(at);
    }
    times.sort();
    let (first, last) = (times[0], times[times.len() - 1]);
    // Within the jittered span (1 s to 2 s after opening, plus scheduling), and spread over
    // it rather than in one wave.
    assert!(first >= Duration::from_millis(900), "{times:?}");
    assert!(last <= Duration::from_millis(3000), "{times:?}");
    assert!(
        last - first >= Duration::from_millis(200),
        "not spread: {times:?}"
    );
    eventually("the backend got Close 1001 on every socket", || async {
        ws.closes
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == 1001)
            .count()
            == 12
    })
    .await;
    let metrics = scrape(gw.admin_addr).await;
    let closed = metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with("wsgate_websocket_closes_total") && k.contains("max_lifetime")
        })
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert_eq!(closed, 12.0);
}

#[tokio::test]
async fn keepalive_reaps_a_silent_client_and_keeps_a_healthy_idle_one() {
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    let rules = format!(
        "    - websocket: {{ backend: {{ address: \"{}\" }}, keepalive: {{ interval: 300ms, timeout: 300ms }} }}\n",
        ws.addr
    );
    routes.write("ka.yaml", &ws_route("ka", "ka.test", false, &rules));
    let gw = start(routes.path()).await;
    let connect = || async {
        let stream = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
        ws_over(stream, "ka.test", "/", &[]).await
    };
    // A healthy client: idle, but it reads, so tungstenite answers each Ping with a Pong.
    let (mut to_healthy, mut from_healthy) = connect().await.split();
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = from_healthy.next().await {
            if got_tx.send(msg).is_err() {
                break;
            }
        }
    });
    // A dead one: it never reads or writes again, and never closes its TCP connection.
    let dead = connect().await;
    let opened = std::time::Instant::now();
    eventually("the backend got Close 1001 for the dead client", || async {
        ws.closes.lock().unwrap().contains(&1001)
    })
    .await;
    let reaped = opened.elapsed();
    assert!(
        reaped < Duration::from_millis(600 + 1400),
        "reaped after {reaped:?}, allowed interval + timeout (600 ms) and scheduling"
    );
    // Ten intervals later the healthy client is still relayed; it was pinged all along.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut pings = 0;
    while let Ok(msg) = got.try_recv() {
        assert!(matches!(msg, Message::Ping(_)), "{msg:?}");
        pings += 1;
    }
    assert!(pings >= 5, "{pings} pings in ten intervals");
    within("send", to_healthy.send(Message::text("still here")))
        .await
        .unwrap();
    let echo = within("echo", recv_past_pings(&mut got)).await;
    assert_eq!(echo, Some(Message::text("still here")));
    // The application's own Ping crosses and its Pong comes back.
    within(
        "send",
        to_healthy.send(Message::Ping(b"app".to_vec().into())),
    )
    .await
    .unwrap();
    let pong = within("app pong", recv_past_pings(&mut got)).await;
    assert_eq!(pong, Some(Message::Pong(b"app".to_vec().into())));
    // The backend saw the application's Ping and wsgate's Pings, never a Pong: the healthy
    // client's answers to wsgate were taken out.
    let controls = ws.controls.lock().unwrap().clone();
    assert!(
        controls.contains(&Message::Ping(b"app".to_vec().into())),
        "{controls:?}"
    );
    assert!(
        !controls.iter().any(|m| matches!(m, Message::Pong(_))),
        "{controls:?}"
    );
    assert_eq!(
        ws.closes.lock().unwrap().len(),
        1,
        "only the dead client closed"
    );
    let metrics = scrape(gw.admin_addr).await;
    let reaped = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("wsgate_websocket_closes_total") && k.contains("dead_peer"))
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert_eq!(reaped, 1.0);
    drop(dead);
    reader.abort();
}

/// The next message a reader task passed on that is not one of wsgate's Pings.
async fn recv_past_pings(
    got: &mut tokio::sync::mpsc::UnboundedReceiver<Message>,
) -> Option<Message> {
    loop {
        match got.recv().await {
            Some(Message::Ping(_)) => continue,
            other => return other,
        }
    }
}
