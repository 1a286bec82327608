//! The auth phase, after `admit` and before any backend is dialled: the rule's JWT (the token
//! found, verified, taken out of the query or the protocol list, its claims copied into
//! headers), then its external auth service. A refusal is a 401 with `WWW-Authenticate`, the
//! auth service's own answer, or a 503 when the service cannot answer (fail closed).
//! A verified token is remembered for its connection, so keep-alive requests carrying the same
//! token are not verified again; it is never cached across connections.

mod external;
mod jwks;
mod token;

pub(crate) use jwks::refresh as refresh_jwks;
pub(crate) use token::www_authenticate;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response};
use hyper::body::Incoming;

use super::answer::{Answer, BackendFault, Body, ClientFault};
use super::handler::{ConnInfo, Shared};
use super::headers::Forwarded;
use crate::auth::{Claims, Expect, Token, TokenError};
use crate::model::TokenSource;
use crate::table::{JwtCheck, JwtKeys, RuleAuth};
use external::Verdict;

/// A request the rule's auth let through.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    /// When a WebSocket opened with it must close: its token's `exp` plus the grace.
    pub expires: Option<Instant>,
}

/// Why a request was not let through.
pub(crate) enum Refused {
    /// One of wsgate's answers (401, 503).
    Answer(Answer),
    /// The auth service's answer, or the sign-in redirect (boxed: the rare case).
    Response(Box<Response<Body>>),
}

/// The token last verified on a connection, for the rule that verified it.
#[derive(Default)]
pub(crate) struct TokenCache(Mutex<Option<Verified>>);

struct Verified {
    /// Held weakly, compared by address: the allocation cannot be reused while this lives.
    rule: Weak<RuleAuth>,
    token: Box<str>,
    claims: Arc<Claims>,
}

impl TokenCache {
    fn get(&self, rule: &Arc<RuleAuth>, token: &str) -> Option<Arc<Claims>> {
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = cached.as_ref()?;
        (Weak::ptr_eq(&v.rule, &Arc::downgrade(rule)) && *v.token == *token)
            .then(|| v.claims.clone())
    }

    fn put(&self, rule: &Arc<RuleAuth>, token: &str, claims: Arc<Claims>) {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *cached = Some(Verified {
            rule: Arc::downgrade(rule),
            token: token.into(),
            claims,
        });
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache")
    }
}

/// Unix seconds now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks `req` against the rule's auth, changing it for the backend on the way.
pub(crate) async fn authenticate(
    shared: &Shared,
    conn: &ConnInfo,
    route: &Arc<str>,
    auth: &Arc<RuleAuth>,
    req: &mut Request<Incoming>,
    fwd: &Forwarded<'_>,
) -> Result<Passed, Refused> {
    let decisions = &shared.metrics.auth_decisions;
    let mut passed = Passed::default();
    if let Some(jwt) = &auth.jwt {
        match check_jwt(shared, conn, auth, jwt, req).await {
            Ok(claims) => {
                decisions.with_label_values(&[route, "jwt", "allow"]).inc();
                passed.expires = jwt.close_on_expiry.map(|grace| deadline(claims.exp, grace));
            }
            Err(e) => {
                decisions
                    .with_label_values(&[route, "jwt", e.as_str()])
                    .inc();
                return Err(Refused::Answer(Answer::Client(ClientFault::Unauthorized(
                    e,
                ))));
            }
        }
    }
    if let Some(check) = &auth.external {
        let url = original_url(fwd, req);
        let sub = external::auth_request(check, req.method(), req.headers(), &url, fwd);
        let (verdict, cached) = external::ask(shared, check, route, sub, &url).await;
        let result = match (&verdict, cached) {
            (Verdict::Allow(_), true) => "allow_cached",
            (Verdict::Allow(_), false) => "allow",
            (Verdict::Deny(_), _) => "deny",
            (Verdict::Unavailable, _) => "unavailable",
        };
        decisions
            .with_label_values(&[route, "external", result])
            .inc();
        match verdict {
            Verdict::Allow(headers) => external::apply(check, req.headers_mut(), headers),
            Verdict::Deny(response) => return Err(Refused::Response(Box::new(response))),
            Verdict::Unavailable => {
                return Err(Refused::Answer(Answer::Backend(
                    BackendFault::AuthUnavailable,
                )));
            }
        }
    }
    Ok(passed)
}

