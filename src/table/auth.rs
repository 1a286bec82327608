//! A rule's authentication, compiled: the JWT check with its key set resolved (parsed once
//! from a ConfigMap or Secret, or a handle on a fetched set that survives rebuilds), and the
//! external auth service as a backend set like any other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use http::uri::PathAndQuery;
use rustls::ClientConfig;

use super::backends::{BackendContext, SetOptions, backend_set};
use super::compile::DataRef;
use super::report::{Problem, ProblemKind};
use super::shared::SharedEndpoints;
use super::{BackendSet, backend_client_config};
use crate::auth::{KeySet, parse_jwks};
use crate::model::{
    Algorithm, Auth, AuthCache, Balance, CaRef, CacheKey, ClaimHeader, ExternalAuth, JwksSource,
    JwtAuth, TokenSource,
};

/// What a rule asks of a request before forwarding or upgrading it.
#[derive(Debug)]
pub struct RuleAuth {
    /// The JWT check.
    pub jwt: Option<JwtCheck>,
    /// The external auth service.
    pub external: Option<ExternalCheck>,
}

/// A JWT check, ready to verify.
#[derive(Debug)]
pub struct JwtCheck {
    /// Required `iss`.
    pub issuer: Option<Box<str>>,
    /// Accepted `aud` values (empty: not checked).
    pub audiences: Box<[Box<str>]>,
    /// Accepted algorithms.
    pub algorithms: Box<[Algorithm]>,
    /// Clock skew, in seconds.
    pub skew: u64,
    /// Where the token is looked for.
    pub from: Box<[TokenSource]>,
    /// Claims copied into headers.
    pub claims_to_headers: Box<[ClaimHeader]>,
    /// Close sockets this long after `exp`; `None`: never.
    pub close_on_expiry: Option<Duration>,
    /// The keys.
    pub keys: JwtKeys,
}

/// Where a JWT check's keys are.
#[derive(Debug)]
pub enum JwtKeys {
    /// Parsed from a ConfigMap or Secret; `None` when it is missing or unusable (the route's
    /// report says why, and tokens get 401).
    Local(Option<Arc<KeySet>>),
    /// Fetched from a URL by the proxy.
    Remote(Arc<RemoteKeys>),
}

/// A JWKS fetched from a URL: the last good set, shared across rebuilds for as long as a
/// route names the same URL, refresh interval and CA.
#[derive(Debug)]
pub struct RemoteKeys {
    /// The https URL.
    pub url: http::Uri,
    /// How often it is fetched again.
    pub refresh: Duration,
    /// What verifies the server.
    pub trust: RemoteTrust,
    keys: ArcSwapOption<KeySet>,
    /// When the last good set was fetched (ms on the proxy's clock; 0: never).
    pub fetched_ms: AtomicU64,
    /// When the last fetch was started (ms; 0: never).
    pub attempted_ms: AtomicU64,
    /// When a token with an unknown `kid` last caused a fetch (ms; 0: never).
    pub kid_miss_ms: AtomicU64,
    /// One fetch at a time: requests that find an unknown `kid` wait on the one under way.
    pub fetching: tokio::sync::Mutex<()>,
}

