//! The request target, read strictly: the one authority a request is routed *and* forwarded
//! by, and its path in normal form, written back into the request so every later phase (the
//! decision, the access log, the backend) sees the same. Pure; unit-tested here.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Uri, Version};

use super::headers::SEC_WEBSOCKET_KEY;
use crate::model::normalize_request_path;

/// Why a request's target cannot be trusted; each is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// More than one `Host` (RFC 9112 §3.2).
    TwoHosts,
    /// HTTP/2 `:authority` and `Host` name different hosts (RFC 9113 §8.3.1).
    AuthorityMismatch,
    /// The path cannot be normalised (dot segments above `/`, hidden or bad escapes).
    Path,
    /// An HTTP/1.1 upgrade with a body: the body would be lost in the switch (RFC 6455 §4.1
    /// handshakes are GETs without one).
    UpgradeBody,
    /// An HTTP/1.1 upgrade without a `Sec-WebSocket-Key` (RFC 6455 §4.2.1): the backend's
    /// accept could not be checked.
    UpgradeKey,
}

/// The authority the request is routed by, and the backend gets as `Host` / `:authority`:
/// an absolute-form target's authority wins over `Host` (RFC 9112 §3.2.2, the proxy replaces
/// Host with it); for HTTP/2, `:authority`, which a `Host` naming another host contradicts;
/// else the one `Host`.
pub(crate) fn authority(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Malformed> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Malformed::TwoHosts);
    }
    let Some(authority) = uri.authority() else {
        return Ok(host.cloned());
    };
    if version == Version::HTTP_2 {
        if let Some(host) = host {
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(Malformed::AuthorityMismatch);
            }
        }
    }
    // An authority is a valid header value: `Uri` allows no bytes a header does not.
    Ok(HeaderValue::from_str(authority.as_str()).ok())
}

/// Puts the target's path in normal form ([`normalize_request_path`]); the query is kept as
/// sent. Leaves the URI untouched (and unallocated) when it is normal already.
pub(crate) fn normalize_path(uri: &mut Uri) -> Result<(), Malformed> {
    let normal = match normalize_request_path(uri.path()) {
        Err(_) => return Err(Malformed::Path),
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normal)) => normal,
    };
    let target = match uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| Malformed::Path)?);
    *uri = Uri::from_parts(parts).map_err(|_| Malformed::Path)?;
    Ok(())
}

/// What makes an HTTP/1.1 WebSocket handshake unfit to relay, if anything.
pub(crate) fn check_handshake(headers: &HeaderMap) -> Result<(), Malformed> {
    if has_body(headers) {
        return Err(Malformed::UpgradeBody);
    }
    match headers.get(&SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(()),
        _ => Err(Malformed::UpgradeKey),
    }
}

/// Whether an HTTP/1.1 request says it has a body (RFC 9112 §6.3).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for host in hosts {
            h.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn one_authority_routes_and_forwards() {
        let v11 = Version::HTTP_11;
        let v2 = Version::HTTP_2;
        let got = |v, u: &str, h: &[&str]| authority(v, &uri(u), &headers(h));
        let host = |s: &'static str| Ok(Some(HeaderValue::from_static(s)));
        assert_eq!(got(v11, "/", &["chat.test"]), host("chat.test"));
        assert_eq!(got(v11, "/", &[]), Ok(None));
        // RFC 9112 §3.2.2: absolute-form wins over Host.
        assert_eq!(
            got(v11, "http://chat.test/x", &["maintenance.test"]),
            host("chat.test")
        );
        assert_eq!(
            got(v11, "/", &["a.test", "b.test"]),
            Err(Malformed::TwoHosts)
        );
        assert_eq!(
            got(v11, "/", &["a.test", "a.test"]),
            Err(Malformed::TwoHosts)
        );
        // RFC 9113 §8.3.1: :authority, which a different Host contradicts.
        assert_eq!(got(v2, "https://chat.test/", &[]), host("chat.test"));
        assert_eq!(
            got(v2, "https://chat.test/", &["CHAT.test"]),
            host("chat.test")
        );
        assert_eq!(
            got(v2, "https://chat.test/", &["other.test"]),
            Err(Malformed::AuthorityMismatch)
        );
        assert_eq!(got(v2, "/", &["chat.test"]), host("chat.test"));
    }

    #[test]
    fn the_path_is_rewritten_in_normal_form_and_the_query_kept() {
        let mut u = uri("/public/%2e%2e/admin?x=/../y");
        assert_eq!(normalize_path(&mut u), Ok(()));
        assert_eq!(u, "/admin?x=/../y");
        let mut u = uri("https://chat.test/a/./b");
        assert_eq!(normalize_path(&mut u), Ok(()));
        assert_eq!(u, "https://chat.test/a/b");
        let mut u = uri("/../etc/passwd");
        assert_eq!(normalize_path(&mut u), Err(Malformed::Path));
        let mut u = uri("/fine?q");
        assert_eq!(normalize_path(&mut u), Ok(()));
        assert_eq!(u, "/fine?q");
    }

    #[test]
    fn an_http1_handshake_has_a_key_and_no_body() {
        let mut h = HeaderMap::new();
        assert_eq!(check_handshake(&h), Err(Malformed::UpgradeKey));
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(check_handshake(&h), Ok(()));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert_eq!(check_handshake(&h), Err(Malformed::UpgradeBody));
    }

    #[test]
    fn a_body_is_announced_by_length_or_chunking() {
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert!(has_body(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(has_body(&h));
    }
}
