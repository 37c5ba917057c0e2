//! (Over 400 lines: one scenario per test, each with its own synthetic traffic.)
//! The controller on a synthetic clock with synthetic telemetry, and the analysis maths.

use crate::analysis::{delta, evaluate, success_rate, Verdict};
use crate::machine::*;
use crate::split::{documents_for, stored_progress};
use weft_filter_core::telemetry::LATENCY_BOUNDS_MS;
use weft_policy::{Limits, PolicySet};
use weft_telemetry_plane::Counts;

const SERVICE: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";

fn mk_rollout_yaml(extra_analysis: &str, steps: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  stable: v1\n  canary: v2\n  steps: {steps}\n  interval: 2s\n  analysis: {{successRate: {{min: 95}}, latencyP99: {{maxMs: 100}}, minRequests: 20, failureThreshold: 2{extra_analysis}}}\n"
    )
}

fn mk_set(rollout: &str) -> PolicySet {
    let docs = weft_policy::load(
        format!("{SERVICE}---\n{rollout}").as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    PolicySet::from_documents(docs)
}

fn mk_plan(rollout: &str) -> Plan {
    let set = mk_set(rollout);
    let doc = set.of_kind(weft_policy::Kind::Rollout).next().unwrap();
    Plan::from_document(doc).unwrap()
}

/// `requests` answered in `latency_ms`, `errors` of them 5xx.
fn mk_counts(requests: u64, errors: u64, latency_ms: u64) -> Counts {
    let mut c = Counts {
        requests,
        ..Counts::default()
    };
    c.status[2] = requests - errors;
    c.status[5] = errors;
    let bucket = LATENCY_BOUNDS_MS
        .iter()
        .position(|b| *b >= latency_ms)
        .unwrap_or(LATENCY_BOUNDS_MS.len());
    c.latency[bucket] = requests;
    c
}

/// Cumulative totals that grow by `per_interval` each call.
struct Traffic {
    totals: Observation,
}

impl Traffic {
    fn new() -> Self {
        Self {
            totals: Observation::default(),
        }
    }

    fn add(&mut self, canary: &Counts, stable: &Counts) -> Observation {
        self.totals.canary.merge(canary);
        self.totals.stable.merge(stable);
        self.totals.clone()
    }
}

fn transitions(actions: &[Action]) -> Vec<(EventKind, Phase, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { progress, event } => {
                Some((event.kind, progress.phase, progress.weight_bp))
            }
            Action::Record(_) => None,
        })
        .collect()
}

fn kinds(actions: &[Action]) -> Vec<EventKind> {
    actions
        .iter()
        .map(|a| match a {
            Action::Transition { event, .. } | Action::Record(event) => event.kind,
        })
        .collect()
}

/// (time after the run, each transition as (time, kind, phase, weight), every event kind).
type Run = (u64, Vec<(u64, EventKind, Phase, u32)>, Vec<EventKind>);

/// Runs `c` for `intervals` intervals of 2 s (ticking every 200 ms), each interval's traffic
/// given by `per_interval`; returns every transition.
fn run(
    c: &mut Controller,
    traffic: &mut Traffic,
    start_ms: u64,
    intervals: u64,
    per_interval: impl Fn(u64) -> (Counts, Counts),
) -> Run {
    let mut now = start_ms;
    let mut out = Vec::new();
    let mut all = Vec::new();
    for i in 0..intervals {
        let (canary, stable) = per_interval(i);
        for tick in 0..10 {
            // The interval's traffic arrives spread over it; counted once per interval here.
            let totals = if tick == 5 {
                traffic.add(&canary, &stable)
            } else {
                traffic.totals.clone()
            };
            let actions = c.step(now, &totals);
            all.extend(kinds(&actions));
            for (k, p, w) in transitions(&actions) {
                out.push((now, k, p, w));
            }
            now += 200;
        }
    }
    (now, out, all)
}

#[test]
fn success_rate_counts_5xx_and_no_response_as_failures() {
    let mut c = mk_counts(100, 20, 5);
    assert_eq!(success_rate(&c), Some(80.0));
    c.status[0] = 5;
    c.status[2] -= 5;
    assert_eq!(success_rate(&c), Some(75.0));
    assert_eq!(success_rate(&Counts::default()), None);
}

