//! Host-free core of the weft filters.
//!
//! Everything here is a pure function of plain inputs: the filter configuration types
//! (shared verbatim with the control plane, so it can only emit what the filters parse)
//! and the decision logic of each filter. There is no proxy-wasm dependency; the cdylibs
//! under `filters/<name>` read what a decision needs from the host and act on the answer.
//! Time and randomness are always passed in, so every decision is testable natively and,
//! through wasm-bindgen-test, on wasm32.
#![forbid(unsafe_code)]

pub mod attrs;
pub mod authz;
pub mod breaker;
pub mod canary;
pub mod error;
pub mod explain;
pub mod fault;
pub mod grammar;
pub mod host;
mod json_path;
pub mod mac;
pub mod registry;
pub mod rng;
pub mod suite;
pub mod telemetry;
pub mod testing;
pub mod waf;

pub use attrs::RequestAttributes;
pub use error::ConfigError;
pub use host::{Host, MockHost};

/// Appends `value` as one Envoy stat name segment: ASCII letters, digits, `-` and `_` stay,
/// everything else (dots above all, which would split the segment) becomes `_`.
pub fn push_stat_segment(name: &mut String, value: &str) {
    name.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        }
    }));
}
