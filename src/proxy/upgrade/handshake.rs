//! The two handshakes of a relayed WebSocket, built without I/O: the request wsgate sends the
//! backend (always an HTTP/1.1 Upgrade, RFC 6455 §4.1) and the answer the client gets (a 101 for
//! HTTP/1.1, a 200 to the extended CONNECT for HTTP/2, RFC 8441 §5).

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};

use crate::proxy::answer::Body;
use crate::proxy::headers::{Forwarded, prepare_request, prepare_response};

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The handshake for the backend, from the client's request head. An HTTP/1.1 Upgrade keeps
/// its handshake headers (key, version, protocols, extensions); an HTTP/2 extended CONNECT
/// becomes the GET the backend expects, with `new_key()` as its `Sec-WebSocket-Key` (HTTP/2
/// clients send none, RFC 8441 §5).
pub(crate) fn backend_request(
    mut parts: Parts,
    extended_connect: bool,
    fwd: &Forwarded<'_>,
    new_key: impl FnOnce() -> HeaderValue,
) -> Request<Empty<Bytes>> {
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    if extended_connect {
        parts.method = Method::GET;
        prepare_request(&mut parts.headers, false, fwd);
        let h = &mut parts.headers;
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(SEC_WEBSOCKET_KEY.clone(), new_key());
        if let Some(host) = fwd.host {
            h.insert(header::HOST, host.clone());
        }
    } else {
        prepare_request(&mut parts.headers, true, fwd);
    }
    Request::from_parts(parts, Empty::new())
}

/// The client's answer once the backend switched protocols, carrying the backend's headers
/// (accepted protocol and extensions, cookies) minus what belongs to the backend's hop.
pub(crate) fn client_response(
    backend_headers: HeaderMap,
    extended_connect: bool,
) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.headers_mut() = backend_headers;
    if extended_connect {
        // A 2xx accepts the CONNECT; the HTTP/1.1 handshake headers stay behind.
        prepare_response(resp.headers_mut(), false);
        resp.headers_mut().remove(&SEC_WEBSOCKET_ACCEPT);
    } else {
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        prepare_response(resp.headers_mut(), true);
    }
    resp
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
pub(crate) fn new_key() -> HeaderValue {
    let mut nonce = [0u8; 16];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut nonce).is_err() {
        // Only uniqueness matters here, not secrecy: fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        nonce = t.to_le_bytes();
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn fwd<'a>(host: &'a HeaderValue, peer: &'a HeaderValue) -> Forwarded<'a> {
        Forwarded {
            peer: [192, 0, 2, 9].into(),
            peer_value: peer,
            client_value: peer,
            proto: "https",
            host: Some(host),
            port: 443,
        }
    }

    fn head(req: Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn an_http1_upgrade_keeps_its_handshake_and_loses_other_hop_headers() {
        let (peer, host) = (
            HeaderValue::from_static("192.0.2.9"),
            HeaderValue::from_static("chat.example.com"),
        );
        let client = Request::builder()
            .uri("/ws?room=1")
            .header(header::HOST, "chat.example.com")
            .header(header::CONNECTION, "keep-alive, Upgrade")
            .header(header::UPGRADE, "websocket")
            .header("sec-websocket-key", KEY)
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .header("keep-alive", "timeout=5")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"));
        let req = backend_request(head(client), false, &fwd(&host, &peer), || {
            panic!("an HTTP/1.1 client's key is kept")
        });
        assert_eq!(
            (req.method(), req.version()),
            (&Method::GET, Version::HTTP_11)
        );
        assert_eq!(req.uri(), "/ws?room=1");
        let h = req.headers();
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(
            h[header::CONNECTION]
                .to_str()
                .is_ok_and(|c| c.eq_ignore_ascii_case("upgrade"))
        );
        assert_eq!(h["sec-websocket-key"], KEY);
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert!(!h.contains_key("keep-alive"));
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
    }

    #[test]
    fn an_extended_connect_becomes_an_http1_get_with_a_fresh_key() {
        let (peer, host) = (
            HeaderValue::from_static("192.0.2.9"),
            HeaderValue::from_static("chat.example.com"),
        );
        // RFC 8441 §5: :method CONNECT, :protocol websocket, :authority, :path.
        let client = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://chat.example.com/ws")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"));
        let req = backend_request(head(client), true, &fwd(&host, &peer), || {
            HeaderValue::from_static(KEY)
        });
        assert_eq!(
            (req.method(), req.version()),
            (&Method::GET, Version::HTTP_11)
        );
        assert_eq!(req.uri(), "/ws");
        let h = req.headers();
        assert_eq!(h[header::HOST], "chat.example.com");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h["sec-websocket-key"], KEY);
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-extensions"], "permessage-deflate");
    }

    fn switched() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            "sec-websocket-accept",
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        h.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        h.insert(header::SET_COOKIE, HeaderValue::from_static("sid=1"));
        h
    }

    #[test]
    fn an_http1_client_gets_the_101_with_the_backends_handshake() {
        let resp = client_response(switched(), false);
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = resp.headers();
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(h.contains_key(header::CONNECTION));
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h[header::SET_COOKIE], "sid=1");
    }

    #[test]
    fn an_http2_client_gets_a_200_without_http1_handshake_headers() {
        let resp = client_response(switched(), true);
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        // RFC 9113 §8.2.2: connection-specific headers are malformed in HTTP/2.
        assert!(!h.contains_key(header::CONNECTION));
        assert!(!h.contains_key(header::UPGRADE));
        assert!(!h.contains_key("sec-websocket-accept"));
        assert_eq!(h["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn fresh_keys_are_16_random_bytes() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.as_bytes())
            .unwrap_or_default();
        assert_eq!(decoded.len(), 16);
    }
}
