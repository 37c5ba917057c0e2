// Over 400 lines: one stage, its report life cycle (tick, answer, retirement) and the three
// kinds of record (inbound, outbound, into a gateway) that share its batch.
//! weft telemetry: one record per request, aggregated per edge on each worker and reported
//! to the control plane in signed batches from the root context's tick.
//!
//! Placed first in both chains (and first in the suite), it sees every request however it
//! ends (authz's deny reply, the breaker's fail-fast, an upstream reset) in `on_log`, after
//! the response went out: nothing here runs before or delays a request. A report that cannot
//! be sent (control plane down, batch full) is counted in `weft.telemetry.dropped`, never
//! retried on a request. The aggregation and wire format live in
//! `weft_filter_core::telemetry`; [`TelemetryStage`] is the filter of one root context, run
//! by the standalone `telemetry.wasm` (`filters/telemetry`) and by `weft-suite`.
//! It acts only through the [`Host`] trait, so the tests run it against `MockHost`.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::time::Duration;
use weft_filter_core::host::{Counter, Histogram};
use weft_filter_core::registry::Filter;
use weft_filter_core::telemetry::{
    destination_from_cluster, service_of_principal, sign, AuthzOutcome, Batch, BreakerMark,
    Direction, EdgeStats, EdgeTags, FaultMarks, LocalReply, Marks, Record, TelemetryConfig,
    WafMark, AUTHZ_PROPERTY, BREAKER_PROPERTY, DECISION_PROPERTY, FAULT_PROPERTY, INGRESS_SOURCE,
    SIGNATURE_HEADER, WAF_PROPERTY,
};
use weft_filter_core::Host;

#[cfg(test)]
mod tests;

/// Distinct tagged stat names per worker; beyond it requests still count in batches.
const MAX_STAT_NAMES: usize = 512;

struct Stats {
    dropped: Counter,
    batches: Counter,
    batch_failures: Counter,
}

/// The report on its way: its call token, the requests in it and the earlier losses it
/// reports.
#[derive(Clone, Copy)]
struct InFlight {
    token: u32,
    requests: u64,
    carried: u64,
}

/// How a request ended, as every record needs it: status (0: none), latency, the authz
/// outcome when known from memory, and the stage that answered it locally.
#[derive(Clone, Copy)]
struct Ended {
    status: u16,
    latency_us: u64,
    authz: Option<AuthzOutcome>,
    local: Option<LocalReply>,
    /// What a WAF in this chain concluded (a gateway's edge WAF, a service's inbound one).
    waf: WafMark,
}

/// The telemetry filter of one root context (one per worker): the configuration, the
/// pending batch, the report in flight and the tagged stats defined so far.
pub struct TelemetryStage {
    config: TelemetryConfig,
    key: Option<Vec<u8>>,
    stats: Stats,
    batch: RefCell<Batch>,
    edge_stats: RefCell<EdgeStats<(Counter, Histogram)>>,
    in_flight: Cell<Option<InFlight>>,
    /// Flushes the in-flight report has been waiting; past its timeout it counts as lost.
    in_flight_flushes: Cell<u64>,
}

// === impl TelemetryStage ===

impl TelemetryStage {
    /// Defines the stats on `host` (from `on_configure`).
    pub fn new(config: TelemetryConfig, host: &impl Host) -> Self {
        let stats = Stats {
            dropped: Counter::new(host, &Filter::Telemetry.stat("dropped")),
            batches: Counter::new(host, &Filter::Telemetry.stat("batches")),
            batch_failures: Counter::new(host, &Filter::Telemetry.stat("batch_failures")),
        };
        let key = config.key_bytes();
        let batch = RefCell::new(Batch::new(config.max_edges, config.max_routes));
        Self {
            config,
            key,
            stats,
            batch,
            edge_stats: RefCell::new(EdgeStats::new(MAX_STAT_NAMES)),
            in_flight: Cell::new(None),
            in_flight_flushes: Cell::new(0),
        }
    }

    /// How often the root must call [`Self::flush`]; `None`: nothing is reported (no key).
    pub fn flush_period(&self) -> Option<Duration> {
        self.key
            .as_ref()
            .map(|_| Duration::from_millis(self.config.flush_interval_ms))
    }

    /// A report of `requests` (carrying `carried` earlier losses) did not get through:
    /// count them here and tell the control plane with the next report.
    fn lost(&self, host: &impl Host, requests: u64, carried: u64) {
        self.stats.batch_failures.inc(host);
        self.stats
            .dropped
            .add(host, i64::try_from(requests).unwrap_or(i64::MAX));
        self.batch
            .borrow_mut()
            .add_dropped(requests.saturating_add(carried));
    }

