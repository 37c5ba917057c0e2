//! The authz filter's path normalizer against an independent reference normalizer, on
//! arbitrary paths: the same normalized path (or both refuse it), and so the same decision of
//! a DENY on `/admin` and `/admin/*`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_filter_core::authz::path::{normalize, PathParameters};

#[path = "../../../filters/core/src/authz/path/reference.rs"]
mod reference;

fn denied(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    for (params, strip) in [(PathParameters::Reject, false), (PathParameters::Strip, true)] {
        let ours = normalize(&raw, params);
        let theirs = reference::reference_normalize(&raw, strip);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{raw:?} strip={strip}");
                assert_eq!(denied(a), denied(b));
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{raw:?} strip={strip}: {ours:?} vs {theirs:?}"),
        }
    }
});
