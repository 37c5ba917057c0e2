//! Fault injection decisions: `Fault::decide(&request, now, delays_pending, &mut rng)`.
//!
//! Policies are evaluated in order; the first that matches the request and has not
//! expired decides. A policy that allows it obeys the trigger header when present
//! (injecting exactly what it asks, every time); otherwise abort and delay are each
//! sampled with their percentage. A delay is skipped, and counted as such, when the worker
//! already holds `max_concurrent_delays` requests. When both are chosen the request is
//! delayed first and then aborted, as Envoy's fault filter does.
//!
//! Percentages are kept in basis points (0.01 % steps) and drawn with
//! [`Rng::chance_bp`](crate::rng::Rng::chance_bp). Time and randomness come from the
//! caller; [`schedule`] is the matching pending-set bookkeeping for the delays, and
//! [`FaultLoad`] the running counts of the `max_active` / `max_percent` caps. (Just over 400
//! lines: the decision and the lazy request view it matches on read as one.)

mod compile;
pub mod config;
mod load;
mod reply;
pub mod schedule;
mod trigger;

#[cfg(test)]
mod tests;

pub use config::*;
pub use load::FaultLoad;
pub use reply::{
    grpc_status_for_http, is_grpc_content_type, percent_encode_grpc_message, AbortReply,
};
pub use schedule::{tick_period_ms, DelaySchedule};
pub use trigger::{parse_trigger, Trigger};

use crate::rng::Rng;
use crate::{ConfigError, RequestAttributes};
use compile::{CompiledMatch, CompiledPolicy};
use reply::AbortReplies;

/// Body of an abort asked for by the trigger header.
pub const HEADER_ABORT_BODY: &str = "fault injected by request header";

/// Header-triggered delays can be any length up to `max_header_delay_ms`; for the tick
/// period they count as this long, so they are resumed within 5 ms of their due time.
pub const HEADER_DELAY_TICK_REFERENCE_MS: u64 = 100;

/// A validated, pre-compiled fault configuration. Built once in `on_configure`.
#[derive(Debug, Clone)]
pub struct Fault {
    config: FaultConfig,
    policies: Vec<CompiledPolicy>,
    trigger_header: String,
}

/// Why a matching policy injected nothing, for the "skipped" stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The policy had expired (and the next policy was looked at).
    Expired,
    /// A delay was chosen, but the worker already holds `max_concurrent_delays` requests.
    DelayCap,
    /// A delay was chosen, but the policy already holds `max_active` requests.
    MaxActive,
    /// A fault was chosen, but it would take the policy's faulted share above `max_percent`
    /// (nothing is injected).
    MaxPercent,
}

/// What the filter must do with one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Index (in `policies`) of the policy that decided; `None` when none applied.
    pub policy: Option<usize>,
    /// Hold the request this long first.
    pub delay_ms: Option<u64>,
    /// Then answer with this instead of forwarding.
    pub abort: Option<AbortReply>,
    /// The faults came from the trigger header.
    pub by_header: bool,
    /// `(policy index, reason)` for every matching policy that injected nothing it would have.
    pub skipped: Vec<(usize, Skip)>,
    /// The first applicable dry-run policy and what it would have injected (nothing is).
    pub dry_run: Option<DryRun>,
}

/// What a dry-run policy would have done to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRun {
    /// Index (in `policies`) of the dry-run policy.
    pub policy: usize,
    pub would_abort: bool,
    pub would_delay: bool,
}

impl Decision {
    pub fn is_noop(&self) -> bool {
        self.delay_ms.is_none() && self.abort.is_none()
    }
}

// === impl Fault ===