/// The instant `exp + grace` (Unix seconds) falls at.
fn deadline(exp: u64, grace: Duration) -> Instant {
    let left = Duration::from_secs(exp.saturating_sub(unix_now()));
    Instant::now() + left + grace
}

/// The URL the client asked for, as `X-Original-URL` and the sign-in `rd` name it.
fn original_url(fwd: &Forwarded<'_>, req: &Request<Incoming>) -> String {
    let host = fwd.host.and_then(|h| h.to_str().ok()).unwrap_or("");
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    format!("{}://{host}{path}", fwd.proto)
}

/// Finds, verifies and checks the token, takes it out where the rule says, and sets the claim
/// headers.
async fn check_jwt(
    shared: &Shared,
    conn: &ConnInfo,
    auth: &Arc<RuleAuth>,
    jwt: &JwtCheck,
    req: &mut Request<Incoming>,
) -> Result<Arc<Claims>, TokenError> {
    let found =
        token::find(req.headers(), req.uri().query(), &jwt.from).ok_or(TokenError::Missing)?;
    let (raw, place) = (found.token.to_string(), found.place.clone());
    let now = unix_now();
    let claims = match conn.tokens.get(auth, &raw) {
        // Still valid now: a keep-alive connection may outlive its token.
        Some(claims) if now < claims.exp.saturating_add(jwt.skew) => claims,
        Some(_) => return Err(TokenError::Expired),
        None => {
            let claims = Arc::new(verify(shared, jwt, &raw, now).await?);
            conn.tokens.put(auth, &raw, claims.clone());
            claims
        }
    };
    match &place {
        TokenSource::Query(name) => strip_query(req, name)?,
        TokenSource::Protocol(prefix) => token::remove_protocol(req.headers_mut(), prefix),
        TokenSource::Bearer | TokenSource::Cookie(_) => {}
    }
    token::claims_to_headers(req.headers_mut(), Some(&claims.all), &jwt.claims_to_headers);
    Ok(claims)
}

async fn verify(
    shared: &Shared,
    jwt: &JwtCheck,
    raw: &str,
    now: u64,
) -> Result<Claims, TokenError> {
    let token = Token::parse(raw, &jwt.algorithms)?;
    let keys = match &jwt.keys {
        JwtKeys::Local(keys) => keys.clone(),
        JwtKeys::Remote(remote) => {
            // Borrowed: no reference count taken per request.
            let clock = || shared.upstreams.now_ms().max(1);
            jwks::keys_for(remote, token.kid.as_deref(), &clock, &shared.metrics).await
        }
    };
    token.verify(&*keys.ok_or(TokenError::NoKeys)?)?;
    let expect = Expect {
        issuer: jwt.issuer.as_deref(),
        audiences: &jwt.audiences,
        skew: jwt.skew,
    };
    token.claims(&expect, now)
}

/// Takes query parameter `name` out of the request target; a target that would not parse
/// without it is refused rather than forwarded with the token.
fn strip_query(req: &mut Request<Incoming>, name: &str) -> Result<(), TokenError> {
    let Some(query) = req.uri().query() else {
        return Ok(());
    };
    let path = req.uri().path();
    let target = match token::query_without(query, name) {
        Some(rest) => format!("{path}?{rest}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    let pq = http::uri::PathAndQuery::try_from(target).map_err(|_| TokenError::Malformed)?;
    parts.path_and_query = Some(pq);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| TokenError::Malformed)?;
    Ok(())
}
