//! Header values as the host holds them (bytes), read as text without trusting their
//! encoding (D103).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// Header bytes as text. A value may hold any byte but NUL, CR and LF (Envoy passes
/// obs-text, 0x80-0xFF, through), and the SDK's `String` readers unwrap `from_utf8`: a hostile
/// caller's `x: \xff` would trap the VM (and, fail-closed, answer 503 to every request after
/// it). Bytes that are not UTF-8 become U+FFFD, so the ASCII a rule matches on is kept.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The first value of header `name` in `map`, as text (see [`text`]).
pub(crate) fn map_value(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(text)
}

/// Every entry of header map `map` in order, values as text (see [`text`]; Envoy's header
/// names are tokens, ASCII).
pub(crate) fn header_map(map: MapType) -> Option<Vec<(String, String)>> {
    let pairs = hostcalls::get_map_bytes(map).ok()?;
    Some(pairs.into_iter().map(|(k, v)| (k, text(v))).collect())
}
