//! weft suite: telemetry, authz, canary, fault and breaker in one module — one VM per worker
//! and one HTTP context per request instead of one of each per filter.
//!
//! Every wasm filter in a chain pays the host crossing again (D14); here the filters run as
//! stages of one HTTP context, in the order of the chain: telemetry, authz, canary, fault,
//! breaker. Each stage is the standalone filter's own code (`weft_authz_stage::AuthzStage`, ...),
//! configured by its own section of `{"telemetry": .., "authz": .., "canary": .., "fault": ..,
//! "breaker": ..}` (`weft_filter_core::suite`); an absent section turns the stage off.
//! Telemetry records in `on_log`, so it sees requests a later stage answered locally too, and
//! takes authz's outcome from memory instead of a stream property. The stages of one
//! request share one view of it (`MemoRequest`), so each header or property is read from the
//! host once, and the breaker sees the canary's cluster header without reading it back.
//!
//! A stage that answers locally (authz deny, fault abort, breaker fail-fast) stops the later
//! stages. A fault delay holds the request in the root's tick; when it is due, the tick runs
//! the stages after fault (the breaker) as that request and resumes it only if they let it
//! through; the breaker's slot goes back to the request's context for `on_log`.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
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
use weft_proxy_glue::{self as glue, HostRequest};
use weft_telemetry_stage::TelemetryStage;

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(SuiteRoot { context_id, stages: None, slow_tick: None, gauges_due_ms: 0, flush_due_ms: 0 })
    });
}}

/// Where a request's breaker slot lands, shared by its HTTP context (which releases it in
/// `on_log`) and, while the request is delayed, the root's tick (which takes it).
type SlotCell = Rc<Cell<Option<Slot>>>;

/// The enabled stages of one configuration, in run order.
struct Stages {
    telemetry: Option<TelemetryStage>,
    authz: Option<AuthzStage>,
    canary: Option<CanaryStage>,
    fault: Option<FaultStage<SlotCell>>,
    breaker: Option<BreakerStage>,
}

// === impl Stages ===

impl Stages {
    fn new(suite: Suite, root_context_id: u32) -> Self {
        Self {
            telemetry: suite
                .telemetry
                .map(|t| TelemetryStage::new(t, &HostRequest)),
            authz: suite.authz.map(|a| AuthzStage::new(a, &HostRequest)),
            canary: suite
                .canary
                .map(|c| CanaryStage::new(c, root_context_id, &HostRequest)),
            fault: suite
                .fault
                .map(|f| FaultStage::new(f, root_context_id, &HostRequest)),
            breaker: suite
                .breaker
                .map(|b| BreakerStage::new(b, root_context_id, &HostRequest)),
        }
    }

    /// The stages after fault, as the current request: whether it may continue (false: it
    /// was answered locally). An admitted request's slot goes into `slot`.
    fn after_fault(&self, req: &MemoRequest<HostRequest>, slot: &Cell<Option<Slot>>) -> bool {
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
    fn release_delayed(&self, now_ms: u64) {
        if let Some(fault) = &self.fault {
            fault.release(&HostRequest, now_ms, |context_id, slot| {
                weft_fault_stage::resume_after(&HostRequest, context_id, || {
                    self.after_fault(&MemoRequest::new(HostRequest), &slot)
                })
            });
        }
    }
}

struct SuiteRoot {
    context_id: u32,
    stages: Option<Rc<Stages>>,
    /// The tick while no request is delayed: the shorter of the breaker's gauge refresh and
    /// the telemetry flush; `None`: no tick then.
    slow_tick: Option<Duration>,
    /// Host time of the next breaker gauge refresh.
    gauges_due_ms: u64,
    /// Host time of the next telemetry report.
    flush_due_ms: u64,
}

impl Context for SuiteRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _t: usize) {
        if let Some(telemetry) = self.stages.as_ref().and_then(|s| s.telemetry.as_ref()) {
            telemetry.on_http_call_response(&HostRequest, token);
        }
    }
}

