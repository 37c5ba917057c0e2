//! Per-edge sliding windows: counts in buckets of [`BUCKET_SECS`], kept for
//! [`MAX_WINDOW_SECS`], plus totals since start (Prometheus counters).

use std::collections::{BTreeMap, VecDeque};
use weft_filter_core::telemetry::{EdgeReport, LATENCY_BOUNDS_MS, LATENCY_BUCKETS};

pub const BUCKET_SECS: u64 = 5;
/// The longest window a query may ask for: one hour.
pub const MAX_WINDOW_SECS: u64 = 3600;

/// Mergeable counts of one edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// No response, 1xx .. 5xx.
    pub status: [u64; 6],
    pub denied: u64,
    pub dry_run_denied: u64,
    pub breaker_open: u64,
    pub latency: [u64; LATENCY_BUCKETS],
    pub latency_us_sum: u64,
    /// (method, path) -> requests, for suggestions.
    pub routes: BTreeMap<(String, String), u64>,
    pub routes_truncated: bool,
}

// === impl Counts ===

impl Counts {
    pub fn from_report(edge: &EdgeReport) -> Self {
        let mut latency = [0; LATENCY_BUCKETS];
        for (slot, n) in latency.iter_mut().zip(&edge.latency) {
            *slot = *n;
        }
        Self {
            requests: edge.requests,
            status: edge.status,
            denied: edge.denied,
            dry_run_denied: edge.dry_run_denied,
            breaker_open: edge.breaker_open,
            latency,
            latency_us_sum: edge.latency_us_sum,
            routes: edge
                .routes
                .iter()
                .map(|r| ((r.method.clone(), r.path.clone()), r.count))
                .collect(),
            routes_truncated: edge.routes_truncated,
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        self.denied += other.denied;
        self.dry_run_denied += other.dry_run_denied;
        self.breaker_open += other.breaker_open;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
        self.latency_us_sum = self.latency_us_sum.saturating_add(other.latency_us_sum);
        for (route, n) in &other.routes {
            *self.routes.entry(route.clone()).or_default() += n;
        }
        // Bound the routes kept per edge, as the filter does per batch.
        if self.routes.len() > 64 {
            self.routes_truncated = true;
            while self.routes.len() > 64 {
                self.routes.pop_last();
            }
        }
        self.routes_truncated |= other.routes_truncated;
    }

    /// 5xx and no-response counts.
    pub fn errors(&self) -> u64 {
        self.status[0] + self.status[5]
    }

    /// The `q` quantile (0..1) in milliseconds: the upper bound of the bucket it falls in
    /// (the overflow bucket reports twice the last bound). `None` without requests.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(
                    LATENCY_BOUNDS_MS
                        .get(i)
                        .copied()
                        .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] * 2),
                );
            }
        }
        None
    }
}

/// One edge's buckets.
#[derive(Debug, Default)]
pub(crate) struct EdgeWindow {
    /// (bucket index = unix secs / BUCKET_SECS, counts), oldest first.
    buckets: VecDeque<(u64, Counts)>,
    total: Counts,
}

impl EdgeWindow {
    pub fn add(&mut self, now_ms: u64, counts: &Counts) {
        let slot = now_ms / 1000 / BUCKET_SECS;
        match self.buckets.back_mut() {
            Some((last, bucket)) if *last == slot => bucket.merge(counts),
            _ => {
                let mut bucket = Counts::default();
                bucket.merge(counts);
                self.buckets.push_back((slot, bucket));
            }
        }
        let mut total_counts = counts.clone();
        // Totals feed Prometheus counters: routes are not needed there.
        total_counts.routes.clear();
        self.total.merge(&total_counts);
        self.expire(slot);
    }

    fn expire(&mut self, slot: u64) {
        let oldest = slot.saturating_sub(MAX_WINDOW_SECS / BUCKET_SECS);
        while self.buckets.front().is_some_and(|(s, _)| *s < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The counts of the buckets overlapping the last `window_secs`.
    pub fn sum(&mut self, now_ms: u64, window_secs: u64) -> Counts {
        let slot = now_ms / 1000 / BUCKET_SECS;
        self.expire(slot);
        let window = window_secs.clamp(BUCKET_SECS, MAX_WINDOW_SECS);
        let first = slot.saturating_sub(window.div_ceil(BUCKET_SECS) - 1);
        let mut out = Counts::default();
        for (_, bucket) in self.buckets.iter().filter(|(s, _)| *s >= first) {
            out.merge(bucket);
        }
        out
    }

    /// The newest bucket with requests within the last `window_secs`: (bucket index, counts).
    pub fn latest(&self, now_ms: u64, window_secs: u64) -> Option<(u64, &Counts)> {
        let slot = now_ms / 1000 / BUCKET_SECS;
        let first = slot.saturating_sub(window_secs.div_ceil(BUCKET_SECS));
        self.buckets
            .iter()
            .rev()
            .take_while(|(s, _)| *s >= first)
            .find(|(_, c)| c.requests > 0)
            .map(|(s, c)| (*s, c))
    }

    pub fn total(&self) -> &Counts {
        &self.total
    }
}
