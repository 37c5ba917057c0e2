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

mod drawing;
mod graph;
mod keys;
pub mod layout;
pub mod prometheus;
mod routes;
pub mod shared;
pub mod suggest;
mod window;

pub use graph::{BreakerView, Graph, GraphEdge, GraphNode, LabelLine, Link, Split};
pub use keys::GroupKeys;
pub use routes::{api_router, ingest_router, metrics_router, UI_HTML};
pub use suggest::{suggest_authz, Suggestion};
pub use window::{Counts, BUCKET_SECS, MAX_WINDOW_SECS};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use weft_filter_core::telemetry::{
    service_of_principal, verify, Direction, Report, INGRESS_SOURCE,
};
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
            // No mTLS peer: the outside world (a gateway's clients).
            Direction::Inbound if self.source.is_empty() => EXTERNAL,
            Direction::Inbound => service_of_principal(&self.source),
            Direction::Outbound => &self.source,
        }
    }
}

/// The graph's name for callers without a mesh identity: clients of a gateway.
pub const EXTERNAL: &str = "external";

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

/// Prometheus text some other part of the server adds to `/metrics` (the etcd store's health).
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// One status line per service for the graph's boxes (a running rollout's progress),
/// from whoever knows it (`weft serve` wires the rollout driver here).
pub type Badges = Arc<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

/// The control plane's telemetry state.
pub struct Telemetry {
    keys: GroupKeys,
    edges: Mutex<BTreeMap<EdgeKey, EdgeWindow>>,
    /// Other replicas' edges, as they last shared them (see `shared`).
    remote: Mutex<Vec<(EdgeKey, EdgeWindow)>>,
    services: RwLock<Vec<KnownService>>,
    pub stats: IngestStats,
    xds: RwLock<Option<XdsView>>,
    badges: RwLock<Option<Badges>>,
    more_metrics: RwLock<Option<MetricsText>>,
}

// === impl Telemetry ===

impl Telemetry {
    pub fn new(keys: GroupKeys) -> Arc<Self> {
        Arc::new(Self {
            keys,
            edges: Mutex::new(BTreeMap::new()),
            remote: Mutex::new(Vec::new()),
            services: RwLock::new(Vec::new()),
            stats: IngestStats::default(),
            xds: RwLock::new(None),
            badges: RwLock::new(None),
            more_metrics: RwLock::new(None),
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

    /// Where the graph's service boxes get their status line (see [`Badges`]).
    pub fn set_badges(&self, badges: Badges) {
        *self.badges.write().unwrap_or_else(PoisonError::into_inner) = Some(badges);
    }

    /// Text `/metrics` ends with (see [`MetricsText`]).
    pub fn set_more_metrics(&self, text: MetricsText) {
        *self
            .more_metrics
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    pub(crate) fn more_metrics(&self) -> Option<String> {
        let text = self
            .more_metrics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        text.map(|f| f())
    }

    fn badges(&self) -> BTreeMap<String, String> {
        let badges = self
            .badges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        badges.map(|f| f()).unwrap_or_default()
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
                // A gateway's edge WAF reports the edge into the gateway itself: the
                // callee's view of it, from a caller without a mesh identity.
                Direction::Outbound if edge.source == INGRESS_SOURCE => EdgeKey {
                    reporter: Direction::Inbound,
                    source: String::new(),
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

    fn remote(&self) -> MutexGuard<'_, Vec<(EdgeKey, EdgeWindow)>> {
        self.remote.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every edge's counts over the last `window_secs` (and since start), at `now_ms`: this
    /// replica's and the others' merged.
    pub(crate) fn edges_at(&self, window_secs: u64, now_ms: u64) -> Vec<(EdgeKey, Counts, Counts)> {
        let mut merged: BTreeMap<EdgeKey, (Counts, Counts)> = BTreeMap::new();
        let mut add = |key: &EdgeKey, window: &mut EdgeWindow| {
            let (sum, total) = merged.entry(key.clone()).or_default();
            sum.merge(&window.sum(now_ms, window_secs));
            total.merge(window.total());
        };
        for (key, window) in self.lock().iter_mut() {
            add(key, window);
        }
        for (key, window) in self.remote().iter_mut() {
            add(key, window);
        }
        merged
            .into_iter()
            .map(|(key, (sum, total))| (key, sum, total))
            .collect()
    }

    /// Per edge, its newest active bucket in the window (of every replica's; the same bucket
    /// of several replicas merged): (key, bucket index, counts).
    pub(crate) fn latest_at(&self, window_secs: u64, now_ms: u64) -> Vec<(EdgeKey, u64, Counts)> {
        let mut merged: BTreeMap<EdgeKey, (u64, Counts)> = BTreeMap::new();
        let mut add = |key: &EdgeKey, window: &EdgeWindow| {
            let Some((slot, counts)) = window.latest(now_ms, window_secs) else {
                return;
            };
            match merged.get_mut(key) {
                Some((held, sum)) if *held == slot => sum.merge(counts),
                Some((held, _)) if *held > slot => {}
                _ => {
                    merged.insert(key.clone(), (slot, counts.clone()));
                }
            }
        };
        for (key, window) in self.lock().iter() {
            add(key, window);
        }
        for (key, window) in self.remote().iter() {
            add(key, window);
        }
        merged
            .into_iter()
            .map(|(key, (slot, counts))| (key, slot, counts))
            .collect()
    }

    /// Per version of `namespace/service`, every request its sidecars reported receiving
    /// since this process started (inbound reports only, so a request is counted once):
    /// cumulative, so a reader takes differences between two reads for an exact interval.
    pub fn version_totals(&self, namespace: &str, service: &str) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        let local = self.lock();
        let remote = self.remote();
        let every = local.iter().chain(remote.iter().map(|(k, w)| (k, w)));
        for (key, window) in every {
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
        let mut graph = graph::build(
            self.edges_at(window_secs, now_ms),
            window_secs,
            now_ms,
            &self.stats,
        );
        drawing::draw(&mut graph, &self.badges());
        graph
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
