//! The policy parser never panics, and what it accepts survives a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::{parse_documents, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(docs) = parse_documents(data, &limits) {
        let json = serde_json::to_vec(&docs).expect("documents serialise");
        let again = parse_documents(&json, &Limits { max_bytes: usize::MAX, ..limits }).expect("round trip parses");
        assert_eq!(again, docs, "round trip changed the documents");
    }
});
