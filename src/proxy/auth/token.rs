//! The pure parts of the JWT phase: where the token is in a request, how the request looks
//! once it is taken out (the query parameter, the `Sec-WebSocket-Protocol` entry), what the
//! claims put in headers, and the `WWW-Authenticate` of a refusal (RFC 6750 §3).

use http::header::{self, HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use super::super::headers::cookie;
use crate::auth::TokenError;
use crate::model::{ClaimHeader, TokenSource};

/// `Sec-WebSocket-Protocol` (RFC 6455 §11.3.4).
pub(crate) static SEC_WEBSOCKET_PROTOCOL: header::HeaderName =
    header::HeaderName::from_static("sec-websocket-protocol");

/// A token found in a request, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found<'a> {
    /// The token.
    pub token: &'a str,
    /// Where it was.
    pub place: &'a TokenSource,
}

/// The token of the first place in `from` that has one. A place that has something that is
/// not a token (`Authorization: Basic …`, an empty cookie) is passed over.
pub(crate) fn find<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    from: &'a [TokenSource],
) -> Option<Found<'a>> {
    from.iter().find_map(|place| {
        let token = match place {
            TokenSource::Bearer => bearer(headers),
            TokenSource::Cookie(name) => cookie(headers, name),
            TokenSource::Query(name) => query_param(query?, name),
            TokenSource::Protocol(prefix) => {
                protocols(headers).find_map(|p| p.strip_prefix(&**prefix))
            }
        }?;
        (!token.is_empty()).then_some(Found { token, place })
    })
}

/// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1). Two
/// `Authorization` headers are ambiguous: neither is used.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The raw value of the first query parameter `name`. A JWT is base64url and dots, so it
/// never needs percent-decoding; one that would is not a token.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Every entry of every `Sec-WebSocket-Protocol` header, trimmed.
fn protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(&SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The query without every parameter `name`; `None` when nothing is left.
pub(crate) fn query_without(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

/// Takes the entries starting with `prefix` out of `Sec-WebSocket-Protocol`, keeping the
/// others in order (the backend then picks among what the application offered).
pub(crate) fn remove_protocol(headers: &mut HeaderMap, prefix: &str) {
    let rest: Vec<String> = protocols(headers)
        .filter(|p| !p.starts_with(prefix))
        .map(str::to_string)
        .collect();
    headers.remove(&SEC_WEBSOCKET_PROTOCOL);
    // The entries came from a header value, so joined they are one.
    match HeaderValue::from_str(&rest.join(", ")) {
        Ok(value) if !rest.is_empty() => {
            headers.insert(SEC_WEBSOCKET_PROTOCOL.clone(), value);
        }
        _ => {}
    }
}

/// Sets the claim headers: client-sent headers of those names are removed first, always, so
/// a backend never mistakes a client's header for one wsgate vouches for.
pub(crate) fn claims_to_headers(
    headers: &mut HeaderMap,
    claims: Option<&Map<String, Value>>,
    mapping: &[ClaimHeader],
) {
    for m in mapping {
        headers.remove(&m.header);
    }
    let Some(claims) = claims else { return };
    for m in mapping {
        if let Some(value) = claim(claims, &m.claim).and_then(header_value) {
            headers.insert(m.header.clone(), value);
        }
    }
}

/// Claim `path` (`a.b`: member `b` of object claim `a`).
fn claim<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    let mut parts = path.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |v, part| v.as_object()?.get(part))
}

/// A claim as a header value: strings, numbers and booleans as they are, a list of them
/// joined with `,`; objects, and values a header cannot carry, give none.
fn header_value(v: &Value) -> Option<HeaderValue> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match v {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    HeaderValue::from_str(&text).ok()
}