    /// From the root's `on_http_call_response`: whether the report with `token` got through.
    /// Other tokens are not this stage's and are ignored.
    pub fn on_http_call_response(&self, host: &impl Host, token: u32) {
        let Some(pending) = self.in_flight.get() else {
            return;
        };
        if pending.token != token {
            return;
        }
        self.in_flight.set(None);
        match host.http_call_response_status() {
            Some(status) if (200..300).contains(&status) => {}
            status => {
                log::debug!("weft-telemetry: report refused or lost ({status:?})");
                self.lost(host, pending.requests, pending.carried);
            }
        }
    }

    /// From the root's tick, every [`Self::flush_period`]: send the batch, unless the last
    /// report is still on its way.
    pub fn flush(&self, host: &impl Host) {
        let config = &self.config;
        if let Some(pending) = self.in_flight.get() {
            // The host answers every call by its timeout; this only guards a lost callback.
            let flushes = self.in_flight_flushes.get().saturating_add(1);
            self.in_flight_flushes.set(flushes);
            if flushes.saturating_mul(config.flush_interval_ms) <= 2 * config.timeout_ms {
                return;
            }
            self.in_flight.set(None);
            self.lost(host, pending.requests, pending.carried);
        }
        let Some(key) = &self.key else { return };
        let Some(report) = self.batch.borrow_mut().take(
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
                self.lost(host, requests, carried);
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
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let timeout = Duration::from_millis(config.timeout_ms);
        match host.dispatch_http_call(&config.cluster, &headers, Some(&body), timeout) {
            Ok(token) => {
                self.stats.batches.inc(host);
                self.in_flight.set(Some(InFlight {
                    token,
                    requests,
                    carried,
                }));
                self.in_flight_flushes.set(0);
            }
            Err(error) => {
                log::debug!("weft-telemetry: dispatch to {}: {error}", config.cluster);
                self.lost(host, requests, carried);
            }
        }
    }

    /// The root context is being retired (a new configuration replaced it; Envoy makes a new
    /// root per configuration): report what is pending now instead of at the next tick,
    /// which this root will not see. True when a report is on its way, so the root should
    /// stay until its answer ([`Self::reporting`]).
    pub fn flush_final(&self, host: &impl Host) -> bool {
        if self.in_flight.get().is_some() && !self.batch.borrow().is_empty() {
            // One report in flight is all this stage tracks: the earlier one's answer is
            // no longer awaited (its loss, if any, is not counted).
            self.in_flight.set(None);
        }
        self.flush(host);
        self.reporting()
    }

    /// A report is on its way.
    pub fn reporting(&self) -> bool {
        self.in_flight.get().is_some()
    }

    /// From `on_log`: record the request. `authz` is the authorization outcome when the
    /// caller knows it (the suite's authz stage); `None` reads what a separate authz filter
    /// left in the stream property.
    pub fn on_log(&self, host: &impl Host, authz: Option<AuthzOutcome>) {
        let status = host
            .property_u64(&["response", "code"])
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(0);
        let latency_us = host.property_u64(&["request", "duration"]).unwrap_or(0) / 1000;
        // Every weft local reply names its stage in the decision property, in both chains;
        // the WAF's refusals are known from its own mark.
        let waf = WafMark::parse(host.property(&[WAF_PROPERTY]).as_deref());
        let local = LocalReply::from_decision(host.property(&[DECISION_PROPERTY]).as_deref())
            .or(waf.blocked.then_some(LocalReply::WafBlocked));
        let ended = Ended {
            status,
            latency_us,
            authz,
            local,
            waf,
        };
        let recorded = match self.config.direction {
            Direction::Inbound => self.record_inbound(host, ended),
            Direction::Outbound => self.record_outbound(host, ended),
        };
        if !recorded {
            self.stats.dropped.inc(host);
        }
    }

    fn record_inbound(&self, host: &impl Host, ended: Ended) -> bool {
        let Ended {
            status,
            latency_us,
            authz,
            local,
            waf,
        } = ended;
        let config = &self.config;
        let source = host.peer_principal().unwrap_or_default();
        let authz = authz.unwrap_or_else(|| {
            AuthzOutcome::from_property(host.property(&[AUTHZ_PROPERTY]).as_deref())
        });
        let method = host.method().unwrap_or_default();
        let path = host.path().unwrap_or_default();
        let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        let record = Record {
            source: &source,
            destination: &config.service,
            version: &config.version,
            status,
            latency_us,
            authz,
            local,
            marks: Marks {
                waf,
                ..Marks::default()
            },
            method: &method,
            path,
        };
        self.count_envoy_stats(host, &record);
        self.batch.borrow_mut().record(&record)
    }

    /// A gateway's edge WAF judged the request as it came in from outside: the edge into
    /// the gateway, reported from [`INGRESS_SOURCE`] (the control plane draws it from
    /// `external`). A refused request goes no further, so it is on no outbound edge.
    fn record_ingress(&self, host: &impl Host, ended: &Ended) -> bool {
        let config = &self.config;
        let method = host.method().unwrap_or_default();
        let path = host.path().unwrap_or_default();
        let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p);
        let record = Record {
            source: INGRESS_SOURCE,
            destination: &config.service,
            version: &config.version,
            status: ended.status,
            latency_us: ended.latency_us,
            authz: AuthzOutcome::Allowed,
            local: ended.local.filter(|l| *l == LocalReply::WafBlocked),
            marks: Marks {
                waf: ended.waf,
                ..Marks::default()
            },
            method: &method,
            path,
        };
        self.batch.borrow_mut().record(&record)
    }

