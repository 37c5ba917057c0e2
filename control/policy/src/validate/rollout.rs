//! Checks of Rollout documents, and the weight schedule the rollout controller follows (one
//! function, so the controller can only run a schedule validation accepted).

use super::*;

/// Shortest and longest `interval`.
pub const MIN_INTERVAL_MS: u64 = 2_000;
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Most steps one rollout may have.
pub const MAX_STEPS: usize = 100;

/// One step of a rollout: the canary's weight and the least time spent there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedStep {
    pub weight_bp: u32,
    pub pause_ms: u64,
}

/// The steps of `s`, or every problem with them as `(field, reason)`.
pub fn rollout_schedule(s: &RolloutSpec) -> Result<Vec<PlannedStep>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    let bp = |errors: &mut Vec<(String, String)>, at: String, v: f64| match percent_to_bp(v) {
        Ok(0) => {
            errors.push((at, "must be above 0".into()));
            None
        }
        Ok(10_000..) => {
            errors.push((
                at,
                "must be below 100: after the last step the rollout promotes to 100".into(),
            ));
            None
        }
        Ok(bp) => Some(bp),
        Err(e) => {
            errors.push((at, e));
            None
        }
    };
    match (&s.steps[..], s.step_weight, s.max_weight) {
        ([], None, None) if s.ab.is_some() => {
            let iterations = s.ab.as_ref().map_or(0, |ab| ab.iterations);
            if !(1..=1000).contains(&iterations) {
                errors.push(("spec.ab.iterations".into(), "must be 1-1000".into()));
            }
            let zero = PlannedStep {
                weight_bp: 0,
                pause_ms: 0,
            };
            steps = vec![zero; iterations.clamp(1, 1000) as usize];
        }
        _ if s.ab.is_some() => errors.push((
            "spec.ab".into(),
            "A/B mode takes no `steps`, `stepWeight` or `maxWeight`".into(),
        )),
        ([], Some(step), Some(max)) => {
            let step = bp(&mut errors, "spec.stepWeight".into(), step);
            let max = bp(&mut errors, "spec.maxWeight".into(), max);
            if let (Some(step), Some(max)) = (step, max) {
                if max < step {
                    errors.push((
                        "spec.maxWeight".into(),
                        "must be at least stepWeight".into(),
                    ));
                } else if (max / step) as usize > MAX_STEPS {
                    errors.push((
                        "spec.stepWeight".into(),
                        format!("makes more than {MAX_STEPS} steps"),
                    ));
                } else {
                    let mut w = step;
                    while w < max {
                        steps.push(PlannedStep {
                            weight_bp: w,
                            pause_ms: 0,
                        });
                        w += step;
                    }
                    steps.push(PlannedStep {
                        weight_bp: max,
                        pause_ms: 0,
                    });
                }
            }
        }
        ([], _, _) => errors.push((
            "spec.steps".into(),
            "give either `steps`, both `stepWeight` and `maxWeight`, or `ab`".into(),
        )),
        (list, None, None) => {
            if list.len() > MAX_STEPS {
                errors.push(("spec.steps".into(), format!("more than {MAX_STEPS} steps")));
            }
            let mut previous: Option<u32> = None;
            for (i, step) in list.iter().enumerate() {
                let at = format!("spec.steps[{i}]");
                let pause_ms = match &step.pause {
                    Some(p) => parse_duration(p).unwrap_or_else(|e| {
                        errors.push((format!("{at}.pause"), e));
                        0
                    }),
                    None => 0,
                };
                let Some(w) = bp(&mut errors, format!("{at}.weight"), step.weight) else {
                    continue;
                };
                if let Some(p) = previous.filter(|p| w <= *p) {
                    errors.push((
                        format!("{at}.weight"),
                        format!(
                            "steps must increase: {}% is not above the previous step's {}%",
                            f64::from(w) / 100.0,
                            f64::from(p) / 100.0
                        ),
                    ));
                }
                previous = Some(w);
                steps.push(PlannedStep {
                    weight_bp: w,
                    pause_ms,
                });
            }
        }
        (_, _, _) => errors.push((
            "spec.steps".into(),
            "give either `steps` or `stepWeight` and `maxWeight`, not both".into(),
        )),
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

pub(super) fn rollout(s: &RolloutSpec, c: &mut Collector<'_>) {
    if s.target.versions.is_some() {
        c.push(
            "spec.target.versions",
            "not supported: name the versions in `stable` and `canary`",
        );
    }
    c.check("spec.stable", check_version(&s.stable));
    c.check("spec.canary", check_version(&s.canary));
    if s.stable == s.canary {
        c.push("spec.canary", "must differ from `stable`");
    }
    if let Err(errors) = rollout_schedule(s) {
        for (at, reason) in errors {
            c.push(at, reason);
        }
    }
    if let Some(ab) = &s.ab {
        traffic::route_match(c, "spec.ab.match", &ab.matches);
    }
    match parse_duration(&s.interval) {
        Ok(ms) if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) => {
            c.push("spec.interval", "must be between 2s and 1h")
        }
        Ok(_) => {}
        Err(e) => c.push("spec.interval", e),
    }
    let a = &s.analysis;
    if a.success_rate.is_none() && a.latency_p99.is_none() {
        c.push(
            "spec.analysis",
            "at least one of `successRate` or `latencyP99` is required",
        );
    }
    if let Some(sr) = &a.success_rate {
        if sr.min.is_none() && sr.max_drop_vs_stable.is_none() {
            c.push(
                "spec.analysis.successRate",
                "at least one of `min` or `maxDropVsStable` is required",
            );
        }
        for (name, v) in [("min", sr.min), ("maxDropVsStable", sr.max_drop_vs_stable)] {
            if let Some(v) = v {
                traffic::percent(c, format!("spec.analysis.successRate.{name}"), v);
            }
        }
    }
    if let Some(l) = &a.latency_p99 {
        if l.max_ms.is_none() && l.max_ratio_to_stable.is_none() {
            c.push(
                "spec.analysis.latencyP99",
                "at least one of `maxMs` or `maxRatioToStable` is required",
            );
        }
        if l.max_ms.is_some_and(|ms| ms == 0 || ms > 300_000) {
            c.push("spec.analysis.latencyP99.maxMs", "must be 1-300000");
        }
        if l.max_ratio_to_stable
            .is_some_and(|r| !(1.0..=100.0).contains(&r))
        {
            c.push(
                "spec.analysis.latencyP99.maxRatioToStable",
                "must be between 1 and 100",
            );
        }
    }
    if a.min_requests == 0 || a.min_requests > 1_000_000 {
        c.push("spec.analysis.minRequests", "must be 1-1000000");
    }
    if a.failure_threshold == 0 || a.failure_threshold > 100 {
        c.push("spec.analysis.failureThreshold", "must be 1-100");
    }
}
