//! The data plane: listeners, TLS, forwarding and the upgrade relay.
//!
//! Depends on [`crate::table`] only: routes arrive as an `ArcSwap<RouteTable>` and the proxy
//! neither knows nor cares which source built it. Inside, [`decide`] is the pure step that
//! turns a request into a decision and `handler` is the thin step that carries it out.
//!
//! Connection lifecycle: accept → (TLS handshake, bounded by a timeout) → HTTP/1.1 with
//! keep-alive, header read timeout and header size limit → per request: decide → answer,
//! forward through a pooled client, or hand the socket to the relay after a 101. On shutdown
//! (see [`DrainConfig`]) the listeners keep accepting for the drain delay and then close, idle
//! keep-alive connections close, in-flight requests finish, and relays are closed with 1001
//! spread over the drain window; the drain timeout cuts whatever is left.

mod access;
pub mod decide;
pub mod drain;
pub mod frames;
mod handler;
pub mod headers;
pub mod relay;
pub mod tls;
mod tracker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::Metrics;
use crate::table::{HostBuf, RouteTable, normalize_host};
use decide::DecideConfig;
use handler::{ConnInfo, Shared};
pub use tracker::Tracker;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain-HTTP listener.
    pub http_listen: SocketAddr,
    /// TLS listener.
    pub https_listen: SocketAddr,
    /// Port written into `https://` redirects (omitted when 443; 0 means the TLS listener's
    /// own port).
    pub https_redirect_port: u16,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Largest request head accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// One log line per request and per WebSocket connection (target `wsgate::access`).
    pub access_log: bool,
}

impl ProxyConfig {
    /// Defaults on the given addresses.
    pub fn new(http_listen: SocketAddr, https_listen: SocketAddr) -> Self {
        ProxyConfig {
            http_listen,
            https_listen,
            https_redirect_port: 443,
            header_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            access_log: true,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A bound listener's address could not be read.
    #[error("listener on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl ProxyError {
    /// Wraps an I/O error about the listener on `addr`.
    pub fn from_io(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ProxyError {
        move |source| ProxyError::Io { addr, source }
    }
}

/// Bound listeners, ready to serve.
pub struct Proxy {
    http: TcpListener,
    https: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    builder: http1::Builder,
    tls_handshake_timeout: Duration,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections and relays still open when the drain timeout ended the drain.
    pub cut: usize,
}

impl Proxy {
    /// Binds both listeners. The proxy serves whatever table `table` holds at each request.
    pub async fn bind(
        config: &ProxyConfig,
        table: Arc<ArcSwap<RouteTable>>,
        default_cert: Arc<CertifiedKey>,
        metrics: Arc<Metrics>,
    ) -> Result<Proxy, ProxyError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })
        };
        let http = bind(config.http_listen).await?;
        let https = bind(config.https_listen).await?;
        let resolver = tls::SniResolver::new(table.clone(), default_cert);
        let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(resolver)?));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(config.max_header_bytes)
            .keep_alive(true);
        let shared = Arc::new(Shared {
            table,
            client: handler::pooled_client(),
            decide: DecideConfig {
                https_redirect_port: match config.https_redirect_port {
                    0 => https
                        .local_addr()
                        .map_err(ProxyError::from_io(config.https_listen))?
                        .port(),
                    port => port,
                },
            },
            relays: Tracker::default(),
            drain: Arc::default(),
            metrics,
            access_log: config.access_log,
        });
        Ok(Proxy {
            http,
            https,
            acceptor,
            shared,
            builder,
            tls_handshake_timeout: config.tls_handshake_timeout,
        })
    }

    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The bound TLS address.
    pub fn https_addr(&self) -> std::io::Result<SocketAddr> {
        self.https.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains (see [`DrainConfig`]) and returns what
    /// was still open when the drain timeout ended it.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        drain: DrainConfig,
    ) -> ShutdownReport {
        let (stop_tx, stop_rx) = watch::channel(false);
        let conns = Tracker::default();
        let plain = tokio::spawn(accept_loop(
            self.http,
            None,
            self.shared.clone(),
            self.builder.clone(),
            conns.clone(),
            stop_rx.clone(),
            self.tls_handshake_timeout,
        ));
        let secure = tokio::spawn(accept_loop(
            self.https,
            Some(self.acceptor),
            self.shared.clone(),
            self.builder,
            conns.clone(),
            stop_rx,
            self.tls_handshake_timeout,
        ));
        shutdown.await;
        let deadline = tokio::time::Instant::now() + drain.timeout;
        // Keep accepting while endpoints controllers and load balancers notice /readyz.
        tokio::time::sleep(drain.delay).await;
        let _ = stop_tx.send(true);
        // The loops return on the signal; their listeners drop, so new connections are refused.
        // Idle keep-alive connections close; in-flight requests finish with `Connection: close`.
        let _ = tokio::join!(plain, secure);
        let websockets = self.shared.drain.start(drain.window);
        tracing::info!(
            websockets,
            window_secs = drain.window.as_secs_f64(),
            "draining: closing WebSockets with 1001 Going Away"
        );
        let relays = self.shared.relays.clone();
        let drained = tokio::time::timeout_at(deadline, async {
            conns.wait_idle().await;
            relays.wait_idle().await;
        })
        .await;
        let cut = if drained.is_ok() {
            0
        } else {
            conns.active() + relays.active()
        };
        ShutdownReport { cut }
    }
}

