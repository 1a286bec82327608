//! Who the client is: the peer address, or, when the peer is a trusted proxy
//! (`--trusted-proxies`), the address that proxy put in `X-Forwarded-For`. Limits, consistent
//! hashing on the source IP, `X-Real-IP` and access logs all use this one answer.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;

pub use crate::model::{Cidr, CidrError};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Trust these networks.
    pub fn new(networks: Vec<Cidr>) -> Self {
        TrustedProxies(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address. An untrusted peer is the client whatever it claims. A trusted
    /// peer's `X-Forwarded-For` is read from the right, skipping trusted hops, and the first
    /// untrusted address is the client (nginx's `real_ip_recursive on`); a malformed entry
    /// stops the walk at the last address known good.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn cidrs() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.9.8.7")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(cidr("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!cidr("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("10.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.1.1")));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "x/8", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ip_resolution() {
        let trusted = TrustedProxies::new(vec![cidr("10.0.0.0/8")]);
        let xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                X_FORWARDED_FOR.clone(),
                HeaderValue::from_str(v).unwrap_or_else(|_| panic!()),
            );
            h
        };
        // Untrusted peer: its header is ignored.
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), &xff("1.1.1.1")),
            ip("203.0.113.9")
        );
        // Trusted peer: the rightmost untrusted hop.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), &xff("6.6.6.6, 198.51.100.4, 10.0.0.9")),
            ip("198.51.100.4")
        );
        // Trusted peer without a header is the client.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), &xff("1.1.1.1, junk, 10.0.0.3")),
            ip("10.0.0.3")
        );
        // Nothing trusted: the peer.
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.2"), &xff("1.1.1.1")),
            ip("10.0.0.2")
        );
    }
}
