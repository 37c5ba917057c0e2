//! Validation never panics, and whatever it accepts compiles into configurations that every
//! filter's own parser accepts (validation is at least as strict as the filters).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::{labels, load, validate_set, Limits, PolicySet, References};

fuzz_target!(|data: &[u8]| {
    let Ok(docs) = load(data, &Limits::default()) else { return };
    let set = PolicySet::from_documents(docs.clone());
    for refs in [References::Strict, References::Lenient] {
        if validate_set(&set, &labels(&docs), refs).is_empty() {
            let errors = weft_compile::compile(&set).map_or_else(|e| e, |c| weft_compile::check(&c));
            assert!(errors.is_empty(), "validated set rejected by a filter: {errors:?}");
        }
    }
});
