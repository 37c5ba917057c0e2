//! weft authz: decides every inbound request from its JSON configuration.
//!
//! The decision itself lives in `weft_filter_core::authz`; [`AuthzStage`] reads the request
//! through the request view all stages share (`MemoRequest`), counts the outcome and sends
//! the deny reply, all through the [`Host`] trait (no proxy-wasm here: the tests run it
//! against `MockHost`). The
//! standalone module (`filters/authz`, `authz.wasm`) wraps it in a root and an HTTP context;
//! the combined module `weft-suite` runs it as its first stage.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use weft_filter_core::authz::{authz_trace, Authz, Verdict};
use weft_filter_core::explain::{Explain, Refusal, TOKEN_HEADER, TRACE_HEADER};
use weft_filter_core::host::{stat_segment, Counter, Flow};
use weft_filter_core::registry::Filter;
use weft_filter_core::suite::MemoRequest;
use weft_filter_core::telemetry::{AuthzOutcome, AUTHZ_PROPERTY, DECISION_PROPERTY};
use weft_filter_core::{Host, RequestAttributes};

#[cfg(test)]
mod tests;

/// Counters for one outcome, in total and per policy name.
struct Outcome {
    total: Counter,
    by_policy: HashMap<String, Counter>,
}

impl Outcome {
    fn new(host: &impl Host, outcome: &str, policies: &[String]) -> Self {
        let by_policy = policies
            .iter()
            .map(|p| {
                let name = format!(
                    "{}policy.{}.{outcome}",
                    Filter::Authz.stats_prefix(),
                    stat_segment(p)
                );
                (p.clone(), Counter::new(host, &name))
            })
            .collect();
        Self {
            total: Counter::new(host, &format!("{}{outcome}", Filter::Authz.stats_prefix())),
            by_policy,
        }
    }

    fn count(&self, host: &impl Host, policy: Option<&str>) {
        self.total.inc(host);
        if let Some(counter) = policy.and_then(|p| self.by_policy.get(p)) {
            counter.inc(host);
        }
    }
}

struct Stats {
    allowed: Outcome,
    denied: Outcome,
    dry_run_denied: Outcome,
    audited: Outcome,
    /// Defined only when the configuration explains.
    explain: Option<ExplainStats>,
}

/// Explain tokens honoured, and refused by reason.
struct ExplainStats {
    granted: Counter,
    refused: Vec<(Refusal, Counter)>,
}

/// The authz filter of one root context: the compiled policies and their stats.
pub struct AuthzStage {
    authz: Authz,
    stats: Stats,
}

// === impl AuthzStage ===

impl AuthzStage {
    /// Defines the stats on `host` (from `on_configure`).
    pub fn new(authz: Authz, host: &impl Host) -> Self {
        let mut names: Vec<String> = authz
            .config()
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect();
        names.extend(authz.config().jwt.iter().map(|p| format!("jwt:{}", p.name)));
        names.extend(
            [
                weft_filter_core::authz::DEFAULT_DENY_POLICY,
                weft_filter_core::authz::INVALID_PATH_POLICY,
                weft_filter_core::authz::NO_CONFIGURATION_POLICY,
            ]
            .map(str::to_string),
        );
        let stats = Stats {
            allowed: Outcome::new(host, "allowed", &names),
            denied: Outcome::new(host, "denied", &names),
            dry_run_denied: Outcome::new(host, "dry_run_denied", &names),
            audited: Outcome::new(host, "audited", &names),
            explain: authz.explain_token().map(|_| ExplainStats {
                granted: Counter::new(host, &Filter::Authz.stat("explain.granted")),
                refused: Refusal::ALL
                    .iter()
                    .map(|r| {
                        let name = Filter::Authz.stat(&format!("explain.refused.{}", r.as_str()));
                        (*r, Counter::new(host, &name))
                    })
                    .collect(),
            }),
        };
        log::info!(
            "weft-authz: configured with {} policies",
            authz.config().policies.len()
        );
        Self { authz, stats }
    }

    /// Decide the request: `Continue`, or `Pause` after sending the deny reply. The outcome
    /// goes to a separate telemetry filter through a stream property.
    pub fn on_request_headers<H: Host>(&self, req: &MemoRequest<H>) -> Flow {
        self.decide(req, true).0
    }