impl RemoteKeys {
    /// A set not yet fetched.
    pub fn new(url: http::Uri, refresh: Duration, trust: RemoteTrust) -> Self {
        RemoteKeys {
            url,
            refresh,
            trust,
            keys: ArcSwapOption::empty(),
            fetched_ms: AtomicU64::new(0),
            attempted_ms: AtomicU64::new(0),
            kid_miss_ms: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The last good set, if one was ever fetched.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Installs a freshly fetched set, fetched at `now_ms`.
    pub fn store(&self, keys: KeySet, now_ms: u64) {
        self.keys.store(Some(Arc::new(keys)));
        self.fetched_ms.store(now_ms.max(1), Ordering::Relaxed);
    }
}

/// What verifies a JWKS server's certificate.
#[derive(Debug, Clone)]
pub enum RemoteTrust {
    /// The system's trusted CAs.
    System,
    /// The CA Secret the route names.
    Ca(Arc<ClientConfig>),
    /// The CA Secret is missing or unusable: nothing is fetched (never unverified).
    Missing,
}

/// An external auth service, ready to ask.
#[derive(Debug)]
pub struct ExternalCheck {
    /// The service.
    pub backend: Arc<BackendSet>,
    /// Path (and query) of the check.
    pub path: PathAndQuery,
    /// Its method; `None`: the request's.
    pub method: Option<http::Method>,
    /// Request headers sent (empty: every end-to-end header).
    pub request_headers: Box<[http::HeaderName]>,
    /// Headers of a 2xx answer copied to the backend request.
    pub response_headers: Box<[http::HeaderName]>,
    /// Time it has to answer.
    pub timeout: Duration,
    /// Where a 401 sends a browser.
    pub signin: Option<http::Uri>,
    /// Allowed answers by key, when the rule caches them.
    pub cache: Option<AnswerCache>,
}

/// Allowed answers of an auth service, by a key of the request, for `ttl`.
#[derive(Debug)]
pub struct AnswerCache {
    /// What the key is.
    pub key: CacheKey,
    /// How long an answer is reused.
    pub ttl: Duration,
    /// By SHA-256 of the key's value: a weak hash would let a crafted value collide with
    /// another client's allowed one.
    entries: std::sync::Mutex<HashMap<[u8; 32], (Instant, HeaderMap)>>,
}

impl AnswerCache {
    /// Most entries kept; beyond, expired ones are swept and, if still full, nothing new is
    /// cached (every request then asks the service, as without a cache).
    pub const MAX_ENTRIES: usize = 10_000;

    fn new(cache: &AuthCache) -> Self {
        AnswerCache {
            key: cache.key.clone(),
            ttl: cache.ttl,
            entries: std::sync::Mutex::default(),
        }
    }

    /// The headers of the cached answer for `key`, if it is fresh at `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<HeaderMap> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| now < *until)
            .map(|(_, headers)| headers.clone())
    }

    /// Caches an allowed answer's headers for `key` from `now`.
    pub fn put(&self, key: [u8; 32], headers: HeaderMap, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= Self::MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key, (now + self.ttl, headers));
    }
}

/// What identifies a fetched key set: URL, refresh interval, CA digest.
pub(super) type RemoteKey = (String, Duration, Option<u64>);

/// Fetched key sets, shared across compiles.
pub(super) type RemoteKeyCache = HashMap<RemoteKey, Arc<RemoteKeys>>;

/// Compiles a rule's auth. Problems (a missing JWKS, an unreachable auth Service) are
/// reported; the check is built anyway and fails closed.
pub(super) fn compile_auth<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    auth: &'s Auth,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> RuleAuth {
    RuleAuth {
        jwt: auth
            .jwt
            .as_ref()
            .map(|j| jwt_check(ctx, j, shared, problems)),
        external: auth
            .external
            .as_ref()
            .map(|e| external_check(ctx, e, shared, problems)),
    }
}

fn jwt_check(
    ctx: &BackendContext<'_, '_, '_>,
    jwt: &JwtAuth,
    shared: &mut SharedEndpoints<'_, '_>,
    problems: &mut Vec<Problem>,
) -> JwtCheck {
    let keys = match &jwt.jwks {
        JwksSource::ConfigMap { name, key } => JwtKeys::Local(local_keys(
            ctx,
            DataRef::config_map(ctx.namespace, name, key),
            false,
            problems,
        )),
        JwksSource::Secret { name, key } => JwtKeys::Local(local_keys(
            ctx,
            DataRef::secret(ctx.namespace, name, key),
            jwt.algorithms.contains(&Algorithm::HS256),
            problems,
        )),
        JwksSource::Url { url, refresh, ca } => {
            let (digest, trust) = match ca {
                None => (None, RemoteTrust::System),
                Some(ca) => remote_trust(ctx, ca, shared, problems),
            };
            let key = (url.to_string(), *refresh, digest);
            let keys = shared.remote_keys(key, || RemoteKeys::new(url.clone(), *refresh, trust));
            JwtKeys::Remote(keys)
        }
    };
    JwtCheck {
        issuer: jwt.issuer.clone(),
        audiences: jwt.audiences.as_slice().into(),
        algorithms: jwt.algorithms.as_slice().into(),
        skew: jwt.clock_skew.as_secs(),
        from: jwt.from.as_slice().into(),
        claims_to_headers: jwt.claims_to_headers.as_slice().into(),
        close_on_expiry: jwt.close_on_expiry,
        keys,
    }
}