/// `WWW-Authenticate` of a 401 (RFC 6750 §3): no error code when the request had no token
/// (§3.1: it need not know it needed one), `invalid_token` with a description otherwise.
pub(crate) fn www_authenticate(error: TokenError) -> HeaderValue {
    match error {
        TokenError::Missing => HeaderValue::from_static("Bearer"),
        other => {
            let text = format!("Bearer error=\"invalid_token\", error_description=\"{other}\"");
            HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn all_places() -> Vec<TokenSource> {
        vec![
            TokenSource::Bearer,
            TokenSource::Cookie("session".into()),
            TokenSource::Query("access_token".into()),
            TokenSource::Protocol("bearer.".into()),
        ]
    }

    #[test]
    fn finds_the_token_in_each_place_in_order() {
        let from = all_places();
        let find_in = |h: &HeaderMap, q: Option<&'static str>| {
            find(h, q, &from).map(|f| (f.token.to_string(), f.place.clone()))
        };
        let h = headers(&[("authorization", "Bearer a.b.c")]);
        assert_eq!(find_in(&h, None), Some(("a.b.c".into(), from[0].clone())));
        let h = headers(&[("authorization", "bearer  a.b.c ")]);
        assert_eq!(find_in(&h, None).map(|f| f.0), Some("a.b.c".into()));
        let h = headers(&[("cookie", "theme=dark; session=c.o.k")]);
        assert_eq!(find_in(&h, None), Some(("c.o.k".into(), from[1].clone())));
        let h = HeaderMap::new();
        assert_eq!(
            find_in(&h, Some("room=1&access_token=q.u.e")),
            Some(("q.u.e".into(), from[2].clone()))
        );
        let h = headers(&[("sec-websocket-protocol", "chat, bearer.p.r.o")]);
        assert_eq!(find_in(&h, None), Some(("p.r.o".into(), from[3].clone())));
        // Earlier places win; a Basic credential or an empty cookie is passed over.
        let h = headers(&[("authorization", "Basic dTpw"), ("cookie", "session=c.o.k")]);
        assert_eq!(
            find_in(&h, Some("access_token=q")).map(|f| f.0),
            Some("c.o.k".into())
        );
        let h = headers(&[("cookie", "session=")]);
        assert_eq!(
            find_in(&h, Some("access_token=q")).map(|f| f.0),
            Some("q".into())
        );
        // Two Authorization headers are ambiguous.
        let h = headers(&[("authorization", "Bearer x"), ("authorization", "Bearer y")]);
        assert_eq!(find(&h, None, &from[..1]), None);
        // Nowhere.
        assert_eq!(find_in(&HeaderMap::new(), Some("access_tokenx=1")), None);
        assert_eq!(find(&h, None, &[]), None);
    }

    #[test]
    fn the_token_is_taken_out_of_the_query_and_the_protocols() {
        assert_eq!(query_without("access_token=x", "access_token"), None);
        assert_eq!(
            query_without("a=1&access_token=x&b=2&access_token=y", "access_token"),
            Some("a=1&b=2".into())
        );
        assert_eq!(
            query_without("access_tokens=1", "access_token"),
            Some("access_tokens=1".into())
        );
        let mut h = headers(&[
            ("sec-websocket-protocol", "chat, bearer.x.y.z"),
            ("sec-websocket-protocol", "v2"),
        ]);
        remove_protocol(&mut h, "bearer.");
        assert_eq!(h.get_all(&SEC_WEBSOCKET_PROTOCOL).iter().count(), 1);
        assert_eq!(h[&SEC_WEBSOCKET_PROTOCOL], "chat, v2");
        let mut h = headers(&[("sec-websocket-protocol", "bearer.x")]);
        remove_protocol(&mut h, "bearer.");
        assert!(h.get(&SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[test]
    fn claims_become_headers_and_spoofed_ones_go() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"alice","n":7,"admin":true,"groups":["a","b"],"org":{"id":"o1"},"bad":"x\ny","obj":{"a":1}}"#,
        )
        .unwrap();
        let map = |claim: &str, header: &str| ClaimHeader {
            claim: claim.into(),
            header: header::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        };
        let mapping = [
            map("sub", "x-user"),
            map("n", "x-n"),
            map("admin", "x-admin"),
            map("groups", "x-groups"),
            map("org.id", "x-org"),
            map("bad", "x-bad"),
            map("obj", "x-obj"),
            map("missing", "x-missing"),
        ];
        let mut h = headers(&[
            ("x-user", "mallory"),
            ("x-missing", "forged"),
            ("x-obj", "forged"),
        ]);
        claims_to_headers(&mut h, Some(&claims), &mapping);
        assert_eq!(h["x-user"], "alice");
        assert_eq!(h.get_all("x-user").iter().count(), 1);
        assert_eq!(h["x-n"], "7");
        assert_eq!(h["x-admin"], "true");
        assert_eq!(h["x-groups"], "a,b");
        assert_eq!(h["x-org"], "o1");
        for absent in ["x-bad", "x-obj", "x-missing"] {
            assert!(h.get(absent).is_none(), "{absent}");
        }
        // Without claims (no token needed), the spoofed headers still go.
        let mut h = headers(&[("x-user", "mallory")]);
        claims_to_headers(&mut h, None, &mapping);
        assert!(h.get("x-user").is_none());
    }

    #[test]
    fn www_authenticate_follows_rfc_6750() {
        assert_eq!(www_authenticate(TokenError::Missing), "Bearer");
        assert_eq!(
            www_authenticate(TokenError::Expired),
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
    }
}
