//! The two handshakes of a relayed WebSocket, built without I/O: the request wsgate sends the
//! backend (always an HTTP/1.1 Upgrade, RFC 6455 §4.1) and the answer the client gets (a 101 for
//! HTTP/1.1, a 200 to the extended CONNECT for HTTP/2, RFC 8441 §5).

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::proxy::answer::Body;
use crate::proxy::headers::{Forwarded, SEC_WEBSOCKET_KEY, prepare_request, prepare_response};

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
    // Only `websocket` goes upstream, whatever else the client listed (`websocket, h2c` would
    // let a backend that speaks h2c open a raw tunnel past routing).
    prepare_request(&mut parts.headers, true, fwd);
    let h = &mut parts.headers;
    if extended_connect {
        parts.method = Method::GET;
        h.insert(SEC_WEBSOCKET_KEY.clone(), new_key());
    }
    // The authority the request was routed by (RFC 9112 §3.2.2), set after the hop-by-hop
    // headers went.
    match fwd.host {
        Some(host) => h.insert(header::HOST, host.clone()),
        None => h.remove(header::HOST),
    };
    Request::from_parts(parts, Empty::new())
}

/// What the backend's answer to the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    /// A 101 to `websocket` with the `Sec-WebSocket-Accept` of the key sent (RFC 6455 §4.1):
    /// relay.
    Upgraded,
    /// No switch: the answer goes back to the client as a normal response.
    Refused,
    /// A switch that is no WebSocket handshake, or a 2xx that an HTTP/2 client would take
    /// for an open socket (RFC 8441 §5): 502.
    Bad,
}

/// Classifies the backend's answer to a handshake sent with `sent_key`. Anything but a
/// WebSocket switch could hand the client a tunnel to another protocol (h2c) past routing.
pub(crate) fn backend_switch(
    status: StatusCode,
    headers: &HeaderMap,
    sent_key: Option<&HeaderValue>,
    extended_connect: bool,
) -> Switch {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return match extended_connect && status.is_success() {
            true => Switch::Bad,
            false => Switch::Refused,
        };
    }
    let upgrade_is_websocket = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let accept_matches = match (sent_key, headers.get(&SEC_WEBSOCKET_ACCEPT)) {
        (Some(key), Some(accept)) => {
            derive_accept_key(key.as_bytes()).as_bytes() == accept.as_bytes()
        }
        _ => false,
    };
    match upgrade_is_websocket && accept_matches {
        true => Switch::Upgraded,
        false => Switch::Bad,
    }
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
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
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

    #[test]
    fn only_a_websocket_switch_with_the_right_accept_is_relayed() {
        // RFC 6455 §1.3's example key and accept.
        let key = HeaderValue::from_static(KEY);
        let switch = |status: u16, headers: &[(&str, &str)], h2: bool| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                    HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
                );
            }
            let status = StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{e}"));
            backend_switch(status, &h, Some(&key), h2)
        };
        let good = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert_eq!(switch(101, &good, false), Switch::Upgraded);
        assert_eq!(switch(101, &good, true), Switch::Upgraded);
        let h2c = [("upgrade", "h2c"), good[1], good[2]];
        assert_eq!(switch(101, &h2c, false), Switch::Bad);
        let wrong_accept = [good[0], good[1], ("sec-websocket-accept", "AAAA")];
        assert_eq!(switch(101, &wrong_accept, false), Switch::Bad);
        assert_eq!(switch(101, &good[..2], false), Switch::Bad);
        assert_eq!(switch(101, &[], false), Switch::Bad);
        // No switch: a normal answer, except a 2xx to an HTTP/2 CONNECT.
        assert_eq!(switch(403, &[], false), Switch::Refused);
        assert_eq!(switch(200, &[], false), Switch::Refused);
        assert_eq!(switch(404, &[], true), Switch::Refused);
        assert_eq!(switch(200, &[], true), Switch::Bad);
        // Without a key sent there is nothing to check the accept against.
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(
            backend_switch(StatusCode::SWITCHING_PROTOCOLS, &h, None, false),
            Switch::Bad
        );
    }

    #[test]
    fn only_websocket_is_asked_of_the_backend() {
        let (peer, host) = (
            HeaderValue::from_static("192.0.2.9"),
            HeaderValue::from_static("chat.example.com"),
        );
        let client = Request::builder()
            .uri("/ws")
            .header(header::HOST, "evil.example.com")
            .header(header::CONNECTION, "Upgrade, HTTP2-Settings, Host")
            .header(header::UPGRADE, "websocket, h2c")
            .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
            .header("sec-websocket-key", KEY)
            .body(())
            .unwrap_or_else(|e| panic!("{e}"));
        let req = backend_request(head(client), false, &fwd(&host, &peer), || {
            panic!("an HTTP/1.1 client's key is kept")
        });
        let h = req.headers();
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert!(!h.contains_key("http2-settings"));
        // The routed authority, whatever Host said and although Connection named it.
        assert_eq!(h[header::HOST], "chat.example.com");
    }
}
