//! Header handling shared by forwarding and the upgrade relay: WebSocket upgrade detection,
//! hop-by-hop removal (RFC 9110 §7.6.1) and the forwarding headers backends expect.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers that never cross a proxy (RFC 9110 §7.6.1, plus the de-facto ones).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The handshake's key (RFC 6455 §4.1), read when a client's handshake is checked and when the
/// backend's accept is.
pub static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether any comma-separated token of any `name` header equals `token` (ASCII
/// case-insensitive). A token `websocket/13` counts as `websocket`.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                let t = t.trim();
                let t = t.split_once('/').map_or(t, |(name, _)| name);
                t.eq_ignore_ascii_case(token)
            })
        })
    })
}

/// A WebSocket upgrade (RFC 6455 §4.1): `Upgrade` has the token `websocket` and `Connection`
/// has the token `upgrade`, anywhere in their lists (Firefox sends `keep-alive, Upgrade`).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
        && has_token(headers, &header::CONNECTION, "upgrade")
}

/// Whether `name` is one of [`HOP_BY_HOP`]: a match on the lower-case name, which compiles to
/// a few length and byte compares where `HOP_BY_HOP.contains` compares seven `HeaderName`s.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: a scan of the few names present is cheaper than hashing seven
    // lookups (`Connection` is in the list, so its named headers are covered too).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Rewrites request headers for the backend: hop-by-hop headers removed, `Upgrade: websocket`
/// and `Connection: upgrade` set for a WebSocket upgrade, forwarding headers set. `Host` is the
/// caller's to set afterwards (to the authority the request was routed by), so a `Connection`
/// header naming it cannot take it away.
pub fn prepare_request(headers: &mut HeaderMap, upgrade: bool, fwd: &Forwarded<'_>) {
    remove_hop_by_hop(headers);
    if upgrade {
        // The one protocol wsgate relays (RFC 6455 §4.1), never what else the client asked.
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // Up to five headers follow: one growth of the map instead of several.
    headers.reserve(5);
    let peer = || fwd.peer_value.clone();
    // X-Forwarded-For is appended to (as nginx's $proxy_add_x_forwarded_for does), so a chain
    // of proxies stays visible; the others describe this hop and are overwritten.
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", fwd.peer)).unwrap_or_else(|_| peer())
        }
        _ => peer(),
    };
    headers.remove(&X_FORWARDED_FOR);
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), fwd.client_value.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    if let Some(host) = fwd.host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(fwd.port));
}

/// Rewrites response headers for the client: hop-by-hop removed; for a 101 the upgrade pair is
/// restored.
pub fn prepare_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade_value = switching
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(headers);
    if let Some(value) = upgrade_value {
        headers.insert(header::UPGRADE, value);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What this hop tells the backend about the client.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's address.
    pub peer: IpAddr,
    /// The same, as a header value (made once per connection).
    pub peer_value: &'a HeaderValue,
    /// The client, as a header value: the peer, or who a trusted proxy says the client is.
    pub client_value: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The Host the client asked for, as sent.
    pub host: Option<&'a HeaderValue>,
    /// The port the client connected to.
    pub port: u16,
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim_matches('"'))
        })
}

/// An IP address as a header value.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An IP address always formats to a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|_| panic!("{k}")),
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!("{v}")),
            );
        }
        h
    }

    #[test]
    fn the_quick_check_knows_exactly_the_hop_by_hop_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            header::HOST,
            header::COOKIE,
            header::CONTENT_LENGTH,
            X_FORWARDED_FOR.clone(),
        ] {
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }

    #[test]
    fn upgrade_detection() {
        let yes = [
            vec![("upgrade", "websocket"), ("connection", "Upgrade")],
            vec![
                ("upgrade", "WebSocket"),
                ("connection", "keep-alive, Upgrade"),
            ],
            vec![("upgrade", "h2c, websocket"), ("connection", "upgrade")],
            vec![
                ("upgrade", "websocket"),
                ("connection", "keep-alive"),
                ("connection", "upgrade"),
            ],
        ];
        for pairs in yes {
            assert!(is_websocket_upgrade(&map(&pairs)), "{pairs:?}");
        }
        let no = [
            vec![("upgrade", "websocket")],
            vec![("connection", "upgrade")],
            vec![("upgrade", "h2c"), ("connection", "upgrade")],
            vec![("upgrade", "websocket"), ("connection", "keep-alive")],
            vec![("upgrade", "websockets"), ("connection", "upgrade")],
            vec![("upgrade", "websocket"), ("connection", "upgraded")],
        ];
        for pairs in no {
            assert!(!is_websocket_upgrade(&map(&pairs)), "{pairs:?}");
        }
    }

    #[test]
    fn request_headers_for_a_normal_request() {
        let mut h = map(&[
            ("host", "chat.example.com"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "spoofed"),
            ("cookie", "a=b"),
        ]);
        let fwd = Forwarded {
            peer: "192.0.2.1".parse().unwrap_or_else(|_| unreachable!()),
            peer_value: &HeaderValue::from_static("192.0.2.1"),
            client_value: &HeaderValue::from_static("192.0.2.1"),
            proto: "https",
            host: Some(&HeaderValue::from_static("chat.example.com")),
            port: 443,
        };
        prepare_request(&mut h, false, &fwd);
        for gone in ["connection", "x-secret", "keep-alive", "te", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "chat.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["host"], "chat.example.com");
        assert_eq!(h["cookie"], "a=b");
    }

    #[test]
    fn request_headers_for_an_upgrade_keep_the_handshake() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ]);
        let fwd = Forwarded {
            peer: "::1".parse().unwrap_or_else(|_| unreachable!()),
            peer_value: &HeaderValue::from_static("::1"),
            client_value: &HeaderValue::from_static("::1"),
            proto: "http",
            host: None,
            port: 8080,
        };
        prepare_request(&mut h, true, &fwd);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["x-forwarded-for"], "::1");
        assert!(is_websocket_upgrade(&h));
    }

    #[test]
    fn cookies() {
        let h = map(&[("cookie", "a=1; session=\"xyz\""), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, "session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "sess"), None);
    }

    #[test]
    fn response_headers() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "x"),
        ]);
        prepare_response(&mut h, true);
        assert!(is_websocket_upgrade(&h));
        assert_eq!(h["sec-websocket-accept"], "x");
        let mut h = map(&[
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("content-type", "text/plain"),
        ]);
        prepare_response(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    proptest! {
        #[test]
        fn upgrade_needs_both_tokens(conn in "[a-zA-Z, -]{0,30}", up in "[a-zA-Z0-9/, -]{0,30}") {
            let h = map(&[("connection", &conn), ("upgrade", &up)]);
            let conn_has = conn.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
            let up_has = up.split(',').any(|t| {
                let t = t.trim();
                t.split('/').next().unwrap_or("").eq_ignore_ascii_case("websocket")
            });
            prop_assert_eq!(is_websocket_upgrade(&h), conn_has && up_has);
        }
    }
}
