//! Path grammar: what a path prefix or exact path in a route may be, and the one normal form
//! request paths are matched and forwarded in.

use std::borrow::Cow;
use std::fmt::Write;

/// A request path that cannot be normalised safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` would climb above `/`.
    #[error("the path climbs above /")]
    AboveRoot,
    /// A dot segment hidden behind an encoded or back slash (`..%2F`, `..\\`), which a
    /// backend that decodes them would climb with.
    #[error("the path has a dot segment behind an encoded slash")]
    HiddenDotSegment,
    /// A `%` not followed by two hex digits (RFC 3986 §2.1).
    #[error("the path has a bad percent-encoding")]
    BadEscape,
}

/// The normal form of an origin-form request path (RFC 3986 §6.2.2): percent-encoded
/// unreserved characters decoded (`%2e` is `.`, `%41` is `A`), other escapes upper-cased, then
/// dot segments removed (§5.2.4). Routing and forwarding both use the result, so a backend
/// never sees a path other than the one its rule matched. Stricter than the RFC where it
/// leaves room to disagree: `..` above the root is an error, not clamped, and so is a dot
/// segment hidden behind `%2F`, `%5C` or `\`. Returns the path itself when it is already in
/// normal form (the usual case, without allocating). Paths that do not start with `/` (`*`)
/// are left alone.
pub fn normalize_request_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || (!path.contains('%') && !has_dot_segment(path)) {
        check_hidden(path)?;
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded.split('/').skip(1).peekable();
    // A trailing "." or ".." keeps the trailing slash, as §5.2.4 does.
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                out.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || normal.is_empty() {
        normal.push('/');
    }
    check_hidden(&normal)?;
    if normal == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(normal))
}

/// Whether a segment of `path` is `.` or `..`.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// Refuses a dot segment that only an encoded slash or a backslash separates.
fn check_hidden(path: &str) -> Result<(), PathError> {
    if !path.contains(['%', '\\']) {
        return Ok(());
    }
    let upper = path
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace("%2F", "/");
    let upper = upper.replace("%5C", "/").replace('\\', "/");
    if has_dot_segment(&upper) {
        return Err(PathError::HiddenDotSegment);
    }
    Ok(())
}

/// Decodes percent-encoded unreserved characters (RFC 3986 §2.3) and upper-cases the hex of
/// the escapes that stay (§6.2.2.1).
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            let next = path[i..].find('%').map_or(path.len(), |n| i + n);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let hex = |b: u8| char::from(b).to_digit(16);
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let c = char::from((hi * 16 + lo) as u8);
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
            out.push(c);
        } else {
            let _ = write!(out, "%{:02X}", hi * 16 + lo);
        }
        i += 3;
    }
    Ok(out)
}

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
    // Requests are matched in normal form, so a prefix in any other form would never match.
    match normalize_request_path(path) {
        Ok(normal) if normal == path => {}
        Ok(normal) => {
            return Err(format!(
                "{path:?} is not in normal form: write {normal:?} (requests are matched after dot segments and needless escapes are resolved)"
            ));
        }
        Err(why) => return Err(format!("{path:?}: {why}")),
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
    fn request_paths_are_matched_in_normal_form() {
        let cases = [
            ("/", Ok("/")),
            ("/chat/room", Ok("/chat/room")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2e/admin", Ok("/admin")),
            ("/public/./a", Ok("/public/a")),
            ("/a/b/..", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/a/..", Ok("/")),
            ("/%70ublic/x", Ok("/public/x")),
            ("/a%2fb", Ok("/a%2Fb")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/..", Err(PathError::AboveRoot)),
            ("/a/../../etc", Err(PathError::AboveRoot)),
            ("/%2e%2e/etc", Err(PathError::AboveRoot)),
            ("/public/..%2Fadmin", Err(PathError::HiddenDotSegment)),
            ("/public%2F..%2Fadmin", Err(PathError::HiddenDotSegment)),
            ("/public/..%5cadmin", Err(PathError::HiddenDotSegment)),
            ("/public/..\\admin", Err(PathError::HiddenDotSegment)),
            ("/a%zz", Err(PathError::BadEscape)),
            ("/a%2", Err(PathError::BadEscape)),
            ("*", Ok("*")),
            ("/a..b/...", Ok("/a..b/...")),
        ];
        for (path, want) in cases {
            assert_eq!(
                normalize_request_path(path).as_deref().map_err(|e| *e),
                want,
                "{path:?}"
            );
        }
        // Already normal: no allocation.
        assert!(matches!(
            normalize_request_path("/chat/room"),
            Ok(Cow::Borrowed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn a_normal_path_has_no_dot_segment_and_stays_under_the_root(
            path in "/[a-z./%2eEfF5cC]{0,24}"
        ) {
            if let Ok(normal) = normalize_request_path(&path) {
                proptest::prop_assert!(normal.starts_with('/'));
                proptest::prop_assert!(!has_dot_segment(&normal), "{normal:?}");
                // Normalising twice changes nothing.
                let again = normalize_request_path(&normal).map(Cow::into_owned);
                proptest::prop_assert_eq!(again, Ok(normal.into_owned()));
            }
        }
    }

    #[test]
    fn paths() {
        assert!(check_path("/ws/room").is_ok());
        for bad in [
            "ws", "/a//b", "/a?b", "/a#b", "/a b", "/a/../b", "/%61", "/a/.",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}
