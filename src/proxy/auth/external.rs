//! External auth (ingress-nginx `auth-url` semantics): before forwarding or upgrading, the
//! request's method, URL and chosen headers go to the auth service without a body. A 2xx
//! lets the request through with the named answer headers copied into it; a 401 with a
//! sign-in URL redirects a browser there; any other answer goes back to the client as it came;
//! no answer in time, or none at all, fails closed (503). How the subrequest and the verdict
//! look is pure; [`ask`] does the I/O.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::super::answer::Body;
use super::super::connect::{ConnectFailed, Target, connect_with_retry};
use super::super::handler::Shared;
use super::super::headers::{Forwarded, cookie, prepare_request, prepare_response};
use super::super::upstream::UpstreamBody;
use crate::model::CacheKey;
use crate::table::ExternalCheck;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// What the auth service said.
pub(crate) enum Verdict {
    /// Let the request through, with these headers set on it.
    Allow(HeaderMap),
    /// Answer the client with this instead.
    Deny(Response<Body>),
    /// No answer: fail closed.
    Unavailable,
}

/// The subrequest for a request with `method`, `headers` and `original_url`: no body, the
/// chosen headers (or every end-to-end one), `X-Original-URL` / `X-Original-Method` and the
/// forwarding headers of this hop. Its `Host` is the auth service's, set when an endpoint is
/// picked (the original host is in `X-Forwarded-Host`).
pub(crate) fn auth_request(
    check: &ExternalCheck,
    method: &Method,
    headers: &HeaderMap,
    original_url: &str,
    fwd: &Forwarded<'_>,
) -> Request<Empty<Bytes>> {
    let mut out = HeaderMap::with_capacity(headers.len() + 8);
    if check.request_headers.is_empty() {
        for (name, value) in headers {
            // What describes this request's body or handshake is not the subrequest's.
            let own = matches!(
                name.as_str(),
                "content-length"
                    | "content-type"
                    | "host"
                    | "expect"
                    | "sec-websocket-key"
                    | "sec-websocket-version"
                    | "sec-websocket-extensions"
            );
            if !own {
                out.append(name.clone(), value.clone());
            }
        }
    } else {
        for name in &*check.request_headers {
            for value in headers.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
    }
    prepare_request(&mut out, false, fwd);
    if let Ok(url) = HeaderValue::from_str(original_url) {
        out.insert(X_ORIGINAL_URL.clone(), url);
    }
    if let Ok(m) = HeaderValue::from_str(method.as_str()) {
        out.insert(X_ORIGINAL_METHOD.clone(), m);
    }
    let mut req = Request::new(Empty::new());
    *req.method_mut() = check.method.clone().unwrap_or_else(|| method.clone());
    *req.uri_mut() = Uri::from(check.path.clone());
    *req.headers_mut() = out;
    req
}

/// The request headers a 2xx answer sets: the named ones it has.
pub(crate) fn allowed_headers(check: &ExternalCheck, answer: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in &*check.response_headers {
        for value in answer.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Applies an allowed answer: client-sent copies of the copied headers go first, so the
/// backend only ever sees the auth service's.
pub(crate) fn apply(check: &ExternalCheck, request: &mut HeaderMap, allowed: HeaderMap) {
    for name in &*check.response_headers {
        request.remove(name);
    }
    for (name, value) in &allowed {
        request.append(name.clone(), value.clone());
    }
}

/// The sign-in redirect: the URL with `rd` naming where the browser was going (as
/// ingress-nginx's `auth-signin`).
pub(crate) fn signin_location(signin: &Uri, original_url: &str) -> String {
    let sep = if signin.query().is_some() { '&' } else { '?' };
    let mut out = format!("{signin}{sep}rd=");
    for b in original_url.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The cache key of a request: SHA-256 of the header's or cookie's value, if it has one.
pub(crate) fn cache_key(key: &CacheKey, headers: &HeaderMap) -> Option<[u8; 32]> {
    let value: &[u8] = match key {
        CacheKey::Header(name) => headers.get(name)?.as_bytes(),
        CacheKey::Cookie(name) => cookie(headers, name)?.as_bytes(),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, value);
    digest.as_ref().try_into().ok()
}

/// Asks the auth service (from the cache when it has a fresh answer for this request).
pub(crate) async fn ask(
    shared: &Shared,
    check: &ExternalCheck,
    route: &std::sync::Arc<str>,
    req: Request<Empty<Bytes>>,
    original_url: &str,
) -> (Verdict, bool) {
    let key = check
        .cache
        .as_ref()
        .and_then(|c| cache_key(&c.key, req.headers()));
    if let (Some(cache), Some(key)) = (&check.cache, &key) {
        if let Some(headers) = cache.get(key, Instant::now()) {
            return (Verdict::Allow(headers), true);
        }
    }
    let target = Target {
        backend: &check.backend,
        route,
        metrics: None,
    };
    let answer = tokio::time::timeout(check.timeout, exchange(shared, &target, req)).await;
    let resp = match answer {
        Ok(Some(resp)) => resp,
        Ok(None) => return (Verdict::Unavailable, false),
        Err(_) => {
            tracing::warn!(
                route = &**route,
                backend = &*check.backend.name,
                "auth service timed out; failing closed"
            );
            return (Verdict::Unavailable, false);
        }
    };
    let status = resp.status();
    if status.is_success() {
        let allowed = allowed_headers(check, resp.headers());
        if let (Some(cache), Some(key)) = (&check.cache, key) {
            cache.put(key, allowed.clone(), Instant::now());
        }
        return (Verdict::Allow(allowed), false);
    }
    if let (StatusCode::UNAUTHORIZED, Some(signin)) = (status, &check.signin) {
        let location = signin_location(signin, original_url);
        return (
            Verdict::Deny(super::super::answer::redirect(StatusCode::FOUND, &location)),
            false,
        );
    }
    let mut response = resp.map(|body| Either::Left(UpstreamBody::unpooled(body)));
    prepare_response(response.headers_mut(), false);
    (Verdict::Deny(response), false)
}

/// Sends the subrequest over a new connection to an endpoint of the service; `None` when no
/// answer came (no endpoint, refused, broken off).
async fn exchange(
    shared: &Shared,
    target: &Target<'_>,
    req: Request<Empty<Bytes>>,
) -> Option<Response<Incoming>> {
    let now_ms = || shared.upstreams.now_ms();
    let backend = target.backend;
    let connected = connect_with_retry(target, now_ms, None, true, (), |endpoint, ()| {
        let connecting = shared.upstreams.connect(backend, endpoint);
        async move { connecting.await.map_err(|e| ConnectFailed::new(e, ())) }
    })
    .await;
    let (io, endpoint) = match connected {
        Ok(pair) => pair,
        Err(failure) => {
            tracing::warn!(backend = &*backend.name, answer = ?failure.answer, "auth service unreachable; failing closed");
            return None;
        }
    };
    let mut req = req;
    let host = HeaderValue::from_str(endpoint.authority.as_str());
    req.headers_mut().insert(
        header::HOST,
        host.unwrap_or(HeaderValue::from_static("auth")),
    );
    let sent = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await
    };
    match sent.await {
        Ok(resp) => Some(resp),
        Err(e) => {
            tracing::warn!(backend = %endpoint.addr, error = %e, "auth service broke off; failing closed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_names_where_the_browser_was_going() {
        let signin: Uri = "https://login.example/start".parse().unwrap();
        assert_eq!(
            signin_location(&signin, "https://chat.example/room?id=1"),
            "https://login.example/start?rd=https%3A%2F%2Fchat.example%2Froom%3Fid%3D1"
        );
        let signin: Uri = "https://login.example/start?app=chat".parse().unwrap();
        assert!(
            signin_location(&signin, "/").starts_with("https://login.example/start?app=chat&rd=")
        );
    }

    #[test]
    fn cache_keys_are_digests_of_the_named_value() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        h.insert(header::COOKIE, HeaderValue::from_static("s=1; t=2"));
        let by_header = CacheKey::Header(header::AUTHORIZATION);
        let by_cookie = CacheKey::Cookie("t".into());
        assert!(cache_key(&by_header, &h).is_some());
        assert_ne!(cache_key(&by_header, &h), cache_key(&by_cookie, &h));
        assert_eq!(cache_key(&CacheKey::Cookie("u".into()), &h), None);
        let mut other = h.clone();
        other.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_ne!(cache_key(&by_header, &h), cache_key(&by_header, &other));
    }
}
