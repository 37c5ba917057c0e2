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
use weft_filter_core::suite::{Carried, MemoRequest, Suite};
use weft_filter_core::telemetry::AuthzOutcome;
use weft_filter_core::Host;
use weft_telemetry_stage::TelemetryStage;
use weft_waf_stage::{WafRequest, WafStage};

/// The longest a held counter increment waits for the root's tick (D106).
pub const COUNTER_FLUSH: Duration = Duration::from_secs(1);

/// Where a request's breaker slot lands, shared by its HTTP context (which releases it in
/// `on_log`) and, while the request is delayed, the root's tick (which takes it).
type SlotCell = Rc<Cell<Option<Slot>>>;

/// The enabled stages of one configuration, in run order.
pub struct Stages {
    waf: Option<WafStage>,
    telemetry: Option<TelemetryStage>,
    authz: Option<AuthzStage>,
    canary: Option<CanaryStage>,
    fault: Option<FaultStage<SlotCell>>,
    breaker: Option<BreakerStage>,
    /// A filter outside this module may read the stages' marks ([`Suite::publish_marks`]):
    /// write them to the host. Otherwise they stay in memory, for the telemetry stage here or
    /// for no one.
    publish_marks: bool,
}

// === impl Stages ===

impl Stages {
    /// Each stage defines its stats (and the breaker seeds its records) on `host`.
    pub fn new(suite: Suite, root_context_id: u32, host: &impl Host) -> Self {
        Self {
            publish_marks: suite.publish_marks,
            waf: suite.waf.map(|w| WafStage::new(w, host)),
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
                    self.after_fault(&self.view(host, false), &slot)
                })
            });
        }
    }

    /// A view of the current request for the stages. The marks they write stay in its
    /// memory when no filter outside this module reads them and the telemetry stage here, if
    /// any, sees this view's writes (`carried_to_log`: it is carried to `on_log`); otherwise
    /// they go to the host, where `on_log` reads them back.
    fn view<H: Host>(&self, host: H, carried_to_log: bool) -> MemoRequest<H> {
        let view = MemoRequest::new(host);
        if !self.publish_marks && (carried_to_log || self.telemetry.is_none()) {
            view.keep_marks()
        } else {
            view
        }
    }

    /// From the root's `on_http_call_response`.
    pub fn on_http_call_response(&self, host: &impl Host, token: u32) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.on_http_call_response(host, token);
        }
    }

    /// From the root's `on_done` (a new configuration retires this root): delayed requests
    /// go on, and the telemetry pending since the last tick is reported now; true when the
    /// root must stay until that report's answer ([`Self::reporting`]).
    pub fn on_root_done(&self, host: &impl Host) -> bool {
        self.release_delayed(host, u64::MAX);
        self.telemetry.as_ref().is_some_and(|t| t.flush_final(host))
    }

    /// A telemetry report is on its way.
    pub fn reporting(&self) -> bool {
        self.telemetry
            .as_ref()
            .is_some_and(TelemetryStage::reporting)
    }
}

/// The root context's tick: the fault stage's fast tick while it holds requests, otherwise
/// the slow tick of the breaker's gauge refresh, the telemetry flush and (in a module that
/// holds counter increments) the counter flush.
#[derive(Debug, Default)]
pub struct Ticks {
    /// The tick while no request is delayed: the shorter of the breaker's gauge refresh,
    /// the telemetry flush and the counter flush; `None`: no tick then.
    slow_tick: Option<Duration>,
    /// The module holds counter increments (D106): tick at least every [`COUNTER_FLUSH`].
    counter_flush: bool,
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
    /// For a module that holds counter increments until its tick (D106): the slow tick is
    /// never longer than [`COUNTER_FLUSH`], whatever the stages.
    pub fn with_counter_flush() -> Self {
        Self {
            counter_flush: true,
            ..Self::default()
        }
    }

