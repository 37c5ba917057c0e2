//! weft canary: picks the version of a destination service for every outbound request.
//!
//! The decision lives in `weft_filter_core::canary`; [`CanaryStage`] writes the chosen cluster
//! into the header the route's `cluster_header` reads (Envoy re-runs route selection after a
//! wasm filter changes request headers), propagates the cohort, counts, and mirrors. When the
//! filter is skipped or no service matches, the route's fallback sends traffic to stable. The
//! standalone module is `filters/canary` (`canary.wasm`); `weft-suite` runs the stage after authz.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::time::Duration;
use weft_filter_core::canary::{Canary, Decision};
use weft_filter_core::rng::Rng;
use weft_filter_core::suite::MemoRequest;
use weft_filter_core::RequestAttributes;
use weft_proxy_glue::{self as glue, sanitize_stat_segment, Counter, HostRequest};

/// Counters of one configured service.
struct ServiceStats {
    /// Indexed like the service's `versions`.
    requests: Vec<Counter>,
    mirrored: Counter,
    mirror_failed: Counter,
}

struct Stats {
    services: Vec<ServiceStats>,
    unmatched: Counter,
}

impl Stats {
    fn new(canary: &Canary) -> Self {
        let services = canary
            .services()
            .iter()
            .map(|s| {
                let name = format!("weft.canary.{}", sanitize_stat_segment(&s.name));
                ServiceStats {
                    requests: s
                        .versions
                        .iter()
                        .map(|v| Counter::new(&format!("{name}.{}.requests", v.name)))
                        .collect(),
                    mirrored: Counter::new(&format!("{name}.mirrored")),
                    mirror_failed: Counter::new(&format!("{name}.mirror_failed")),
                }
            })
            .collect();
        Self {
            services,
            unmatched: Counter::new("weft.canary.unmatched"),
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
    /// Defines the stats (from `on_configure` of root context `root_context_id`).
    pub fn new(canary: Canary, root_context_id: u32) -> Self {
        let stats = Stats::new(&canary);
        log::info!(
            "weft-canary: configured with {} services",
            canary.services().len()
        );
        let rng = RefCell::new(Rng::new(glue::seed(root_context_id)));
        Self { canary, stats, rng }
    }

    /// Pick the version and write its cluster header. Never stops the request.
    pub fn on_request_headers(
        &self,
        state: &mut CanaryRequest,
        req: &MemoRequest<HostRequest>,
        end_of_stream: bool,
    ) {
        let decision = self.canary.decide(req, &mut self.rng.borrow_mut());
        match decision {
            Some(decision) => {
                log::debug!(
                    "weft-canary: {} by {}",
                    decision.cluster,
                    decision.reason.kind()
                );
                self.apply(state, req, &decision, end_of_stream);
            }
            None => {
                self.stats.unmatched.inc();
                // Only this filter may pick a cluster: a caller's own value is dropped, and
                // the route's fallback applies.
                let header = self.canary.cluster_header();
                if req.header(header).is_some() {
                    HostRequest::remove_header(header);
                    req.note_header(header, None);
                }
            }
        }
    }

    fn apply(
        &self,
        state: &mut CanaryRequest,
        req: &MemoRequest<HostRequest>,
        d: &Decision<'_>,
        end_of_stream: bool,
    ) {
        let header = self.canary.cluster_header();
        HostRequest::set_header(header, d.cluster);
        req.note_header(header, Some(d.cluster));
        if let Some(header) = d.cohort_request_header {
            HostRequest::set_header(header, d.version_name);
            req.note_header(header, Some(d.version_name));
        }
        state.response_header = d
            .cohort_response_header
            .map(|h| (h.to_string(), d.version_name.to_string()));
        if let Some(stats) = self.stats.services.get(d.service) {
            if let Some(counter) = stats.requests.get(d.version) {
                counter.inc();
            }
        }
        if let Some(m) = d.mirror {
            let pending = PendingMirror {
                service: d.service,
                cluster: m.cluster.clone(),
                headers: glue::request_headers_for_copy("-shadow"),
                body: Vec::new(),
                max_body: usize::try_from(m.max_body_bytes).unwrap_or(usize::MAX),
                timeout: Duration::from_millis(u64::from(m.timeout_ms)),
            };
            if end_of_stream {
                self.send_mirror(pending);
            } else {
                state.mirror = Some(pending);
            }
        }
    }

    fn send_mirror(&self, m: PendingMirror) {
        let body = (!m.body.is_empty()).then_some(m.body.as_slice());
        let stats = self.stats.services.get(m.service);
        match glue::dispatch_detached(&m.cluster, &m.headers, body, m.timeout) {
            Ok(()) => stats.iter().for_each(|s| s.mirrored.inc()),
            Err(err) => {
                log::warn!("weft-canary: mirror not sent: {err}");
                stats.iter().for_each(|s| s.mirror_failed.inc());
            }
        }
    }

    /// A request body chunk: collected for a pending copy, sent with the last one.
    pub fn on_request_body(&self, state: &mut CanaryRequest, body_size: usize, end: bool) {
        if let Some(mut m) = state.mirror.take() {
            if m.body.len() + body_size > m.max_body {
                log::debug!("weft-canary: body over {} bytes, copy dropped", m.max_body);
                if let Some(stats) = self.stats.services.get(m.service) {
                    stats.mirror_failed.inc();
                }
            } else {
                m.body.extend(glue::request_body_chunk(body_size));
                if end {
                    self.send_mirror(m);
                } else {
                    state.mirror = Some(m);
                }
            }
        }
    }

    /// The body ended with trailers instead of an end-of-stream chunk.
    pub fn on_request_trailers(&self, state: &mut CanaryRequest) {
        if let Some(m) = state.mirror.take() {
            self.send_mirror(m);
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
