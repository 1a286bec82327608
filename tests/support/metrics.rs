//! Reading the admin listener's `/metrics`.

use std::net::SocketAddr;

use http::StatusCode;

use crate::*;

/// Scrapes `/metrics` and parses the text exposition format into `name{labels}` → value, with
/// labels sorted by name (`wsgate_routes{state="programmed"}`).
pub async fn scrape(admin: SocketAddr) -> std::collections::HashMap<String, f64> {
    let reply = http(admin, request("GET", "admin", "/metrics")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").starts_with("text/plain"));
    let mut out = std::collections::HashMap::new();
    for line in reply.text().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let key = match series.split_once('{') {
            None => series.to_string(),
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels {line:?}"));
                let mut pairs: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
                pairs.sort();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        out.insert(key, value);
    }
    out
}