/// How a shutdown drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    /// How long the listeners keep accepting after the signal (while `/readyz` is false).
    pub delay: Duration,
    /// Open WebSockets are closed at moments spread evenly over this window.
    pub window: Duration,
    /// From the signal: whatever is still open then is cut.
    pub timeout: Duration,
}

impl DrainConfig {
    /// Close everything at once, waiting at most `timeout`.
    pub fn immediate(timeout: Duration) -> Self {
        DrainConfig {
            delay: Duration::ZERO,
            window: Duration::ZERO,
            timeout,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    builder: http1::Builder,
    conns: Tracker,
    mut stop: watch::Receiver<bool>,
    handshake_timeout: Duration,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let token = conns.token();
        let shared = shared.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _token = token;
            match acceptor {
                None => {
                    let info = ConnInfo {
                        peer,
                        peer_value: headers::ip_value(peer.ip()),
                        local_port,
                        tls: false,
                        sni: None,
                    };
                    serve_connection(tcp, info, shared, builder, stop).await;
                }
                Some(acceptor) => {
                    let Some((tls, info)) = handshake(
                        &acceptor,
                        tcp,
                        peer,
                        local_port,
                        handshake_timeout,
                        &shared.metrics,
                    )
                    .await
                    else {
                        return;
                    };
                    serve_connection(tls, info, shared, builder, stop).await;
                }
            }
        });
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    local_port: u16,
    limit: Duration,
    metrics: &Metrics,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, ConnInfo)> {
    let outcome = tokio::time::timeout(limit, acceptor.accept(tcp)).await;
    let result = match &outcome {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    metrics.tls_handshakes.with_label_values(&[result]).inc();
    let tls = match outcome {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let mut buf = HostBuf::default();
    let sni = tls
        .get_ref()
        .1
        .server_name()
        .and_then(|n| normalize_host(n, &mut buf))
        .map(Box::from);
    let info = ConnInfo {
        peer,
        peer_value: headers::ip_value(peer.ip()),
        local_port,
        tls: true,
        sni,
    };
    Some((tls, info))
}

async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    shared: Arc<Shared>,
    builder: http1::Builder,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let peer = info.peer;
    let svc = service_fn(move |req| handler::handle(shared.clone(), info.clone(), req));
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            // Finish the request in flight, then close (idle connections close at once).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrowed value is dropped here, so callers' futures stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}
