//! `Rollout`: a canary moved step by step by the control plane, gated by live checks.

use super::{RouteMatch, TargetRef};
use serde::{Deserialize, Serialize};

/// Moves `target`'s traffic from `stable` to `canary` through `steps` (or `stepWeight` up to
/// `maxWeight`), one step per passing `interval`; rolls back after `analysis.failureThreshold`
/// failed checks, promotes after the last step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    pub target: TargetRef,
    pub stable: String,
    pub canary: String,
    /// Canary weights in percent, strictly increasing, each below 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RolloutStep>,
    /// With `maxWeight`, instead of `steps`: `stepWeight`, `2 × stepWeight`, ... `maxWeight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<f64>,
    /// A/B mode, instead of steps: only requests matching `match` go to the canary, for
    /// `iterations` passing intervals; then promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbTest>,
    /// Time between checks (`2s` .. `1h`).
    pub interval: String,
    pub analysis: RolloutAnalysis,
}

/// One step: the canary's weight, and how long to hold it at least (default: one interval).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStep {
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
}

/// The checks run on each interval's canary traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutAnalysis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRateCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<LatencyCheck>,
    /// Canary requests an interval needs for its checks to count; fewer is inconclusive.
    pub min_requests: u64,
    /// Failed checks (intervals) before the rollout rolls back.
    pub failure_threshold: u32,
}

/// Non-5xx share of the canary's requests, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessRateCheck {
    /// At least this (percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// At least this many percentage points below the stable version's rate over the same
    /// window (`1` = the canary may be one point worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop_vs_stable: Option<f64>,
}

/// The canary's 99th percentile latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyCheck {
    /// At most this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    /// At most this multiple of the stable version's p99 over the same window (`1.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio_to_stable: Option<f64>,
}

/// `Rollout.spec.ab`: a cohort (one header, cookie or claim) tries the canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbTest {
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    /// Passing intervals before promotion, 1-1000.
    pub iterations: u32,
}
