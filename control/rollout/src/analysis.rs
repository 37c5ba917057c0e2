//! One interval's checks: the canary's success rate and p99 latency, absolute and relative to
//! the stable version over the same window, from the counts the sidecars' telemetry reports.

use serde::{Deserialize, Serialize};
use weft_filter_core::telemetry::LATENCY_BOUNDS_MS;
use weft_policy::model::RolloutAnalysis;
use weft_telemetry_plane::Counts;

/// The verdict of one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Too few requests to judge: neither a pass nor a failure.
    Inconclusive,
}

/// One check's value against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `successRate`, `successRateVsStable`, `latencyP99`, `latencyP99VsStable`.
    pub name: String,
    pub value: f64,
    /// `min` for success rates, `max` for latencies.
    pub threshold: f64,
    pub passed: bool,
}

/// The outcome of one interval's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub verdict: Verdict,
    pub canary_requests: u64,
    pub stable_requests: u64,
    pub checks: Vec<CheckResult>,
    /// Why the interval was inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The counts of `now` minus those of `before` (cumulative totals read at two times; a total
/// that went down, after a restart, counts from zero).
pub fn delta(now: &Counts, before: &Counts) -> Counts {
    if now.requests < before.requests {
        return now.clone();
    }
    let mut out = Counts {
        requests: now.requests - before.requests,
        ..Counts::default()
    };
    for (o, (a, b)) in out
        .status
        .iter_mut()
        .zip(now.status.iter().zip(before.status))
    {
        *o = a.saturating_sub(b);
    }
    for (o, (a, b)) in out
        .latency
        .iter_mut()
        .zip(now.latency.iter().zip(before.latency))
    {
        *o = a.saturating_sub(b);
    }
    out.latency_us_sum = now.latency_us_sum.saturating_sub(before.latency_us_sum);
    out
}

/// Non-5xx (and answered) share of `c`'s requests, in percent.
pub fn success_rate(c: &Counts) -> Option<f64> {
    (c.requests > 0).then(|| {
        let ok = c.requests.saturating_sub(c.errors());
        ok as f64 * 100.0 / c.requests as f64
    })
}

/// Judges one interval: `canary` and `stable` are the requests each version received in it.
pub fn evaluate(a: &RolloutAnalysis, canary: &Counts, stable: &Counts) -> Analysis {
    let mut out = Analysis {
        verdict: Verdict::Pass,
        canary_requests: canary.requests,
        stable_requests: stable.requests,
        checks: Vec::new(),
        reason: None,
    };
    if canary.requests < a.min_requests {
        out.verdict = Verdict::Inconclusive;
        out.reason = Some(format!(
            "canary received {} requests, below minRequests {}",
            canary.requests, a.min_requests
        ));
        return out;
    }
    let relative = a
        .success_rate
        .as_ref()
        .is_some_and(|s| s.max_drop_vs_stable.is_some())
        || a.latency_p99
            .as_ref()
            .is_some_and(|l| l.max_ratio_to_stable.is_some());
    if relative && stable.requests < a.min_requests {
        out.verdict = Verdict::Inconclusive;
        out.reason = Some(format!(
            "stable received {} requests, below minRequests {} (a check is relative to it)",
            stable.requests, a.min_requests
        ));
        return out;
    }
    let mut push = |name: &str, value: f64, threshold: f64, passed: bool| {
        out.checks.push(CheckResult {
            name: name.into(),
            value: round2(value),
            threshold: round2(threshold),
            passed,
        });
    };
    if let Some(sr) = &a.success_rate {
        let rate = success_rate(canary).unwrap_or(0.0);
        if let Some(min) = sr.min {
            push("successRate", rate, min, rate >= min);
        }
        if let Some(drop) = sr.max_drop_vs_stable {
            let floor = success_rate(stable).unwrap_or(100.0) - drop;
            push("successRateVsStable", rate, floor, rate >= floor);
        }
    }
    if let Some(l) = &a.latency_p99 {
        let p99 = canary.quantile_ms(0.99).unwrap_or(0) as f64;
        if let Some(max) = l.max_ms {
            push("latencyP99", p99, max as f64, p99 <= max as f64);
        }
        if let Some(ratio) = l.max_ratio_to_stable {
            // The histogram cannot tell values inside one bucket apart: the canary may always
            // reach the bucket above the stable version's (3 ms vs 5 ms is not a regression).
            let stable_p99 = stable.quantile_ms(0.99).unwrap_or(0);
            let next_bound = LATENCY_BOUNDS_MS
                .iter()
                .copied()
                .find(|b| *b > stable_p99)
                .unwrap_or(stable_p99);
            let ceiling = (stable_p99 as f64 * ratio).max(next_bound as f64);
            push("latencyP99VsStable", p99, ceiling, p99 <= ceiling);
        }
    }
    if out.checks.iter().any(|c| !c.passed) {
        out.verdict = Verdict::Fail;
    }
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
