//! weft fault: injects aborts and delays into matching requests, within safety limits.
//!
//! The decision lives in `weft_filter_core::fault`; [`FaultStage`] counts the outcome, sends
//! abort replies and holds delayed requests in the root context's [`TickScheduler`] until a
//! tick releases them. A held request carries a payload `P`: what to do when it is due
//! (the standalone module `filters/fault` just resumes it; `weft-suite` first runs its
//! later stages). Everything goes through the [`Host`] trait, so the tests run it against
//! `MockHost`, ticks and all.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;
mod tick;

pub use tick::{reply_for, resume, resume_after, TickScheduler};

use std::cell::RefCell;
use weft_filter_core::fault::{AbortReply, Fault, FaultLoad, Skip};
use weft_filter_core::host::{stat_segment, Counter, Flow, Gauge};
use weft_filter_core::registry::Filter;
use weft_filter_core::rng::Rng;
use weft_filter_core::suite::MemoRequest;
use weft_filter_core::telemetry::{FaultMarks, DECISION_PROPERTY, FAULT_PROPERTY};
use weft_filter_core::Host;

/// One outcome, counted in total and per policy (indexed like the configured policies).
struct Outcome {
    total: Counter,
    by_policy: Vec<Counter>,
}

impl Outcome {
    fn new(host: &impl Host, outcome: &str, policies: &[String]) -> Self {
        let by_policy = policies
            .iter()
            .map(|p| {
                Counter::new(
                    host,
                    &format!(
                        "{}policy.{}.{outcome}",
                        Filter::Fault.stats_prefix(),
                        stat_segment(p)
                    ),
                )
            })
            .collect();
        Self {
            total: Counter::new(host, &format!("{}{outcome}", Filter::Fault.stats_prefix())),
            by_policy,
        }
    }

    fn count(&self, host: &impl Host, policy: usize) {
        self.total.inc(host);
        if let Some(counter) = self.by_policy.get(policy) {
            counter.inc(host);
        }
    }
}

struct Stats {
    aborts: Outcome,
    delays: Outcome,
    skipped_by_cap: Outcome,
    skipped_by_max_active: Outcome,
    skipped_by_max_percent: Outcome,
    skipped_expired: Outcome,
    /// What dry-run policies would have injected (nothing is).
    would_abort: Outcome,
    would_delay: Outcome,
    /// Delayed requests whose client went away before they were resumed.
    delays_cancelled: Counter,
}

/// What to do with a delayed request when it is due.
struct Held<P> {
    policy: usize,
    abort: Option<AbortReply>,
    then: P,
}

/// The fault filter of one root context (one per worker): the compiled config, its stats,
/// the pending set.
pub struct FaultStage<P> {
    fault: Fault,
    stats: Stats,
    scheduler: RefCell<TickScheduler<Held<P>>>,
    /// The running counts of the policies' `max_active` / `max_percent`.
    load: RefCell<FaultLoad>,
    rng: RefCell<Rng>,
}

// === impl FaultStage ===

impl<P> FaultStage<P> {
    /// Defines the stats (from `on_configure` of root context `root_context_id`, whose tick
    /// releases the delayed requests).
    pub fn new(fault: Fault, root_context_id: u32, host: &impl Host) -> Self {
        let names: Vec<String> = fault.policy_names().map(str::to_string).collect();
        let stats = Stats {
            aborts: Outcome::new(host, "aborts_injected", &names),
            delays: Outcome::new(host, "delays_injected", &names),
            skipped_by_cap: Outcome::new(host, "skipped_by_cap", &names),
            skipped_by_max_active: Outcome::new(host, "skipped_by_max_active", &names),
            skipped_by_max_percent: Outcome::new(host, "skipped_by_max_percent", &names),
            skipped_expired: Outcome::new(host, "skipped_expired", &names),
            would_abort: Outcome::new(host, "would_abort", &names),
            would_delay: Outcome::new(host, "would_delay", &names),
            delays_cancelled: Counter::new(host, &Filter::Fault.stat("delays_cancelled")),
        };
        let tick = fault.tick_period_ms();
        let pending = Gauge::new(host, &Filter::Fault.stat("delays_pending"));
        let scheduler = TickScheduler::new(root_context_id, tick, Some(pending));
        log::info!(
            "weft-fault: configured with {} policies, tick {} ms while delaying",
            names.len(),
            tick.unwrap_or(0)
        );
        let rng = Rng::new(host.seed(root_context_id));
        Self {
            fault,
            stats,
            scheduler: RefCell::new(scheduler),
            load: RefCell::new(FaultLoad::new()),
            rng: RefCell::new(rng),
        }
    }

