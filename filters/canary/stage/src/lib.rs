//! weft canary: picks the version of a destination service for every outbound request.
//!
//! The decision lives in `weft_filter_core::canary`; [`CanaryStage`] writes the chosen cluster
//! into the header the route's `cluster_header` reads (Envoy re-runs route selection after a
//! wasm filter changes request headers), unless the route Envoy already chose goes there,
//! propagates the cohort, counts, and mirrors. When the
//! filter is skipped or no service matches, the route's fallback sends traffic to stable. The
//! standalone module is `filters/canary` (`canary.wasm`); `weft-suite` runs the stage after authz.
//! Everything goes through the [`Host`] trait, so the tests run it against `MockHost`.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::time::Duration;
use weft_filter_core::canary::{Canary, Decision};
use weft_filter_core::host::{stat_segment, Counter, Gauge};
use weft_filter_core::registry::Filter;
use weft_filter_core::rng::Rng;
use weft_filter_core::suite::MemoRequest;
use weft_filter_core::{Host, RequestAttributes};

#[cfg(test)]
mod tests;

/// Request headers to leave out of a copy: hop-by-hop, and those describing a body the copy
/// may not carry in the same framing.
const SKIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-length",
];

/// The request's headers, ready for a copy to `authority` (Envoy's shadow naming: `reviews`
/// becomes `reviews-shadow`, so the shadow can tell copies from real traffic).
pub fn headers_for_copy(
    headers: Vec<(String, String)>,
    authority_suffix: &str,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, _)| !SKIPPED.contains(&name.as_str()))
        .map(|(name, value)| {
            if name == ":authority" {
                let (host, port) = match value.rsplit_once(':') {
                    Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
                        (h.to_string(), format!(":{p}"))
                    }
                    _ => (value.clone(), String::new()),
                };
                (name, format!("{host}{authority_suffix}{port}"))
            } else {
                (name, value)
            }
        })
        .collect()
}

/// Counters of one configured service.
struct ServiceStats {
    /// Indexed like the service's `versions`.
    requests: Vec<Counter>,
    /// Indexed like `requests`: picks of a dry-run split (empty unless it is one).
    would_route: Vec<Counter>,
    dry_run: bool,
    mirrored: Counter,
    mirror_failed: Counter,
}

struct Stats {
    services: Vec<ServiceStats>,
    unmatched: Counter,
}

impl Stats {
    fn new(canary: &Canary, host: &impl Host) -> Self {
        let services = canary
            .services()
            .iter()
            .zip(&canary.config().services)
            .map(|(s, config)| {
                let name = format!("{}{}", Filter::Canary.stats_prefix(), stat_segment(&s.name));
                // The weights this sidecar applies, readable from its stats (a rollout's
                // progress is checked there): one gauge per version, in basis points.
                for v in &s.versions {
                    let weight = config
                        .split
                        .iter()
                        .filter(|e| e.version == v.name)
                        .map(|e| u64::from(e.weight))
                        .sum();
                    Gauge::new(host, &format!("{name}.{}.weight_bp", v.name)).set(host, weight);
                }
                ServiceStats {
                    requests: s
                        .versions
                        .iter()
                        .map(|v| Counter::new(host, &format!("{name}.{}.requests", v.name)))
                        .collect(),
                    would_route: s
                        .versions
                        .iter()
                        .filter(|_| config.dry_run)
                        .map(|v| Counter::new(host, &format!("{name}.{}.would_route", v.name)))
                        .collect(),
                    dry_run: config.dry_run,
                    mirrored: Counter::new(host, &format!("{name}.mirrored")),
                    mirror_failed: Counter::new(host, &format!("{name}.mirror_failed")),
                }
            })
            .collect();
        Self {
            services,
            unmatched: Counter::new(host, &Filter::Canary.stat("unmatched")),
        }
    }
}

/// The canary filter of one root context (one per worker).
pub struct CanaryStage {
    canary: Canary,
    stats: Stats,
    /// One per worker, seeded once: reading the host clock for a seed per request costs
    /// two host calls.
    rng: RefCell<Rng>,
}

/// A copy waiting for the rest of the request body.
struct PendingMirror {
    service: usize,
    cluster: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_body: usize,
    timeout: Duration,
}

/// What the stage keeps for one request between its callbacks.
#[derive(Default)]
pub struct CanaryRequest {
    /// `(header, version)` for the caller's response.
    response_header: Option<(String, String)>,
    mirror: Option<PendingMirror>,
}

// === impl CanaryStage ===

impl CanaryStage {
    /// Defines the stats on `host` (from `on_configure` of root context `root_context_id`).
    pub fn new(canary: Canary, root_context_id: u32, host: &impl Host) -> Self {
        let stats = Stats::new(&canary, host);
        log::info!(
            "weft-canary: configured with {} services",
            canary.services().len()
        );
        let rng = RefCell::new(Rng::new(host.seed(root_context_id)));
        Self { canary, stats, rng }
    }

