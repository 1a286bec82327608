//! JWKS fetched from an https URL: a refresher task fetches every set the table names on its
//! interval, and a token with an unknown `kid` fetches its set again at once (at most every
//! [`KID_REFETCH`]). A failed fetch keeps the last good set. One fetch per set at a time.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::auth::{KeySet, jwk::MAX_JWKS_BYTES, parse_jwks};
use crate::metrics::Metrics;
use crate::table::{RemoteKeys, RemoteTrust, RouteTable};

/// Shortest time between fetches caused by unknown `kid`s: tokens with made-up ids must not
/// turn wsgate into a load generator against the identity provider.
pub(crate) const KID_REFETCH: Duration = Duration::from_secs(10);
/// Shortest time between fetches of a set that was never fetched (a provider that is down at
/// start-up is asked again this often, not on every request).
const RETRY: Duration = Duration::from_secs(5);
/// Longest wait before a set whose refresh failed is fetched again.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Time one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The clock fetch times are kept on (ms, never 0 once started).
pub(crate) type Clock = dyn Fn() -> u64 + Send + Sync;

/// The keys to verify a token naming `kid` with: the current set, fetched first when there
/// is none yet or it lacks `kid` (within the limits above).
pub(crate) async fn keys_for(
    remote: &RemoteKeys,
    kid: Option<&str>,
    now_ms: &(dyn Fn() -> u64 + Send + Sync + '_),
    metrics: &Metrics,
) -> Option<Arc<KeySet>> {
    let current = remote.keys();
    // Without its CA nothing is fetched (the route's status says why); never unverified.
    if matches!(remote.trust, RemoteTrust::Missing) {
        return current;
    }
    let unknown_kid = match (&current, kid) {
        (None, _) => true,
        (Some(set), Some(kid)) => !set.has_kid(kid),
        (Some(_), None) => false,
    };
    if !unknown_kid {
        return current;
    }
    let now = now_ms();
    let allowed = match &current {
        None => since(remote.attempted_ms.load(Ordering::Relaxed), now) >= RETRY,
        Some(_) => since(remote.kid_miss_ms.load(Ordering::Relaxed), now) >= KID_REFETCH,
    };
    if !allowed && current.is_some() {
        return current;
    }
    // Without a set, wait for a fetch under way (the refresher's first) even when this
    // request may not start one.
    let before = remote.attempted_ms.load(Ordering::Relaxed);
    let _one = remote.fetching.lock().await;
    // Another fetch ran while this request waited: use what it got.
    if allowed && remote.attempted_ms.load(Ordering::Relaxed) == before {
        if current.is_some() {
            remote.kid_miss_ms.store(now.max(1), Ordering::Relaxed);
        }
        fetch(remote, now_ms, metrics).await;
    }
    remote.keys()
}

/// Time from `then` to `now` (ms); `then == 0` (never) is long ago.
fn since(then: u64, now: u64) -> Duration {
    match then {
        0 => Duration::MAX,
        t => Duration::from_millis(now.saturating_sub(t)),
    }
}

/// Fetches `remote` once, keeping the last good set when it fails. The caller holds
/// `remote.fetching`.
async fn fetch(
    remote: &RemoteKeys,
    now_ms: &(dyn Fn() -> u64 + Send + Sync + '_),
    metrics: &Metrics,
) {
    remote
        .attempted_ms
        .store(now_ms().max(1), Ordering::Relaxed);
    let url = remote.url.to_string();
    let result = match trust(&remote.trust) {
        None => Err(FetchError::NoTrust),
        Some(config) => match tokio::time::timeout(FETCH_TIMEOUT, get(&remote.url, config)).await {
            Err(_) => Err(FetchError::Timeout),
            Ok(got) => got.and_then(|bytes| {
                parse_jwks(&bytes, false).map_err(|e| FetchError::Jwks(e.to_string()))
            }),
        },
    };
    let label = match result {
        Ok(set) => {
            tracing::debug!(url, keys = set.keys.len(), "JWKS fetched");
            remote.store(set, now_ms());
            "ok"
        }
        Err(e) => {
            tracing::warn!(url, error = %e, "JWKS fetch failed; the last good set keeps verifying");
            "error"
        }
    };
    metrics.jwks_fetches.with_label_values(&[label]).inc();
}

/// The TLS config a set is fetched with; `None` when its CA is missing.
fn trust(trust: &RemoteTrust) -> Option<Arc<ClientConfig>> {
    match trust {
        RemoteTrust::Ca(config) => Some(config.clone()),
        RemoteTrust::System => system_roots(),
        RemoteTrust::Missing => None,
    }
}

/// A client config trusting the system's CAs, loaded once.
fn system_roots() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's CA certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system CA certificates: JWKS URLs need jwks.caSecretName");
                return None;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        })
        .clone()
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the CA that verifies the JWKS server is missing")]
    NoTrust,
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("{0}")]
    Url(&'static str),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("status {0}")]
    Status(http::StatusCode),
    #[error("body: {0}")]
    Body(String),
    #[error("{0}")]
    Jwks(String),
}

/// GET `url` over TLS, the body at most [`MAX_JWKS_BYTES`].
async fn get(url: &Uri, config: Arc<ClientConfig>) -> Result<Bytes, FetchError> {
    let host = url.host().ok_or(FetchError::Url("URL without host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(443);
    let addr = tokio::net::lookup_host((bare, port))
        .await?
        .next()
        .ok_or(FetchError::Url("host has no address"))?;
    let name = ServerName::try_from(bare.to_string()).map_err(|_| FetchError::Url("bad host"))?;
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let authority = url.authority().map_or(host, |a| a.as_str());
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|_| FetchError::Url("URL does not make a request"))?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| FetchError::Body(e.to_string()))?;
    Ok(body.to_bytes())
}

/// Keeps every fetched set of the live table fresh: once a second, the sets due (never
/// fetched, or older than their interval) are fetched in tasks of their own, and each set's
/// age is published. Runs until the proxy stops.
pub(crate) async fn refresh(
    table: Arc<ArcSwap<RouteTable>>,
    now_ms: Arc<Clock>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut named: HashSet<String> = HashSet::new();
    loop {
        tick.tick().await;
        let live = table.load();
        let mut seen = HashSet::new();
        let mut now_named = HashSet::new();
        for remote in live.remote_keys() {
            if !seen.insert(Arc::as_ptr(remote)) {
                continue;
            }
            let now = now_ms();
            let fetched = remote.fetched_ms.load(Ordering::Relaxed);
            let url = remote.url.to_string();
            if fetched != 0 {
                let age = since(fetched, now).as_secs_f64();
                metrics.jwks_age.with_label_values(&[&url]).set(age);
            }
            now_named.insert(url);
            let attempted = since(remote.attempted_ms.load(Ordering::Relaxed), now);
            // After a failed refresh, again at the interval but at least every MAX_RETRY.
            let due = match fetched {
                0 => attempted >= RETRY,
                at => {
                    since(at, now) >= remote.refresh && attempted >= remote.refresh.min(MAX_RETRY)
                }
            };
            if !due || matches!(remote.trust, RemoteTrust::Missing) {
                continue;
            }
            let (remote, now_ms, metrics) = (remote.clone(), now_ms.clone(), metrics.clone());
            tokio::spawn(async move {
                // A fetch under way (for a request) is enough.
                if let Ok(_one) = remote.fetching.try_lock() {
                    fetch(&remote, &*now_ms, &metrics).await;
                }
            });
        }
        for gone in named.difference(&now_named) {
            let _ = metrics.jwks_age.remove_label_values(&[gone]);
        }
        named = now_named;
    }
}
