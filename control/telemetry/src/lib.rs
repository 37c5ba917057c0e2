//! Telemetry in the control plane.
//!
//! Sidecars' telemetry filters post signed per-edge batches ([`Report`], the filters' own
//! wire type) to `POST /v1/telemetry` on the xDS listener; [`Telemetry::ingest`] checks the
//! signature with the reporting group's key ([`GroupKeys`], derived from a secret that
//! never leaves the process and served to each group only inside its own filter
//! configuration) and adds the counts to per-edge sliding windows (`window`). From those:
//! the service graph as JSON ([`Telemetry::graph`]), Prometheus text ([`prometheus`]), an
//! embedded page ([`UI_HTML`]) and least-privilege `AuthorizationPolicy` suggestions
//! ([`suggest`]).
#![forbid(unsafe_code)]

mod graph;
mod keys;
pub mod prometheus;
mod routes;
pub mod suggest;
mod window;

pub use graph::{Graph, GraphEdge, GraphNode, Split};
pub use keys::GroupKeys;
pub use routes::{api_router, ingest_router, metrics_router, UI_HTML};
pub use suggest::{suggest_authz, Suggestion};
pub use window::{Counts, BUCKET_SECS, MAX_WINDOW_SECS};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use weft_filter_core::telemetry::{service_of_principal, verify, Direction, Report};
use window::EdgeWindow;

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("missing signature header")]
    Unsigned,
    #[error("bad signature for group {0}")]
    BadSignature(String),
    #[error("malformed batch: {0}")]
    Malformed(String),
}

/// A service the mesh declares: callers that fell back to the stable cluster name it by
/// host; their edges are counted against `service` / `stable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownService {
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub stable: String,
}

/// One edge: who reported it, the caller (a SPIFFE id for the callee's report, the
/// caller's service for its own), the callee, its version and its namespace (`a/reviews` and
/// `b/reviews` are two edges; empty when an outbound edge names a host the mesh does not
/// declare).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    pub reporter: Direction,
    pub source: String,
    pub destination: String,
    pub version: String,
    pub namespace: String,
}

impl EdgeKey {
    pub fn source_service(&self) -> &str {
        match self.reporter {
            Direction::Inbound if self.source.is_empty() => "unknown",
            Direction::Inbound => service_of_principal(&self.source),
            Direction::Outbound => &self.source,
        }
    }
}

/// Ingest counters, shown in `/metrics` and the graph.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub batches: AtomicU64,
    pub rejected: AtomicU64,
    /// Requests the sidecars said they could not report.
    pub dropped_reported: AtomicU64,
}

/// What the xDS server tells the telemetry views, when it runs: its own metrics
/// (Prometheus text) and the sidecars' status (JSON: connected, acknowledged revision).
#[derive(Clone)]
pub struct XdsView {
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub sidecars: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

/// The control plane's telemetry state.
pub struct Telemetry {
    keys: GroupKeys,
    edges: Mutex<BTreeMap<EdgeKey, EdgeWindow>>,
    services: RwLock<Vec<KnownService>>,
    pub stats: IngestStats,
    xds: RwLock<Option<XdsView>>,
}

// === impl Telemetry ===

impl Telemetry {
    pub fn new(keys: GroupKeys) -> Arc<Self> {
        Arc::new(Self {
            keys,
            edges: Mutex::new(BTreeMap::new()),
            services: RwLock::new(Vec::new()),
            stats: IngestStats::default(),
            xds: RwLock::new(None),
        })
    }

