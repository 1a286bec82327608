//! Route YAML → model translation → table compile, on any text: never panics; what parses
//! compiles, and every problem names a field or a document.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wsgate::source::files::parse_file;
use wsgate::table::{Snapshot, compile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_file(std::path::Path::new("fuzz.yaml"), text) {
        Ok(objects) => {
            let snapshot = Snapshot {
                routes: objects.routes.into_iter().map(|r| Arc::new(Ok(r))).collect(),
                secrets: objects.secrets,
                ..Default::default()
            };
            let (table, reports) = compile(&snapshot);
            assert!(table.routes().len() <= reports.len());
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});
