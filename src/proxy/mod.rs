//! The data plane: listeners, TLS, forwarding and the upgrade relay.
//!
//! Depends on [`crate::table`], [`crate::model`], [`crate::auth`] and [`crate::metrics`] only:
//! routes arrive as an `ArcSwap<RouteTable>` and the proxy neither knows nor cares which
//! source built it.
//!
//! Each request goes through the same phases (Pingora's `ProxyHttp` is the model): request
//! facts → [`decide`] (pure: route, redirect, reject) → `admit` (origin, per-client limits) →
//! `auth` (JWT, external auth; refusals are 401, the auth service's answer, or 503) → `connect` (pick an endpoint, connect, retry once elsewhere; shared by both paths) →
//! `forward` or `upgrade` (pure handshake builders, then the [`relay`]) → the log phase in
//! `handler` (HSTS, metrics). Every answer wsgate makes itself comes from [`answer`], whose
//! type says whose fault it was (client, backend, internal).
//!
//! Connection lifecycle: accept → (PROXY protocol header, when enabled) → (TLS handshake, with
//! ALPN `h2` or `http/1.1`, bounded by a timeout) → HTTP/1.1 with keep-alive, header read
//! timeout and header size limit, or HTTP/2 with extended CONNECT (RFC 8441) → per request:
//! decide → answer, forward over a pooled backend connection, or hand the socket to the relay
//! after a 101 (HTTP/1.1) or a 200 to the CONNECT (HTTP/2). On shutdown
//! (see [`DrainConfig`]) the listeners keep accepting for the drain delay and then close, idle
//! keep-alive connections close, in-flight requests finish, and relays are closed with 1001
//! spread over the drain window; the drain timeout cuts whatever is left.

mod access;
mod admit;
mod affinity;
pub mod answer;
mod auth;
pub mod client_ip;
mod connect;
pub mod decide;
pub mod drain;
mod forward;
pub mod frames;
mod handler;
pub mod headers;
pub mod limits;
pub mod proxy_protocol;
pub mod rebalance;
pub mod relay;
mod request_target;
pub mod splice;
mod throttle;
pub mod tls;
mod tracker;
mod upgrade;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::server::Acceptor;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use crate::metrics::Metrics;
use crate::table::{HealthPolicy, HostBuf, RouteTable, normalize_host};
use client_ip::TrustedProxies;
use decide::DecideConfig;
use handler::{Activity, ConnInfo, Shared};
use proxy_protocol::{Header, Prefixed};
use throttle::Throttle;
pub use tracker::Tracker;

/// A client connection's stream: TCP, with the bytes read after a PROXY header put back.
type ClientTcp = Prefixed<TcpStream>;

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
    /// Time a client has to send its PROXY protocol header (with `proxy_protocol`).
    pub proxy_header_timeout: Duration,
    /// Largest request head accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// One log line per request and per WebSocket connection (target `wsgate::access`).
    pub access_log: bool,
    /// Require a PROXY protocol (v1 or v2) header on every connection of both listeners.
    pub proxy_protocol: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Passive health checks of backend endpoints.
    pub health: HealthPolicy,
    /// An HTTP/2 connection with no open stream and no new request for this long gets a
    /// GOAWAY (HTTP/1.1 keep-alive connections idle out through `header_timeout`).
    pub h2_idle_timeout: Duration,
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
            proxy_header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            access_log: true,
            proxy_protocol: false,
            trusted_proxies: TrustedProxies::default(),
            health: HealthPolicy::default(),
            h2_idle_timeout: Duration::from_secs(75),
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
    tls: tls::ServerConfigs,
    shared: Arc<Shared>,
    builders: Builders,
    tls_handshake_timeout: Duration,
    proxy_header_timeout: Duration,
    proxy_protocol: bool,
    h2_idle: (Duration, Duration),
}

