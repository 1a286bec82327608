//! The request path normaliser, on any text: never panics; a normal path starts with `/`, has
//! no `.` or `..` segment, never climbs above the root (its segments are a suffix-free subset
//! of the input's), and normalises to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::model::normalize_request_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize_request_path(path) else {
        return;
    };
    if !path.starts_with('/') {
        assert_eq!(normal, path);
        return;
    }
    assert!(normal.starts_with('/'), "{normal:?}");
    assert!(
        !normal.split('/').any(|s| s == "." || s == ".."),
        "dot segment in {normal:?} from {path:?}"
    );
    let again = normalize_request_path(&normal).map(|p| p.into_owned());
    assert_eq!(again.as_deref(), Ok(&*normal));
});