/// `now + period`, in host milliseconds.
fn due_after(now_ms: u64, period: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX))
}

impl RootContext for SuiteRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(suite) = glue::load_plugin_config("suite", Suite::from_json) else {
            return false;
        };
        let enabled = suite.enabled();
        // Envoy makes a new root context per configuration, so this is a safety net: never
        // strand requests held under a configuration this root is about to forget.
        if let Some(previous) = self.stages.take() {
            previous.release_delayed(u64::MAX);
        }
        let stages = Stages::new(suite, self.context_id);
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
            self.set_tick_period(period);
        }
        self.stages = Some(Rc::new(stages));
        log::info!("weft-suite: configured, stages [{}]", enabled.join(", "));
        true
    }

    fn on_tick(&mut self) {
        let Some(stages) = self.stages.clone() else {
            return;
        };
        let now = glue::now_millis();
        stages.release_delayed(now);
        // The fault stage ticks fast while it holds requests, and stops the tick when it lets
        // the last one go: the slow tick (breaker gauges, telemetry reports) takes over again.
        if let Some(period) = self.slow_tick {
            if stages.fault.as_ref().is_some_and(|f| !f.is_holding()) {
                self.set_tick_period(period);
            }
        }
        if let Some(breaker) = &stages.breaker {
            if now >= self.gauges_due_ms {
                breaker.refresh_gauges(&HostRequest);
                self.gauges_due_ms = due_after(now, GAUGE_REFRESH);
            }
        }
        if let Some(telemetry) = &stages.telemetry {
            if let Some(period) = telemetry.flush_period() {
                if now >= self.flush_due_ms {
                    telemetry.flush(&HostRequest);
                    self.flush_due_ms = due_after(now, period);
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self.stages.clone()?;
        Some(Box::new(SuiteHttp {
            context_id,
            stages,
            canary: CanaryRequest::default(),
            slot: SlotCell::default(),
            authz: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct SuiteHttp {
    context_id: u32,
    stages: Rc<Stages>,
    canary: CanaryRequest,
    slot: SlotCell,
    /// The authz stage's outcome, for the telemetry stage (`None`: authz did not run here).
    authz: Option<AuthzOutcome>,
}

impl Context for SuiteHttp {
    fn on_done(&mut self) -> bool {
        if let Some(fault) = &self.stages.fault {
            fault.on_done(&HostRequest, self.context_id);
        }
        true
    }
}

impl HttpContext for SuiteHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let stages = &self.stages;
        let req = MemoRequest::new(HostRequest);
        if let Some(authz) = &stages.authz {
            // The property is only for a telemetry filter outside this module.
            let (action, outcome) = authz.decide(&req, stages.telemetry.is_none());
            self.authz = Some(outcome);
            if action == Flow::Pause {
                return Action::Pause;
            }
        }
        if let Some(canary) = &stages.canary {
            canary.on_request_headers(&mut self.canary, &req, end_of_stream);
        }
        if let Some(fault) = &stages.fault {
            // Paused: answered, or held until the tick runs the breaker and resumes it.
            let slot = &self.slot;
            if fault.on_request_headers(self.context_id, &req, || Rc::clone(slot)) == Flow::Pause {
                return Action::Pause;
            }
        }
        if stages.after_fault(&req, &self.slot) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(canary) = &self.stages.canary {
            canary.on_request_body(&HostRequest, &mut self.canary, body_size, end_of_stream);
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if let Some(canary) = &self.stages.canary {
            canary.on_request_trailers(&HostRequest, &mut self.canary);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some((header, version)) = self.canary.take_response_header() {
            self.set_http_response_header(&header, Some(&version));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let (Some(breaker), Some(slot)) = (&self.stages.breaker, self.slot.take()) {
            breaker.on_log(&HostRequest, slot);
        }
        // Every request, including those a stage answered locally (deny, abort, fail-fast).
        if let Some(telemetry) = &self.stages.telemetry {
            telemetry.on_log(&HostRequest, self.authz);
        }
    }
}
