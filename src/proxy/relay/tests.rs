use super::*;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

#[tokio::test]
async fn copies_both_ways_and_handles_half_close() {
    let (mut client, client_side) = duplex(64);
    let (backend_side, mut backend) = duplex(64);
    let counted = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let tally = counted.clone();
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        RelayOptions::default(),
        move |a, b| {
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            t.0 += a;
            t.1 += b;
        },
        std::future::pending(),
    ));
    // More than the duplex capacity, so the pending-buffer path runs.
    let big = vec![7u8; 100_000];
    let writer = {
        let big = big.clone();
        tokio::spawn(async move {
            client.write_all(&big).await?;
            client.shutdown().await?;
            let mut back = Vec::new();
            client.read_to_end(&mut back).await?;
            io::Result::Ok(back)
        })
    };
    let mut got = Vec::new();
    backend
        .read_to_end(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, big);
    // The client half-closed; the backend can still answer.
    backend
        .write_all(b"bye")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    backend.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let back = writer
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, b"bye");
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stats,
        RelayStats {
            client_to_backend: 100_000,
            backend_to_client: 3,
            end: RelayEnd::ClientClosed,
            first_close: None,
        }
    );
    assert_eq!(
        *counted.lock().unwrap_or_else(|p| p.into_inner()),
        (100_000, 3)
    );
}

#[tokio::test]
async fn drain_sends_close_1001_at_frame_boundaries_and_waits_for_both_answers() {
    let (mut client, client_side) = duplex(1 << 16);
    let (backend_side, mut backend) = duplex(1 << 16);
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        RelayOptions::default(),
        |_, _| {},
        async {
            let _ = drain_rx.await;
            Closing::Drain
        },
    ));
    // The backend is halfway through a 10-byte binary frame when the drain starts.
    let frame: Vec<u8> = [vec![0x82, 10], vec![9u8; 10]].concat();
    backend
        .write_all(&frame[..6])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = vec![0u8; 6];
    client
        .read_exact(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drain_tx.send(()).unwrap_or_else(|_| panic!("relay gone"));
    // The backend finishes its frame and starts another one, which must not reach the client.
    backend
        .write_all(&frame[6..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    backend
        .write_all(&[0x81, 2, b'n', b'o'])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rest = vec![0u8; 6 + 4];
    client
        .read_exact(&mut rest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&rest[..6], &frame[6..], "the frame in flight completes");
    assert_eq!(&rest[6..], &close_frame(1001), "then Close 1001");
    // The backend got a masked Close 1001.
    let mut to_backend = vec![0u8; 8];
    backend
        .read_exact(&mut to_backend)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&to_backend[..2], &[0x88, 0x82]);
    let key = &to_backend[2..6];
    assert_eq!(
        [to_backend[6] ^ key[0], to_backend[7] ^ key[1]],
        [0x03, 0xe9]
    );
    // Both answer; the relay ends with a clean shutdown on both sides.
    answer_both_closes(&mut client, &mut backend).await;
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.end, RelayEnd::Closed(Closing::Drain));
    assert_eq!(stats.reason(), "drain");
    let mut tail = Vec::new();
    client
        .read_to_end(&mut tail)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tail.is_empty(), "nothing after our Close: {tail:?}");
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_closes_its_half_is_cut_after_the_linger() {
    let (mut client, client_side) = duplex(64);
    let (backend_side, backend) = duplex(64);
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        RelayOptions::default(),
        |_, _| {},
        std::future::pending(),
    ));
    // The backend closes; the client keeps its socket open and silent.
    drop(backend);
    let mut buf = [0u8; 1];
    let n = client
        .read(&mut buf)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 0, "the client sees the backend's FIN");
    tokio::time::sleep(LINGER - Duration::from_secs(1)).await;
    assert!(!task.is_finished());
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.end, RelayEnd::BackendClosed);
    assert_eq!(stats.reason(), "backend");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_only_without_traffic() {
    let (mut client, client_side) = duplex(64);
    let (backend_side, mut backend) = duplex(64);
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        RelayOptions {
            idle_timeout: Some(Duration::from_secs(10)),
            keepalive: None,
        },
        |_, _| {},
        std::future::pending(),
    ));
    // Traffic every 6 s keeps it alive past the 10 s limit.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        client
            .write_all(b"x")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut b = [0u8; 1];
        backend
            .read_exact(&mut b)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!task.is_finished());
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.end, RelayEnd::IdleTimeout);
    assert_eq!(stats.client_to_backend, 3);
}

#[tokio::test]
async fn a_lifetime_close_sends_1001_both_ways_and_says_so() {
    let (mut client, client_side) = duplex(1 << 16);
    let (backend_side, mut backend) = duplex(1 << 16);
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        RelayOptions::default(),
        |_, _| {},
        async { Closing::MaxLifetime },
    ));
    let mut to_client = [0u8; 4];
    client
        .read_exact(&mut to_client)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_client,
        [0x88, 0x02, 0x03, 0xe9],
        "Close 1001 (Going Away)"
    );
    let mut to_backend = [0u8; 8];
    backend
        .read_exact(&mut to_backend)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = &to_backend[2..6];
    assert_eq!(
        [to_backend[6] ^ key[0], to_backend[7] ^ key[1]],
        [0x03, 0xe9]
    );
    answer_both_closes(&mut client, &mut backend).await;
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.end, RelayEnd::Closed(Closing::MaxLifetime));
    assert_eq!(stats.reason(), "max_lifetime");
}

