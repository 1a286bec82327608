//! Hostnames as Kubernetes Ingress and the Gateway API accept them: lowercase RFC 1123 labels,
//! optionally `*.` in front for a one-label wildcard. The one grammar for route hostnames,
//! origin hosts and backend SNI names.

use std::fmt;

/// A parsed hostname: an exact name or a `*.parent` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(Box<str>);

impl Hostname {
    /// Parses a hostname; the error says what is wrong.
    pub fn parse(host: &str) -> Result<Hostname, String> {
        let name = host.strip_prefix("*.").unwrap_or(host);
        if name.is_empty() {
            return Err(format!("{host:?} is not a hostname"));
        }
        if host.len() > 253 {
            return Err(format!("{host:?} is longer than 253 characters"));
        }
        if name.contains('*') {
            return Err(format!(
                "{host:?}: a wildcard is only allowed as the whole first label (*.example.com)"
            ));
        }
        for label in name.split('.') {
            check_dns_label(label).map_err(|why| format!("{host:?}: {why}"))?;
        }
        Ok(Hostname(host.into()))
    }

    /// The name as written (`*.example.com` for a wildcard).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For `*.example.com`, `example.com`; `None` for an exact name.
    pub fn wildcard_parent(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }

    /// Whether this is a wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard_parent().is_some()
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 1123 label: 1-63 of a-z 0-9 '-', not starting or ending with '-'.
pub fn check_dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        return Err(format!("label {label:?} must be 1-63 characters"));
    }
    let ok_chars = label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label {label:?} must be lowercase letters, digits and '-', not starting or ending with '-'"
        ));
    }
    Ok(())
}

/// A Kubernetes object name (DNS subdomain).
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1-253 characters".into());
    }
    name.split('.').try_for_each(check_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for good in ["a.b", "*.example.com", "x-1.example.com", "localhost"] {
            assert!(Hostname::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "", "*.", "*", "a..b", "-a.com", "a-.com", "A.com", "a.*.com", "*a.com", "a b",
            "a_b.com", "é.com", "a.com:80",
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert!(Hostname::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn wildcards_know_their_parent() {
        let wild = Hostname::parse("*.example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wild.wildcard_parent(), Some("example.com"));
        let exact = Hostname::parse("example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exact.wildcard_parent(), None);
    }
}
