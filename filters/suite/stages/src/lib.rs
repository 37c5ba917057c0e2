//! The combined module's pipeline: telemetry, authz, canary, fault and breaker as stages of
//! one HTTP context, in the order of the chain, all acting through the [`Host`] trait.
//!
//! `weft-suite` (the cdylib) only wires proxy-wasm callbacks to [`Stages`] (one per root
//! context), [`SuiteRequest`] (one per HTTP context) and [`Ticks`] (the root's tick); the
//! tests run the whole pipeline against `MockHost`.
//!
//! A stage that answers locally (authz deny, fault abort, breaker fail-fast) stops the later
//! stages. A fault delay holds the request in the root's tick; when it is due, the tick runs
//! the stages after fault (the breaker) as that request and resumes it only if they let it
//! through; the breaker's slot goes back to the request's context for `on_log`. Telemetry
//! records in `on_log`, so it sees requests a later stage answered locally too, and takes
//! authz's outcome from memory instead of a stream property.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use weft_authz_stage::AuthzStage;
use weft_breaker_stage::{BreakerStage, Gate, Slot, GAUGE_REFRESH};
use weft_canary_stage::{CanaryRequest, CanaryStage};
use weft_fault_stage::FaultStage;
use weft_filter_core::host::Flow;
use weft_filter_core::suite::{MemoRequest, Suite};
use weft_filter_core::telemetry::AuthzOutcome;
use weft_filter_core::Host;
use weft_telemetry_stage::TelemetryStage;

/// Where a request's breaker slot lands, shared by its HTTP context (which releases it in
/// `on_log`) and, while the request is delayed, the root's tick (which takes it).
type SlotCell = Rc<Cell<Option<Slot>>>;

/// The enabled stages of one configuration, in run order.
pub struct Stages {
    telemetry: Option<TelemetryStage>,
    authz: Option<AuthzStage>,
    canary: Option<CanaryStage>,
    fault: Option<FaultStage<SlotCell>>,
    breaker: Option<BreakerStage>,
}

// === impl Stages ===

impl Stages {
    /// Each stage defines its stats (and the breaker seeds its records) on `host`.
    pub fn new(suite: Suite, root_context_id: u32, host: &impl Host) -> Self {
        Self {
            telemetry: suite.telemetry.map(|t| TelemetryStage::new(t, host)),
            authz: suite.authz.map(|a| AuthzStage::new(a, host)),
            canary: suite
                .canary
                .map(|c| CanaryStage::new(c, root_context_id, host)),
            fault: suite
                .fault
                .map(|f| FaultStage::new(f, root_context_id, host)),
            breaker: suite
                .breaker
                .map(|b| BreakerStage::new(b, root_context_id, host)),
        }
    }

    /// The stages after fault, as the current request: whether it may continue (false: it
    /// was answered locally). An admitted request's slot goes into `slot`.
    fn after_fault(&self, req: &impl Host, slot: &Cell<Option<Slot>>) -> bool {
        let Some(breaker) = &self.breaker else {
            return true;
        };
        match breaker.on_request_headers(req) {
            Gate::Unguarded => true,
            Gate::Admitted(admitted) => {
                slot.set(Some(admitted));
                true
            }
            Gate::Rejected => false,
        }
    }

    /// From the root's tick: continue the delayed requests due at `now_ms`.
    pub fn release_delayed<H: Host>(&self, host: &H, now_ms: u64) {
        if let Some(fault) = &self.fault {
            fault.release(host, now_ms, |context_id, slot| {
                weft_fault_stage::resume_after(host, context_id, || {
                    self.after_fault(&MemoRequest::new(host), &slot)
                })
            });
        }
    }

    /// From the root's `on_http_call_response`.
    pub fn on_http_call_response(&self, host: &impl Host, token: u32) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.on_http_call_response(host, token);
        }
    }
}

/// The root context's tick: the fault stage's fast tick while it holds requests, otherwise
/// the slow tick of the breaker's gauge refresh and the telemetry flush.
#[derive(Debug, Default)]
pub struct Ticks {
    /// The tick while no request is delayed: the shorter of the breaker's gauge refresh and
    /// the telemetry flush; `None`: no tick then.
    slow_tick: Option<Duration>,
    /// Host time of the next breaker gauge refresh.
    gauges_due_ms: u64,
    /// Host time of the next telemetry report.
    flush_due_ms: u64,
}

/// `now + period`, in host milliseconds.
fn due_after(now_ms: u64, period: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX))
}

// === impl Ticks ===

