//! Delaying requests on the root context's tick.
//!
//! proxy-wasm has no per-request timer. An HTTP context that wants to hold its request
//! returns `Pause` after [`TickScheduler::pause`]; the root context calls
//! [`TickScheduler::take_due`] from `on_tick` and resumes each due request with
//! [`resume_after`] (or answers it with [`reply_for`]). The due-time bookkeeping is the
//! host-free `weft_filter_core::fault::DelaySchedule`; this adds the host actions, through
//! the [`Host`] trait.
//!
//! The tick runs only while something is pending: it is armed (at the period computed from
//! the configured delays) when the first request is paused and disarmed on the first tick
//! that finds the set empty, so an idle worker pays nothing for it.

use std::time::Duration;
use weft_filter_core::fault::{AbortReply, DelaySchedule};
use weft_filter_core::host::{Gauge, HostError};
use weft_filter_core::telemetry::DECISION_PROPERTY;
use weft_filter_core::Host;

/// Requests paused until a due time, per root context (one per worker thread).
#[derive(Debug)]
pub struct TickScheduler<T> {
    root_context_id: u32,
    schedule: DelaySchedule<T>,
    period: Option<Duration>,
    armed: bool,
    pending_gauge: Option<Gauge>,
}

// === impl TickScheduler ===

impl<T> TickScheduler<T> {
    /// `period_ms`: the tick while something is pending; `None` when this filter can never
    /// delay (then no tick is ever set). `pending_gauge` mirrors the pending count
    /// (summed over workers, so it is moved by +1/-1, never set).
    pub fn new(root_context_id: u32, period_ms: Option<u64>, pending_gauge: Option<Gauge>) -> Self {
        Self {
            root_context_id,
            schedule: DelaySchedule::new(),
            period: period_ms.map(Duration::from_millis),
            armed: false,
            pending_gauge,
        }
    }

    pub fn len(&self) -> usize {
        self.schedule.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedule.is_empty()
    }

    /// From HTTP context `context_id`'s callback: hold it until `now_ms + delay_ms` (host
    /// milliseconds). Returns false (and holds nothing) when this scheduler has no tick or
    /// the tick cannot be set, so the caller must not pause.
    pub fn pause(
        &mut self,
        host: &impl Host,
        context_id: u32,
        now_ms: u64,
        delay_ms: u64,
        payload: T,
    ) -> bool {
        let Some(period) = self.period else {
            return false;
        };
        let replaced = self.schedule.contains(context_id);
        self.schedule.pause(context_id, now_ms, delay_ms, payload);
        if !replaced {
            self.gauge_add(host, 1);
        }
        if !self.armed {
            if let Err(err) = self.arm(host, context_id, period) {
                log::error!("weft: cannot set the tick period: {err}");
                self.schedule.cancel(context_id);
                self.gauge_add(host, -1);
                return false;
            }
            self.armed = true;
        }
        true
    }

    /// The tick belongs to the root context, so set it as the root, then act as
    /// `context_id` again for the rest of its callback.
    fn arm(&self, host: &impl Host, context_id: u32, period: Duration) -> Result<(), HostError> {
        host.set_effective_context(self.root_context_id)?;
        let armed = host.set_tick_period(period);
        host.set_effective_context(context_id)?;
        armed
    }

    /// Forget `context_id` (its stream ended, e.g. the client went away while it was
    /// held); its payload if it was still pending.
    pub fn cancel(&mut self, host: &impl Host, context_id: u32) -> Option<T> {
        let payload = self.schedule.cancel(context_id)?;
        self.gauge_add(host, -1);
        Some(payload)
    }

    /// From the root's `on_tick`, before anything switches context: everything due at
    /// `now_ms`, earliest first. Disarms the tick once nothing is left. Release any borrow
    /// of the scheduler before acting on the result: resuming a request can call back
    /// into its HTTP context.
    pub fn take_due(&mut self, host: &impl Host, now_ms: u64) -> Vec<(u32, T)> {
        let due = self.schedule.take_due(now_ms);
        self.gauge_add(host, -i64::try_from(due.len()).unwrap_or(i64::MAX));
        if self.schedule.is_empty() && self.armed {
            match host.set_tick_period(Duration::ZERO) {
                Ok(()) => self.armed = false,
                Err(err) => log::warn!("weft: cannot stop the tick: {err}"),
            }
        }
        due
    }

    fn gauge_add(&self, host: &impl Host, n: i64) {
        if let Some(gauge) = self.pending_gauge {
            gauge.add(host, n);
        }
    }
}

/// Continue a paused request from the root context. False when the request is gone
/// (the host answers `NotFound` for a context whose client disconnected): not an error.
pub fn resume(host: &impl Host, context_id: u32) -> bool {
    resume_after(host, context_id, || true)
}

/// From the root context, act as paused request `context_id` (run the stages that follow a
/// delay), then resume it if `act` says so (false: `act` answered it locally). False when
/// the request is gone.
pub fn resume_after(host: &impl Host, context_id: u32, act: impl FnOnce() -> bool) -> bool {
    with_effective_context(host, context_id, || {
        if act() {
            host.resume_http_request()
        } else {
            Ok(())
        }
    })
}

/// Answer a paused request locally from the root context (an abort after a delay), with
/// `why` for the access log.
pub fn reply_for(host: &impl Host, context_id: u32, reply: &AbortReply, why: &str) -> bool {
    with_effective_context(host, context_id, || {
        host.set_property(DECISION_PROPERTY, why.as_bytes());
        host.send_local_reply(reply.status, &reply.headers, &reply.body);
        Ok(())
    })
}

fn with_effective_context(
    host: &impl Host,
    context_id: u32,
    act: impl FnOnce() -> Result<(), HostError>,
) -> bool {
    match host.set_effective_context(context_id) {
        Ok(()) => {}
        Err(HostError::NotFound) => return false,
        Err(err) => {
            log::warn!("weft: cannot switch to context {context_id}: {err}");
            return false;
        }
    }
    match act() {
        Ok(()) => true,
        Err(err) => {
            log::debug!("weft: context {context_id} could not be resumed: {err}");
            false
        }
    }
}
