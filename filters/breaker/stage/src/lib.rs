//! weft breaker: a circuit breaker and concurrency cap per upstream cluster.
//!
//! The state machine lives in `weft_filter_core::breaker`; [`BreakerStage`] keeps each guarded
//! cluster's `BreakerState` in Envoy shared data (one record per cluster, seeded in
//! `on_configure`, changed only by compare-and-swap, see `weft_filter_core::host::shared`), admits or
//! fails fast on the request headers, and feeds the outcome back in `on_log`, which Envoy
//! calls on every way a request can end, so the in-flight slot is always released. A closed
//! breaker costs one read of the record per request: admissions, leased slots of the cap and
//! successes stay in the worker until something must be written
//! (`weft_filter_core::breaker::worker`, D74). The
//! standalone module is `filters/breaker` (`breaker.wasm`); `weft-suite` runs the stage last.
//! All through the [`Host`] trait, so the tests run it against `MockHost`.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;
use weft_filter_core::breaker::worker::{self, Admit, Held, Local, Step};
use weft_filter_core::breaker::{Breaker, BreakerState, Phase, Policy, Rejection, Transition};
use weft_filter_core::host::shared::{self, SharedError};
use weft_filter_core::host::{stat_segment, Counter, Gauge};
use weft_filter_core::registry::Filter;
use weft_filter_core::rng::Rng;
use weft_filter_core::telemetry::{BreakerMark, BREAKER_PROPERTY, DECISION_PROPERTY};
use weft_filter_core::Host;

#[cfg(test)]
mod tests;

/// Gauges are refreshed from shared data this often, so they settle even when the last
/// writer's gauge update raced another worker's.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(1);
const HEADER: &str = "x-weft-breaker";

struct ClusterStats {
    state: Gauge,
    in_flight: Gauge,
    opens: Counter,
    half_opens: Counter,
    closes: Counter,
    probes: Counter,
    rejections: Counter,
    rejected_open: Counter,
    /// Dry run: requests the breaker would have failed fast (and let through).
    would_fail_fast: Counter,
    rejected_half_open: Counter,
    rejected_overflow: Counter,
}

impl ClusterStats {
    fn new(host: &impl Host, cluster: &str) -> Self {
        let prefix = format!(
            "{}{}",
            Filter::Breaker.stats_prefix(),
            stat_segment(cluster)
        );
        let counter = |name: &str| Counter::new(host, &format!("{prefix}.{name}"));
        Self {
            state: Gauge::new(host, &format!("{prefix}.state")),
            in_flight: Gauge::new(host, &format!("{prefix}.in_flight")),
            opens: counter("opens"),
            half_opens: counter("half_opens"),
            closes: counter("closes"),
            probes: counter("probes"),
            rejections: counter("rejections"),
            rejected_open: counter("rejected.open"),
            would_fail_fast: counter("would_fail_fast"),
            rejected_half_open: counter("rejected.half_open"),
            rejected_overflow: counter("rejected.overflow"),
        }
    }

    fn show(&self, host: &impl Host, state: &BreakerState) {
        self.state.set(host, state.phase as u64);
        self.in_flight.set(host, u64::from(state.in_flight));
    }

    /// After this worker wrote the record: the phase only changes with a transition (whose
    /// writer sets it; `on_tick` settles it anyway), the in-flight count with any write.
    fn show_after(&self, host: &impl Host, transition: Option<Transition>, state: &BreakerState) {
        if transition.is_some() {
            self.state.set(host, state.phase as u64);
        }
        self.in_flight.set(host, u64::from(state.in_flight));
    }
}

/// One guarded upstream cluster.
struct Guarded {
    name: String,
    key: String,
    policy: Policy,
    stats: ClusterStats,
    /// This worker's leases, batched successes and view of the record.
    local: RefCell<Local>,
}

impl Guarded {
    /// A step's transition and, when this worker wrote the record, the gauges.
    fn report_step<T>(&self, host: &impl Host, step: &Step<T>) {
        if let Some(state) = &step.written {
            self.report(host, step.transition, state);
        }
    }

    fn report(&self, host: &impl Host, transition: Option<Transition>, state: &BreakerState) {
        match transition {
            None => {}
            Some(Transition::Opened {
                reason,
                interval_ms,
            }) => {
                self.stats.opens.inc(host);
                log::info!(
                    "weft-breaker: {}: -> open for {interval_ms} ms ({reason:?})",
                    self.name
                );
            }
            Some(Transition::HalfOpened) => {
                self.stats.half_opens.inc(host);
                log::info!("weft-breaker: {}: open -> half-open", self.name);
            }
            Some(Transition::Closed) => {
                self.stats.closes.inc(host);
                log::info!("weft-breaker: {}: half-open -> closed", self.name);
            }
        }
        self.stats.show_after(host, transition, state);
    }
}