/// How client connections are served, per protocol.
#[derive(Clone)]
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
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
        let tls = tls::server_configs(resolver)?;
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_header_size(config.max_header_bytes)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            // A connection that carries quiet WebSockets sees no frames for long stretches:
            // pings tell a live browser from a vanished one.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let upstreams = upstream::Upstreams::new(config.health, metrics.backend_ejections.clone());
        let shared = Arc::new(Shared {
            table,
            upstreams,
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
            rebalance: Arc::default(),
            metrics,
            access_log: config.access_log,
            trusted: config.trusted_proxies.clone(),
            limiter: limits::ClientLimiter::new(limits::DEFAULT_CAPACITY),
        });
        Ok(Proxy {
            http,
            https,
            tls,
            shared,
            builders: Builders { http1, http2 },
            tls_handshake_timeout: config.tls_handshake_timeout,
            proxy_header_timeout: config.proxy_header_timeout,
            proxy_protocol: config.proxy_protocol,
            h2_idle: (config.header_timeout, config.h2_idle_timeout),
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
        let serving = Serving {
            shared: self.shared.clone(),
            builders: self.builders,
            conns: conns.clone(),
            stop: stop_rx,
            handshake_timeout: self.tls_handshake_timeout,
            proxy_header_timeout: self.proxy_header_timeout,
            proxy_protocol: self.proxy_protocol,
            idle: self.h2_idle,
        };
        let plain = tokio::spawn(accept_loop(self.http, None, serving.clone()));
        let secure = tokio::spawn(accept_loop(self.https, Some(self.tls), serving));
        let shared = &self.shared;
        let rebalance = tokio::spawn(shared.rebalance.clone().watch(shared.table.clone()));
        let upstreams = shared.upstreams.clone();
        let clock = Arc::new(move || upstreams.now_ms().max(1));
        let jwks = tokio::spawn(auth::refresh_jwks(
            shared.table.clone(),
            clock,
            shared.metrics.clone(),
        ));
        shutdown.await;
        // A draining replica closes every socket anyway.
        rebalance.abort();
        jwks.abort();
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

/// What every accepted connection needs.
#[derive(Clone)]
struct Serving {
    shared: Arc<Shared>,
    builders: Builders,
    conns: Tracker,
    stop: watch::Receiver<bool>,
    handshake_timeout: Duration,
    proxy_header_timeout: Duration,
    proxy_protocol: bool,
    /// HTTP/2: time to the first request, and idle time (no stream, no request) before GOAWAY.
    idle: (Duration, Duration),
}

/// How often a persisting accept error is logged.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, tls: Option<tls::ServerConfigs>, serving: Serving) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut stop = serving.stop.clone();
    let mut accept_errors = Throttle::new(ACCEPT_ERROR_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning on the error, and say
                // so once in a while rather than on every retry.
                if let Some(suppressed) = accept_errors.tick(std::time::Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "accept failed (file descriptors exhausted?); retrying");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let token = serving.conns.token();
        let serving = serving.clone();
        let configs = tls.clone();
        tokio::spawn(async move {
            let _token = token;
            let Some((io, peer)) = client_stream(tcp, peer, &serving).await else {
                return;
            };
            let info = |tls: bool, sni: Option<Box<str>>, h2: bool| ConnInfo {
                peer,
                peer_value: headers::ip_value(peer.ip()),
                local_port,
                tls,
                sni,
                activity: h2.then(Activity::default),
                tokens: auth::TokenCache::default(),
            };
            match configs {
                None => serve_connection(io, info(false, None, false), &serving).await,
                Some(configs) => {
                    let shared = &serving.shared;
                    let limit = serving.handshake_timeout;
                    let Some((tls, sni)) =
                        handshake(&configs, io, peer, limit, &shared.metrics).await
                    else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_connection(tls, info(true, sni, h2), &serving).await;
                }
            }
        });
    }
}

/// The client's stream and address: with `--proxy-protocol`, the address from the PROXY
/// header (a connection without a valid one is closed); otherwise the TCP peer.
async fn client_stream(
    mut tcp: TcpStream,
    peer: SocketAddr,
    serving: &Serving,
) -> Option<(ClientTcp, SocketAddr)> {
    if !serving.proxy_protocol {
        return Some((Prefixed::new(Default::default(), tcp), peer));
    }
    let read = proxy_protocol::read_header(&mut tcp);
    match tokio::time::timeout(serving.proxy_header_timeout, read).await {
        Ok(Ok((header, rest))) => {
            let client = match header {
                Header::Proxied(addr) => addr,
                Header::Local => peer,
            };
            Some((Prefixed::new(rest, tcp), client))
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "refused a connection without a valid PROXY header");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "no PROXY header in time");
            None
        }
    }
}

async fn handshake(
    configs: &tls::ServerConfigs,
    io: ClientTcp,
    peer: SocketAddr,
    limit: Duration,
    metrics: &Metrics,
) -> Option<(tokio_rustls::server::TlsStream<ClientTcp>, Option<Box<str>>)> {
    // The config is picked once the ClientHello is in (see `ServerConfigs::for_hello`).
    let accept = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        let config = configs.for_hello(&start.client_hello());
        start.into_stream(config).await
    };
    let outcome = tokio::time::timeout(limit, accept).await;
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
    Some((tls, sni))
}

async fn serve_connection<I>(io: I, info: ConnInfo, serving: &Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let conn_info = info.clone();
    let peer = info.peer;
    let shared = serving.shared.clone();
    let svc = service_fn(move |req| handler::handle(shared.clone(), info.clone(), req));
    let mut stop = serving.stop.clone();
    let io = TokioIo::new(io);
    // On the stop signal: finish the requests in flight, then close (idle connections close at
    // once; HTTP/2 gets a GOAWAY).
    let result = if let Some(activity) = &conn_info.activity {
        let conn = serving.builders.http2.serve_connection(io, svc);
        tokio::pin!(conn);
        // HTTP/2 has no header timeout of its own: a connection that never sends a request, or
        // sits with no stream open, gets a GOAWAY (HTTP/1.1's header timeout covers both).
        let idle = idle_h2(activity, serving.idle.0, serving.idle.1);
        let trigger = async {
            tokio::select! {
                _ = stopped(&mut stop) => {}
                _ = idle => {}
            }
        };
        until(conn, |c| c.graceful_shutdown(), trigger).await
    } else {
        let conn = serving
            .builders
            .http1
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::pin!(conn);
        until(conn, |c| c.graceful_shutdown(), stopped(&mut stop)).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Drives a connection; once `trigger` fires, starts its graceful shutdown and drives it to
/// the end.
async fn until<C: Future<Output = Result<(), hyper::Error>>>(
    mut conn: std::pin::Pin<&mut C>,
    graceful: fn(std::pin::Pin<&mut C>),
    trigger: impl Future<Output = ()>,
) -> Result<(), hyper::Error> {
    tokio::select! {
        r = conn.as_mut() => r,
        _ = trigger => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}

/// Resolves when an HTTP/2 connection has carried no request within `first` of opening, or
/// later has had no open stream and no new request for `idle`.
async fn idle_h2(activity: &Activity, first: Duration, idle: Duration) {
    let mut seen = 0;
    let mut wait = first;
    loop {
        tokio::time::sleep(wait).await;
        let requests = activity.requests.load(std::sync::atomic::Ordering::Relaxed);
        if requests == seen && activity.streams.active() == 0 {
            return;
        }
        seen = requests;
        wait = idle;
    }
}

/// Resolves once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The borrowed value is dropped here, so callers' futures stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}
