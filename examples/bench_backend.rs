//! Benchmark backend: a fixed-body HTTP server and a WebSocket echo server in one program,
//! fast enough not to be the bottleneck. With `--tls ADDR --cert PEM --key PEM` it also
//! terminates TLS itself (the "no proxy hop" ceiling row of bench/run.sh).
//!
//! `cargo run --release --example bench_backend -- --listen 127.0.0.1:9101 [--listen ...]`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

const BODY: &[u8] = b"hello from the benchmark backend\n";

fn answer(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let key = req.headers().get("sec-websocket-key").cloned();
    let Some(key) = key else {
        let mut r = Response::new(Full::new(Bytes::from_static(BODY)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        return r;
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrade.await {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            echo(ws).await;
        }
    });
    wsgate::demo::switching_protocols(&key)
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocketStream<S>) {
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(msg)) = rx.next().await {
        if msg.is_close() {
            break;
        }
        if (msg.is_text() || msg.is_binary()) && tx.send(msg).await.is_err() {
            break;
        }
    }
}

async fn serve<S>(io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(|req| async move { Ok::<_, Infallible>(answer(req)) });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

fn arg(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut tasks = Vec::new();
    for addr in arg(&args, "--listen") {
        let listener = TcpListener::bind(addr.parse::<SocketAddr>()?).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve(tcp));
                }
            }
        }));
    }
    if let (Some(addr), Some(cert), Some(key)) = (
        arg(&args, "--tls").pop(),
        arg(&args, "--cert").pop(),
        arg(&args, "--key").pop(),
    ) {
        let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&key)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr.parse::<SocketAddr>()?).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls).await;
                        }
                    });
                }
            }
        }));
    }
    println!("ready");
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
