//! The stages' [`Host`] by hostcalls: request attributes, header writes, replies, metrics,
//! shared data, callouts, ticks and the clock.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};
use std::time::{Duration, UNIX_EPOCH};
use weft_filter_core::host::{HostError, MetricId, MetricKind, SharedRecord};
use weft_filter_core::{Host, RequestAttributes};

use crate::headers::{header_map, map_value};

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

    /// Replace every copy of request header `name` with the single `value`: remove them all
    /// (Envoy's `removeHeaderMapValue` is `HeaderMap::remove`, which drops every entry of the
    /// name), then add one. For headers whose value downstream trusts, e.g. claim headers.
    pub fn replace_header(name: &str, value: &str) {
        Self::remove_header(name);
        if let Err(status) = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value) {
            log::warn!("weft: cannot add request header {name}: {status:?}");
        }
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
        map_value(MapType::HttpRequestHeaders, name)
    }

    /// Envoy's `get_http_request_header` returns only the first copy (`getHeaderMapValue`
    /// reads `entry[0]`), so every copy comes from the whole map, which lists each entry.
    fn header_values(&self, name: &str) -> Vec<String> {
        self.header_map()
            .map(|pairs| {
                pairs
                    .into_iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One hostcall for the whole map; `MemoRequest` keeps it for the request's callback.
    fn header_map(&self) -> Option<Vec<(String, String)>> {
        header_map(MapType::HttpRequestHeaders)
    }

    /// Yes: a single header read is as many VM crossings as the whole map (D104).
    fn prefers_header_map(&self) -> bool {
        true
    }

    /// `source.address` is the stream's downstream remote address. Envoy exposes no property
    /// for the socket peer (`directRemoteAddress`), so this relies on weft's listeners:
    /// `use_remote_address: true` with `xff_num_trusted_hops: 0` on sidecars makes the remote
    /// address the socket peer, whatever `X-Forwarded-For` says.
    fn source_address(&self) -> Option<String> {
        Self::property_string(&["source", "address"])
    }

    /// The same `source.address`: with trusted hops, Envoy has already replaced the peer by
    /// the client it found in `X-Forwarded-For`.
    fn remote_address(&self) -> Option<String> {
        Self::property_string(&["source", "address"])
    }

    fn peer_principal(&self) -> Option<String> {
        Self::property_string(&["connection", "uri_san_peer_certificate"]).filter(|s| !s.is_empty())
    }
}

/// A host status as the core's error: a CAS mismatch is a domain outcome, the rest a refusal.
fn host_error(status: Status) -> HostError {
    match status {
        Status::CasMismatch => HostError::CasMismatch,
        Status::BadArgument | Status::NotFound => HostError::NotFound,
        other => HostError::Refused(format!("{other:?}")),
    }
}

/// The stages' [`Host`], by hostcalls on the current context.
impl Host for HostRequest {
    fn now_millis(&self) -> u64 {
        now_millis()
    }

    fn seed(&self, context_id: u32) -> u64 {
        seed(context_id)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, name: &str, value: &[u8]) {
        crate::report::set_stream_property(name, value);
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => Self::set_header(name, value),
            None => Self::remove_header(name),
        }
    }

    fn replace_request_header(&self, name: &str, value: &str) {
        Self::replace_header(name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        if let Err(status) = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value) {
            log::warn!("weft: cannot add request header {name}: {status:?}");
        }
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        header_map(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        crate::http_call::request_body_chunk(size)
    }

    fn response_header(&self, name: &str) -> Option<String> {
        crate::report::response_header(name)
    }

    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str) {
        send_local_reply(status, headers, body);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let host_kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        let id = hostcalls::define_metric(host_kind, name).map_err(|status| {
            log::warn!("weft: cannot define metric {name}: {status:?}");
            host_error(status)
        })?;
        crate::counters::defined(kind, id);
        Ok(id)
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        crate::counters::increment(id, delta);
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        hostcalls::get_shared_data(key).map_err(host_error)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(host_error)
    }

    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        hostcalls::dispatch_http_call(upstream, headers, body, Vec::new(), timeout)
            .map_err(host_error)
    }

    fn http_call_response_status(&self) -> Option<u16> {
        crate::report::call_response_status()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(host_error)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(host_error)
    }

    fn resume_http_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(host_error)
    }
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
