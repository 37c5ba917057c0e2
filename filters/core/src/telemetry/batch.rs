//! A worker's requests since the last report, aggregated per edge, and the report's wire
//! format (JSON, shared with the control plane).

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

/// One edge's counts since the last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub breaker_open: u64,
    /// Counts per [`super::LATENCY_BOUNDS_MS`] bucket (+1 overflow bucket).
    pub latency: Vec<u64>,
    pub latency_us_sum: u64,
    #[serde(default)]
    pub routes: Vec<RouteSeen>,
    #[serde(default)]
    pub routes_truncated: bool,
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
                    requests: 0,
                    status: [0; 6],
                    denied: 0,
                    dry_run_denied: 0,
                    breaker_open: 0,
                    latency: vec![0; LATENCY_BUCKETS],
                    latency_us_sum: 0,
                    routes: Vec::new(),
                    routes_truncated: false,
                });
                self.edges.len() - 1
            }
        };
        let max_routes = self.max_routes;
        let Some(edge) = self.edges.get_mut(index) else {
            return false;
        };
        edge.requests += 1;
        if let Some(slot) = edge.status.get_mut(status_class(record.status)) {
            *slot += 1;
        }
        match record.authz {
            AuthzOutcome::Allowed => {}
            AuthzOutcome::Denied => edge.denied += 1,
            AuthzOutcome::DryRunDenied => edge.dry_run_denied += 1,
        }
        if record.breaker_open {
            edge.breaker_open += 1;
        }
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
