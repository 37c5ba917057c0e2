//! Host calls for reporting: a stream property other filters read, the response headers in
//! `on_log`, the root context's own tick, and the status of an HTTP callout's answer.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::time::Duration;

/// Sets a per-stream property (Envoy filter state `wasm.<name>`), readable by every later
/// filter of the stream and in `on_log`, including other wasm modules.
pub fn set_stream_property(name: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value)) {
        log::debug!("weft: cannot set property {name}: {status:?}");
    }
}

/// A response header; also works in `on_log`, where Envoy hands the logged headers.
pub fn response_header(name: &str) -> Option<String> {
    crate::headers::map_value(MapType::HttpResponseHeaders, name)
}

/// From the root context: its tick period (zero stops it).
pub fn set_root_tick(period: Duration) -> bool {
    match hostcalls::set_tick_period(period) {
        Ok(()) => true,
        Err(status) => {
            log::error!("weft: cannot set the tick period: {status:?}");
            false
        }
    }
}

/// A root context that answered `false` from `on_done` (it was finishing a report) tells the
/// host it is finished. An error (the host did not hold it as pending) is logged, never a
/// panic (the SDK's `Context::done` unwraps it).
pub fn root_done() {
    if let Err(status) = hostcalls::done() {
        log::debug!("weft: proxy_done: {status:?}");
    }
}

/// In `on_http_call_response`: the answer's status (`None`: no response, e.g. a reset or
/// timeout).
pub fn call_response_status() -> Option<u16> {
    crate::headers::map_value(MapType::HttpCallResponseHeaders, ":status")
        .and_then(|s| s.parse().ok())
}
