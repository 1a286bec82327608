//! The PROXY protocol v1/v2 parser, on any bytes: never panics; a complete header's length is
//! within the input, and the header parses the same from exactly its own bytes (what follows
//! it is never read); a prefix of a complete header is never an error of another kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::proxy::proxy_protocol::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, len))) = parse(data) {
        assert!(len > 0 && len <= data.len());
        let again = parse(&data[..len]);
        assert!(matches!(again, Ok(Some((h, n))) if h == header && n == len));
        // Every shorter prefix asks for more bytes.
        for cut in [1, len / 2, len - 1] {
            if cut > 0 && cut < len {
                assert!(matches!(parse(&data[..cut]), Ok(None)), "prefix {cut} of {len}");
            }
        }
    }
});
