//! Per-edge sliding windows: counts in buckets of [`BUCKET_SECS`], kept for
//! [`MAX_WINDOW_SECS`], plus totals since start (Prometheus counters).

use std::collections::{BTreeMap, VecDeque};
use weft_filter_core::breaker::Phase;
use weft_filter_core::telemetry::{BreakerMark, EdgeReport, LATENCY_BOUNDS_MS, LATENCY_BUCKETS};

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
    /// Failed fast by the caller's breaker (open, half-open full, over its cap).
    pub breaker_open: u64,
    /// Of `requests`, those the reporting sidecar answered itself, by status class.
    pub local_status: [u64; 6],
    pub aborted: u64,
    pub unreached: u64,
    /// Refused by the WAF, and (detect mode) would have been.
    pub waf_blocked: u64,
    pub waf_detected: u64,
    pub delayed: u64,
    pub would_abort: u64,
    pub would_delay: u64,
    pub would_fail_fast: u64,
    /// Admissions to a guarded cluster by the phase they saw: closed, open, half-open.
    pub breaker_phases: [u64; 3],
    /// The phase the newest of them saw.
    pub breaker_state: Option<Phase>,
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
            local_status: edge.local_status,
            aborted: edge.aborted,
            unreached: edge.unreached,
            waf_blocked: edge.waf_blocked,
            waf_detected: edge.waf_detected,
            delayed: edge.delayed,
            would_abort: edge.would_abort,
            would_delay: edge.would_delay,
            would_fail_fast: edge.would_fail_fast,
            breaker_phases: edge.breaker_phases,
            // An unknown word is no phase: the edge just shows none.
            breaker_state: edge
                .breaker_state
                .as_deref()
                .and_then(|s| BreakerMark::parse(Some(s.as_bytes())).phase),
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
        self.requests = self.requests.saturating_add(other.requests);
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a = a.saturating_add(b);
        }
        self.denied = self.denied.saturating_add(other.denied);
        self.dry_run_denied = self.dry_run_denied.saturating_add(other.dry_run_denied);
        self.breaker_open = self.breaker_open.saturating_add(other.breaker_open);
        for (a, b) in self.local_status.iter_mut().zip(other.local_status) {
            *a = a.saturating_add(b);
        }
        self.aborted = self.aborted.saturating_add(other.aborted);
        self.unreached = self.unreached.saturating_add(other.unreached);
        self.waf_blocked = self.waf_blocked.saturating_add(other.waf_blocked);
        self.waf_detected = self.waf_detected.saturating_add(other.waf_detected);
        self.add_caller_marks(other);
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a = a.saturating_add(b);
        }
        self.latency_us_sum = self.latency_us_sum.saturating_add(other.latency_us_sum);
        for (route, n) in &other.routes {
            let count = self.routes.entry(route.clone()).or_default();
            *count = count.saturating_add(*n);
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

    /// What only the caller's sidecar knows (delays, dry-run fault and breaker verdicts, the
    /// breaker's phase); `other` is the newer when it has a phase.
    fn add_caller_marks(&mut self, other: &Counts) {
        self.delayed = self.delayed.saturating_add(other.delayed);
        self.would_abort = self.would_abort.saturating_add(other.would_abort);
        self.would_delay = self.would_delay.saturating_add(other.would_delay);
        self.would_fail_fast = self.would_fail_fast.saturating_add(other.would_fail_fast);
        for (a, b) in self.breaker_phases.iter_mut().zip(other.breaker_phases) {
            *a = a.saturating_add(b);
        }
        self.breaker_state = other.breaker_state.or(self.breaker_state);
    }

    /// Adds what the caller's report (`outbound`) knows and the callee's cannot: the
    /// requests the caller's sidecar answered itself (they never reached the callee) and
    /// its marks. Latency stays the callee's measure of the requests it served.
    pub fn add_caller_view(&mut self, outbound: &Counts) {
        let local: u64 = outbound
            .local_status
            .iter()
            .fold(0u64, |n, c| n.saturating_add(*c));
        self.requests = self.requests.saturating_add(local);
        for (a, b) in self.status.iter_mut().zip(outbound.local_status) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.local_status.iter_mut().zip(outbound.local_status) {
            *a = a.saturating_add(b);
        }
        // Outbound denials are the caller's own (a gateway's authz), never the callee's.
        self.denied = self.denied.saturating_add(outbound.denied);
        self.aborted = self.aborted.saturating_add(outbound.aborted);
        self.breaker_open = self.breaker_open.saturating_add(outbound.breaker_open);
        self.unreached = self.unreached.saturating_add(outbound.unreached);
        self.add_caller_marks(outbound);
    }

    /// Requests answered by the reporting sidecar itself.
    pub fn local_requests(&self) -> u64 {
        self.local_status
            .iter()
            .fold(0u64, |n, c| n.saturating_add(*c))
    }

    /// 5xx and no-response counts.
    pub fn errors(&self) -> u64 {
        self.status[0].saturating_add(self.status[5])
    }

    /// The `q` quantile (0..1) in milliseconds: the upper bound of the bucket it falls in
    /// (the overflow bucket reports twice the last bound). `None` without requests.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.latency.iter().fold(0u64, |n, c| n.saturating_add(*c));
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen: u64 = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen = n.saturating_add(seen);
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

    /// Its buckets, oldest first: (bucket index, counts).
    pub fn buckets(&self) -> impl Iterator<Item = &(u64, Counts)> {
        self.buckets.iter()
    }

    /// A window as another replica shared it.
    pub fn from_parts(buckets: impl Iterator<Item = (u64, Counts)>, total: Counts) -> Self {
        let mut buckets: Vec<(u64, Counts)> = buckets.collect();
        buckets.sort_by_key(|(slot, _)| *slot);
        Self {
            buckets: buckets.into(),
            total,
        }
    }
}
