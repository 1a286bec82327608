//! Connections to backends: TCP or TLS connect with passive health accounting, and a small
//! keep-alive pool per (endpoint, TLS profile).
//!
//! wsgate connects before it sends, so a request whose connect failed is still whole and can
//! be retried on another endpoint; a pooled connection that turns out to be closed hands the
//! request back (hyper's `try_send_request`) and a fresh connection is opened.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::connect::ConnectFailed;

/// A request body on its way to a backend, cut off (as an error) beyond the rule's size limit.
pub(crate) type RequestBody = http_body_util::Limited<Incoming>;
use crate::table::{ActiveGuard, BackendSet, BackendTlsEntry, Endpoint, FnvMap, HealthPolicy};

/// How long to wait for a backend TCP connection (and its TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pooled connections unused this long are closed rather than reused (backends close idle
/// keep-alive connections too, and reusing one just as it closes fails the request).
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per pool key.
const POOL_MAX_IDLE: usize = 256;

/// Why a backend connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP connect or TLS handshake took too long.
    #[error("connect timed out")]
    Timeout,
    /// TCP connect failed.
    #[error("connect: {0}")]
    Tcp(io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// `backend.tls` names a CA Secret that is missing or unusable.
    #[error("no usable CA for the backend's certificate (see the route's status)")]
    NoTrust,
    /// The HTTP handshake on the new connection failed.
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
}

/// What sending a request to a backend gives: once the request (maybe) left, the response or
/// the exchange's error; without a connection, the request back, unread, for a retry. Shaped
/// for [`connect_with_retry`](super::connect::connect_with_retry), so forwarding hands it the
/// send future itself.
pub(crate) type Sent =
    Result<Result<Response<UpstreamBody>, hyper::Error>, ConnectFailed<Request<RequestBody>>>;

/// A backend byte stream: plain TCP or TLS.
pub(crate) enum BackendIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for BackendIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendIo::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendIo::Plain(s) => Pin::new(s).poll_write(cx, b),
            BackendIo::Tls(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendIo::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendIo::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendIo::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendIo::Plain(s) => s.is_write_vectored(),
            BackendIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Connections are shared only between backends that reach the same address the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    /// The TLS client config (its address) and server name; 0 for plain TCP.
    tls: (usize, u64),
    h2: bool,
}

impl PoolKey {
    fn new(backend: &BackendSet, endpoint: &Endpoint) -> Self {
        let tls = backend.tls.as_ref().map_or((0, 0), |t| {
            let config = t.config.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize);
            let name = crate::table::hash_bytes(t.server_name.to_str().as_bytes());
            (config, name)
        });
        PoolKey {
            addr: endpoint.addr,
            tls,
            h2: backend.h2c,
        }
    }
}

struct IdleConn {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl IdleConn {
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() <= POOL_IDLE
    }
}

/// Backend connections of one proxy.
pub(crate) struct Upstreams {
    /// Most recently returned at the back.
    idle: Mutex<FnvMap<PoolKey, VecDeque<IdleConn>>>,
    h2: Mutex<FnvMap<PoolKey, http2::SendRequest<RequestBody>>>,
    health: HealthPolicy,
    ejections: prometheus::IntCounter,
    epoch: Instant,
}