impl Fault {
    /// Parses and validates. A serde error names the field path serde was in, e.g.
    /// `policies[0].abort.percnt`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::new(crate::error::parse_json::<FaultConfig>(bytes)?)
    }

    pub fn new(config: FaultConfig) -> Result<Self, ConfigError> {
        let trigger_header = compile::top_level(&config)?;
        let policies = compile::policies(&config)?;
        Ok(Self {
            config,
            policies,
            trigger_header,
        })
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Policy names, indexed like [`Decision::policy`].
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// The root tick period this configuration needs while a delay is pending, or `None`
    /// when it can never delay (then no tick is ever set).
    pub fn tick_period_ms(&self) -> Option<u64> {
        tick_period_ms(self.policies.iter().flat_map(|p| {
            let configured = p.delay.map(|d| d.min_ms);
            let by_header = p
                .allow_header_trigger
                .then_some(HEADER_DELAY_TICK_REFERENCE_MS);
            configured.into_iter().chain(by_header)
        }))
    }

    /// Whether [`decide`](Self::decide) looks at the time (only policies with an expiry
    /// do), so a filter can skip reading the host clock for requests that are not delayed.
    pub fn needs_time(&self) -> bool {
        self.policies.iter().any(|p| p.expires_at_unix_ms.is_some())
    }

    /// Decide one request at host time `now_unix_ms`, with `delays_pending` requests
    /// already held by this worker. The runtime caps `max_active` and `max_percent` need
    /// running counts and are not applied here: see [`decide_with`](Self::decide_with).
    pub fn decide(
        &self,
        req: &dyn RequestAttributes,
        now_unix_ms: u64,
        delays_pending: usize,
        rng: &mut Rng,
    ) -> Decision {
        self.decide_inner(req, now_unix_ms, delays_pending, None, rng)
    }

    /// [`decide`](Self::decide), also holding each policy to its `max_active` and
    /// `max_percent` with the worker's running counts in `load` (updated here for
    /// `max_percent`; the filter reports delays with [`FaultLoad::delay_started`] /
    /// [`FaultLoad::delay_ended`]).
    pub fn decide_with(
        &self,
        req: &dyn RequestAttributes,
        now_unix_ms: u64,
        delays_pending: usize,
        load: &mut FaultLoad,
        rng: &mut Rng,
    ) -> Decision {
        self.decide_inner(req, now_unix_ms, delays_pending, Some(load), rng)
    }

    fn decide_inner(
        &self,
        req: &dyn RequestAttributes,
        now_unix_ms: u64,
        delays_pending: usize,
        load: Option<&mut FaultLoad>,
        rng: &mut Rng,
    ) -> Decision {
        let mut decision = Decision::default();
        // A dry-run policy is drawn like any other and only reported; it never stands in
        // front of an enforced policy.
        if self.policies.iter().any(|p| p.dry_run) {
            let mut skipped = Vec::new();
            let first = self.first_applicable(req, now_unix_ms, true, &mut skipped);
            decision.skipped.extend(skipped);
            if let Some((index, policy)) = first.and_then(|i| Some((i, self.policies.get(i)?))) {
                let (delay_ms, abort, _) = self.draw(policy, req, rng);
                decision.dry_run = Some(DryRun {
                    policy: index,
                    would_abort: abort.is_some(),
                    would_delay: delay_ms.is_some(),
                });
            }
        }
        let applicable = self.first_applicable(req, now_unix_ms, false, &mut decision.skipped);
        let Some(index) = applicable else {
            return decision;
        };
        decision.policy = Some(index);
        let Some(policy) = self.policies.get(index) else {
            return decision;
        };
        let (mut delay_ms, abort, by_header) = self.draw(policy, req, rng);
        let mut counts = load.and_then(|l| l.entry(index));
        if let Some(counts) = counts.as_deref_mut() {
            counts.matched = counts.matched.saturating_add(1);
            let faulted = delay_ms.is_some() || abort.is_some();
            if faulted
                && policy
                    .max_percent_bp
                    .is_some_and(|bp| !counts.within_percent(bp))
            {
                decision.skipped.push((index, Skip::MaxPercent));
                return decision;
            }
            if delay_ms.is_some() && policy.max_active.is_some_and(|max| counts.active >= max) {
                decision.skipped.push((index, Skip::MaxActive));
                delay_ms = None;
            }
        }
        decision.by_header = by_header;
        let at_cap = delays_pending
            >= usize::try_from(self.config.max_concurrent_delays).unwrap_or(usize::MAX);
        if delay_ms.is_some() && at_cap {
            decision.skipped.push((index, Skip::DelayCap));
        } else {
            decision.delay_ms = delay_ms;
        }
        decision.abort = abort;
        if let Some(counts) = counts {
            if !decision.is_noop() {
                counts.faulted = counts.faulted.saturating_add(1);
            }
        }
        decision
    }

    /// The delay and abort `policy` picks for `req` (from its trigger header, if it
    /// honours one and the request has it), and whether they came from the header.
    fn draw(
        &self,
        policy: &CompiledPolicy,
        req: &dyn RequestAttributes,
        rng: &mut Rng,
    ) -> (Option<u64>, Option<AbortReply>, bool) {
        match self.header_trigger(policy, req) {
            Some(trigger) => {
                let abort = trigger.abort_status.map(|status| {
                    AbortReplies::new(status, None, HEADER_ABORT_BODY).pick(is_grpc(req))
                });
                (trigger.delay_ms, abort, true)
            }
            None => {
                // Both drawn every time, so each percentage holds on its own.
                let abort = policy
                    .abort
                    .as_ref()
                    .filter(|a| rng.chance_bp(a.basis_points));
                let delay = policy.delay.filter(|d| rng.chance_bp(d.basis_points));
                let delay_ms = delay.map(|d| d.min_ms + rng.below(d.max_ms - d.min_ms + 1));
                (delay_ms, abort.map(|a| a.replies.pick(is_grpc(req))), false)
            }
        }
    }

    fn first_applicable(
        &self,
        req: &dyn RequestAttributes,
        now_unix_ms: u64,
        dry_run: bool,
        skipped: &mut Vec<(usize, Skip)>,
    ) -> Option<usize> {
        let mut view = LazyRequest::new(req);
        for (index, policy) in self.policies.iter().enumerate() {
            if policy.dry_run != dry_run || !policy.matcher.matches(&mut view) {
                continue;
            }
            if policy
                .expires_at_unix_ms
                .is_some_and(|at| now_unix_ms >= at)
            {
                skipped.push((index, Skip::Expired));
                continue;
            }
            return Some(index);
        }
        None
    }

    fn header_trigger(
        &self,
        policy: &CompiledPolicy,
        req: &dyn RequestAttributes,
    ) -> Option<Trigger> {
        if !policy.allow_header_trigger {
            return None;
        }
        let value = req.header(&self.trigger_header)?;
        parse_trigger(&value, self.config.max_header_delay_ms).ok()
    }
}

