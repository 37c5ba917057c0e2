//! Envoy stats through the host's metrics: defined once (from `on_configure`), then moved.
//!
//! Envoy exposes them with the `wasmcustom.` prefix, e.g. `wasmcustom.weft.authz.allowed`.
//! Defining a metric twice returns the same id, so defining in every `on_configure` is safe.
//! A metric the host refused to define is a no-op (logged by the glue), never an error on
//! the data path.

use super::{Host, MetricId, MetricKind};

/// A counter; `None` when the host refused to define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(Option<MetricId>);

/// A gauge; `None` when the host refused to define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge(Option<MetricId>);

/// A histogram; `None` when the host refused to define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram(Option<MetricId>);

// === impl Counter ===

impl Counter {
    pub fn new(host: &impl Host, name: &str) -> Self {
        Self(host.define_metric(MetricKind::Counter, name).ok())
    }

    pub fn inc(self, host: &impl Host) {
        self.add(host, 1);
    }

    pub fn add(self, host: &impl Host, n: i64) {
        if let Some(id) = self.0 {
            host.increment_metric(id, n);
        }
    }
}

// === impl Gauge ===

impl Gauge {
    pub fn new(host: &impl Host, name: &str) -> Self {
        Self(host.define_metric(MetricKind::Gauge, name).ok())
    }

    pub fn set(self, host: &impl Host, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
    }

    pub fn add(self, host: &impl Host, n: i64) {
        if let Some(id) = self.0 {
            host.increment_metric(id, n);
        }
    }
}

// === impl Histogram ===

impl Histogram {
    pub fn new(host: &impl Host, name: &str) -> Self {
        Self(host.define_metric(MetricKind::Histogram, name).ok())
    }

    pub fn record(self, host: &impl Host, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
    }
}

/// Make a user-chosen name safe as one segment of a dotted stat name.
pub fn stat_segment(name: &str) -> String {
    let mut segment = String::with_capacity(name.len());
    crate::push_stat_segment(&mut segment, name);
    segment
}
