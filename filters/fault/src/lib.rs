//! weft fault: injects aborts and delays into matching requests, within safety limits.
//!
//! The decision lives in `weft_filter_core::fault`; this crate reads the request lazily
//! from the host, counts the outcome, sends abort replies and holds delayed requests in
//! the root context's [`TickScheduler`] until a tick resumes them.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use weft_filter_core::fault::{AbortReply, Fault, Skip};
use weft_filter_core::rng::Rng;
use weft_proxy_glue::{
    self as glue, sanitize_stat_segment, Counter, Gauge, HostRequest, TickScheduler,
};

proxy_wasm::main! {{
    glue::init_logging();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(FaultRoot { context_id, shared: None })
    });
}}

/// One outcome, counted in total and per policy (indexed like the configured policies).
struct Outcome {
    total: Counter,
    by_policy: Vec<Counter>,
}

impl Outcome {
    fn new(outcome: &str, policies: &[String]) -> Self {
        let by_policy = policies
            .iter()
            .map(|p| {
                Counter::new(&format!(
                    "weft.fault.policy.{}.{outcome}",
                    sanitize_stat_segment(p)
                ))
            })
            .collect();
        Self {
            total: Counter::new(&format!("weft.fault.{outcome}")),
            by_policy,
        }
    }

    fn count(&self, policy: usize) {
        self.total.inc();
        if let Some(counter) = self.by_policy.get(policy) {
            counter.inc();
        }
    }
}

struct Stats {
    aborts: Outcome,
    delays: Outcome,
    skipped_by_cap: Outcome,
    skipped_expired: Outcome,
    /// Delayed requests whose client went away before they were resumed.
    delays_cancelled: Counter,
}

/// What to do with a delayed request when it is due.
struct Held {
    policy: usize,
    abort: Option<AbortReply>,
}

/// Per root context (one per worker): the compiled config, its stats, the pending set.
struct Shared {
    fault: Fault,
    stats: Stats,
    scheduler: RefCell<TickScheduler<Held>>,
    rng: RefCell<Rng>,
}

struct FaultRoot {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for FaultRoot {}

impl RootContext for FaultRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(fault) = glue::load_plugin_config("fault", Fault::from_json) else {
            return false;
        };
        let names: Vec<String> = fault.policy_names().map(str::to_string).collect();
        let stats = Stats {
            aborts: Outcome::new("aborts_injected", &names),
            delays: Outcome::new("delays_injected", &names),
            skipped_by_cap: Outcome::new("skipped_by_cap", &names),
            skipped_expired: Outcome::new("skipped_expired", &names),
            delays_cancelled: Counter::new("weft.fault.delays_cancelled"),
        };
        let tick = fault.tick_period_ms();
        let pending = Gauge::new("weft.fault.delays_pending");
        let scheduler = TickScheduler::new(self.context_id, tick, Some(pending));
        log::info!(
            "weft-fault: configured with {} policies, tick {} ms while delaying",
            names.len(),
            tick.unwrap_or(0)
        );
        let rng = Rng::new(glue::seed(self.context_id));
        // Envoy makes a new root context per configuration, so this is a safety net: never
        // strand requests held under a configuration this root is about to forget.
        if let Some(previous) = self.shared.take() {
            release(&previous, u64::MAX);
        }
        self.shared = Some(Rc::new(Shared {
            fault,
            stats,
            scheduler: RefCell::new(scheduler),
            rng: RefCell::new(rng),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            release(shared, glue::now_millis());
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(FaultHttp { context_id, shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Resume (or abort) every held request due at `now_ms`.
fn release(shared: &Shared, now_ms: u64) {
    // The borrow ends here: resuming may call back into the request's HTTP context.
    let due = shared.scheduler.borrow_mut().take_due(now_ms);
    for (context_id, held) in due {
        let done = match &held.abort {
            Some(reply) => {
                glue::send_local_reply_for(context_id, reply.status, &reply.headers, &reply.body)
            }
            None => glue::resume_http_request(context_id),
        };
        if done && held.abort.is_some() {
            shared.stats.aborts.count(held.policy);
        } else if !done {
            // Its client went away since on_done could tell us: nothing to do.
            log::debug!("weft-fault: delayed request {context_id} is gone");
        }
    }
}

struct FaultHttp {
    context_id: u32,
    shared: Rc<Shared>,
}

impl Context for FaultHttp {
    fn on_done(&mut self) -> bool {
        // The stream ended. Still pending means its client disconnected while delayed:
        // forget it so the tick never touches a dead context.
        if self
            .shared
            .scheduler
            .borrow_mut()
            .cancel(self.context_id)
            .is_some()
        {
            self.shared.stats.delays_cancelled.inc();
            log::debug!(
                "weft-fault: delayed request {} cancelled by its client",
                self.context_id
            );
        }
        true
    }
}

impl HttpContext for FaultHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let shared = &self.shared;
        // The clock is needed for expiring policies and for scheduling a delay only.
        let now = shared.fault.needs_time().then(glue::now_millis);
        let pending = shared.scheduler.borrow().len();
        let decision = shared.fault.decide(
            &HostRequest,
            now.unwrap_or(0),
            pending,
            &mut shared.rng.borrow_mut(),
        );
        for (policy, skip) in &decision.skipped {
            match skip {
                Skip::Expired => shared.stats.skipped_expired.count(*policy),
                Skip::DelayCap => shared.stats.skipped_by_cap.count(*policy),
            }
        }
        let Some(policy) = decision.policy else {
            return Action::Continue;
        };
        if let Some(delay_ms) = decision.delay_ms {
            let now = now.unwrap_or_else(glue::now_millis);
            let held = Held {
                policy,
                abort: decision.abort.clone(),
            };
            if shared
                .scheduler
                .borrow_mut()
                .pause(self.context_id, now, delay_ms, held)
            {
                shared.stats.delays.count(policy);
                log::debug!(
                    "weft-fault: delaying {} by {delay_ms} ms ({policy})",
                    self.context_id
                );
                return Action::Pause;
            }
        }
        match decision.abort {
            Some(reply) => {
                shared.stats.aborts.count(policy);
                glue::send_local_reply(reply.status, &reply.headers, &reply.body);
                Action::Pause
            }
            None => Action::Continue,
        }
    }
}