/// A key set parsed from the object key `at` names.
fn local_keys(
    ctx: &BackendContext<'_, '_, '_>,
    at: DataRef,
    allow_oct: bool,
    problems: &mut Vec<Problem>,
) -> Option<Arc<KeySet>> {
    let mut problem = |message: String| {
        problems.push(Problem {
            kind: ProblemKind::InvalidKeys,
            message,
        });
    };
    let Some(bytes) = ctx.snapshot.auth_data.get(&at) else {
        problem(format!(
            "JWKS {at} not found; requests and upgrades of the rule get 401 until it is"
        ));
        return None;
    };
    match parse_jwks(bytes, allow_oct) {
        Ok(set) => {
            for skipped in &set.skipped {
                problem(format!("JWKS {at}: {skipped} (skipped)"));
            }
            Some(Arc::new(set))
        }
        Err(e) => {
            problem(format!(
                "JWKS {at}: {e}; requests and upgrades of the rule get 401 until it is fixed"
            ));
            None
        }
    }
}

/// What verifies a JWKS server named with a CA, and the CA's digest (`Some(0)` when it is
/// missing: a key no real CA has).
fn remote_trust(
    ctx: &BackendContext<'_, '_, '_>,
    ca: &CaRef,
    shared: &mut SharedEndpoints<'_, '_>,
    problems: &mut Vec<Problem>,
) -> (Option<u64>, RemoteTrust) {
    let pem = match ca {
        CaRef::Secret(name) => ctx.certs.ca(ctx.namespace, name),
        CaRef::ConfigMap { namespace, name } => ctx
            .snapshot
            .config_map_cas
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice),
    };
    let Some(pem) = pem else {
        problems.push(Problem {
            kind: ProblemKind::CaSecretNotFound,
            message: format!(
                "JWKS CA Secret {}/{} not found or without ca.crt; the JWKS is not fetched until it is",
                ctx.namespace,
                match ca {
                    CaRef::Secret(n) | CaRef::ConfigMap { name: n, .. } => n,
                }
            ),
        });
        return (Some(0), RemoteTrust::Missing);
    };
    let digest = ctx.certs.digest(pem);
    match shared.client_config((Some(digest), false), || backend_client_config(Some(pem))) {
        Ok(config) => (Some(digest), RemoteTrust::Ca(config)),
        Err(e) => {
            problems.push(Problem {
                kind: ProblemKind::InvalidCertificate,
                message: format!("JWKS CA: {e}"),
            });
            (Some(0), RemoteTrust::Missing)
        }
    }
}

fn external_check<'s>(
    ctx: &BackendContext<'_, 's, '_>,
    ext: &'s ExternalAuth,
    shared: &mut SharedEndpoints<'s, '_>,
    problems: &mut Vec<Problem>,
) -> ExternalCheck {
    let on = SetOptions {
        balance: &Balance::RoundRobin,
        connect_timeout: None,
        max_sockets_per_endpoint: None,
        rebalance: None,
    };
    ExternalCheck {
        backend: backend_set(ctx, &ext.backend, on, shared, problems),
        // Translation checked that the path parses.
        path: PathAndQuery::try_from(&*ext.path).unwrap_or_else(|_| PathAndQuery::from_static("/")),
        method: ext.method.clone(),
        request_headers: ext.request_headers.as_slice().into(),
        response_headers: ext.response_headers.as_slice().into(),
        timeout: ext.timeout,
        signin: ext.signin.clone(),
        cache: ext.cache.as_ref().map(AnswerCache::new),
    }
}