    /// [`Self::on_request_headers`], also returning the outcome for a telemetry stage of the
    /// same module; `publish`: also set the stream property (for a separate filter).
    pub fn decide<H: Host>(&self, req: &MemoRequest<H>, publish: bool) -> (Flow, AuthzOutcome) {
        let (flow, outcome, _) = self.decide_explained(req, publish);
        (flow, outcome)
    }

    /// Whether configured to explain: then the filter writes (or removes) the response
    /// header [`TRACE_HEADER`] on every response, so an app cannot forge one.
    pub fn explains(&self) -> bool {
        self.authz.explain_token().is_some()
    }

    /// [`Self::decide`], also checking an explain token (removed from the request either
    /// way): the trace to put in the response header [`TRACE_HEADER`] when the token is
    /// valid (a denied request's reply carries it too).
    pub fn decide_explained<H: Host>(
        &self,
        req: &MemoRequest<H>,
        publish: bool,
    ) -> (Flow, AuthzOutcome, Option<String>) {
        let explain = self
            .authz
            .explain_token()
            .filter(|e| self.token_valid(e, req));
        let authz = &self.authz;
        // Only JWT validation looks at the time: skip the host clock without providers.
        let now = if authz.needs_time() {
            req.now_millis() / 1000
        } else {
            0
        };
        let decision = authz.decide(req, now);
        let outcome = match decision.verdict {
            Verdict::Deny { .. } => AuthzOutcome::Denied,
            Verdict::Allow { .. } if !decision.dry_run_denied.is_empty() => {
                AuthzOutcome::DryRunDenied
            }
            Verdict::Allow { .. } => AuthzOutcome::Allowed,
        };
        // For a separate telemetry filter (no host call on a plain allow).
        if publish && outcome != AuthzOutcome::Allowed {
            req.set_property(AUTHZ_PROPERTY, outcome.as_str().as_bytes());
        }
        let stats = &self.stats;
        for policy in &decision.dry_run_denied {
            stats.dry_run_denied.count(req, Some(policy));
        }
        for policy in &decision.audited {
            stats.audited.count(req, Some(policy));
        }
        let trace = explain.map(|e| authz_trace(e, &decision));
        match decision.verdict {
            Verdict::Allow { policy } => {
                stats.allowed.count(req, policy.as_deref());
                for (name, value) in &decision.request_headers {
                    match value {
                        // Every incoming copy goes, not just the first: a forged second
                        // copy must not survive next to the validated one.
                        Some(value) => req.replace_request_header(name, value),
                        None => req.set_request_header(name, None),
                    }
                }
                log::debug!("weft-authz: allow ({})", decision.reason);
                (Flow::Continue, outcome, trace)
            }
            Verdict::Deny {
                policy,
                status,
                body,
                mut headers,
            } => {
                stats.denied.count(req, Some(&policy));
                if let Some(trace) = &trace {
                    headers.push((TRACE_HEADER.to_string(), trace.clone()));
                }
                let why = format!("authz: {status} by {policy}: {}", decision.reason);
                log::debug!("weft-{why}");
                req.set_property(DECISION_PROPERTY, why.as_bytes());
                req.send_local_reply(status, &headers, &body);
                // Also returned: Envoy runs the reply through this filter's response
                // headers callback, which writes the trace header again.
                (Flow::Pause, outcome, trace)
            }
        }
    }

    /// Reads, removes (so the app never sees it) and checks the request's explain token,
    /// counting the outcome. No token: false, and no host call beyond the read.
    fn token_valid<H: Host>(&self, explain: &Explain, req: &MemoRequest<H>) -> bool {
        let Some(token) = req.header(TOKEN_HEADER) else {
            return false;
        };
        req.set_request_header(TOKEN_HEADER, None);
        let checked = explain.check(&token, req.now_millis() / 1000);
        let stats = self.stats.explain.as_ref();
        match checked {
            Ok(()) => {
                if let Some(stats) = stats {
                    stats.granted.inc(req);
                }
                true
            }
            Err(refusal) => {
                let counter = stats.and_then(|s| s.refused.iter().find(|(r, _)| *r == refusal));
                if let Some((_, counter)) = counter {
                    counter.inc(req);
                }
                log::debug!("weft-authz: explain token refused: {}", refusal.as_str());
                false
            }
        }
    }
}