    /// Decide request `context_id`: `Continue`; or `Pause`, either after sending an abort
    /// or holding it with payload `then()` until [`release`](Self::release) finds it due.
    pub fn on_request_headers<H: Host>(
        &self,
        context_id: u32,
        req: &MemoRequest<H>,
        then: impl FnOnce() -> P,
    ) -> Flow {
        // The clock is needed for expiring policies and for scheduling a delay only.
        let now = self.fault.needs_time().then(|| req.now_millis());
        let pending = self.scheduler.borrow().len();
        let decision = self.fault.decide_with(
            req,
            now.unwrap_or(0),
            pending,
            &mut self.load.borrow_mut(),
            &mut self.rng.borrow_mut(),
        );
        for (policy, skip) in &decision.skipped {
            match skip {
                Skip::Expired => self.stats.skipped_expired.count(req, *policy),
                Skip::DelayCap => self.stats.skipped_by_cap.count(req, *policy),
                Skip::MaxActive => self.stats.skipped_by_max_active.count(req, *policy),
                Skip::MaxPercent => self.stats.skipped_by_max_percent.count(req, *policy),
            }
        }
        // What telemetry learns of this request (a reply also names itself, see `why`).
        let mut marks = FaultMarks::default();
        if let Some(dry) = decision.dry_run {
            if dry.would_abort {
                self.stats.would_abort.count(req, dry.policy);
            }
            if dry.would_delay {
                self.stats.would_delay.count(req, dry.policy);
            }
            marks.would_abort = dry.would_abort;
            marks.would_delay = dry.would_delay;
        }
        let mark = |marks: FaultMarks| {
            if !marks.is_empty() {
                req.set_property(FAULT_PROPERTY, marks.encode().as_bytes());
            }
        };
        let Some(policy) = decision.policy else {
            mark(marks);
            return Flow::Continue;
        };
        if let Some(delay_ms) = decision.delay_ms {
            let now = now.unwrap_or_else(|| req.now_millis());
            let held = Held {
                policy,
                abort: decision.abort.clone(),
                then: then(),
            };
            if self
                .scheduler
                .borrow_mut()
                .pause(req, context_id, now, delay_ms, held)
            {
                self.load.borrow_mut().delay_started(policy);
                self.stats.delays.count(req, policy);
                mark(FaultMarks {
                    delayed: true,
                    ..marks
                });
                log::debug!("weft-fault: delaying {context_id} by {delay_ms} ms ({policy})");
                return Flow::Pause;
            }
        }
        mark(marks);
        match decision.abort {
            Some(reply) => {
                self.stats.aborts.count(req, policy);
                req.set_property(DECISION_PROPERTY, self.why(policy, reply.status).as_bytes());
                req.send_local_reply(reply.status, &reply.headers, &reply.body);
                Flow::Pause
            }
            None => Flow::Continue,
        }
    }

    /// From the root's `on_tick`: every held request due at `now_ms` is answered with its
    /// abort, or handed to `resume` (with its payload), which continues it and returns
    /// false when the request is gone.
    pub fn release(&self, host: &impl Host, now_ms: u64, mut resume: impl FnMut(u32, P) -> bool) {
        // The borrow ends here: resuming may call back into the request's HTTP context.
        let due = self.scheduler.borrow_mut().take_due(host, now_ms);
        for (context_id, held) in due {
            self.load.borrow_mut().delay_ended(held.policy);
            let done = match &held.abort {
                Some(reply) => {
                    let why = self.why(held.policy, reply.status);
                    reply_for(host, context_id, reply, &why)
                }
                None => resume(context_id, held.then),
            };
            if done && held.abort.is_some() {
                self.stats.aborts.count(host, held.policy);
            } else if !done {
                // Its client went away since on_done could tell us: nothing to do.
                log::debug!("weft-fault: delayed request {context_id} is gone");
            }
        }
    }

    /// The access log's account of an injected abort (see [`DECISION_PROPERTY`]).
    fn why(&self, policy: usize, status: u16) -> String {
        let name = self.fault.policy_names().nth(policy).unwrap_or("?");
        format!("fault: {status} injected by policy {name}")
    }

    /// Whether requests are held (the root must keep ticking).
    pub fn is_holding(&self) -> bool {
        !self.scheduler.borrow().is_empty()
    }

    /// From the request's `on_done`: the stream ended. Still pending means its client
    /// disconnected while delayed: forget it so the tick never touches a dead context.
    pub fn on_done(&self, host: &impl Host, context_id: u32) {
        let cancelled = self.scheduler.borrow_mut().cancel(host, context_id);
        if let Some(held) = cancelled {
            self.load.borrow_mut().delay_ended(held.policy);
            self.stats.delays_cancelled.inc(host);
            log::debug!("weft-fault: delayed request {context_id} cancelled by its client");
        }
    }
}