    pub fn keys(&self) -> &GroupKeys {
        &self.keys
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<EdgeKey, EdgeWindow>> {
        self.edges.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The declared services (from each published policy version).
    pub fn set_services(&self, services: Vec<KnownService>) {
        *self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner) = services;
    }

    pub fn set_xds_view(&self, view: XdsView) {
        *self.xds.write().unwrap_or_else(PoisonError::into_inner) = Some(view);
    }

    fn xds_view(&self) -> Option<XdsView> {
        self.xds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn xds_metrics(&self) -> Option<String> {
        self.xds_view().map(|view| (view.metrics)())
    }

    pub(crate) fn xds_sidecars(&self) -> serde_json::Value {
        self.xds_view()
            .map_or(serde_json::Value::Null, |view| (view.sidecars)())
    }

    /// Checks and adds one batch, at the current time.
    pub fn ingest(&self, body: &[u8], signature: Option<&str>) -> Result<u64, IngestError> {
        self.ingest_at(body, signature, now_ms())
    }

    pub fn ingest_at(
        &self,
        body: &[u8],
        signature: Option<&str>,
        now_ms: u64,
    ) -> Result<u64, IngestError> {
        let result = self.check_and_add(body, signature, now_ms);
        let counter = if result.is_ok() {
            &self.stats.batches
        } else {
            &self.stats.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn check_and_add(
        &self,
        body: &[u8],
        signature: Option<&str>,
        now_ms: u64,
    ) -> Result<u64, IngestError> {
        let signature = signature.ok_or(IngestError::Unsigned)?;
        let report: Report =
            serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
        let group = format!("{}/{}/{}", report.namespace, report.service, report.version);
        // The body names the group; only that group's key signs it, so a sidecar cannot
        // report as another (its caller side is always itself, its callee side too).
        let key = self
            .keys
            .key(&report.namespace, &report.service, &report.version);
        if !verify(&key, body, signature) {
            return Err(IngestError::BadSignature(group));
        }
        self.stats
            .dropped_reported
            .fetch_add(report.dropped, Ordering::Relaxed);
        let services = self
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut edges = self.lock();
        let mut requests = 0;
        for edge in &report.edges {
            let key = match report.reporter {
                // The callee reports itself as the destination, whatever the edge says.
                Direction::Inbound => EdgeKey {
                    reporter: Direction::Inbound,
                    source: edge.source.clone(),
                    destination: report.service.clone(),
                    version: report.version.clone(),
                    namespace: report.namespace.clone(),
                },
                Direction::Outbound => {
                    let (namespace, destination, version) =
                        resolve(&services, &edge.destination, &edge.version);
                    EdgeKey {
                        reporter: Direction::Outbound,
                        source: report.service.clone(),
                        destination,
                        version,
                        namespace,
                    }
                }
            };
            requests += edge.requests;
            edges
                .entry(key)
                .or_default()
                .add(now_ms, &Counts::from_report(edge));
        }
        Ok(requests)
    }

    /// Every edge's counts over the last `window_secs` (and since start), at `now_ms`.
    pub(crate) fn edges_at(&self, window_secs: u64, now_ms: u64) -> Vec<(EdgeKey, Counts, Counts)> {
        let mut edges = self.lock();
        edges
            .iter_mut()
            .map(|(key, window)| {
                (
                    key.clone(),
                    window.sum(now_ms, window_secs),
                    window.total().clone(),
                )
            })
            .collect()
    }

    /// Per edge, its newest active bucket in the window: (key, bucket index, counts).
    pub(crate) fn latest_at(&self, window_secs: u64, now_ms: u64) -> Vec<(EdgeKey, u64, Counts)> {
        self.lock()
            .iter()
            .filter_map(|(key, window)| {
                let (slot, counts) = window.latest(now_ms, window_secs)?;
                Some((key.clone(), slot, counts.clone()))
            })
            .collect()
    }

    /// Per version of `namespace/service`, every request its sidecars reported receiving
    /// since this process started (inbound reports only, so a request is counted once):
    /// cumulative, so a reader takes differences between two reads for an exact interval.
    pub fn version_totals(&self, namespace: &str, service: &str) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for (key, window) in self.lock().iter() {
            if key.reporter == Direction::Inbound
                && key.namespace == namespace
                && key.destination == service
            {
                out.entry(key.version.clone())
                    .or_default()
                    .merge(window.total());
            }
        }
        out
    }

    pub fn graph(&self, window_secs: u64) -> Graph {
        self.graph_at(window_secs, now_ms())
    }

    pub fn graph_at(&self, window_secs: u64, now_ms: u64) -> Graph {
        graph::build(
            self.edges_at(window_secs, now_ms),
            window_secs,
            now_ms,
            &self.stats,
        )
    }
}

/// `(namespace, service, version)` of an outbound edge: a host of a declared service with no
/// version (the stable fallback) is that service's stable version. An undeclared host has no
/// namespace.
fn resolve(
    services: &[KnownService],
    destination: &str,
    version: &str,
) -> (String, String, String) {
    match services
        .iter()
        .find(|s| s.host == destination || s.name == destination)
    {
        Some(s) if version.is_empty() => (s.namespace.clone(), s.name.clone(), s.stable.clone()),
        Some(s) => (s.namespace.clone(), s.name.clone(), version.to_string()),
        None => (String::new(), destination.to_string(), version.to_string()),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
