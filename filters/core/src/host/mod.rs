//! What a stage may ask the host to do, beyond reading the request.
//!
//! [`Host`] extends the read-only [`RequestAttributes`] with the actions a filter takes:
//! header writes, local replies, metrics, stream properties, shared-data get/CAS-set, HTTP
//! dispatch and ticks, plus the host clock. `weft-proxy-glue` implements it with hostcalls
//! (host status codes become [`HostError`]); [`MockHost`] records every call and serves
//! canned answers, so a stage's whole pipeline runs in unit tests, natively and on wasm32.
//! [`Counter`], [`Gauge`] and [`shared`] are written once, against the trait.

mod batch;
mod metrics;
mod mock;
pub mod shared;
#[cfg(test)]
mod tests;

pub use batch::CounterBatch;
pub use metrics::{stat_segment, Counter, Gauge, Histogram};
pub use mock::{Call, MockHost};

use crate::RequestAttributes;
use std::time::Duration;

/// What a callback tells the host to do with the request: go on, or hold it (after a local
/// reply, or until a tick resumes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// A metric id the host handed out at definition.
pub type MetricId = u32;

/// The kinds of metric a filter defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Why the host refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A shared-data write lost the race: the CAS it carried is stale.
    CasMismatch,
    /// The context is gone (its client disconnected) or the key/context is unknown.
    NotFound,
    /// Any other refusal, as the host named it (e.g. `BadArgument`, `NotFound`).
    Refused(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CasMismatch => f.write_str("CAS mismatch"),
            Self::NotFound => f.write_str("not found"),
            Self::Refused(status) => write!(f, "host refused: {status}"),
        }
    }
}

/// A shared-data record as the host returns it: its bytes and CAS, each absent when the key
/// was never written.
pub type SharedRecord = (Option<Vec<u8>>, Option<u32>);

/// The host as one request's stages see it: the request (read lazily) and what they may do.
///
/// Methods take `&self`: the host is the proxy, and the glue's implementation is a unit
/// struct; [`MockHost`] records calls through interior mutability.
pub trait Host: RequestAttributes {
    /// Milliseconds since the Unix epoch by the host clock (0 if the host cannot tell).
    fn now_millis(&self) -> u64;
    /// A per-context random seed (host clock and context id).
    fn seed(&self, context_id: u32) -> u64;
    /// A property as raw bytes, e.g. `["response", "code"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// A property holding an 8-byte little-endian integer.
    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        let bytes = self.property(path)?;
        let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(arr))
    }
    /// A string property, e.g. `["xds", "cluster_name"]`.
    fn property_string(&self, path: &[&str]) -> Option<String> {
        self.property(path).and_then(|b| String::from_utf8(b).ok())
    }
    /// Set a filter-state property of the stream (for a later filter to read).
    fn set_property(&self, name: &str, value: &[u8]);
    /// Set request header `name` to `value`, or remove every copy (`None`).
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Remove every copy of request header `name`, then add one with `value`.
    fn replace_request_header(&self, name: &str, value: &str) {
        self.set_request_header(name, None);
        self.add_request_header(name, value);
    }
    /// Add one more copy of request header `name`.
    fn add_request_header(&self, name: &str, value: &str);
    /// Every request header entry, in order (copies for a mirrored request).
    fn request_headers(&self) -> Vec<(String, String)>;
    /// The current request body chunk (`size` bytes as passed to `on_http_request_body`).
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// A response header (from response callbacks and `on_log`).
    fn response_header(&self, name: &str) -> Option<String>;
    /// Answer the current request locally.
    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str);
    /// Define (or find again: defining twice returns the same id) a metric.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError>;
    fn increment_metric(&self, id: MetricId, delta: i64);
    fn record_metric(&self, id: MetricId, value: u64);
    /// A shared-data record (`(None, None)`: never written).
    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError>;
    /// Write a shared-data record; with `cas`, only if it is still current.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// Dispatch an HTTP call to `upstream`; the token names its response.
    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// In `on_http_call_response`: the answer's status (`None`: no response, e.g. a reset
    /// or timeout).
    fn http_call_response_status(&self) -> Option<u16>;
    /// Set the root context's tick period (`Duration::ZERO`: stop ticking).
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
    /// Act as context `context_id` (a root acting for a paused request, or a request
    /// arming its root's tick). [`HostError::NotFound`]: the context is gone.
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    /// Continue the (effective) paused request.
    fn resume_http_request(&self) -> Result<(), HostError>;
}

/// A borrowed host is a host too.
impl<H: Host + ?Sized> Host for &H {
    fn now_millis(&self) -> u64 {
        (**self).now_millis()
    }
    fn seed(&self, context_id: u32) -> u64 {
        (**self).seed(context_id)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        (**self).property(path)
    }
    fn set_property(&self, name: &str, value: &[u8]) {
        (**self).set_property(name, value);
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        (**self).set_request_header(name, value);
    }
    fn replace_request_header(&self, name: &str, value: &str) {
        (**self).replace_request_header(name, value);
    }
    fn add_request_header(&self, name: &str, value: &str) {
        (**self).add_request_header(name, value);
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        (**self).request_headers()
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        (**self).request_body(size)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        (**self).response_header(name)
    }
    fn send_local_reply(&self, status: u16, headers: &[(String, String)], body: &str) {
        (**self).send_local_reply(status, headers, body);
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        (**self).define_metric(kind, name)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) {
        (**self).increment_metric(id, delta);
    }
    fn record_metric(&self, id: MetricId, value: u64) {
        (**self).record_metric(id, value);
    }
    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        (**self).shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        (**self).shared_set(key, value, cas)
    }
    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        (**self).dispatch_http_call(upstream, headers, body, timeout)
    }
    fn http_call_response_status(&self) -> Option<u16> {
        (**self).http_call_response_status()
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        (**self).set_tick_period(period)
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        (**self).set_effective_context(context_id)
    }
    fn resume_http_request(&self) -> Result<(), HostError> {
        (**self).resume_http_request()
    }
}
