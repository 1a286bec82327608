//! The upgrade phase: a WebSocket handshake (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT) is
//! sent to the backend over a fresh connection; on 101 the client gets its answer and both
//! sockets go to the [`relay`](super::relay) in a task of their own, which outlives the
//! request. What the handshakes look like is decided in [`handshake`], without I/O.

mod handshake;

use handshake::Switch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::access::AccessRecord;
use super::answer::{Answer, BackendFault, ClientFault};
use super::connect::{ConnectFailed, Target, connect_with_retry};
use super::handler::{Failure, Served, Shared};
use super::headers::{Forwarded, SEC_WEBSOCKET_KEY, prepare_response};
use super::limits::{Admission, TotalSlot};
use super::rebalance;
use super::relay::{Closing, RelayOptions, random_bits, relay};
use super::tracker::Token;
use super::upstream::{BackendIo, UpstreamBody};
use crate::metrics::RouteMetrics;
use crate::model::{Keepalive, Lifetime};
use crate::table::{ActiveGuard, SocketGuard};

/// How long a backend may take to answer a WebSocket handshake.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// How an upgrade request ended: the `result` label of `wsgate_websocket_upgrades_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeOutcome {
    /// The backend switched protocols; the socket is relayed.
    Upgraded,
    /// The backend answered the handshake with something other than 101.
    BackendRefused,
    /// No backend answer: unreachable, broken off, or too slow.
    BackendError,
    /// Refused by wsgate: no route, misdirected, maintenance, no endpoint.
    Rejected,
    /// The rule does not allow the page's origin.
    Forbidden,
    /// Over a per-client limit.
    Limited,
    /// Redirected (to https, or to the route's main host).
    Redirected,
    /// Refused by the rule's authentication (a token, the auth service).
    Unauthorized,
}

impl UpgradeOutcome {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UpgradeOutcome::Upgraded => "upgraded",
            UpgradeOutcome::BackendRefused => "backend_refused",
            UpgradeOutcome::BackendError => "backend_error",
            UpgradeOutcome::Rejected => "rejected",
            UpgradeOutcome::Forbidden => "forbidden",
            UpgradeOutcome::Limited => "limited",
            UpgradeOutcome::Redirected => "redirected",
            UpgradeOutcome::Unauthorized => "unauthorized",
        }
    }

    /// The outcome of an upgrade that got `answer` instead of a backend's.
    pub(crate) fn of(answer: Answer) -> Self {
        match answer {
            Answer::Client(ClientFault::ForbiddenOrigin | ClientFault::ForbiddenSource) => {
                UpgradeOutcome::Forbidden
            }
            Answer::Client(ClientFault::TooMany(_)) => UpgradeOutcome::Limited,
            Answer::Client(ClientFault::Unauthorized(_))
            | Answer::Backend(BackendFault::AuthUnavailable) => UpgradeOutcome::Unauthorized,
            Answer::Backend(
                BackendFault::NoEndpoints | BackendFault::Unresolved | BackendFault::AtCapacity,
            ) => UpgradeOutcome::Rejected,
            Answer::Backend(_) => UpgradeOutcome::BackendError,
            Answer::Client(_) | Answer::Internal(_) => UpgradeOutcome::Rejected,
        }
    }
}

/// A WebSocket handshake to relay, admitted by the admit phase.
pub(crate) struct UpgradeRequest {
    pub req: Request<Incoming>,
    /// HTTP/2 extended CONNECT (RFC 8441) rather than an HTTP/1.1 Upgrade.
    pub extended_connect: bool,
    pub idle_timeout: Option<Duration>,
    /// How long the backend has to answer the handshake (`None`: [`UPGRADE_TIMEOUT`]); it
    /// never bounds the life of the socket.
    pub handshake_timeout: Option<Duration>,
    /// Close the socket this old.
    pub max_lifetime: Option<Lifetime>,
    /// Ping silent peers, close dead ones.
    pub keepalive: Option<Keepalive>,
    /// Consistent-hashing key.
    pub key: Option<u64>,
    /// The client's connection slot, when the rule has limits.
    pub admission: Option<Admission>,
    /// The socket's place in the rule's `maxConnections`.
    pub total: Option<TotalSlot>,
    /// Keeps an HTTP/2 connection from counting as idle while the socket is relayed.
    pub stream: Option<Token>,
    /// When the token that opened the socket expires (plus grace): it closes then.
    pub token_expires: Option<Instant>,
}