impl Ticks {
    /// From `on_configure`: the slow tick of `stages`, set on the host if there is one.
    pub fn configure(&mut self, host: &impl Host, stages: &Stages) {
        let gauges = stages.breaker.as_ref().map(|_| GAUGE_REFRESH);
        let flush = stages
            .telemetry
            .as_ref()
            .and_then(TelemetryStage::flush_period);
        self.slow_tick = match (gauges, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(period) = self.slow_tick {
            if let Err(err) = host.set_tick_period(period) {
                log::error!("weft-suite: cannot set the tick period: {err}");
            }
        }
    }

    /// From `on_tick` at host time `now`.
    pub fn on_tick<H: Host>(&mut self, host: &H, stages: &Stages, now: u64) {
        stages.release_delayed(host, now);
        // The fault stage ticks fast while it holds requests, and stops the tick when it lets
        // the last one go: the slow tick (breaker gauges, telemetry reports) takes over again.
        if let Some(period) = self.slow_tick {
            if stages.fault.as_ref().is_some_and(|f| !f.is_holding()) {
                if let Err(err) = host.set_tick_period(period) {
                    log::error!("weft-suite: cannot set the tick period: {err}");
                }
            }
        }
        if let Some(breaker) = &stages.breaker {
            if now >= self.gauges_due_ms {
                breaker.refresh_gauges(host);
                self.gauges_due_ms = due_after(now, GAUGE_REFRESH);
            }
        }
        if let Some(telemetry) = &stages.telemetry {
            if let Some(period) = telemetry.flush_period() {
                if now >= self.flush_due_ms {
                    telemetry.flush(host);
                    self.flush_due_ms = due_after(now, period);
                }
            }
        }
    }
}

/// One request as the suite's HTTP context keeps it between callbacks.
pub struct SuiteRequest {
    context_id: u32,
    canary: CanaryRequest,
    slot: SlotCell,
    /// The authz stage's outcome, for the telemetry stage (`None`: authz did not run here).
    authz: Option<AuthzOutcome>,
}

// === impl SuiteRequest ===

impl SuiteRequest {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            canary: CanaryRequest::default(),
            slot: SlotCell::default(),
            authz: None,
        }
    }

    /// The stages in order over one shared view of the request, so each attribute is read
    /// from the host once and the breaker sees the canary's cluster header without a read.
    pub fn on_request_headers<H: Host>(
        &mut self,
        stages: &Stages,
        host: &H,
        end_of_stream: bool,
    ) -> Flow {
        let req = MemoRequest::new(host);
        if let Some(authz) = &stages.authz {
            // The property is only for a telemetry filter outside this module.
            let (flow, outcome) = authz.decide(&req, stages.telemetry.is_none());
            self.authz = Some(outcome);
            if flow == Flow::Pause {
                return Flow::Pause;
            }
        }
        if let Some(canary) = &stages.canary {
            canary.on_request_headers(&mut self.canary, &req, end_of_stream);
        }
        if let Some(fault) = &stages.fault {
            // Paused: answered, or held until the tick runs the breaker and resumes it.
            let slot = &self.slot;
            if fault.on_request_headers(self.context_id, &req, || Rc::clone(slot)) == Flow::Pause {
                return Flow::Pause;
            }
        }
        if stages.after_fault(&req, &self.slot) {
            Flow::Continue
        } else {
            Flow::Pause
        }
    }

    pub fn on_request_body(
        &mut self,
        stages: &Stages,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) {
        if let Some(canary) = &stages.canary {
            canary.on_request_body(host, &mut self.canary, body_size, end_of_stream);
        }
    }

    pub fn on_request_trailers(&mut self, stages: &Stages, host: &impl Host) {
        if let Some(canary) = &stages.canary {
            canary.on_request_trailers(host, &mut self.canary);
        }
    }

    /// The cohort response header to add, once: `(name, version)`.
    pub fn take_response_header(&mut self) -> Option<(String, String)> {
        self.canary.take_response_header()
    }

    /// The breaker's slot back, then the telemetry record of every request, including those
    /// a stage answered locally (deny, abort, fail-fast).
    pub fn on_log(&mut self, stages: &Stages, host: &impl Host) {
        if let (Some(breaker), Some(slot)) = (&stages.breaker, self.slot.take()) {
            breaker.on_log(host, slot);
        }
        if let Some(telemetry) = &stages.telemetry {
            telemetry.on_log(host, self.authz);
        }
    }

    /// The stream ended: a request still delayed had its client go away.
    pub fn on_done(&self, stages: &Stages, host: &impl Host) {
        if let Some(fault) = &stages.fault {
            fault.on_done(host, self.context_id);
        }
    }
}