#[test]
fn p99_comes_from_the_histogram_bucket_and_compares_to_stable() {
    let plan = mk_plan(&mk_rollout_yaml("", "[{weight: 50}]").replace(
        "latencyP99: {maxMs: 100}",
        "latencyP99: {maxMs: 250, maxRatioToStable: 1.5}",
    ));
    // 99 fast requests and one slow: p99 is the fast bucket.
    let mut canary = mk_counts(100, 0, 4);
    canary.latency[4] = 99;
    canary.latency[13] = 1;
    let stable = mk_counts(100, 0, 4);
    let a = evaluate(&plan.analysis, &canary, &stable);
    assert_eq!(a.verdict, Verdict::Pass, "{a:?}");
    // +200 ms: p99 lands in the 300 ms bucket: over 250 and over 1.5 x stable.
    let slow = mk_counts(100, 0, 205);
    let a = evaluate(&plan.analysis, &slow, &stable);
    assert_eq!(a.verdict, Verdict::Fail);
    let by_name = |n: &str| a.checks.iter().find(|c| c.name == n).unwrap().clone();
    assert_eq!(by_name("latencyP99").value, 300.0);
    assert!(!by_name("latencyP99").passed);
    assert!(!by_name("latencyP99VsStable").passed);
    // One bucket up from stable is within the histogram's resolution.
    let a = evaluate(&plan.analysis, &mk_counts(100, 0, 8), &mk_counts(100, 0, 5));
    assert!(a.checks.iter().all(|c| c.passed), "{a:?}");
}

#[test]
fn below_min_requests_is_inconclusive_and_relative_checks_need_stable_traffic() {
    let plan = mk_plan(&mk_rollout_yaml("", "[{weight: 50}]"));
    let a = evaluate(&plan.analysis, &mk_counts(19, 19, 5), &mk_counts(100, 0, 5));
    assert_eq!(a.verdict, Verdict::Inconclusive);
    assert!(a
        .reason
        .unwrap()
        .contains("19 requests, below minRequests 20"));
    let relative = mk_plan(&mk_rollout_yaml("", "[{weight: 50}]").replace(
        "successRate: {min: 95}",
        "successRate: {maxDropVsStable: 1}",
    ));
    let a = evaluate(
        &relative.analysis,
        &mk_counts(50, 0, 5),
        &mk_counts(3, 0, 5),
    );
    assert_eq!(a.verdict, Verdict::Inconclusive, "{a:?}");
    // 97 % vs a stable 100 %: more than one point worse.
    let a = evaluate(
        &relative.analysis,
        &mk_counts(100, 3, 5),
        &mk_counts(100, 0, 5),
    );
    assert_eq!(a.verdict, Verdict::Fail, "{a:?}");
    let a = evaluate(
        &relative.analysis,
        &mk_counts(100, 3, 5),
        &mk_counts(100, 2, 5),
    );
    assert_eq!(a.verdict, Verdict::Pass, "{a:?}");
}

#[test]
fn delta_of_cumulative_totals_is_the_interval_and_a_reset_counts_from_zero() {
    let before = mk_counts(100, 10, 5);
    let mut now = before.clone();
    now.merge(&mk_counts(50, 5, 5));
    let d = delta(&now, &before);
    assert_eq!((d.requests, d.errors()), (50, 5));
    let restarted = mk_counts(7, 1, 5);
    assert_eq!(delta(&restarted, &before).requests, 7);
}

#[test]
fn a_healthy_canary_goes_through_every_step_and_is_promoted() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}, {weight: 90}]",
    )));
    let mut traffic = Traffic::new();
    let (_, timeline, _) = run(&mut c, &mut traffic, 1_000_000, 5, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    let weights: Vec<(EventKind, u32)> = timeline.iter().map(|t| (t.1, t.3)).collect();
    assert_eq!(
        weights,
        vec![
            (EventKind::Started, 1000),
            (EventKind::Advanced, 5000),
            (EventKind::Advanced, 9000),
            (EventKind::Promoted, 10_000),
        ]
    );
    // One step per interval: 2 s apart.
    let times: Vec<u64> = timeline.iter().map(|t| t.0).collect();
    assert_eq!(times[1] - times[0], 2000);
    assert_eq!(times[3] - times[2], 2000);
    assert_eq!(c.progress().unwrap().phase, Phase::Promoted);
    // Finished: nothing more happens.
    let (_, more, _) = run(&mut c, &mut traffic, 2_000_000, 3, |_| {
        (mk_counts(40, 40, 5), Counts::default())
    });
    assert!(more.is_empty());
}