impl Upstreams {
    /// The pool of one proxy, with a task that closes expired idle connections (it ends when
    /// the pool is dropped). Must be called inside the runtime.
    pub(crate) fn new(health: HealthPolicy, ejections: prometheus::IntCounter) -> Arc<Self> {
        let pool = Arc::new(Upstreams {
            idle: Mutex::default(),
            h2: Mutex::default(),
            health,
            ejections,
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POOL_IDLE / 2);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => return,
                }
            }
        });
        pool
    }

    /// Drops expired and closed connections, including those of backends no longer used.
    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain(IdleConn::usable);
        }
        idle.retain(|_, list| !list.is_empty());
        drop(idle);
        let mut h2 = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        h2.retain(|_, sender| !sender.is_closed());
    }

    /// Milliseconds since the proxy started: the clock of endpoint ejections.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A new connection to `endpoint` of `backend`, TLS when the backend asks for it, within
    /// the backend's connect timeout. Records the outcome for passive health.
    pub(crate) async fn connect(
        &self,
        backend: &BackendSet,
        endpoint: &Endpoint,
    ) -> Result<BackendIo, ConnectError> {
        let tls = backend.tls.as_deref();
        let limit = backend.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let result = tokio::time::timeout(limit, connect_io(endpoint.addr, tls))
            .await
            .unwrap_or(Err(ConnectError::Timeout));
        match &result {
            Ok(_) => endpoint.state.connect_succeeded(),
            Err(ConnectError::NoTrust) => {}
            Err(_) => {
                if endpoint.state.connect_failed(self.now_ms(), self.health) {
                    self.ejections.inc();
                    tracing::warn!(
                        backend = %endpoint.addr,
                        backoff_ms = self.health.backoff_ms,
                        "endpoint ejected after consecutive connect failures"
                    );
                }
            }
        }
        result
    }

    /// Sends a request to `endpoint` over a pooled or new connection. The response body
    /// returns the connection to the pool when it ends and holds `active` until then.
    pub(crate) async fn send(
        self: &Arc<Self>,
        backend: &BackendSet,
        endpoint: &Endpoint,
        mut req: Request<RequestBody>,
        active: ActiveGuard,
    ) -> Sent {
        let key = PoolKey::new(backend, endpoint);
        if key.h2 {
            return self.send_h2(backend, endpoint, key, req, active).await;
        }
        loop {
            let (mut sender, reused) = match self.checkout(key).await {
                Some(sender) => (sender, true),
                None => match self.handshake_h1(backend, endpoint).await {
                    Ok(sender) => (sender, false),
                    Err(e) => return Err(ConnectFailed::new(e, req)),
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let give_back = GiveBack {
                        sender,
                        pool: self.clone(),
                        key,
                    };
                    return Ok(Ok(resp.map(|inner| UpstreamBody {
                        inner,
                        give_back: Some(give_back),
                        _active: Some(active),
                    })));
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection closed under us before the request left: the request
                    // is whole, so try a fresh connection.
                    Some(back) if reused => req = back,
                    _ => return Ok(Err(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        &self,
        backend: &BackendSet,
        endpoint: &Endpoint,
        key: PoolKey,
        req: Request<RequestBody>,
        active: ActiveGuard,
    ) -> Sent {
        let shared = {
            let map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&key).filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match shared {
            Some(sender) => sender,
            None => {
                let io = match self.connect(backend, endpoint).await {
                    Ok(io) => io,
                    Err(e) => return Err(ConnectFailed::new(e, req)),
                };
                let (sender, conn) =
                    match http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await {
                        Ok(pair) => pair,
                        Err(e) => {
                            return Err(ConnectFailed::new(ConnectError::Handshake(e), req));
                        }
                    };
                tokio::spawn(conn);
                let mut map = self.h2.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(key, sender.clone());
                sender
            }
        };
        match sender.send_request(req).await {
            Ok(resp) => Ok(Ok(resp.map(|inner| UpstreamBody {
                inner,
                give_back: None,
                _active: Some(active),
            }))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn handshake_h1(
        &self,
        backend: &BackendSet,
        endpoint: &Endpoint,
    ) -> Result<http1::SendRequest<RequestBody>, ConnectError> {
        let io = self.connect(backend, endpoint).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The most recently used idle connection that is still open.
    async fn checkout(&self, key: PoolKey) -> Option<http1::SendRequest<RequestBody>> {
        loop {
            let idle = {
                let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = map.get_mut(&key)?;
                let idle = list.pop_back();
                if list.is_empty() {
                    map.remove(&key);
                }
                idle?
            };
            if !idle.usable() {
                continue;
            }
            let mut sender = idle.sender;
            // The connection may still be finishing the previous exchange.
            if sender.is_ready()
                || tokio::time::timeout(Duration::from_secs(1), sender.ready())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                return Some(sender);
            }
        }
    }

    fn checkin(&self, key: PoolKey, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key).or_default();
        // The oldest (front) make room: the warm ones are the ones to keep.
        if list.len() >= POOL_MAX_IDLE {
            list.pop_front();
        }
        list.push_back(IdleConn {
            sender,
            since: Instant::now(),
        });
    }
}

async fn connect_io(
    addr: SocketAddr,
    tls: Option<&BackendTlsEntry>,
) -> Result<BackendIo, ConnectError> {
    let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(BackendIo::Plain(tcp));
    };
    let config = tls.config.clone().ok_or(ConnectError::NoTrust)?;
    let stream = TlsConnector::from(config)
        .connect(tls.server_name.clone(), tcp)
        .await
        .map_err(ConnectError::Tls)?;
    Ok(BackendIo::Tls(Box::new(stream)))
}

struct GiveBack {
    sender: http1::SendRequest<RequestBody>,
    pool: Arc<Upstreams>,
    key: PoolKey,
}

/// A backend's response body. When it ends, its connection goes back to the pool; dropped
/// early, the connection closes (it may still carry unread bytes).
pub struct UpstreamBody {
    inner: Incoming,
    give_back: Option<GiveBack>,
    _active: Option<ActiveGuard>,
}

impl UpstreamBody {
    /// A body whose connection is not pooled (a refused upgrade's answer).
    pub(crate) fn unpooled(inner: Incoming) -> Self {
        UpstreamBody {
            inner,
            give_back: None,
            _active: None,
        }
    }

    fn release(&mut self) {
        if let Some(g) = self.give_back.take() {
            g.pool.checkin(g.key, g.sender);
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Bodiless answers (HEAD, 204, 304) are never polled to their end.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::BackendSet;

    /// A backend that accepts connections and holds them open (enough for a pooled sender).
    async fn listener() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = l.accept().await {
                held.push(tcp);
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_sweeper_drops_expired_idle_connections_and_checkout_prefers_fresh_ones() {
        let pool = Upstreams::new(
            HealthPolicy::default(),
            prometheus::IntCounter::new("x", "x").unwrap_or_else(|e| panic!("{e}")),
        );
        let addr = listener().await;
        let backend = BackendSet::new("b", vec![addr]);
        let endpoint = &backend.endpoints()[0];
        let key = PoolKey::new(&backend, endpoint);
        for _ in 0..2 {
            let sender = pool
                .handshake_h1(&backend, endpoint)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            pool.checkin(key, sender);
        }
        // Age the older one past the idle limit.
        {
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.get_mut(&key).unwrap_or_else(|| panic!("no list"));
            assert_eq!(list.len(), 2);
            list[0].since = Instant::now()
                .checked_sub(POOL_IDLE * 2)
                .unwrap_or_else(Instant::now);
        }
        pool.sweep();
        assert_eq!(pool.idle.lock().map(|m| m[&key].len()).unwrap_or(0), 1);
        assert!(pool.checkout(key).await.is_some());
        // Taken: the list is gone, and a sweep of an empty pool keeps it empty.
        pool.sweep();
        assert!(pool.idle.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}