/// Forwards a WebSocket handshake and, on 101, relays the connection in its own task.
pub(crate) async fn upgrade(
    shared: &Shared,
    upgrade: UpgradeRequest,
    target: Target<'_>,
    fwd: &Forwarded<'_>,
    access: Option<&AccessRecord>,
) -> Result<Served, Failure> {
    let UpgradeRequest {
        mut req,
        extended_connect,
        key,
        ..
    } = upgrade;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let backend_req = handshake::backend_request(parts, extended_connect, fwd, handshake::new_key);
    let sent_key = backend_req.headers().get(&SEC_WEBSOCKET_KEY).cloned();
    let now_ms = || shared.upstreams.now_ms();
    let backend = target.backend;
    let (io, endpoint) = connect_with_retry(&target, now_ms, key, true, (), |endpoint, ()| {
        let connecting = shared.upstreams.connect(backend, endpoint);
        async move {
            connecting
                .await
                .map_err(|error| ConnectFailed::new(error, ()))
        }
    })
    .await?;
    let addr = endpoint.addr;
    // The pick skipped full endpoints; this counts the socket, unless a concurrent upgrade
    // took the last place meanwhile.
    let Some(socket) = endpoint.state.open_socket(backend.max_sockets_per_endpoint) else {
        return Err(Failure {
            answer: Answer::Backend(BackendFault::AtCapacity),
            backend: Some(addr),
        });
    };
    let active = endpoint.state.begin();
    let per_endpoint = EndpointGauge::open(&shared.metrics, endpoint.authority.as_str());
    let wait = upgrade.handshake_timeout.unwrap_or(UPGRADE_TIMEOUT);
    let mut resp = match exchange(io, backend_req, wait).await {
        Ok(resp) => resp,
        Err(Exchange::TimedOut) => return Err(target.timed_out(Some(addr))),
        Err(Exchange::Failed(e)) => return Err(target.unreachable(addr, &e)),
    };
    match handshake::backend_switch(
        resp.status(),
        resp.headers(),
        sent_key.as_ref(),
        extended_connect,
    ) {
        Switch::Upgraded => {}
        Switch::Bad => return Err(target.bad_switch(addr, resp.status())),
        // The backend refused the upgrade: its answer goes back as a normal response.
        Switch::Refused => return Ok(refused(resp, addr)),
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let response = handshake::client_response(std::mem::take(resp.headers_mut()), extended_connect);
    // Sockets of a rebalanced backend can be told to move after a scale-out.
    let (moving, moved) = match backend.rebalance {
        Some(_) => {
            let (registration, moved) = shared.rebalance.register(backend.name.clone(), addr);
            (Some(registration), Some(moved))
        }
        None => (None, None),
    };
    let sockets = Sockets {
        client: client_upgrade,
        backend: backend_upgrade,
        options: RelayOptions {
            idle_timeout: upgrade.idle_timeout,
            keepalive: upgrade.keepalive,
        },
        max_lifetime: upgrade.max_lifetime,
        token_expires: upgrade.token_expires,
        moved,
        held: Held {
            _relay: shared.relays.token(),
            _active: active,
            _socket: socket,
            _per_endpoint: per_endpoint,
            _admission: upgrade.admission,
            _total: upgrade.total,
            _stream: upgrade.stream,
            _moving: moving,
        },
    };
    let metrics = match target.metrics {
        Some(m) => m.clone(),
        None => shared.metrics.route(target.route),
    };
    // The connection gets its own log line when it ends; the 101 keeps the request's.
    let log = access.map(|a| a.for_websocket(addr));
    spawn_relay(shared, sockets, metrics, log);
    Ok(Served {
        response,
        backend: Some(addr),
        upgrade: Some(UpgradeOutcome::Upgraded),
    })
}

/// The backend's refusal of the upgrade, passed back as a normal response.
fn refused(resp: Response<Incoming>, addr: SocketAddr) -> Served {
    let mut response = resp.map(|inner| Either::Left(UpstreamBody::unpooled(inner)));
    prepare_response(response.headers_mut(), false);
    Served {
        response,
        backend: Some(addr),
        upgrade: Some(UpgradeOutcome::BackendRefused),
    }
}

/// Why the handshake with the backend gave no response.
enum Exchange {
    TimedOut,
    Failed(hyper::Error),
}

/// Sends the handshake over a new HTTP/1.1 connection and waits for the backend's answer.
async fn exchange(
    io: BackendIo,
    req: Request<Empty<Bytes>>,
    wait: Duration,
) -> Result<Response<Incoming>, Exchange> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(Exchange::Failed)?;
    // Drives the backend connection until the upgrade hands its socket over.
    tokio::spawn(conn.with_upgrades());
    match tokio::time::timeout(wait, sender.send_request(req)).await {
        Err(_) => Err(Exchange::TimedOut),
        Ok(result) => result.map_err(Exchange::Failed),
    }
}

