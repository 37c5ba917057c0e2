//! A worker's requests since the last report, aggregated per edge, and the report's wire
//! format (JSON, shared with the control plane).

use super::marks::LocalReply;
use super::record::{status_class, AuthzOutcome, Record};
use super::{latency_bucket, Direction, LATENCY_BUCKETS};
use serde::{Deserialize, Serialize};

/// Longest path kept for suggestions; longer ones are cut (and still count).
const MAX_PATH: usize = 256;

/// One `(method, path)` seen on an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSeen {
    pub method: String,
    pub path: String,
    pub count: u64,
}

/// One edge's counts since the last report. Fields added after the first format default to
/// zero, so a sidecar running an older module still reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeReport {
    pub source: String,
    pub destination: String,
    /// Empty: the caller's stable fallback (the control plane resolves it).
    pub version: String,
    pub requests: u64,
    /// By status class: no response, 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: [u64; 6],
    pub denied: u64,
    pub dry_run_denied: u64,
    /// Requests the breaker failed fast (open, half-open full, over its cap).
    pub breaker_open: u64,
    /// Of `requests`, those this sidecar answered itself (a weft stage or Envoy without an
    /// upstream host), by status class: the next hop never saw them.
    #[serde(default)]
    pub local_status: [u64; 6],
    /// Aborts the fault stage injected.
    #[serde(default)]
    pub aborted: u64,
    /// Answered by Envoy without reaching an upstream host.
    #[serde(default)]
    pub unreached: u64,
    /// Requests the fault stage delayed.
    #[serde(default)]
    pub delayed: u64,
    /// Requests the WAF refused, and (detect mode) would have refused.
    #[serde(default)]
    pub waf_blocked: u64,
    #[serde(default)]
    pub waf_detected: u64,
    /// Dry-run verdicts: what a dry-run fault or breaker policy would have done.
    #[serde(default)]
    pub would_abort: u64,
    #[serde(default)]
    pub would_delay: u64,
    #[serde(default)]
    pub would_fail_fast: u64,
    /// Requests to a guarded cluster by the breaker phase their admission saw: closed,
    /// open, half-open.
    #[serde(default)]
    pub breaker_phases: [u64; 3],
    /// The phase the last of them saw (`closed`, `open`, `half-open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_state: Option<String>,
    /// Counts per [`super::LATENCY_BOUNDS_MS`] bucket (+1 overflow bucket).
    pub latency: Vec<u64>,
    pub latency_us_sum: u64,
    #[serde(default)]
    pub routes: Vec<RouteSeen>,
    #[serde(default)]
    pub routes_truncated: bool,
}

// === impl EdgeReport ===

impl EdgeReport {
    /// The local reply, delays, dry-run verdicts and breaker phase of one request.
    fn count_marks(&mut self, record: &Record<'_>, class: usize) {
        if let Some(local) = record.local {
            if let Some(slot) = self.local_status.get_mut(class) {
                *slot += 1;
            }
            match local {
                // Counted from the authz outcome, which says it too.
                LocalReply::Denied => {}
                LocalReply::Aborted => self.aborted += 1,
                LocalReply::FailFast => self.breaker_open += 1,
                LocalReply::Unreached => self.unreached += 1,
                LocalReply::WafBlocked => self.waf_blocked += 1,
            }
        }
        self.waf_detected += u64::from(record.marks.waf.detected);
        let fault = record.marks.fault;
        self.delayed += u64::from(fault.delayed);
        self.would_abort += u64::from(fault.would_abort);
        self.would_delay += u64::from(fault.would_delay);
        let breaker = record.marks.breaker;
        self.would_fail_fast += u64::from(breaker.would_fail_fast);
        if let Some(phase) = breaker.phase {
            if let Some(slot) = self.breaker_phases.get_mut(phase as usize) {
                *slot += 1;
            }
            self.breaker_state = Some(phase.as_str().to_string());
        }
    }
}

/// What one worker of one sidecar reports per tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub namespace: String,
    pub service: String,
    pub version: String,
    pub reporter: Direction,
    /// Requests this worker could not report so far (batch full, or a report that failed).
    pub dropped: u64,
    pub edges: Vec<EdgeReport>,
}

/// The worker's pending counts.
#[derive(Debug, Clone)]
pub struct Batch {
    max_edges: usize,
    max_routes: usize,
    edges: Vec<EdgeReport>,
    dropped: u64,
}

// === impl Batch ===

impl Batch {
    pub fn new(max_edges: usize, max_routes: usize) -> Self {
        Self {
            max_edges,
            max_routes,
            edges: Vec::new(),
            dropped: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty() && self.dropped == 0
    }

    /// Requests not reported (and not reportable any more) since the last successful take.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Counts `n` requests as lost (a report that failed).
    pub fn add_dropped(&mut self, n: u64) {
        self.dropped = self.dropped.saturating_add(n);
    }

    /// Adds one request; false when it was dropped (a new edge with the batch full).
    pub fn record(&mut self, record: &Record<'_>) -> bool {
        let index = match self.edges.iter().position(|e| {
            e.source == record.source
                && e.destination == record.destination
                && e.version == record.version
        }) {
            Some(index) => index,
            None if self.edges.len() >= self.max_edges => {
                self.dropped = self.dropped.saturating_add(1);
                return false;
            }
            None => {
                self.edges.push(EdgeReport {
                    source: record.source.to_string(),
                    destination: record.destination.to_string(),
                    version: record.version.to_string(),
                    latency: vec![0; LATENCY_BUCKETS],
                    ..EdgeReport::default()
                });
                self.edges.len() - 1
            }
        };
        let max_routes = self.max_routes;
        let Some(edge) = self.edges.get_mut(index) else {
            return false;
        };
        edge.requests += 1;
        let class = status_class(record.status);
        if let Some(slot) = edge.status.get_mut(class) {
            *slot += 1;
        }
        match record.authz {
            AuthzOutcome::Allowed => {}
            AuthzOutcome::Denied => edge.denied += 1,
            AuthzOutcome::DryRunDenied => edge.dry_run_denied += 1,
        }
        edge.count_marks(record, class);
        if let Some(slot) = edge.latency.get_mut(latency_bucket(record.latency_us)) {
            *slot += 1;
        }
        edge.latency_us_sum = edge.latency_us_sum.saturating_add(record.latency_us);
        if !record.method.is_empty() || !record.path.is_empty() {
            let path = cut(record.path, MAX_PATH);
            let full = edge.routes.len() >= max_routes;
            match edge
                .routes
                .iter_mut()
                .find(|r| r.method == record.method && r.path == path)
            {
                Some(route) => route.count += 1,
                None if full => edge.routes_truncated = true,
                None => edge.routes.push(RouteSeen {
                    method: record.method.to_string(),
                    path: path.to_string(),
                    count: 1,
                }),
            }
        }
        true
    }

    /// The report of everything pending, which is then cleared; `None` when there is
    /// nothing to say.
    pub fn take(
        &mut self,
        reporter: Direction,
        namespace: &str,
        service: &str,
        version: &str,
    ) -> Option<Report> {
        if self.is_empty() {
            return None;
        }
        let report = Report {
            namespace: namespace.to_string(),
            service: service.to_string(),
            version: version.to_string(),
            reporter,
            dropped: self.dropped,
            edges: std::mem::take(&mut self.edges),
        };
        self.dropped = 0;
        Some(report)
    }
}

impl Report {
    /// Requests counted in this report.
    pub fn requests(&self) -> u64 {
        self.edges.iter().map(|e| e.requests).sum()
    }

    /// The JSON body of the report.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}
