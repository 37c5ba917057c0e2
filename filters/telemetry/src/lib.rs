//! weft telemetry: one record per request, aggregated per edge on each worker and reported
//! to the control plane in signed batches from the root context's tick.
//!
//! Placed first in both chains, it sees every request however it ends (authz's deny reply,
//! the breaker's fail-fast, an upstream reset) in `on_log`, after the response went out:
//! nothing here runs before or delays a request. A report that cannot be sent (control plane
//! down, batch full) is counted in `weft.telemetry.dropped`, never retried on a request.
//! The aggregation and wire format live in `weft_filter_core::telemetry`.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use weft_filter_core::telemetry::{
    destination_from_cluster, service_of_principal, sign, AuthzOutcome, Batch, Direction,
    EdgeStats, Record, TelemetryConfig, AUTHZ_PROPERTY, SIGNATURE_HEADER,
};
use weft_filter_core::RequestAttributes;
use weft_proxy_glue::{self as glue, Counter, HostRequest};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::<TelemetryRoot>::default() });
}}

/// Distinct tagged stat names per worker; beyond it requests still count in batches.
const MAX_STAT_NAMES: usize = 512;

struct Stats {
    dropped: Counter,
    batches: Counter,
    batch_failures: Counter,
}

/// Per worker: the configuration, the pending batch and the tagged stats defined so far.
struct Shared {
    config: TelemetryConfig,
    key: Option<Vec<u8>>,
    stats: Stats,
    batch: RefCell<Batch>,
    edge_stats: RefCell<EdgeStats<(Counter, glue::Histogram)>>,
}

impl Shared {
    /// A report of `requests` (carrying `carried` earlier losses) did not get through:
    /// count them here and tell the control plane with the next report.
    fn lost(&self, requests: u64, carried: u64) {
        self.stats.batch_failures.inc();
        self.stats
            .dropped
            .add(i64::try_from(requests).unwrap_or(i64::MAX));
        self.batch
            .borrow_mut()
            .add_dropped(requests.saturating_add(carried));
    }

    fn count_envoy_stats(&self, record: &Record<'_>) {
        if !self.config.envoy_stats {
            return;
        }
        let source = match self.config.direction {
            Direction::Inbound => service_of_principal(record.source),
            Direction::Outbound => record.source,
        };
        let stats = self.edge_stats.borrow_mut().get_or_define(
            self.config.direction.as_str(),
            source,
            record.destination,
            record.version,
            record.status,
            record.authz,
            record.breaker_open,
            |prefix| {
                (
                    Counter::new(&format!("{prefix}.requests")),
                    glue::Histogram::new(&format!("{prefix}.latency_ms")),
                )
            },
        );
        let Some(stats) = stats else { return };
        stats.0.inc();
        stats.1.record(record.latency_us / 1000);
    }
}

#[derive(Default)]
struct TelemetryRoot {
    shared: Option<Rc<Shared>>,
    /// The report on its way: (token, requests in it, earlier losses it reports).
    in_flight: Option<(u32, u64, u64)>,
    /// Ticks the in-flight report has been waiting; past its timeout it counts as lost.
    in_flight_ticks: u64,
}

impl Context for TelemetryRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _t: usize) {
        let Some((pending, requests, carried)) = self.in_flight else {
            return;
        };
        if pending != token {
            return;
        }
        self.in_flight = None;
        let Some(shared) = &self.shared else { return };
        match glue::call_response_status() {
            Some(status) if (200..300).contains(&status) => {}
            status => {
                log::debug!("weft-telemetry: report refused or lost ({status:?})");
                shared.lost(requests, carried);
            }
        }
    }
}

