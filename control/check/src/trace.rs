//! What `weft check` answers: one trace per stage a call passes, in chain order (the
//! caller's outbound canary, fault and breaker, then the target's inbound authz). The same
//! JSON is the API's answer and `weft check -o json`'s output.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole answer for one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The target's authz lets the call through.
    pub allowed: bool,
    /// The status the caller would get from a weft filter (authz deny); `None` when the
    /// call reaches the app (a fault may still abort it: see `fault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Policy version evaluated (0 for files given offline).
    pub policy_version: u64,
    pub caller: CallerView,
    pub target: TargetView,
    pub canary: CanaryTrace,
    pub fault: FaultTrace,
    pub breaker: BreakerTrace,
    /// The target's WAF, when a `WebApplicationFirewall` targets it (it runs before authz:
    /// a block means authz never sees the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafTrace>,
    pub authz: AuthzTrace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerView {
    /// The SPIFFE id the target sees; `None`: no mTLS peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The caller's sidecar group whose outbound filters ran (`ns/service/version`); `None`:
    /// the caller has no weft sidecar, no outbound stage ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    pub namespace: String,
    pub service: String,
    pub version: String,
    /// Why this version: `given`, `canary` (the caller's canary picked it) or `stable`.
    pub version_from: String,
    /// `:authority` sent (the service's host).
    pub host: String,
}

/// The caller's canary filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryTrace {
    /// A TrafficSplit applies to this call (the caller's sidecar has the target's service).
    pub applies: bool,
    /// `cohort`, `rule`, `sticky` or `random`; absent when nothing applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The sticky key's bucket (0..10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u32>,
    /// The version picked; absent for a random draw (see `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The split in basis points, in bucket order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<(String, u32)>,
    /// A dry-run split: the version is only counted (`would_route`), the call routes as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Anything to know (no caller sidecar, a random draw...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The caller's fault filter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultTrace {
    /// The enforced policy that applies (the first matching one that has not expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// The faults come from the trigger header (then they happen every time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_header: bool,
    /// The first applicable dry-run policy and what it would inject (nothing is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<FaultDryRun>,
    /// Matching policies that inject nothing: `(policy, expired | delay-cap | max-active |
    /// max-percent)` (a fresh check holds no delay and has faulted nothing: only `expired`
    /// shows in practice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// Chance of the abort, percent (100 for a header trigger).
    pub percent: f64,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    pub percent: f64,
    pub min_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDryRun {
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_percent: Option<f64>,
}

/// The caller's breaker filter for the cluster the call goes to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerTrace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A CircuitBreaker guards that cluster.
    pub guarded: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Opens after this many consecutive failures (0: not on a streak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_interval_ms: Option<u64>,
    /// The fail-fast reply's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_status: Option<u16>,
    /// `closed`, `open` or `unknown`, from the control plane's telemetry of this edge.
    pub state: String,
    /// What the state was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// The target's authz filter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzTrace {
    /// The target sidecar group evaluated (`ns/service/version`).
    pub sidecar: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The deciding policy: an ALLOW or DENY policy, `default-deny`, `jwt:<provider>`,
    /// `invalid-path` or `no-configuration`; absent when no enforced policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The deciding policy's rule that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The filter's own reason text (what its debug log and the access log's `weft` field say).
    pub reason: String,
    /// The matched rule as configured (every condition in it held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// Dry-run policies that would deny this (allowed) call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run_denied: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audited: Vec<String>,
    /// Every policy, rule by rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub name: String,
    /// `ALLOW`, `DENY` or `AUDIT`.
    pub action: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The first rule that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<usize>,
    /// Per rule: `None` when it matched, else the first condition that did not hold
    /// (`principals`, `paths`, `headers[0]`...).
    pub rules: Vec<Option<String>>,
}

/// The target's WAF (the gateway's edge listener, or a service's inbound suite section).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WafTrace {
    /// The sidecar group whose WAF ran (`ns/service/version`).
    pub sidecar: String,
    /// The policy (`namespace/name`), as the access log and stats name it.
    pub name: String,
    /// `block` or `detect`.
    pub mode: String,
    pub paranoia: u8,
    /// The inbound anomaly score at which the call is refused.
    pub threshold: u32,
    /// The anomaly score: each matching rule counted once.
    pub score: u32,
    /// Every rule that matched, on which target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<WafRule>,
    /// The protocol limit broken (`body_too_large`, ...), which refuses whatever the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_detail: Option<String>,
    /// `pass`, `blocked`, or `would-block` (detect mode: counted, not refused).
    pub outcome: String,
    /// The refusal's status (blocked only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The reply's reason code (blocked only): `anomaly_score` or the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The line the filter writes into the access log's `weft` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// What happened to the body: `none`, `inspected`, `streamed ...`, `not reached ...`.
    pub body: String,
    pub body_inspected_bytes: usize,
    /// Matches the policy's exclusions removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<WafExcluded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WafRule {
    pub rule: u32,
    /// `sqli`, `xss`, `lfi`, `rce`, `scanner`, `protocol`.
    pub category: String,
    pub score: u32,
    /// `q`, `user.bio`, `cookie:session`, `header:user-agent`, `path`, `body`.
    pub target: String,
}

/// A match an exclusion removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WafExcluded {
    pub rule: u32,
    pub target: String,
    /// The indexes of the policy's `exclusions` that cover it.
    pub exclusions: Vec<usize>,
}
