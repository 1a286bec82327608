//! Loopback backends: an HTTP echo server, a WebSocket echo server, a TLS front.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};

use crate::*;

/// An HTTP backend that answers every request with what it received:
/// `METHOD PATH\nheader: value\n...\n\nbody-length`. `/slow?ms=N` waits N ms first;
/// `/status/N` answers status N; `/big` answers 1 MiB.
pub struct HttpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

/// An HTTP echo backend on an ephemeral loopback port.
pub async fn http_backend() -> HttpBackend {
    http_backend_at("127.0.0.1:0".parse().unwrap()).await
}

/// An HTTP echo backend on `addr`; its answers carry `x-served-by: <its address>`.
pub async fn http_backend_at(addr: SocketAddr) -> HttpBackend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let mut resp = echo(req).await;
                    resp.headers_mut()
                        .insert("x-served-by", addr.to_string().parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    HttpBackend { addr, connections }
}

async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/slow" {
        let ms: u64 = query.trim_start_matches("ms=").parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/big" {
        return Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20])));
    }
    let mut text = format!("{} {}", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("\n\n{}", body.len()));
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        *resp.status_mut() = StatusCode::from_u16(code).unwrap();
    }
    resp
}

/// A WebSocket echo backend recording the handshake headers it saw. `/reject` answers 403.
pub struct WsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Headers of every handshake, in order.
    pub handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    /// Request targets of every handshake, in order.
    pub targets: Arc<Mutex<Vec<String>>>,
    /// Close frames received, with their codes.
    pub closes: Arc<Mutex<Vec<u16>>>,
    /// Ping and Pong frames received (tungstenite answers the Pings itself).
    pub controls: Arc<Mutex<Vec<Message>>>,
}

/// A WebSocket echo backend on an ephemeral loopback port.
pub async fn ws_backend() -> WsBackend {
    ws_backend_at("127.0.0.1:0".parse().unwrap()).await
}

/// A WebSocket echo backend on `addr`.
pub async fn ws_backend_at(addr: SocketAddr) -> WsBackend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    let targets = Arc::new(Mutex::new(Vec::new()));
    let target = targets.clone();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let closed = closes.clone();
    let controls = Arc::new(Mutex::new(Vec::new()));
    let control = controls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            let target = target.clone();
            let closed = closed.clone();
            let control = control.clone();
            tokio::spawn(async move {
                let callback =
                    |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
                        seen.lock().unwrap().push(req.headers().clone());
                        target.lock().unwrap().push(req.uri().to_string());
                        if req.uri().path() == "/reject" {
                            let mut e = ErrorResponse::new(Some("go away".into()));
                            *e.status_mut() = StatusCode::FORBIDDEN;
                            return Err(e);
                        }
                        // Accept the first subprotocol offered, as a real chat server would.
                        let mut resp = resp;
                        if let Some(proto) = req.headers().get("sec-websocket-protocol") {
                            let first = proto
                                .to_str()
                                .unwrap_or("")
                                .split(',')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_string();
                            resp.headers_mut()
                                .insert("sec-websocket-protocol", first.parse().unwrap());
                        }
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                        control.lock().unwrap().push(msg.clone());
                    }
                    if let Message::Close(frame) = &msg {
                        let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                        closed.lock().unwrap().push(code);
                    }
                    let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                    if matches!(msg, Message::Close(_)) || (echo && ws.send(msg).await.is_err()) {
                        break;
                    }
                }
            });
        }
    });
    WsBackend {
        addr,
        handshakes,
        targets,
        closes,
        controls,
    }
}

/// A pod serving what a Socket.IO server does on one port: normal requests answered as
/// [`http_backend_at`] does, and WebSocket upgrades echoed; both answers (the 101 too) carry
/// `x-served-by: <its address>`.
pub async fn pod_at(addr: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let mut resp = match req.headers().get("sec-websocket-key").cloned() {
                        Some(key) => upgrade_to_echo(req, key.as_bytes()),
                        None => echo(req).await,
                    };
                    resp.headers_mut()
                        .insert("x-served-by", addr.to_string().parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Answers a WebSocket handshake with 101 and echoes messages on the upgraded connection.
fn upgrade_to_echo(mut req: Request<Incoming>, key: &[u8]) -> Response<Full<Bytes>> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let accept = derive_accept_key(key);
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A TLS terminator in front of `target` presenting `leaf`: turns any test backend into a TLS
/// backend. Returns its address.
pub async fn tls_front(target: SocketAddr, leaf: &Leaf) -> SocketAddr {
    tls_front_alpn(target, leaf, &[]).await
}

/// As [`tls_front`], negotiating only the ALPN protocols in `alpn` (when not empty): a client
/// offering none of them fails the handshake, as a gRPC server does without `h2`.
pub async fn tls_front_alpn(target: SocketAddr, leaf: &Leaf, alpn: &[&[u8]]) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

/// An address with nothing listening.
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A backend that answers every request with the same bytes, whatever it asked, and records
/// each request head it read: for backends that misbehave on purpose (a 101 to the wrong
/// protocol, a 101 to a plain request). After answering it holds the connection until the
/// peer closes, as a switched connection would.
pub struct CannedBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every request head, lower-cased, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
}

/// A [`CannedBackend`] answering `response`.
pub async fn canned_backend(response: &'static str) -> CannedBackend {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tcp.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(text);
                if tcp.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                let mut sink = [0u8; 1024];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    CannedBackend { addr, heads }
}
