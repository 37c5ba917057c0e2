//! Host-backed request attributes, time and local replies.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::time::UNIX_EPOCH;
use weft_filter_core::RequestAttributes;

/// The current request, read lazily from the host on demand.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostRequest;

impl HostRequest {
    fn property_string(path: &[&str]) -> Option<String> {
        match hostcalls::get_property(path.to_vec()) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// A property holding an 8-byte little-endian integer (e.g. `response.code`).
    pub fn property_u64(path: &[&str]) -> Option<u64> {
        match hostcalls::get_property(path.to_vec()) {
            Ok(Some(bytes)) => {
                let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
                Some(u64::from_le_bytes(arr))
            }
            _ => None,
        }
    }

    /// Any string property, e.g. `["xds", "cluster_name"]`.
    pub fn property(path: &[&str]) -> Option<String> {
        Self::property_string(path)
    }

    pub fn set_header(name: &str, value: &str) {
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        {
            log::warn!("weft: cannot set request header {name}: {status:?}");
        }
    }

    pub fn remove_header(name: &str) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None) {
            log::warn!("weft: cannot remove request header {name}: {status:?}");
        }
    }
}

impl RequestAttributes for HostRequest {
    fn method(&self) -> Option<String> {
        self.header(":method")
    }

    fn path(&self) -> Option<String> {
        self.header(":path")
    }

    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn source_address(&self) -> Option<String> {
        Self::property_string(&["source", "address"])
    }

    fn peer_principal(&self) -> Option<String> {
        Self::property_string(&["connection", "uri_san_peer_certificate"]).filter(|s| !s.is_empty())
    }
}

/// Seconds since the Unix epoch by the host clock (0 if the host cannot tell).
pub fn now_unix_secs() -> u64 {
    now_millis() / 1000
}

/// Milliseconds since the Unix epoch by the host clock (0 if the host cannot tell).
pub fn now_millis() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Answer the current request locally.
pub fn send_local_reply(status: u16, headers: &[(String, String)], body: &str) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = if body.is_empty() {
        None
    } else {
        Some(body.as_bytes())
    };
    if let Err(status_err) = hostcalls::send_http_response(u32::from(status), headers, body) {
        log::error!("weft: cannot send local reply {status}: {status_err:?}");
    }
}

/// A per-context random seed from the host clock (nanoseconds) and a context id.
pub fn seed(context_id: u32) -> u64 {
    let nanos = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 32) ^ u64::from(context_id) ^ now_millis().rotate_left(17)
}
