//! The demo chat room: an HTML page with a WebSocket client, and a hub that broadcasts each
//! message to everyone in the same room. `wsgate demo` runs it behind wsgate on loopback; the
//! container image can run it on its own (`wsgate demo --app-only`) as a backend.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::WebSocketRoute;
use crate::table::{Snapshot, TlsError, TlsSecret, self_signed};

const PAGE: &str = include_str!("chat.html");
/// Longest nickname, room name and message accepted (characters).
const MAX_NICK: usize = 32;
const MAX_TEXT: usize = 2000;

/// A chat event as the page sends and receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatEvent {
    /// `message`, `join` or `leave`.
    pub kind: String,
    /// Who.
    pub nick: String,
    /// What they said (empty for join/leave).
    #[serde(default)]
    pub text: String,
}

#[derive(Default)]
struct Hub {
    rooms: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
}

impl Hub {
    fn join(&self, room: &str) -> broadcast::Sender<Arc<str>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.retain(|_, tx| tx.receiver_count() > 0);
        rooms
            .entry(room.to_string())
            .or_insert_with(|| broadcast::channel(256).0)
            .clone()
    }
}

/// Serves the chat app on `listener` forever.
pub async fn serve(listener: TcpListener) {
    let hub = Arc::new(Hub::default());
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let hub = hub.clone();
                async move { Ok::<_, Infallible>(route(req, hub, peer)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// The demo's routes: `localhost` with a fresh self-signed certificate, the page and `/ws`
/// both served by the app at `app`.
pub fn snapshot(app: SocketAddr) -> Result<Snapshot, DemoError> {
    let route: WebSocketRoute = serde_yaml::from_str(&format!(
        r#"
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: {{ name: chat, namespace: demo }}
spec:
  hostnames: ["localhost"]
  tls: {{ secretName: chat-tls }}
  rules:
    - pathPrefix: /
      http: {{ backend: {{ address: "{app}" }} }}
    - pathPrefix: /ws
      websocket: {{ backend: {{ address: "{app}" }} }}
"#
    ))?;
    let (cert, key) = self_signed(&["localhost".to_string()])?;
    Ok(Snapshot {
        routes: vec![Arc::new(crate::api::translate(&route))],
        secrets: vec![TlsSecret {
            namespace: "demo".into(),
            name: "chat-tls".into(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            ca_pem: None,
        }],
        ..Default::default()
    })
}

/// Why the demo's routes could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The route YAML did not parse (a bug).
    #[error("demo route: {0}")]
    Route(#[from] serde_yaml::Error),
    /// The certificate could not be generated.
    #[error(transparent)]
    Certificate(#[from] TlsError),
}

/// The server's `101 Switching Protocols` answer to a WebSocket handshake with this
/// `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn switching_protocols(key: &header::HeaderValue) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    r
}

/// Binds the app on `addr` and serves it in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(bound)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Room and nickname: letters, digits, '-', '_' only, so nothing needs escaping anywhere.
fn clean_name(raw: Option<&str>, fallback: &str) -> String {
    let cleaned: String = raw
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(MAX_NICK)
        .collect();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned
    }
}

fn route(mut req: Request<Incoming>, hub: Arc<Hub>, peer: SocketAddr) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/" | "/index.html" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/whoami" => {
            // Shows what the proxy told the backend; handy when trying wsgate out.
            let h = req.headers();
            let get = |n: &str| {
                h.get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            let body = format!(
                "peer: {peer}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\nx-real-ip: {}\n",
                get("host"),
                get("x-forwarded-for"),
                get("x-forwarded-proto"),
                get("x-real-ip")
            );
            respond(StatusCode::OK, "text/plain", body)
        }
        "/ws" => {
            let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                return respond(
                    StatusCode::UPGRADE_REQUIRED,
                    "text/plain",
                    "WebSocket only\n",
                );
            };
            let query = req.uri().query().unwrap_or("");
            let room = clean_name(query_param(query, "room"), "lobby");
            let nick = clean_name(query_param(query, "nick"), "guest");
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let ws = WebSocketStream::from_raw_socket(
                            TokioIo::new(upgraded),
                            Role::Server,
                            None,
                        )
                        .await;
                        chat(ws, hub, room, nick).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "demo upgrade failed"),
                }
            });
            switching_protocols(&key)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

async fn chat<S>(ws: WebSocketStream<S>, hub: Arc<Hub>, room: String, nick: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tx = hub.join(&room);
    let mut rx = tx.subscribe();
    let (mut sink, mut stream) = ws.split();
    let event = |kind: &str, text: String| -> Arc<str> {
        let e = ChatEvent {
            kind: kind.into(),
            nick: nick.clone(),
            text,
        };
        serde_json::to_string(&e).unwrap_or_default().into()
    };
    let _ = tx.send(event("join", String::new()));
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let text: String = text.as_str().chars().take(MAX_TEXT).collect();
                    if !text.trim().is_empty() {
                        let _ = tx.send(event("message", text));
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the answering Close (RFC 6455 §5.5.1); send it so
                    // the client sees a clean close instead of 1006.
                    let _ = sink.close().await;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Ok(line) => {
                    if sink.send(Message::text(line.to_string())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    let _ = tx.send(event("leave", String::new()));
}
