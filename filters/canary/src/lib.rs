//! weft canary: picks the version of a destination service for every outbound request.
//!
//! The decision lives in `weft_filter_core::canary`; this crate writes the chosen cluster
//! into the header the route's `cluster_header` reads (Envoy re-runs route selection after a
//! wasm filter changes request headers), propagates the cohort, counts, and mirrors. When the
//! filter is skipped or no service matches, the route's fallback sends traffic to stable.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use weft_filter_core::canary::{Canary, Decision};
use weft_filter_core::rng::Rng;
use weft_filter_core::RequestAttributes;
use weft_proxy_glue::{self as glue, sanitize_stat_segment, Counter, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(CanaryRoot { context_id, shared: None })
    });
}}

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

struct Shared {
    canary: Canary,
    stats: Stats,
    /// One per worker, seeded once: reading the host clock for a seed per request costs
    /// two host calls.
    rng: RefCell<Rng>,
}

struct CanaryRoot {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for CanaryRoot {}

impl RootContext for CanaryRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(canary) = glue::load_plugin_config("canary", Canary::from_json) else {
            return false;
        };
        let stats = Stats::new(&canary);
        log::info!(
            "weft-canary: configured with {} services",
            canary.services().len()
        );
        let rng = RefCell::new(Rng::new(glue::seed(self.context_id)));
        self.shared = Some(Rc::new(Shared { canary, stats, rng }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(CanaryHttp {
            shared,
            response_header: None,
            mirror: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
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

struct CanaryHttp {
    shared: Rc<Shared>,
    /// `(header, version)` for the caller's response.
    response_header: Option<(String, String)>,
    mirror: Option<PendingMirror>,
}

impl CanaryHttp {
    fn apply(&mut self, d: &Decision<'_>, end_of_stream: bool) {
        HostRequest::set_header(self.shared.canary.cluster_header(), d.cluster);
        if let Some(header) = d.cohort_request_header {
            HostRequest::set_header(header, d.version_name);
        }
        self.response_header = d
            .cohort_response_header
            .map(|h| (h.to_string(), d.version_name.to_string()));
        if let Some(stats) = self.shared.stats.services.get(d.service) {
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
                self.mirror = Some(pending);
            }
        }
    }

    fn send_mirror(&self, m: PendingMirror) {
        let body = (!m.body.is_empty()).then_some(m.body.as_slice());
        let stats = self.shared.stats.services.get(m.service);
        match glue::dispatch_detached(&m.cluster, &m.headers, body, m.timeout) {
            Ok(()) => stats.iter().for_each(|s| s.mirrored.inc()),
            Err(err) => {
                log::warn!("weft-canary: mirror not sent: {err}");
                stats.iter().for_each(|s| s.mirror_failed.inc());
            }
        }
    }
}

impl Context for CanaryHttp {}

impl HttpContext for CanaryHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        let decision = shared
            .canary
            .decide(&HostRequest, &mut shared.rng.borrow_mut());
        match decision {
            Some(decision) => {
                log::debug!(
                    "weft-canary: {} by {}",
                    decision.cluster,
                    decision.reason.kind()
                );
                self.apply(&decision, end_of_stream);
            }
            None => {
                shared.stats.unmatched.inc();
                // Only this filter may pick a cluster: a caller's own value is dropped, and
                // the route's fallback applies.
                let header = shared.canary.cluster_header();
                if HostRequest.header(header).is_some() {
                    self.set_http_request_header(header, None);
                }
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(mut m) = self.mirror.take() {
            if m.body.len() + body_size > m.max_body {
                log::debug!("weft-canary: body over {} bytes, copy dropped", m.max_body);
                if let Some(stats) = self.shared.stats.services.get(m.service) {
                    stats.mirror_failed.inc();
                }
            } else {
                m.body.extend(glue::request_body_chunk(body_size));
                if end_of_stream {
                    self.send_mirror(m);
                } else {
                    self.mirror = Some(m);
                }
            }
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // The body ended with trailers instead of an end-of-stream chunk.
        if let Some(m) = self.mirror.take() {
            self.send_mirror(m);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some((header, version)) = self.response_header.take() {
            self.set_http_response_header(&header, Some(&version));
        }
        Action::Continue
    }
}