/// A relay with keepalive every 30 s, 10 s to answer.
fn with_keepalive() -> RelayOptions {
    RelayOptions {
        idle_timeout: None,
        keepalive: Some(Keepalive {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }),
    }
}

/// A relay with keepalive over two duplex pipes: the client's end, the backend's end.
fn with_keepalive_relay() -> (
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<RelayStats>,
) {
    let (client, client_side) = duplex(1 << 16);
    let (backend_side, backend) = duplex(1 << 16);
    let task = tokio::spawn(relay(
        client_side,
        backend_side,
        with_keepalive(),
        |_, _| {},
        std::future::pending(),
    ));
    (client, backend, task)
}

/// Reads our masked Ping on the backend's side and answers it as a server does; returns
/// the payload.
async fn answer_backend_ping(backend: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut ping = [0u8; 14];
    backend
        .read_exact(&mut ping)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&ping[..2], &[0x89, 0x88], "masked toward the backend");
    let key = &ping[2..6];
    let payload: Vec<u8> = (0..8).map(|i| ping[6 + i] ^ key[i % 4]).collect();
    let mut pong = vec![0x8a, 0x08];
    pong.extend_from_slice(&payload);
    backend
        .write_all(&pong)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    payload
}

/// Reads one of our Pings from the client side: its payload.
async fn read_ping(client: &mut tokio::io::DuplexStream) -> [u8; 8] {
    let mut ping = [0u8; 10];
    client
        .read_exact(&mut ping)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&ping[..2], &[0x89, 0x08], "an unmasked Ping with 8 bytes");
    let mut payload = [0u8; 8];
    payload.copy_from_slice(&ping[2..]);
    payload
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_and_its_pong_is_not_forwarded() {
    let (mut client, mut backend, task) = with_keepalive_relay();
    for _ in 0..10 {
        let payload = read_ping(&mut client).await;
        // Answer as a client must: masked.
        let key = [9, 8, 7, 6];
        let mut pong = vec![0x8a, 0x88];
        pong.extend_from_slice(&key);
        pong.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        client
            .write_all(&pong)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The backend answers our Ping toward it likewise (the same payload).
        assert_eq!(answer_backend_ping(&mut backend).await, payload);
    }
    assert!(!task.is_finished(), "ten intervals later, still open");
    // An application frame after all those Pongs is the first thing either side sees.
    client
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut first = [0u8; 8];
    backend
        .read_exact(&mut first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, [0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    drop(client);
    drop(backend);
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.client_to_backend, 10 * 14 + 8);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_is_reaped_and_the_backend_gets_1001() {
    let started = tokio::time::Instant::now();
    let (mut client, mut backend, task) = with_keepalive_relay();
    read_ping(&mut client).await;
    // The backend answers its Ping; the client says nothing more.
    answer_backend_ping(&mut backend).await;
    let mut got = Vec::new();
    backend
        .read_to_end(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.reason(), "dead_peer");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(40) && waited < Duration::from_secs(41),
        "{waited:?}"
    );
    // Then the backend got a masked Close 1001, and the FIN.
    assert_eq!(got.len(), 8, "{got:?}");
    let close = &got[..];
    assert_eq!(&close[..2], &[0x88, 0x82]);
    assert_eq!([close[6] ^ close[2], close[7] ^ close[3]], [0x03, 0xe9]);
}

#[tokio::test(start_paused = true)]
async fn application_pings_and_pongs_pass_untouched() {
    let (mut client, mut backend, task) = with_keepalive_relay();
    // Ours is outstanding while the application's own ping and pong cross.
    read_ping(&mut client).await;
    let app_ping = [0x89, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'p' ^ 2];
    let app_pong = [0x8a, 0x82, 5, 6, 7, 8, b'o' ^ 5, b'k' ^ 6];
    client
        .write_all(&[&app_ping[..], &app_pong[..]].concat())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = [0u8; 16];
    backend
        .read_exact(&mut got[..14])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The backend's Ping came first (it was silent too); then the application's frames.
    assert_eq!(&got[..2], &[0x89, 0x88]);
    backend
        .read_exact(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, [&app_ping[..], &app_pong[..]].concat()[..]);
    let backend_pong = [0x8a, 0x02, b'a', b'p'];
    backend
        .write_all(&backend_pong)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut back = [0u8; 4];
    client
        .read_exact(&mut back)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, backend_pong);
    drop(client);
    drop(backend);
    task.await.unwrap_or_else(|e| panic!("{e}"));
}

/// Both peers answer wsgate's Close with their own (the client's masked).
async fn answer_both_closes(
    client: &mut tokio::io::DuplexStream,
    backend: &mut tokio::io::DuplexStream,
) {
    client
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    backend
        .write_all(&close_frame(1001))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