/// The breaker filter of one root context (one per worker); the state itself is shared.
pub struct BreakerStage {
    cluster_header: Option<String>,
    /// Index into `guarded` by cluster name.
    clusters: HashMap<String, usize>,
    guarded: Vec<Guarded>,
    /// One per worker, seeded once: reading the host clock for a seed per request costs
    /// two host calls.
    rng: RefCell<Rng>,
    cas_retries: Counter,
    cas_exhausted: Counter,
    unseeded: Counter,
}

/// A request's claim on an in-flight slot, returned in `on_log`.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Index into `guarded`.
    index: usize,
    held: Held,
}

/// What the stage decided on a request's headers.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// Not to a guarded cluster (or its record is missing): let it through, nothing to release.
    Unguarded,
    /// Let through holding a slot: pass it to [`BreakerStage::on_log`].
    Admitted(Slot),
    /// Failed fast: the local reply is sent; stop the request.
    Rejected,
}

// === impl BreakerStage ===

impl BreakerStage {
    /// The guarded cluster this request was routed to, if any, and its index.
    fn guarded(&self, req: &impl Host) -> Option<(usize, &Guarded)> {
        // The canary's choice (its header) wins; a request it did not route went through
        // the route's own cluster, e.g. the stable fallback.
        let cluster = self
            .cluster_header
            .as_deref()
            .and_then(|header| req.header(header))
            .or_else(|| req.property_string(&["xds", "cluster_name"]))?;
        let index = *self.clusters.get(&cluster)?;
        Some((index, self.guarded.get(index)?))
    }

    /// Seeds each guarded cluster's shared record (only ever from `on_configure`, see D8)
    /// and defines the stats.
    pub fn new(breaker: Breaker, root_context_id: u32, host: &impl Host) -> Self {
        let mut clusters = HashMap::new();
        let mut guarded = Vec::new();
        for (name, policy) in breaker.clusters() {
            let key = format!("{}v1/{name}", Filter::Breaker.stats_prefix());
            match shared::seed(host, &key, &BreakerState::default().encode()) {
                Ok(true) => log::info!("weft-breaker: seeded shared state {key}"),
                Ok(false) => {}
                Err(err) => log::warn!("weft-breaker: cannot seed {key}: {err:?}"),
            }
            let stats = ClusterStats::new(host, name);
            let cluster = Guarded {
                name: name.to_string(),
                key,
                policy: policy.clone(),
                stats,
                local: RefCell::new(Local::default()),
            };
            clusters.insert(name.to_string(), guarded.len());
            guarded.push(cluster);
        }
        log::info!(
            "weft-breaker: configured, guarding {} clusters",
            clusters.len()
        );
        Self {
            cluster_header: breaker.config().cluster_header.clone(),
            clusters,
            guarded,
            rng: RefCell::new(Rng::new(host.seed(root_context_id))),
            cas_retries: Counter::new(host, &Filter::Breaker.stat("cas_retries")),
            cas_exhausted: Counter::new(host, &Filter::Breaker.stat("cas_exhausted")),
            unseeded: Counter::new(host, &Filter::Breaker.stat("unseeded")),
        }
    }

    /// From the root's tick, every [`GAUGE_REFRESH`]: the gauges from the shared records, so
    /// they settle even when the last writer's gauge update raced another worker's.
    /// First each cluster's batched successes and idle leases go back to the record.
    pub fn refresh_gauges(&self, host: &impl Host) {
        for cluster in &self.guarded {
            let settled = {
                let mut local = cluster.local.borrow_mut();
                let rng = &mut self.rng.borrow_mut();
                worker::settle(host, &cluster.key, &cluster.policy, &mut local, rng)
            };
            match settled {
                Ok(Some(step)) => self.count_retries(host, step.cas_retries),
                Ok(None) => {}
                Err(err) => self.failed_update(host, cluster, err),
            }
            if let Ok(Some(bytes)) = shared::read(host, &cluster.key) {
                cluster.stats.show(host, &decode(&bytes));
            }
        }
    }