    /// From `on_configure`: the slow tick of `stages`, set on the host if there is one.
    pub fn configure(&mut self, host: &impl Host, stages: &Stages) {
        let gauges = stages.breaker.as_ref().map(|_| GAUGE_REFRESH);
        let flush = stages
            .telemetry
            .as_ref()
            .and_then(TelemetryStage::flush_period);
        let counters = self.counter_flush.then_some(COUNTER_FLUSH);
        self.slow_tick = [gauges, flush, counters].into_iter().flatten().min();
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
    /// What the request headers' view read, for `on_log`'s.
    carried: Carried,
    /// The explain trace for the response (a valid explain token came in).
    trace: Option<String>,
    waf: WafRequest,
}

// === impl SuiteRequest ===

impl SuiteRequest {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            canary: CanaryRequest::default(),
            slot: SlotCell::default(),
            authz: None,
            carried: Carried::default(),
            trace: None,
            waf: WafRequest::default(),
        }
    }

    /// The WAF first (a refusal stops the others), then the stages in order over one shared
    /// view of the request, so each attribute is read from the host once and the breaker sees
    /// the canary's cluster header without a read.
    pub fn on_request_headers<H: Host>(
        &mut self,
        stages: &Stages,
        host: &H,
        end_of_stream: bool,
    ) -> Flow {
        if let Some(waf) = &stages.waf {
            if waf.on_request_headers(&mut self.waf, host, end_of_stream) == Flow::Pause {
                return Flow::Pause;
            }
        }
        let req = stages.view(host, true);
        let flow = self.run_stages(stages, &req, end_of_stream);
        self.carried = req.into_carried();
        flow
    }

    fn run_stages<H: Host>(
        &mut self,
        stages: &Stages,
        req: &MemoRequest<&H>,
        end_of_stream: bool,
    ) -> Flow {
        if let Some(authz) = &stages.authz {
            // The property is only for a telemetry filter outside this module.
            let (flow, outcome, trace) = authz.decide_explained(req, stages.publish_marks);
            self.authz = Some(outcome);
            self.trace = trace;
            if flow == Flow::Pause {
                return Flow::Pause;
            }
        }
        if let Some(canary) = &stages.canary {
            canary.on_request_headers(&mut self.canary, req, end_of_stream);
        }
        if let Some(fault) = &stages.fault {
            // Paused: answered, or held until the tick runs the breaker and resumes it.
            let slot = &self.slot;
            if fault.on_request_headers(self.context_id, req, || Rc::clone(slot)) == Flow::Pause {
                return Flow::Pause;
            }
        }
        if stages.after_fault(req, &self.slot) {
            Flow::Continue
        } else {
            Flow::Pause
        }
    }

    /// A body chunk: the WAF's (holding, judging or counting it; `Pause` holds it or follows
    /// a refusal), then the canary's mirror.
    pub fn on_request_body<H: Host>(
        &mut self,
        stages: &Stages,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        if let Some(waf) = &stages.waf {
            if waf.on_request_body(&mut self.waf, host, body_size, end_of_stream) == Flow::Pause {
                return Flow::Pause;
            }
        }
        if let Some(canary) = &stages.canary {
            canary.on_request_body(host, &mut self.canary, body_size, end_of_stream);
        }
        Flow::Continue
    }

    pub fn on_request_trailers<H: Host>(&mut self, stages: &Stages, host: &H) -> Flow {
        if let Some(waf) = &stages.waf {
            if waf.on_request_trailers(&mut self.waf, host) == Flow::Pause {
                return Flow::Pause;
            }
        }
        if let Some(canary) = &stages.canary {
            canary.on_request_trailers(host, &mut self.canary);
        }
        Flow::Continue
    }

    /// The explain trace response header to write: `Some(None)` removes an app's copy,
    /// `Some(Some(trace))` sets weft's; `None` when authz does not explain here.
    pub fn take_trace_header(&mut self, stages: &Stages) -> Option<Option<String>> {
        let explains = stages.authz.as_ref().is_some_and(AuthzStage::explains);
        explains.then(|| self.trace.take())
    }

    /// The cohort response header to add, once: `(name, version)`.
    pub fn take_response_header(&mut self) -> Option<(String, String)> {
        self.canary.take_response_header()
    }

    /// The breaker's slot back, then the telemetry record of every request, including those
    /// a stage answered locally (deny, abort, fail-fast).
    /// Both read through one view, which starts from what the request headers' view read:
    /// `response.code` once for the two, the pseudo-headers and the peer not again.
    pub fn on_log(&mut self, stages: &Stages, host: &impl Host) {
        let view = MemoRequest::with_carried(host, std::mem::take(&mut self.carried));
        if let (Some(breaker), Some(slot)) = (&stages.breaker, self.slot.take()) {
            breaker.on_log(&view, slot);
        }
        if let Some(telemetry) = &stages.telemetry {
            telemetry.on_log(&view, self.authz);
        }
    }

    /// The stream ended: a request still delayed had its client go away.
    pub fn on_done(&self, stages: &Stages, host: &impl Host) {
        if let Some(fault) = &stages.fault {
            fault.on_done(host, self.context_id);
        }
    }
}
