//! Host calls for reporting: histograms, a stream property other filters read, the
//! response headers in `on_log`, the root context's own tick, and HTTP callouts whose answer
//! the root context waits for (telemetry batches).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType};
use std::time::Duration;

/// An Envoy histogram (`wasmcustom.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram(Option<u32>);

impl Histogram {
    pub fn new(name: &str) -> Self {
        match hostcalls::define_metric(MetricType::Histogram, name) {
            Ok(id) => Self(Some(id)),
            Err(status) => {
                log::warn!("weft: cannot define histogram {name}: {status:?}");
                Self(None)
            }
        }
    }

    pub fn record(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Sets a per-stream property (Envoy filter state `wasm.<name>`), readable by every later
/// filter of the stream and in `on_log`, including other wasm modules.
pub fn set_stream_property(name: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value)) {
        log::debug!("weft: cannot set property {name}: {status:?}");
    }
}

/// A per-stream property as raw bytes.
pub fn stream_property(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_property(vec![name]).ok().flatten()
}

/// A response header; also works in `on_log`, where Envoy hands the logged headers.
pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
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

/// Sends a request to `cluster`; the root context's `on_http_call_response` gets the
/// returned token. Errors are the host's status, as text.
pub fn dispatch_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, String> {
    hostcalls::dispatch_http_call(cluster, headers.to_vec(), Some(body), Vec::new(), timeout)
        .map_err(|status| format!("dispatch to {cluster}: {status:?}"))
}

/// In `on_http_call_response`: the answer's status (`None`: no response, e.g. a reset or
/// timeout).
pub fn call_response_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}