    /// Pick the version and write its cluster header. Never stops the request.
    pub fn on_request_headers<H: Host>(
        &self,
        state: &mut CanaryRequest,
        req: &MemoRequest<H>,
        end_of_stream: bool,
    ) {
        let decision = self.canary.decide(req, &mut self.rng.borrow_mut());
        match decision {
            Some(d)
                if self
                    .stats
                    .services
                    .get(d.service)
                    .is_some_and(|s| s.dry_run) =>
            {
                let stats = self.stats.services.get(d.service);
                if let Some(counter) = stats.and_then(|s| s.would_route.get(d.version)) {
                    counter.inc(req);
                }
                log::debug!("weft-canary: would route to {} (dry run)", d.cluster);
                self.drop_callers_choice(req);
            }
            Some(decision) => {
                log::debug!(
                    "weft-canary: {} by {}",
                    decision.cluster,
                    decision.reason.kind()
                );
                self.apply(state, req, &decision, end_of_stream);
            }
            None => {
                self.stats.unmatched.inc(req);
                self.drop_callers_choice(req);
            }
        }
    }

    /// Only this filter may pick a cluster: a caller's own value is dropped, and the route's
    /// fallback applies.
    fn drop_callers_choice<H: Host>(&self, req: &MemoRequest<H>) {
        let header = self.canary.cluster_header();
        if req.header(header).is_some() {
            req.set_request_header(header, None);
        }
    }

    /// Whether Envoy's route for this request already goes to `cluster`: Envoy picks the
    /// route before the filters run, so a request with no cluster header of its own has
    /// matched the route's fallback (the stable version's cluster in `envoy-configs/canary`
    /// and the benchmark; a cluster named by the host in `weft serve`'s mesh, which never
    /// equals a version cluster). Writing the header would then only make Envoy match the
    /// routes again to the same cluster, the largest share of the native module's own cost
    /// (D110); the request keeps the route it matched, as one the filter did not route. A
    /// caller's own header is always overwritten, so a caller never picks the cluster (one
    /// that matched no route of its own would otherwise stay, for the breaker to read).
    fn routed_there_already<H: Host>(req: &MemoRequest<H>, header: &str, cluster: &str) -> bool {
        req.property(&["xds", "cluster_name"])
            .is_some_and(|routed| routed == cluster.as_bytes())
            && req.header(header).is_none()
    }

    fn apply<H: Host>(
        &self,
        state: &mut CanaryRequest,
        req: &MemoRequest<H>,
        d: &Decision<'_>,
        end_of_stream: bool,
    ) {
        if !Self::routed_there_already(req, self.canary.cluster_header(), d.cluster) {
            req.set_request_header(self.canary.cluster_header(), Some(d.cluster));
        }
        if let Some(header) = d.cohort_request_header {
            req.set_request_header(header, Some(d.version_name));
        }
        state.response_header = d
            .cohort_response_header
            .map(|h| (h.to_string(), d.version_name.to_string()));
        if let Some(stats) = self.stats.services.get(d.service) {
            if let Some(counter) = stats.requests.get(d.version) {
                counter.inc(req);
            }
        }
        if let Some(m) = d.mirror {
            let pending = PendingMirror {
                service: d.service,
                cluster: m.cluster.clone(),
                headers: headers_for_copy(req.request_headers(), "-shadow"),
                body: Vec::new(),
                max_body: usize::try_from(m.max_body_bytes).unwrap_or(usize::MAX),
                timeout: Duration::from_millis(u64::from(m.timeout_ms)),
            };
            if end_of_stream {
                self.send_mirror(req, pending);
            } else {
                state.mirror = Some(pending);
            }
        }
    }

    /// Fire and forget: the host owns the callout by the root context, so the copy outlives
    /// the request and its answer is dropped.
    fn send_mirror(&self, host: &impl Host, m: PendingMirror) {
        let body = (!m.body.is_empty()).then_some(m.body.as_slice());
        let stats = self.stats.services.get(m.service);
        match host.dispatch_http_call(&m.cluster, &m.headers, body, m.timeout) {
            Ok(_token) => stats.iter().for_each(|s| s.mirrored.inc(host)),
            Err(err) => {
                log::warn!(
                    "weft-canary: mirror not sent: dispatch to {}: {err}",
                    m.cluster
                );
                stats.iter().for_each(|s| s.mirror_failed.inc(host));
            }
        }
    }

    /// A request body chunk: collected for a pending copy, sent with the last one.
    pub fn on_request_body(
        &self,
        host: &impl Host,
        state: &mut CanaryRequest,
        body_size: usize,
        end: bool,
    ) {
        if let Some(mut m) = state.mirror.take() {
            if m.body.len() + body_size > m.max_body {
                log::debug!("weft-canary: body over {} bytes, copy dropped", m.max_body);
                if let Some(stats) = self.stats.services.get(m.service) {
                    stats.mirror_failed.inc(host);
                }
            } else {
                m.body.extend(host.request_body(body_size));
                if end {
                    self.send_mirror(host, m);
                } else {
                    state.mirror = Some(m);
                }
            }
        }
    }

    /// The body ended with trailers instead of an end-of-stream chunk.
    pub fn on_request_trailers(&self, host: &impl Host, state: &mut CanaryRequest) {
        if let Some(m) = state.mirror.take() {
            self.send_mirror(host, m);
        }
    }
}

// === impl CanaryRequest ===

impl CanaryRequest {
    /// The cohort response header to add, once: `(name, version)`.
    pub fn take_response_header(&mut self) -> Option<(String, String)> {
        self.response_header.take()
    }
}