    /// The caller's side: the picked cluster names the destination. A request answered
    /// here (abort, fail-fast, a gateway's deny, Envoy without an upstream) never reaches
    /// the callee, whose report therefore lacks it: the record says so (`local`).
    fn record_outbound(&self, host: &impl Host, ended: Ended) -> bool {
        if !ended.waf.is_empty() {
            let recorded = self.record_ingress(host, &ended);
            if ended.waf.blocked {
                return recorded;
            }
        }
        let Ended {
            status,
            latency_us,
            authz,
            local,
            ..
        } = ended;
        let config = &self.config;
        let local = local.or_else(|| {
            host.property(&["upstream", "address"])
                .is_none()
                .then_some(LocalReply::Unreached)
        });
        let cluster = host
            .property_string(&["xds", "cluster_name"])
            .unwrap_or_default();
        let (authority, picked);
        let (destination, version) = match destination_from_cluster(&cluster) {
            Some(found) => found,
            None => {
                authority = host.header(":authority").unwrap_or_default();
                let name = authority
                    .rsplit_once(':')
                    .map_or(authority.as_str(), |(h, _)| h);
                // A local reply may come before the route read the canary's pick: its header
                // names the version. Only a cluster of the service the request names counts,
                // so an app's own header can at most pick the version of its own reply.
                picked = local
                    .and_then(|_| host.header(&config.cluster_header))
                    .unwrap_or_default();
                match destination_from_cluster(&picked) {
                    Some((service, version))
                        if name == service
                            || name
                                .strip_prefix(service)
                                .is_some_and(|rest| rest.starts_with('.')) =>
                    {
                        (service, version)
                    }
                    _ => (name, ""),
                }
            }
        };
        let authz = match (local, authz) {
            (Some(LocalReply::Denied), _) => AuthzOutcome::Denied,
            (_, Some(outcome)) => outcome,
            (_, None) => AuthzOutcome::Allowed,
        };
        let marks = Marks {
            fault: FaultMarks::parse(host.property(&[FAULT_PROPERTY]).as_deref()),
            breaker: BreakerMark::parse(host.property(&[BREAKER_PROPERTY]).as_deref()),
            // The WAF's verdict is on the edge into this sidecar (`record_ingress`).
            waf: WafMark::default(),
        };
        let record = Record {
            source: &config.service,
            destination,
            version,
            status,
            latency_us,
            authz,
            local,
            marks,
            method: "",
            path: "",
        };
        self.count_envoy_stats(host, &record);
        self.batch.borrow_mut().record(&record)
    }

    fn count_envoy_stats(&self, host: &impl Host, record: &Record<'_>) {
        if !self.config.envoy_stats {
            return;
        }
        let source = match self.config.direction {
            Direction::Inbound => service_of_principal(record.source),
            Direction::Outbound => record.source,
        };
        let tags = EdgeTags {
            reporter: self.config.direction.as_str(),
            source,
            record,
        };
        let stats = self.edge_stats.borrow_mut().get_or_define(&tags, |prefix| {
            (
                Counter::new(host, &format!("{prefix}.requests")),
                Histogram::new(host, &format!("{prefix}.latency_ms")),
            )
        });
        let Some(stats) = stats else { return };
        stats.0.inc(host);
        stats.1.record(host, record.latency_us / 1000);
    }
}
