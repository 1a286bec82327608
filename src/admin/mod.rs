//! The admin listener (`/healthz`, `/readyz`, `/metrics`) and tracing setup.
//!
//! Depends only on [`crate::metrics`], whose registry it serves; the wiring sets [`Health`] as
//! the process moves from starting to ready to draining.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::metrics::Metrics;
use tokio::net::TcpListener;

/// Liveness and readiness, shared between the wiring and the admin listener.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Marks the first configuration loaded and the listeners bound.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the process as draining: `/readyz` turns false so traffic moves elsewhere.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>, metrics: Arc<Metrics>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = answer(&req, &health, metrics.registry());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

fn answer(req: &Request<Incoming>, health: &Health, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if health.is_ready() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready\n"),
        ),
        "/metrics" => {
            let mut out = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut out) {
                Ok(()) => (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    Bytes::from(out),
                ),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    Bytes::from(format!("encoding metrics failed: {e}\n")),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// `level` plus quieter defaults for dependencies: rustls warns once per handshake about
/// things clients do (an IP address as SNI, say), which would flood the log under load. A
/// directive for the crate in `level` wins.
fn default_directives(level: &str) -> String {
    if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber. `level` is an env-filter directive such as `info`
/// or `wsgate=debug`; `RUST_LOG` overrides it.
pub fn init_tracing(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_directives(level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_noise_is_filtered_unless_asked_for() {
        assert_eq!(default_directives("info"), "info,rustls=error");
        assert_eq!(
            default_directives("debug,rustls=debug"),
            "debug,rustls=debug"
        );
    }
    use http_body_util::{BodyExt, Empty};

    async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
        let io = TokioIo::new(
            tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "admin")
            .body(Empty::<Bytes>::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = tx.send_request(req).await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_the_lifecycle() {
        let listener = bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let health = Arc::new(Health::default());
        let server = tokio::spawn(serve(listener, health.clone(), Arc::new(Metrics::new())));
        // Starting: alive but not ready.
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(addr, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready();
        assert_eq!(get(addr, "/readyz").await.0, StatusCode::OK);
        // Draining: alive, not ready.
        health.set_draining();
        assert_eq!(
            get(addr, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("\nwsgate_leader 0\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert_eq!(get(addr, "/nope").await.0, StatusCode::NOT_FOUND);
        server.abort();
    }
}