    /// Admit the request to its guarded cluster or fail fast (then the reply is sent).
    pub fn on_request_headers(&self, req: &impl Host) -> Gate {
        let Some((index, cluster)) = self.guarded(req) else {
            return Gate::Unguarded;
        };
        let admitted = {
            let mut local = cluster.local.borrow_mut();
            worker::admit(req, &cluster.key, &cluster.policy, &mut local)
        };
        let (rejection, phase) = match admitted {
            Ok(step) => {
                self.count_retries(req, step.cas_retries);
                cluster.report_step(req, &step);
                match step.value {
                    Admit::Admitted(held) => {
                        if held.ticket.probe {
                            cluster.stats.probes.inc(req);
                        }
                        mark(req, step.phase, false);
                        return Gate::Admitted(Slot { index, held });
                    }
                    Admit::Rejected(rejection) => (Some(rejection), step.phase),
                }
            }
            // Never seeded: the breaker cannot guard this cluster; let the request through.
            Err(err @ SharedError::Missing) => {
                self.failed_update(req, cluster, err);
                return Gate::Unguarded;
            }
            // Could not take a slot: fail safe, the cap must hold.
            Err(err) => {
                self.failed_update(req, cluster, err);
                (None, None)
            }
        };
        let stats = &cluster.stats;
        if cluster.policy.dry_run {
            // Nothing was taken (a rejection holds no slot): pass it on unguarded.
            stats.would_fail_fast.inc(req);
            mark(req, phase, true);
            return Gate::Unguarded;
        }
        mark(req, phase, false);
        stats.rejections.inc(req);
        match rejection {
            Some(Rejection::Open) => stats.rejected_open.inc(req),
            Some(Rejection::HalfOpenFull) => stats.rejected_half_open.inc(req),
            Some(Rejection::Overflow) | None => stats.rejected_overflow.inc(req),
        }
        let reason = rejection.map_or("contended", Rejection::header_value);
        let headers = [(HEADER.to_string(), reason.to_string())];
        let body = format!(
            "upstream {} unavailable: circuit breaker {reason}\n",
            cluster.name
        );
        let why = format!(
            "breaker: {} fail-fast for cluster {}: {reason}",
            cluster.policy.reject_status, cluster.name
        );
        req.set_property(DECISION_PROPERTY, why.as_bytes());
        req.send_local_reply(cluster.policy.reject_status, &headers, &body);
        Gate::Rejected
    }

    /// From the request's `on_log`: its outcome, and the slot back.
    pub fn on_log(&self, host: &impl Host, slot: Slot) {
        let Some(cluster) = self.guarded.get(slot.index) else {
            return;
        };
        let code = host.property_u64(&["response", "code"]).unwrap_or(0);
        // The flags only matter when the code did not already decide.
        let flags = if cluster.policy.needs_flags(code) {
            host.property_u64(&["response", "flags"]).unwrap_or(0)
        } else {
            0
        };
        let outcome = cluster.policy.classify(code, flags);
        log::debug!(
            "weft-breaker: {}: ended {code} flags {flags:#x}: {outcome:?}",
            cluster.name
        );
        let released = {
            let mut local = cluster.local.borrow_mut();
            let rng = &mut self.rng.borrow_mut();
            worker::release(
                host,
                &cluster.key,
                &cluster.policy,
                &mut local,
                slot.held,
                outcome,
                rng,
            )
        };
        match released {
            Ok(step) => {
                self.count_retries(host, step.cas_retries);
                cluster.report_step(host, &step);
            }
            Err(err) => self.failed_update(host, cluster, err),
        }
    }

    /// CAS retries into their counter; none (the usual case) costs no host call.
    fn count_retries(&self, host: &impl Host, retries: u32) {
        if retries > 0 {
            self.cas_retries.add(host, i64::from(retries));
        }
    }

    fn failed_update(&self, host: &impl Host, cluster: &Guarded, err: SharedError) {
        match err {
            SharedError::Missing => self.unseeded.inc(host),
            SharedError::Contended { .. } => self.cas_exhausted.inc(host),
            SharedError::Host(_) => {}
        }
        log::warn!(
            "weft-breaker: {}: shared state {}: {err:?}",
            cluster.name,
            cluster.key
        );
    }
}

/// Tells telemetry the phase this request's admission saw (see [`BREAKER_PROPERTY`]).
fn mark(req: &impl Host, phase: Option<Phase>, would_fail_fast: bool) {
    let mark = BreakerMark {
        phase,
        would_fail_fast,
    };
    if mark != BreakerMark::default() {
        req.set_property(BREAKER_PROPERTY, mark.encode().as_bytes());
    }
}

fn decode(bytes: &[u8]) -> BreakerState {
    // A record this build cannot read (a different format version) starts over as closed.
    BreakerState::decode(bytes).unwrap_or_default()
}
