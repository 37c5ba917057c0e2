//! Header values as the host holds them (bytes), read as text without trusting their
//! encoding (D103).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use weft_filter_core::attrs::header_text as text;

// The SDK's `String` readers unwrap `from_utf8`: a hostile caller's `x: \xff` would trap the
// VM (and, fail-closed, answer 503 to every request after it), so values are read as bytes.

/// The first value of header `name` in `map`, as text.
pub(crate) fn map_value(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(text)
}

/// Every entry of header map `map` in order, values as text (Envoy's header names are
/// tokens, ASCII).
pub(crate) fn header_map(map: MapType) -> Option<Vec<(String, String)>> {
    let pairs = hostcalls::get_map_bytes(map).ok()?;
    Some(pairs.into_iter().map(|(k, v)| (k, text(v))).collect())
}
