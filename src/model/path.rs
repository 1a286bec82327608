//! Path grammar of rules: what a path prefix or exact path in a route may be.

/// Checks a rule path: absolute, no empty segment, no query, fragment, spaces or control
/// characters.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.contains("//") {
        return Err(format!("{path:?} must not contain '//'"));
    }
    if path
        .bytes()
        .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "{path:?} must be a path only (no query, fragment, spaces or control characters)"
        ));
    }
    Ok(())
}

/// The canonical form of a path prefix: no trailing '/' except for the root.
pub fn normalize_path_prefix(prefix: &str) -> &str {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_normalization() {
        assert_eq!(normalize_path_prefix("/"), "/");
        assert_eq!(normalize_path_prefix("/ws/"), "/ws");
        assert_eq!(normalize_path_prefix("/ws"), "/ws");
    }

    #[test]
    fn paths() {
        assert!(check_path("/ws/room").is_ok());
        for bad in ["ws", "/a//b", "/a?b", "/a#b", "/a b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}
