//! Upgrade and Connection header classification and the rewrite for the backend, on any
//! header lines: never panics; after `prepare_request` no hop-by-hop header is left but the
//! `Upgrade: websocket` / `Connection: upgrade` pair of a WebSocket upgrade, whatever the
//! client's `Connection` named.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wsgate::proxy::headers::{Forwarded, is_websocket_upgrade, prepare_request};

const HOP: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        // Common names more often than random bytes would give them.
        let name = match name.as_bytes().first() {
            Some(b'C') => "connection",
            Some(b'U') => "upgrade",
            _ => name,
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(n, v);
        }
    }
    let upgrade = is_websocket_upgrade(&headers);
    let peer = HeaderValue::from_static("192.0.2.1");
    let fwd = Forwarded {
        peer: [192, 0, 2, 1].into(),
        peer_value: &peer,
        client_value: &peer,
        proto: "https",
        host: None,
        port: 443,
    };
    prepare_request(&mut headers, upgrade, &fwd);
    for name in HOP {
        let allowed = upgrade && (name == "upgrade" || name == "connection");
        assert!(allowed || !headers.contains_key(name), "{name} left");
    }
    if upgrade {
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers.get_all("upgrade").iter().count(), 1);
    }
});