#[test]
fn twenty_percent_5xx_rolls_back_after_failure_threshold_checks() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}]",
    )));
    let mut traffic = Traffic::new();
    let (_, timeline, events) = run(&mut c, &mut traffic, 0, 4, |_| {
        (mk_counts(50, 10, 5), mk_counts(50, 0, 5))
    });
    let t: Vec<(EventKind, Phase, u32)> = timeline.iter().map(|t| (t.1, t.2, t.3)).collect();
    assert_eq!(
        t,
        vec![
            (EventKind::Started, Phase::Progressing, 1000),
            (EventKind::RolledBack, Phase::RolledBack, 0),
        ]
    );
    assert_eq!(
        events
            .iter()
            .filter(|k| **k == EventKind::CheckFailed)
            .count(),
        2
    );
    // Rolled back at the second check: 2 intervals after the start.
    assert_eq!(timeline[1].0 - timeline[0].0, 4000);
    let status = c.status(timeline[1].0);
    assert_eq!((status.failed_checks, status.weight_bp), (2, 0));
    let last = status.last_analysis.unwrap();
    assert_eq!(last.checks[0].value, 80.0);
}

#[test]
fn a_slow_canary_is_rolled_back_on_p99() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}]",
    )));
    let (_, timeline, _) = run(&mut c, &mut Traffic::new(), 0, 4, |_| {
        (mk_counts(50, 0, 205), mk_counts(50, 0, 5))
    });
    assert_eq!(timeline.last().unwrap().1, EventKind::RolledBack);
    let a = c.status(0).last_analysis.unwrap();
    let p99 = a.checks.iter().find(|c| c.name == "latencyP99").unwrap();
    assert_eq!(
        (p99.value, p99.threshold, p99.passed),
        (300.0, 100.0, false)
    );
}

#[test]
fn too_little_canary_traffic_is_neither_promoted_nor_rolled_back() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}]",
    )));
    let (_, timeline, events) = run(&mut c, &mut Traffic::new(), 0, 10, |_| {
        // Failing, but under minRequests: no verdict either way.
        (mk_counts(5, 5, 900), mk_counts(95, 0, 5))
    });
    assert_eq!(timeline.len(), 1, "only the start: {timeline:?}");
    assert_eq!(
        events
            .iter()
            .filter(|k| **k == EventKind::Inconclusive)
            .count(),
        9
    );
    assert_eq!(
        c.progress().unwrap(),
        Progress {
            phase: Phase::Progressing,
            step: 0,
            weight_bp: 1000
        }
    );
}

#[test]
fn a_pause_holds_the_step_until_it_has_elapsed() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10, pause: 7s}, {weight: 50}]",
    )));
    let (_, timeline, _) = run(&mut c, &mut Traffic::new(), 0, 6, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    // Checks at 2, 4, 6 s pass but the step holds until 7 s: it advances at the 8 s check.
    assert_eq!(timeline[1].1, EventKind::Advanced);
    assert_eq!(timeline[1].0 - timeline[0].0, 8000);
}

