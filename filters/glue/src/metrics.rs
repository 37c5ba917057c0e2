//! Envoy stats through proxy-wasm metrics.
//!
//! Envoy exposes them with the `wasmcustom.` prefix, e.g. `wasmcustom.weft.authz.allowed`.
//! Defining a metric twice returns the same id, so defining in `on_configure` (which Envoy
//! runs several times per update) is safe.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(Option<u32>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge(Option<u32>);

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("weft: cannot define metric {name}: {status:?}");
            None
        }
    }
}

impl Counter {
    pub fn new(name: &str) -> Self {
        Self(define(MetricType::Counter, name))
    }

    pub fn inc(self) {
        self.add(1);
    }

    pub fn add(self, n: i64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

impl Gauge {
    pub fn new(name: &str) -> Self {
        Self(define(MetricType::Gauge, name))
    }

    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    pub fn add(self, n: i64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

/// Make a user-chosen name safe as one segment of a dotted stat name.
pub fn sanitize_stat_segment(name: &str) -> String {
    let mut segment = String::with_capacity(name.len());
    weft_filter_core::push_stat_segment(&mut segment, name);
    segment
}
