//! Why a request got its decision, rule by rule: [`Authz::explain`] for `weft check`.
//!
//! The decision is [`Authz::decide`]'s own; the per-rule trace runs the same rule evaluation
//! (`CompiledRule::first_mismatch`, which `matches` is built on)
//! over the same request view, and names the first condition of each rule that did not hold.
//! Not on any request path: the filters never call it.

use super::rules::{Mismatch, RequestView};
use super::{Action, Authz, Decision, Verdict};
use crate::explain::Explain;
use crate::RequestAttributes;

/// [`Authz::decide`]'s decision and, when policies were looked at, each policy's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    /// Every policy in configuration order; empty when the request was answered before any
    /// policy (no configuration, an invalid path, a refused token).
    pub policies: Vec<PolicyTrace>,
}

/// One policy as the request met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTrace {
    pub name: String,
    pub action: Action,
    pub dry_run: bool,
    /// Per rule: `None` when it matched, else the first condition that did not hold.
    pub rules: Vec<Option<Mismatch>>,
}

impl PolicyTrace {
    /// The first rule that matched (the one that decides for this policy).
    pub fn matched_rule(&self) -> Option<usize> {
        self.rules.iter().position(Option::is_none)
    }
}

// === impl Authz ===

impl Authz {
    /// [`decide`](Self::decide), with the trace of every policy's rules.
    pub fn explain(&self, req: &dyn RequestAttributes, now_unix_secs: u64) -> Explanation {
        let decision = self.decide(req, now_unix_secs);
        let raw_path = req.path();
        let Ok((path, claims)) = self.prepare(req, raw_path.as_deref(), now_unix_secs) else {
            return Explanation {
                decision,
                policies: Vec::new(),
            };
        };
        let view = RequestView::new(
            req,
            claims.as_ref(),
            path.as_deref(),
            &self.namespace_prefix,
        );
        let policies = self
            .policies
            .iter()
            .map(|p| {
                let strict = p.action == Action::Allow;
                PolicyTrace {
                    name: String::from(&*p.name),
                    action: p.action,
                    dry_run: p.dry_run,
                    rules: p
                        .rules
                        .iter()
                        .map(|r| r.first_mismatch(&view, p.ignore_path_case, strict))
                        .collect(),
                }
            })
            .collect();
        Explanation { decision, policies }
    }
}

/// The authz stage's line of a trace: verdict, deciding policy and rule, dry-run denials
/// and audits, e.g. `shop/ratings inbound authz=allow by readers (ALLOW policy "readers"
/// rule 0 matched)`.
pub fn authz_trace(explain: &Explain, decision: &Decision) -> String {
    let verdict = match &decision.verdict {
        Verdict::Allow { policy } => format!("allow by {}", policy.as_deref().unwrap_or("-")),
        Verdict::Deny { policy, status, .. } => format!("{status} by {policy}"),
    };
    let mut line = format!(
        "{}/{} inbound authz={verdict} ({})",
        explain.namespace, explain.service, decision.reason
    );
    if !decision.dry_run_denied.is_empty() {
        line.push_str(&format!(
            "; dry-run denied by {}",
            decision.dry_run_denied.join(", ")
        ));
    }
    if !decision.audited.is_empty() {
        line.push_str(&format!("; audited by {}", decision.audited.join(", ")));
    }
    crate::explain::header_value(&line)
}
