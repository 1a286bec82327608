//! Sticky sessions ([`Balance::Cookie`]): wsgate issues a cookie naming the endpoint a client
//! reached, and the connect phase sends later requests and upgrades carrying it back there.
//!
//! The cookie's value is the endpoint's affinity id ([`hash_addr`]) in hex: derived from the
//! address alone, so every replica (and every version) honours a cookie another issued, with
//! nothing shared between them. A client can only choose among the backend's own endpoints.
//! The cookie is set on the response whenever the request's cookie did not name the endpoint
//! that served it — on a 101 too: a WebSocket client processes `Set-Cookie` in the handshake
//! answer (RFC 6455 §4.1), so a socket that started elsewhere repairs the affinity.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};

use super::headers::cookie;
use crate::model::{AffinityCookie, Balance};
use crate::table::hash_addr;

/// The affinity id the request's cookie names, if it carries a well-formed one.
pub(crate) fn requested(c: &AffinityCookie, headers: &HeaderMap) -> Option<u64> {
    let value = cookie(headers, &c.name)?;
    if value.len() != 16 {
        return None;
    }
    u64::from_str_radix(value, 16).ok()
}

/// The `Set-Cookie` value for a response served by `served`, unless the request's cookie
/// (`requested`) already named it. `secure` (an https request) adds `Secure`.
pub(crate) fn set_cookie(
    balance: &Balance,
    requested: Option<u64>,
    served: Option<SocketAddr>,
    secure: bool,
) -> Option<HeaderValue> {
    let Balance::Cookie(c) = balance else {
        return None;
    };
    let id = hash_addr(served?);
    if requested == Some(id) {
        return None;
    }
    // RFC 6265 §4.1.1: name=value; Path; Max-Age; HttpOnly keeps it from page scripts.
    let mut value = format!("{}={id:016x}; Path={}", c.name, c.path);
    if let Some(age) = c.max_age {
        value.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        value.push_str("; Secure");
    }
    value.push_str("; HttpOnly");
    HeaderValue::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use http::header;

    use super::*;

    fn sticky(max_age: Option<u64>) -> Balance {
        Balance::Cookie(AffinityCookie {
            name: "route".into(),
            path: "/chat".into(),
            max_age,
        })
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_cookie_names_the_endpoint_and_comes_back_as_its_id() {
        let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let set = set_cookie(&sticky(Some(3600)), None, Some(addr), true).unwrap();
        let id = hash_addr(addr);
        assert_eq!(
            set,
            format!("route={id:016x}; Path=/chat; Max-Age=3600; Secure; HttpOnly").as_str()
        );
        let Balance::Cookie(c) = sticky(None) else {
            unreachable!()
        };
        let back = with_cookie(&format!("a=1; route={id:016x}"));
        assert_eq!(requested(&c, &back), Some(id));
        // Already named: nothing to set. Named another endpoint: set anew.
        assert_eq!(set_cookie(&sticky(None), Some(id), Some(addr), false), None);
        let plain = set_cookie(&sticky(None), Some(id ^ 1), Some(addr), false).unwrap();
        assert_eq!(
            plain,
            format!("route={id:016x}; Path=/chat; HttpOnly").as_str()
        );
    }

    #[test]
    fn malformed_cookies_name_nothing_and_other_policies_set_none() {
        let Balance::Cookie(c) = sticky(None) else {
            unreachable!()
        };
        for bad in ["route=xyz", "route=", "route=00000000000000000", "other=1"] {
            assert_eq!(requested(&c, &with_cookie(bad)), None, "{bad}");
        }
        let addr: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        assert_eq!(
            set_cookie(&Balance::RoundRobin, None, Some(addr), false),
            None
        );
        assert_eq!(set_cookie(&sticky(None), None, None, false), None);
    }
}
