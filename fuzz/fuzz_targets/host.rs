//! Host normalisation and matching, on any text: never panics; a normalised host is lower
//! case, has no port and no trailing dot, and normalises to itself; looking it up in a table
//! with exact and wildcard routes never panics and a wildcard match covers exactly one label.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use wsgate::table::{HostBuf, RouteTable, Snapshot, compile, normalize_host};

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let yaml = "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: { name: r }\nspec:\n  hostnames: [chat.example.com, \"*.example.com\", \"*.a.b.test\"]\n  rules:\n    - http: { backend: { address: \"127.0.0.1:1\" } }\n";
        let objects = wsgate::source::files::parse_file(std::path::Path::new("r.yaml"), yaml)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let snapshot = Snapshot {
            routes: objects.routes.into_iter().map(|r| Arc::new(Ok(r))).collect(),
            ..Default::default()
        };
        compile(&snapshot).0
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let mut buf = HostBuf::default();
    let Some(host) = normalize_host(raw, &mut buf) else {
        return;
    };
    let host = host.to_string();
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    assert!(!host.ends_with('.'), "{host:?}");
    let mut again = HostBuf::default();
    if !host.contains(':') {
        assert_eq!(normalize_host(&host, &mut again), Some(host.as_str()));
    }
    if table().lookup(&host).is_some() && host != "chat.example.com" {
        let (first, parent) = host.split_once('.').unwrap_or_default();
        assert!(!first.is_empty() && (parent == "example.com" || parent == "a.b.test"), "{host:?}");
    }
});