#[test]
fn a_restarted_controller_resumes_at_the_stored_step() {
    let plan = mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}, {weight: 90}]",
    ));
    let mut first = Controller::new(plan.clone());
    let (now, _, _) = run(&mut first, &mut Traffic::new(), 0, 2, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    let stored = first.progress();
    assert_eq!(stored.unwrap().weight_bp, 5000);
    // A new process: fresh telemetry totals, the store's progress.
    let mut second = Controller::new(plan);
    second.adopt(stored, now);
    let mut traffic = Traffic::new();
    let (_, timeline, _) = run(&mut second, &mut traffic, now, 2, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    let t: Vec<(EventKind, u32)> = timeline.iter().map(|t| (t.1, t.3)).collect();
    assert_eq!(
        t,
        vec![(EventKind::Advanced, 9000)],
        "no restart from step 1"
    );
}

#[test]
fn commands_move_the_phase_and_a_finished_rollout_refuses_them() {
    let mut c = Controller::new(mk_plan(&mk_rollout_yaml(
        "",
        "[{weight: 10}, {weight: 50}]",
    )));
    let mut traffic = Traffic::new();
    c.step(0, &traffic.totals);
    let paused = c.command(100, Command::Pause).unwrap();
    assert_eq!(
        transitions(&paused),
        vec![(EventKind::Paused, Phase::Paused, 1000)]
    );
    // Paused: healthy intervals do not advance it.
    let (now, timeline, _) = run(&mut c, &mut traffic, 200, 3, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    assert!(timeline.is_empty());
    assert!(c.command(now, Command::Pause).is_err());
    c.command(now, Command::Resume).unwrap();
    let (now, timeline, _) = run(&mut c, &mut traffic, now, 2, |_| {
        (mk_counts(40, 0, 5), mk_counts(60, 0, 5))
    });
    assert_eq!(timeline[0].1, EventKind::Advanced);
    let aborted = c.command(now, Command::Abort).unwrap();
    assert_eq!(
        transitions(&aborted),
        vec![(EventKind::Aborted, Phase::Aborted, 0)]
    );
    let refused = c.command(now, Command::Promote).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "rollout shop/reviews is Aborted: nothing to promote"
    );
}

#[test]
fn progress_round_trips_through_the_split_and_promotion_moves_the_stable_version() {
    let rollout = mk_rollout_yaml("", "[{weight: 12.5}, {weight: 50}]");
    let sticky = "apiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: reviews-split, namespace: shop}\nspec:\n  target: {service: reviews}\n  split: [{version: v1, weight: 100}, {version: v2, weight: 0}]\n  sticky: {header: x-user}\n";
    let mut set = mk_set(&format!("{rollout}---\n{sticky}"));
    let plan = mk_plan(&rollout);
    assert_eq!(stored_progress(&set, &plan), None);
    let progress = Progress {
        phase: Phase::Progressing,
        step: 0,
        weight_bp: 1250,
    };
    let docs = documents_for(&set, &plan, progress).unwrap();
    assert_eq!(docs.len(), 1);
    let weft_policy::Spec::TrafficSplit(s) = &docs[0].spec else {
        panic!()
    };
    assert_eq!(
        docs[0].metadata.name, "reviews-split",
        "the existing split is driven"
    );
    assert_eq!(s.sticky.as_ref().unwrap().header.as_deref(), Some("x-user"));
    assert_eq!((s.split[0].weight, s.split[1].weight), (87.5, 12.5));
    for d in docs {
        set.insert(d);
    }
    assert!(
        weft_policy::validate_set(&set, &Default::default(), weft_policy::References::Strict)
            .is_empty()
    );
    assert_eq!(stored_progress(&set, &plan), Some(progress));
    // Another generation of the rollout does not read this progress.
    let changed = mk_plan(&rollout.replace("interval: 2s", "interval: 3s"));
    assert_eq!(stored_progress(&set, &changed), None);
    let promoted = Progress {
        phase: Phase::Promoted,
        step: 1,
        weight_bp: 10_000,
    };
    let docs = documents_for(&set, &plan, promoted).unwrap();
    let weft_policy::Spec::Service(svc) = &docs[1].spec else {
        panic!()
    };
    assert_eq!(svc.stable_version.as_deref(), Some("v2"));
}

#[test]
fn ab_mode_routes_the_cohort_for_its_iterations_then_promotes_and_drops_the_route() {
    let yaml = mk_rollout_yaml("", "[]").replace(
        "  steps: []\n",
        "  ab: {match: {header: {name: x-beta, value: \"1\"}}, iterations: 2}\n",
    );
    let set = mk_set(&yaml);
    let plan = mk_plan(&yaml);
    let mut c = Controller::new(plan.clone());
    let (_, timeline, _) = run(&mut c, &mut Traffic::new(), 0, 3, |_| {
        (mk_counts(30, 0, 5), mk_counts(70, 0, 5))
    });
    let t: Vec<(EventKind, u32)> = timeline.iter().map(|t| (t.1, t.3)).collect();
    assert_eq!(
        t,
        vec![
            (EventKind::Started, 0),
            (EventKind::Advanced, 0),
            (EventKind::Promoted, 10_000)
        ]
    );
    let running = Progress {
        phase: Phase::Progressing,
        step: 0,
        weight_bp: 0,
    };
    let docs = documents_for(&set, &plan, running).unwrap();
    let weft_policy::Spec::TrafficSplit(s) = &docs[0].spec else {
        panic!()
    };
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].version, "v2");
    assert_eq!(s.routes[0].matches.header.as_ref().unwrap().name, "x-beta");
    assert_eq!((s.split[0].weight, s.split[1].weight), (100.0, 0.0));
    let mut after = set.clone();
    after.insert(docs[0].clone());
    let rolled_back = Progress {
        phase: Phase::RolledBack,
        step: 0,
        weight_bp: 0,
    };
    let docs = documents_for(&after, &plan, rolled_back).unwrap();
    let weft_policy::Spec::TrafficSplit(s) = &docs[0].spec else {
        panic!()
    };
    assert!(
        s.routes.is_empty(),
        "the cohort route leaves with the rollout"
    );
}