/// What a relayed connection holds for its life: drain bookkeeping, the endpoint's
/// least-connections count, the client's connection slot, the HTTP/2 stream. Only dropped.
struct Held {
    _relay: Token,
    _active: ActiveGuard,
    _socket: SocketGuard,
    _per_endpoint: EndpointGauge,
    _admission: Option<Admission>,
    _total: Option<TotalSlot>,
    _stream: Option<Token>,
    _moving: Option<rebalance::Registration>,
}

/// One socket in `wsgate_websocket_endpoint_connections` of its endpoint, until dropped.
struct EndpointGauge(prometheus::IntGauge);

impl EndpointGauge {
    /// `endpoint` is its `ip:port`, prepared with the table (no formatting per upgrade).
    fn open(metrics: &crate::metrics::Metrics, endpoint: &str) -> Self {
        let gauge = metrics.ws_endpoint.with_label_values(&[endpoint]);
        gauge.inc();
        EndpointGauge(gauge)
    }
}

impl Drop for EndpointGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Both halves of an upgrade, once the handshakes are done.
struct Sockets {
    client: OnUpgrade,
    backend: OnUpgrade,
    options: RelayOptions,
    max_lifetime: Option<Lifetime>,
    /// When its token expires.
    token_expires: Option<Instant>,
    /// Resolves when a rebalance moves this socket.
    moved: Option<rebalance::Moved>,
    held: Held,
}

/// Relays the two sockets in a task of their own and records the connection when it ends.
fn spawn_relay(
    shared: &Shared,
    sockets: Sockets,
    metrics: Arc<RouteMetrics>,
    log: Option<AccessRecord>,
) {
    let closes = shared.metrics.ws_closes.clone();
    let (registration, drain) = shared.drain.register();
    tokio::spawn(async move {
        let _held = (sockets.held, registration);
        let (client_io, backend_io) = match tokio::try_join!(sockets.client, sockets.backend) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route = &*metrics.route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let opened = Instant::now();
        let lifetime = sockets.max_lifetime.map(|l| l.of_one(unit_random()));
        // The first of: this replica's drain, the socket's lifetime, a rebalance, the expiry of
        // its token.
        let close = async move {
            let old = async {
                match lifetime {
                    Some(lifetime) => tokio::time::sleep(lifetime).await,
                    None => std::future::pending().await,
                }
            };
            let moved = async {
                match sockets.moved {
                    Some(moved) => moved.await,
                    None => std::future::pending().await,
                }
            };
            let expired = async {
                match sockets.token_expires {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = drain => Closing::Drain,
                () = old => Closing::MaxLifetime,
                () = moved => Closing::Rebalance,
                () = expired => Closing::TokenExpired,
            }
        };
        metrics.ws_active.inc();
        let stats = relay(
            TokioIo::new(client_io),
            TokioIo::new(backend_io),
            sockets.options,
            |up, down| {
                metrics.ws_to_backend.inc_by(up);
                metrics.ws_to_client.inc_by(down);
            },
            close,
        )
        .await;
        metrics.ws_active.dec();
        let lifetime = opened.elapsed();
        metrics.ws_duration.observe(lifetime.as_secs_f64());
        let reason = stats.reason();
        closes.with_label_values(&[&*metrics.route, reason]).inc();
        if let Some(a) = log {
            a.log_websocket(lifetime, &stats, reason);
        }
    });
}

/// A number in 0..1 that differs per call: where in its jitter a socket's lifetime falls.
/// Not for secrets; only spread matters.
fn unit_random() -> f64 {
    // The top 53 bits as a fraction (the precision of an f64).
    (random_bits() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::limits::Refusal;

    #[test]
    fn answers_map_to_upgrade_outcomes() {
        let cases = [
            (ClientFault::ForbiddenOrigin.into(), "forbidden"),
            (ClientFault::TooMany(Refusal::Full).into(), "limited"),
            (ClientFault::NotFound.into(), "rejected"),
            (ClientFault::Misdirected.into(), "rejected"),
            (BackendFault::NoEndpoints.into(), "rejected"),
            (BackendFault::Unreachable.into(), "backend_error"),
            (BackendFault::Timeout.into(), "backend_error"),
        ];
        for (answer, want) in cases {
            assert_eq!(UpgradeOutcome::of(answer).as_str(), want, "{answer:?}");
        }
    }
}