fn is_grpc(req: &dyn RequestAttributes) -> bool {
    is_grpc_content_type(req.header("content-type").as_deref())
}

/// Request attributes read at most once, and only when a matcher asks.
struct LazyRequest<'a> {
    req: &'a dyn RequestAttributes,
    host: Option<Option<String>>,
    path: Option<Option<String>>,
    principal: Option<Option<String>>,
    /// Headers asked for by `match.headers`, each read once however many policies ask.
    headers: Vec<(&'a str, Option<String>)>,
}

impl<'a> LazyRequest<'a> {
    fn new(req: &'a dyn RequestAttributes) -> Self {
        Self {
            req,
            host: None,
            path: None,
            principal: None,
            headers: Vec::new(),
        }
    }

    fn header(&mut self, name: &'a str) -> Option<&str> {
        let index = match self.headers.iter().position(|(n, _)| *n == name) {
            Some(index) => index,
            None => {
                self.headers.push((name, self.req.header(name)));
                self.headers.len() - 1
            }
        };
        self.headers.get(index)?.1.as_deref()
    }

    fn host(&mut self) -> Option<&str> {
        let req = self.req;
        self.host
            .get_or_insert_with(|| req.authority().map(|a| strip_port(&a).to_ascii_lowercase()))
            .as_deref()
    }

    fn path(&mut self) -> Option<&str> {
        let req = self.req;
        self.path.get_or_insert_with(|| req.path()).as_deref()
    }

    fn principal(&mut self) -> Option<&str> {
        let req = self.req;
        self.principal
            .get_or_insert_with(|| req.peer_principal())
            .as_deref()
    }
}

/// `host:port` -> `host`, `[v6]:port` -> `[v6]`; a bare IPv6 address is left alone.
fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

// === impl CompiledMatch ===

impl CompiledMatch {
    fn matches<'a>(&'a self, req: &mut LazyRequest<'a>) -> bool {
        if !self.hosts.is_empty() {
            let Some(host) = req.host() else { return false };
            if !self.hosts.iter().any(|p| p.matches(host)) {
                return false;
            }
        }
        if !self.path_prefixes.is_empty() {
            let Some(path) = req.path() else { return false };
            if !self
                .path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
            {
                return false;
            }
        }
        if !self.principals.is_empty() {
            let Some(principal) = req.principal() else {
                return false;
            };
            if !self.principals.iter().any(|p| p.matches(principal)) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|h| match (req.header(&h.name), &h.value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(value), Some(pattern)) => pattern.matches(value),
            })
    }
}
