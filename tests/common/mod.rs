//! Test fixtures: a test CA issuing real certificates, route folders, loopback backends (an
//! HTTP echo server and a WebSocket echo server), and clients speaking real HTTP/1.1, TLS and
//! WebSocket to a gateway started in-process.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
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
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};

use wsgate::gateway::{Gateway, GatewayOptions, Routes};
use wsgate::proxy::ProxyConfig;

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `fut` with [`DEADLINE`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

// ---------------------------------------------------------------- certificates

/// A CA that issues leaf certificates, and a client config that trusts only it.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, plus the DER to compare with what a server sent.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsgate test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_until(names, (2040, 1, 1))
    }

    /// The CA certificate, PEM: what a `ca.crt` holds.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf whose notAfter is midnight UTC of the given (year, month, day).
    pub fn leaf_until(&self, names: &[&str], (y, m, d): (i32, u8, u8)) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A client config that accepts any certificate: for tests that inspect which one was served.
/// (wsgate's own config for unverified TLS backends.)
pub fn trust_anything() -> Arc<rustls::ClientConfig> {
    wsgate::table::backend_client_config(None).unwrap()
}

/// A `kubernetes.io/tls` Secret document.
pub fn secret_yaml(namespace: &str, name: &str, leaf: &Leaf) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: {namespace} }}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&leaf.cert_pem),
        indent(&leaf.key_pem)
    )
}

/// A `kubernetes.io/tls` Secret that also carries `ca.crt` (as cert-manager writes them).
pub fn secret_with_ca_yaml(namespace: &str, name: &str, leaf: &Leaf, ca_pem: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "{}  ca.crt: |\n{}",
        secret_yaml(namespace, name, leaf),
        indent(ca_pem)
    )
}

/// A client config offering ALPN `h2` (and only that).
pub fn h2_config(base: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut config = (*base).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

// ---------------------------------------------------------------- gateway

/// A routes folder.
pub struct RoutesDir {
    pub dir: tempfile::TempDir,
}

impl RoutesDir {
    pub fn new() -> Self {
        RoutesDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file atomically (write + rename), as editors and ConfigMap mounts do.
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }
}

/// Options for a test gateway: everything on loopback with ephemeral ports.
pub fn options(dir: &Path) -> GatewayOptions {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut proxy = ProxyConfig::new(any, any);
    proxy.header_timeout = Duration::from_secs(1);
    GatewayOptions {
        routes: Routes::Dir(dir.to_path_buf()),
        proxy,
        admin_listen: any,
        drain: wsgate::proxy::DrainConfig::immediate(Duration::from_secs(5)),
    }
}

pub async fn start(dir: &Path) -> Gateway {
    Gateway::start(options(dir)).await.unwrap()
}

/// A route document.
pub fn route_yaml(name: &str, body: &str) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: {name}, namespace: default }}\nspec:\n{body}"
    )
}

/// Polls `check` until it holds (bounded by [`DEADLINE`]): for waiting on a hot reload, whose
/// completion has no other signal a client can observe.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        if start.elapsed() > DEADLINE {
            panic!("never happened: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- backends

/// An HTTP backend that answers every request with what it received:
/// `METHOD PATH\nheader: value\n...\n\nbody-length`. `/slow?ms=N` waits N ms first;
/// `/status/N` answers status N; `/big` answers 1 MiB.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

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
    pub addr: SocketAddr,
    pub handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    /// Close frames received, with their codes.
    pub closes: Arc<Mutex<Vec<u16>>>,
}

pub async fn ws_backend() -> WsBackend {
    ws_backend_at("127.0.0.1:0".parse().unwrap()).await
}

/// A WebSocket echo backend on `addr`.
pub async fn ws_backend_at(addr: SocketAddr) -> WsBackend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let closed = closes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let callback =
                    |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
                        seen.lock().unwrap().push(req.headers().clone());
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
        closes,
    }
}

/// A TLS terminator in front of `target` presenting `leaf`: turns any test backend into a TLS
/// backend. Returns its address.
pub async fn tls_front(target: SocketAddr, leaf: &Leaf) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
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

// ---------------------------------------------------------------- clients

/// A response with its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

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
    let (ws, resp) = within(
        "websocket handshake",
        tokio_tungstenite::client_async(req.body(()).unwrap(), io),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
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

// ---------------------------------------------------------------- metrics

/// Scrapes `/metrics` and parses the text exposition format into `name{labels}` → value, with
/// labels sorted by name (`wsgate_routes{state="programmed"}`).
pub async fn scrape(admin: SocketAddr) -> std::collections::HashMap<String, f64> {
    let reply = http(admin, request("GET", "admin", "/metrics")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").starts_with("text/plain"));
    let mut out = std::collections::HashMap::new();
    for line in reply.text().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let key = match series.split_once('{') {
            None => series.to_string(),
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels {line:?}"));
                let mut pairs: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
                pairs.sort();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        out.insert(key, value);
    }
    out
}

// ---------------------------------------------------------------- the binary

/// A `wsgate run` child process with JSON logs on ephemeral loopback ports.
pub struct Binary {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    /// Its log lines, as they come (the reader thread ends with the child's stderr).
    pub log: std::sync::mpsc::Receiver<String>,
}

/// Starts `wsgate run --routes DIR` plus `extra` flags; returns once it logs that it listens.
pub fn spawn_wsgate_run(routes: &Path, extra: &[&str]) -> Binary {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args([
            "run",
            "--log-format",
            "json",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--routes")
        .arg(routes)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(DEADLINE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsgate never said it was listening");
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "wsgate listening" {
            let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
            return Binary {
                child,
                http: addr("http"),
                admin: addr("admin"),
                log: rx,
            };
        }
    }
}

impl Binary {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// Waits for the exit (bounded) and returns its code with every log line.
    pub async fn wait(self) -> (Option<i32>, Vec<String>) {
        let Binary { mut child, log, .. } = self;
        let status = within("exit", tokio::task::spawn_blocking(move || child.wait()))
            .await
            .unwrap()
            .unwrap();
        (status.code(), log.iter().collect())
    }
}
