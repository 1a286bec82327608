//! `allowedOrigins`: which pages may open a WebSocket (cross-site WebSocket hijacking is a page
//! on another site opening a socket with the user's cookies; browsers always send `Origin`).

use super::Hostname;

/// One allowed origin, parsed from `https://chat.example.com` or `https://*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Box<str>,
    /// Host without the `*.` of a wildcard.
    host: Box<str>,
    /// `*.host`: any name below `host` (one label or more), not `host` itself.
    wildcard: bool,
    /// The port; `None` means the scheme's default.
    port: Option<u16>,
}

impl std::fmt::Display for OriginPattern {
    /// The pattern as `parse` reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wildcard = if self.wildcard { "*." } else { "" };
        write!(f, "{}://{wildcard}{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl OriginPattern {
    /// Parses `scheme://host[:port]`: scheme `http` or `https`, the host a [`Hostname`]
    /// (optionally `*.` for any subdomain), an IP address or a bracketed IPv6 address; no
    /// path. The only grammar of allowed origins, so what is accepted is what is matched.
    pub fn parse(pattern: &str) -> Result<OriginPattern, String> {
        let bad = || {
            format!(
                "{pattern:?} is not an origin like https://chat.example.com or https://*.example.com"
            )
        };
        let (scheme, host, port) = split_origin(pattern).ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => Hostname::parse(host).is_ok(),
        };
        if !host_ok {
            return Err(bad());
        }
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(parent) => (parent, true),
            None => (host, false),
        };
        Ok(OriginPattern {
            scheme: scheme.into(),
            host: host.into(),
            wildcard,
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let default = if self.scheme.as_ref() == "https" {
            443
        } else {
            80
        };
        if port.unwrap_or(default) != self.port.unwrap_or(default) {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len() + 1
                && host.is_char_boundary(host.len() - self.host.len() - 1)
                && host[host.len() - self.host.len()..].eq_ignore_ascii_case(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host.eq_ignore_ascii_case(&self.host)
        }
    }
}

/// Whether an `Origin` header value is allowed: any value when the list is empty; otherwise
/// it must match a pattern (a missing, `null` or malformed origin matches none).
pub fn origin_allowed(patterns: &[OriginPattern], origin: Option<&str>) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some((scheme, host, port)) = origin.and_then(split_origin) else {
        return false;
    };
    patterns.iter().any(|p| p.matches(scheme, host, port))
}

/// `scheme://host[:port]` into its parts; `None` for paths, userinfo or a bad port.
fn split_origin(origin: &str) -> Option<(&str, &str, Option<u16>)> {
    let (scheme, rest) = origin.split_once("://")?;
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    // An IPv6 literal keeps its colons inside the brackets.
    let port_at = match rest.rfind(']') {
        Some(end) => rest[end..].find(':').map(|i| end + i),
        None => rest.rfind(':'),
    };
    match port_at {
        Some(i) => {
            let port = rest[i + 1..].parse::<u16>().ok().filter(|&p| p != 0)?;
            Some((scheme, &rest[..i], Some(port)))
        }
        None => Some((scheme, rest, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|p| OriginPattern::parse(p).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn origin_matrix() {
        let allowed = patterns(&[
            "https://chat.example.com",
            "https://*.example.org",
            "http://localhost:8080",
            "https://[::1]:8443",
        ]);
        let cases = [
            (Some("https://chat.example.com"), true),
            (Some("https://CHAT.example.com"), true),
            (Some("https://chat.example.com:443"), true),
            (Some("https://chat.example.com:8443"), false),
            (Some("http://chat.example.com"), false),
            (Some("https://evil.com"), false),
            (Some("https://chat.example.com.evil.com"), false),
            (Some("https://a.example.org"), true),
            (Some("https://a.b.example.org"), true),
            (Some("https://example.org"), false),
            (Some("https://badexample.org"), false),
            (Some("http://localhost:8080"), true),
            (Some("http://localhost"), false),
            (Some("https://[::1]:8443"), true),
            (Some("https://chat.example.com/path"), false),
            (Some("https://user@chat.example.com"), false),
            (Some("null"), false),
            (Some(""), false),
            (None, false),
        ];
        for (origin, want) in cases {
            assert_eq!(origin_allowed(&allowed, origin), want, "{origin:?}");
        }
    }

    #[test]
    fn empty_list_allows_anything() {
        assert!(origin_allowed(&[], None));
        assert!(origin_allowed(&[], Some("https://evil.com")));
    }

    #[test]
    fn grammar() {
        for good in [
            "https://chat.example.com",
            "http://localhost:8080",
            "https://*.example.com",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
        ] {
            assert!(OriginPattern::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "chat.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://x.com:0",
            "https://x.com:http",
            "https://*",
            "https://a.*.com",
            "https://Chat.example.com",
            "https://[nope]:1",
            "null",
            "*",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
