//! Hostname normalization without allocation: Host headers and SNI names are lowercased into a
//! stack buffer, the port and a trailing dot are dropped.

/// A stack buffer holding one normalized hostname (DNS names are at most 253 bytes).
pub struct HostBuf {
    buf: [u8; 255],
    len: usize,
}

impl Default for HostBuf {
    fn default() -> Self {
        HostBuf {
            buf: [0; 255],
            len: 0,
        }
    }
}

impl HostBuf {
    /// The normalized name.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever copied in, so this cannot fail; fall back to "" anyway.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Normalizes a Host header value or SNI name: strips `:port` (and IPv6 brackets), one trailing
/// dot, lowercases. Returns `None` for an empty, oversized or non-ASCII-printable name, which the
/// caller answers with 400.
pub fn normalize_host<'a>(raw: &str, out: &'a mut HostBuf) -> Option<&'a str> {
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port or [v6]
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        // Brackets hold an IPv6 address and nothing else (RFC 3986 §3.2.2).
        let v6 = &rest[..end];
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        v6
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') => {
                if !valid_port(port) {
                    return None;
                }
                h
            }
            Some(_) => return None, // a bare IPv6 address must be bracketed in Host
            None => raw,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > out.buf.len() {
        return None;
    }
    // An empty label (`.example.com`, `a..b`) is no hostname (RFC 1035 §2.3.1), and would
    // let `*.example.com` match with an empty first label. Found by fuzz/host.
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return None;
    }
    let v6 = name.contains(':');
    for (slot, b) in out.buf.iter_mut().zip(name.bytes()) {
        // DNS names and IP addresses only: letters, digits, `-`, `_` (seen in the wild), `.`,
        // and `:` inside an IPv6 address.
        let allowed =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (v6 && b == b':');
        if !allowed {
            return None;
        }
        *slot = b.to_ascii_lowercase();
    }
    out.len = name.len();
    Some(out.as_str())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> Option<String> {
        let mut buf = HostBuf::default();
        normalize_host(raw, &mut buf).map(str::to_string)
    }

    #[test]
    fn normalizes() {
        assert_eq!(norm("Chat.Example.COM"), Some("chat.example.com".into()));
        assert_eq!(
            norm("chat.example.com:8443"),
            Some("chat.example.com".into())
        );
        assert_eq!(norm("chat.example.com."), Some("chat.example.com".into()));
        assert_eq!(norm("[::1]:8080"), Some("::1".into()));
        assert_eq!(norm("[::1]"), Some("::1".into()));
        assert_eq!(norm("127.0.0.1:80"), Some("127.0.0.1".into()));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            ":80",
            "a b",
            "a:b",
            "a:",
            "::1",
            "[::1",
            "[::1]x",
            "a/b",
            "u@h",
            "é.com",
            ".example.com",
            "a..example.com",
            "example.com..",
            ".",
            "[[]",
            "[x]",
            "a[b",
            "a*b",
            "a!b",
            "%41.test",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
        assert_eq!(norm(&"a".repeat(300)), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_lowercase(raw in "\\PC{0,300}") {
            if let Some(h) = norm(&raw) {
                prop_assert!(!h.is_empty());
                prop_assert!(!h.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn case_and_port_do_not_change_the_result(name in "[a-zA-Z0-9-]{1,20}(\\.[a-zA-Z0-9-]{1,20}){0,3}", port in 1u16..) {
            prop_assert_eq!(norm(&name), norm(&format!("{}:{port}", name.to_uppercase())));
        }
    }
}
