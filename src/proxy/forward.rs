//! The forward phase of a normal request: rewrite it for the backend (origin-form target,
//! HTTP/1.1 or h2c, `X-Forwarded-*`, no hop-by-hop headers), send it over a pooled connection,
//! and pass the response back — all within the route's timeout for the response headers.

use std::time::Duration;

use http::header;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Uri, Version};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::answer::ClientFault;
use super::connect::{Target, connect_with_retry};
use super::handler::{Failure, Served, Shared};
use super::headers::{Forwarded, prepare_request, prepare_response};

/// Forwards `req` to the target backend and returns its response. A body longer than
/// `max_body` is cut off there; the request then fails with 413 (a declared length over the
/// limit was refused before, by `admit`).
pub(crate) async fn forward(
    shared: &Shared,
    mut req: Request<Incoming>,
    target: Target<'_>,
    timeout: Duration,
    max_body: Option<u64>,
    fwd: &Forwarded<'_>,
    key: Option<u64>,
) -> Result<Served, Failure> {
    if let Err(fault) = for_backend(&mut req, target.backend.h2c, fwd) {
        return Err(Failure::from(fault));
    }
    let limit = max_body.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let req = req.map(|body| Limited::new(body, limit));
    let retry = idempotent(req.method());
    let now_ms = || shared.upstreams.now_ms();
    // A request that could not connect never left, so its body is still unread: `send` hands
    // it back and it can go elsewhere.
    let attempts = connect_with_retry(&target, now_ms, key, retry, req, |endpoint, req| {
        let active = endpoint.state.begin();
        shared.upstreams.send(target.backend, endpoint, req, active)
    });
    match tokio::time::timeout(timeout, attempts).await {
        Err(_) => Err(target.timed_out(None)),
        Ok(Err(failure)) => Err(failure),
        Ok(Ok((Err(e), _))) if too_large(&e) => Err(Failure::from(ClientFault::PayloadTooLarge)),
        Ok(Ok((Err(e), endpoint))) => Err(target.unreachable(endpoint.addr, &e)),
        // A 101 to a request that asked for no upgrade (RFC 9110 §15.2.2) would reach the
        // client as a bare 101 and leave the connection in an unknown protocol.
        Ok(Ok((Ok(resp), endpoint))) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            Err(target.bad_switch(endpoint.addr, resp.status()))
        }
        Ok(Ok((Ok(resp), endpoint))) => {
            let mut response = resp.map(Either::Left);
            prepare_response(response.headers_mut(), false);
            Ok(Served {
                response,
                backend: Some(endpoint.addr),
                upgrade: None,
            })
        }
    }
}

/// Rewrites a client's request for the backend: origin-form target over HTTP/1.1 with the
/// authority in Host (RFC 9112 §3.2), or over h2c with it in `:authority` (RFC 9113 §8.3.1).
/// The authority is always the one the request was routed by, whatever Host the client sent
/// (RFC 9112 §3.2.2), and set after the hop-by-hop headers went, so `Connection: Host` cannot
/// remove it.
fn for_backend<B>(req: &mut Request<B>, h2c: bool, fwd: &Forwarded<'_>) -> Result<(), ClientFault> {
    prepare_request(req.headers_mut(), false, fwd);
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if h2c {
        let authority = fwd
            .host
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| ClientFault::BadRequest)?;
        *req.uri_mut() = uri;
        req.headers_mut().remove(header::HOST);
        *req.version_mut() = Version::HTTP_2;
    } else {
        match fwd.host {
            Some(h) => req.headers_mut().insert(header::HOST, h.clone()),
            None => req.headers_mut().remove(header::HOST),
        };
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
    }
    Ok(())
}

/// Whether sending failed because the request body went over its limit.
fn too_large(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether a request may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn fwd<'a>(host: Option<&'a HeaderValue>, peer: &'a HeaderValue) -> Forwarded<'a> {
        Forwarded {
            peer: [192, 0, 2, 9].into(),
            peer_value: peer,
            client_value: peer,
            proto: "https",
            host,
            port: 443,
        }
    }

    #[test]
    fn http1_backends_get_origin_form_and_the_clients_authority_as_host() {
        let peer = HeaderValue::from_static("192.0.2.9");
        let host = HeaderValue::from_static("chat.example.com");
        // An HTTP/2 client's request: absolute URI, no Host header.
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://chat.example.com/a/b?x=1")
            .header(header::CONNECTION, "keep-alive")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            for_backend(&mut req, false, &fwd(Some(&host), &peer)),
            Ok(())
        );
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/a/b?x=1");
        assert_eq!(req.headers()[header::HOST], "chat.example.com");
        assert!(!req.headers().contains_key(header::CONNECTION));
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        assert_eq!(req.headers()["x-forwarded-for"], "192.0.2.9");
    }

    #[test]
    fn h2c_backends_get_the_authority_in_the_uri_and_no_host() {
        let peer = HeaderValue::from_static("192.0.2.9");
        let host = HeaderValue::from_static("chat.example.com:8443");
        let mut req = Request::builder()
            .uri("/rpc")
            .header(header::HOST, "chat.example.com:8443")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            for_backend(&mut req, true, &fwd(Some(&host), &peer)),
            Ok(())
        );
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri(), "http://chat.example.com:8443/rpc");
        assert!(!req.headers().contains_key(header::HOST));
        // An authority that is no URI authority is the client's fault.
        let bad = HeaderValue::from_static("bad host");
        let mut req = Request::new(());
        assert_eq!(
            for_backend(&mut req, true, &fwd(Some(&bad), &peer)),
            Err(ClientFault::BadRequest)
        );
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!idempotent(&m), "{m}");
        }
    }
}
