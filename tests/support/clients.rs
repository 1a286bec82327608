//! Clients speaking real HTTP/1.1, HTTP/2, TLS and WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::*;

/// A response with its body read.
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends one request on `io` with HTTP/1.1.
pub async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Reply
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = within("response", sender.send_request(req)).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = within("body", body.collect()).await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request without body for `host` (as Host) and `path`.
pub fn request(method: &str, host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A plain-HTTP request.
pub async fn http(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    send(TcpStream::connect(addr).await.unwrap(), req).await
}

/// A TLS connection with SNI `sni`.
pub async fn tls(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    within(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .unwrap()
}

/// An HTTPS request over a fresh connection, SNI = Host.
pub async fn https(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Reply {
    let host = req.headers()["host"]
        .to_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    send(tls(addr, &host, config).await, req).await
}

/// Opens a WebSocket over `io` to `path` on `host`, with extra handshake headers.
pub async fn ws_over<I>(io: I, host: &str, path: &str, extra: &[(&str, &str)]) -> WebSocketStream<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    ws_handshake(io, host, path, extra).await.0
}

/// As [`ws_over`], also returning the handshake's answer (its headers: `Set-Cookie`,
/// `x-served-by`).
pub async fn ws_handshake<I>(
    io: I,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (WebSocketStream<I>, http::Response<Option<Vec<u8>>>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, resp) = ws_attempt(io, host, path, extra)
        .await
        .unwrap_or_else(|refused| panic!("handshake refused: {}", refused.status()));
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    (ws, resp)
}

/// A WebSocket handshake that may be refused: the socket and the 101, or the refusal (its
/// status, headers and body).
pub async fn ws_attempt<I>(
    io: I,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<(WebSocketStream<I>, http::Response<Option<Vec<u8>>>), http::Response<Option<Vec<u8>>>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = http::Request::builder()
        .uri(format!("ws://{host}{path}"))
        .header("host", host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        );
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let answer = within(
        "websocket handshake",
        tokio_tungstenite::client_async(req.body(()).unwrap(), io),
    )
    .await;
    match answer {
        Ok(pair) => Ok(pair),
        Err(tokio_tungstenite::tungstenite::Error::Http(refused)) => Err(*refused),
        Err(e) => panic!("websocket handshake: {e}"),
    }
}

/// Sends `msg` and expects the same message back.
pub async fn echo_roundtrip<S>(ws: &mut WebSocketStream<S>, msg: Message)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within("send", ws.send(msg.clone())).await.unwrap();
    let back = within("echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(back, msg);
}

/// Writes raw bytes and reads whatever comes back until the server closes (bounded).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = within("raw response", tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a response head (up to the blank line), failing the test if the peer closes first.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("response head", io.read(&mut byte)).await.unwrap();
        assert!(
            n > 0,
            "closed before a full head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Writes `bytes` on a new connection to `addr` and reads the response head.
pub async fn raw_head(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    read_head(&mut tcp).await
}

/// An HTTP/2 connection over TLS (ALPN `h2`) to `addr` for `host`.
pub async fn h2_over_tls(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let io = tls(addr, host, h2_config(config)).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// The next message that is not a Ping (tungstenite answers those itself): what a test
/// waits for on a socket wsgate keeps alive.
pub async fn next_past_pings<S>(
    ws: &mut WebSocketStream<S>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_))) => continue,
            other => return other,
        }
    }
}