impl RootContext for TelemetryRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_plugin_config("telemetry", TelemetryConfig::from_json) else {
            return false;
        };
        let stats = Stats {
            dropped: Counter::new("weft.telemetry.dropped"),
            batches: Counter::new("weft.telemetry.batches"),
            batch_failures: Counter::new("weft.telemetry.batch_failures"),
        };
        let key = config.key_bytes();
        if key.is_some() {
            glue::set_root_tick(Duration::from_millis(config.flush_interval_ms));
        }
        let batch = RefCell::new(Batch::new(config.max_edges, config.max_routes));
        self.shared = Some(Rc::new(Shared {
            config,
            key,
            stats,
            batch,
            edge_stats: RefCell::new(EdgeStats::new(MAX_STAT_NAMES)),
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.in_flight.is_some() {
            // The host answers every call by its timeout; this only guards a lost callback.
            self.in_flight_ticks += 1;
            let waited = self.in_flight_ticks * shared.config.flush_interval_ms;
            if waited <= 2 * shared.config.timeout_ms {
                return;
            }
            if let Some((_, requests, carried)) = self.in_flight.take() {
                shared.lost(requests, carried);
            }
        }
        let Some(key) = &shared.key else { return };
        let config = &shared.config;
        let Some(report) = shared.batch.borrow_mut().take(
            config.direction,
            &config.namespace,
            &config.service,
            &config.version,
        ) else {
            return;
        };
        let (requests, carried) = (report.requests(), report.dropped);
        let body = match report.encode() {
            Ok(body) => body,
            Err(error) => {
                log::warn!("weft-telemetry: cannot encode a report: {error}");
                shared.lost(requests, carried);
                return;
            }
        };
        let signature = sign(key, &body);
        let headers = [
            (":method", "POST"),
            (":path", config.path.as_str()),
            (":authority", config.authority.as_str()),
            ("content-type", "application/json"),
            (SIGNATURE_HEADER, signature.as_str()),
        ];
        let timeout = Duration::from_millis(config.timeout_ms);
        match glue::dispatch_call(&config.cluster, &headers, &body, timeout) {
            Ok(token) => {
                shared.stats.batches.inc();
                self.in_flight = Some((token, requests, carried));
                self.in_flight_ticks = 0;
            }
            Err(error) => {
                log::debug!("weft-telemetry: {error}");
                shared.lost(requests, carried);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(TelemetryHttp { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TelemetryHttp {
    shared: Rc<Shared>,
}

impl Context for TelemetryHttp {}

impl HttpContext for TelemetryHttp {
    fn on_log(&mut self) {
        let shared = &self.shared;
        let status = HostRequest::property_u64(&["response", "code"])
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(0);
        let latency_us = HostRequest::property_u64(&["request", "duration"]).unwrap_or(0) / 1000;
        let config = &shared.config;
        let recorded = match config.direction {
            Direction::Inbound => {
                let source = HostRequest.peer_principal().unwrap_or_default();
                let authz =
                    AuthzOutcome::from_property(glue::stream_property(AUTHZ_PROPERTY).as_deref());
                let method = HostRequest.method().unwrap_or_default();
                let path = HostRequest.path().unwrap_or_default();
                let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
                let record = Record {
                    source: &source,
                    destination: &config.service,
                    version: &config.version,
                    status,
                    latency_us,
                    authz,
                    breaker_open: false,
                    method: &method,
                    path,
                };
                shared.count_envoy_stats(&record);
                shared.batch.borrow_mut().record(&record)
            }
            Direction::Outbound => {
                let cluster = HostRequest::property(&["xds", "cluster_name"]).unwrap_or_default();
                let authority;
                let (destination, version) = match destination_from_cluster(&cluster) {
                    Some(found) => found,
                    None => {
                        authority = HostRequest.header(":authority").unwrap_or_default();
                        let host = authority
                            .rsplit_once(':')
                            .map_or(authority.as_str(), |(h, _)| h);
                        (host, "")
                    }
                };
                let breaker_open = status == 503
                    && glue::response_header("x-weft-breaker").as_deref() == Some("open");
                let record = Record {
                    source: &config.service,
                    destination,
                    version,
                    status,
                    latency_us,
                    authz: AuthzOutcome::Allowed,
                    breaker_open,
                    method: "",
                    path: "",
                };
                shared.count_envoy_stats(&record);
                shared.batch.borrow_mut().record(&record)
            }
        };
        if !recorded {
            shared.stats.dropped.inc();
        }
    }
}
