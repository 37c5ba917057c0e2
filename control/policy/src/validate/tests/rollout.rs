//! Rollout documents: every refusal names its field.

use super::*;

fn mk_rollout(name: &str, body: &str) -> String {
    mk_doc("Rollout", name, body)
}

const ANALYSIS: &str = "  interval: 2s\n  analysis: {successRate: {min: 99}, latencyP99: {maxMs: 500, maxRatioToStable: 1.2}, minRequests: 20, failureThreshold: 2}\n";

fn rollout_with(head: &str) -> String {
    mk_rollout(
        "r",
        &format!("  target: {{service: reviews}}\n{head}{ANALYSIS}"),
    )
}

#[test]
fn a_valid_rollout_passes_and_its_schedule_is_what_it_says() {
    let doc = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 10}, {weight: 50, pause: 4s}, {weight: 90}]\n");
    assert_eq!(check(&doc), vec![]);
    let stepped = rollout_with("  stable: v1\n  canary: v2\n  stepWeight: 30\n  maxWeight: 80\n");
    assert_eq!(check(&stepped), vec![]);
    let docs = crate::load(stepped.as_bytes(), &Limits::default()).unwrap();
    let Spec::Rollout(spec) = &docs[0].spec else {
        panic!("not a rollout")
    };
    let weights: Vec<u32> = rollout_schedule(spec)
        .unwrap()
        .iter()
        .map(|s| s.weight_bp)
        .collect();
    assert_eq!(weights, vec![3000, 6000, 8000]);
}

#[test]
fn undeclared_versions_are_refused_with_the_field_named() {
    let doc = rollout_with("  stable: v1\n  canary: v9\n  steps: [{weight: 10}]\n");
    assert_error(&doc, "spec.canary", "unknown service version \"v9\"");
    let doc = rollout_with("  stable: v0\n  canary: v2\n  steps: [{weight: 10}]\n");
    assert_error(&doc, "spec.stable", "unknown service version \"v0\"");
}

#[test]
fn steps_that_do_not_increase_are_refused() {
    let doc = rollout_with(
        "  stable: v1\n  canary: v2\n  steps: [{weight: 10}, {weight: 30}, {weight: 30}]\n",
    );
    assert_error(
        &doc,
        "spec.steps[2].weight",
        "steps must increase: 30% is not above the previous step's 30%",
    );
    let doc = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 50}, {weight: 20}]\n");
    assert_error(&doc, "spec.steps[1].weight", "must increase");
    let doc = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 100}]\n");
    assert_error(&doc, "spec.steps[0].weight", "must be below 100");
    let doc = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 0}]\n");
    assert_error(&doc, "spec.steps[0].weight", "must be above 0");
    let doc = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 10.001}]\n");
    assert_error(&doc, "spec.steps[0].weight", "decimals");
    let doc = rollout_with(
        "  stable: v1\n  canary: v2\n  steps: [{weight: 10}]\n  stepWeight: 10\n  maxWeight: 50\n",
    );
    assert_error(&doc, "spec.steps", "not both");
    let doc = rollout_with("  stable: v1\n  canary: v2\n  stepWeight: 60\n  maxWeight: 50\n");
    assert_error(&doc, "spec.maxWeight", "at least stepWeight");
    let doc = rollout_with("  stable: v1\n  canary: v2\n");
    assert_error(&doc, "spec.steps", "give either");
    let doc = rollout_with("  stable: v1\n  canary: v2\n  stepWeight: 0.01\n  maxWeight: 99\n");
    assert_error(&doc, "spec.stepWeight", "more than 100 steps");
}

#[test]
fn a_second_rollout_on_the_same_service_is_refused() {
    let a = rollout_with("  stable: v1\n  canary: v2\n  steps: [{weight: 10}]\n");
    let b = a.replace("name: r,", "name: other,");
    assert_error(
        &format!("{a}\n---\n{b}"),
        "spec.target",
        "conflicts with Rollout/shop/other: service shop/reviews already has a rollout",
    );
}

#[test]
fn bad_analysis_interval_and_versions_are_each_named() {
    let doc = mk_rollout(
        "r",
        "  target: {service: reviews, versions: [v1]}\n  stable: v2\n  canary: v2\n  steps: [{weight: 10, pause: 5 minutes}]\n  interval: 1s\n  analysis: {successRate: {}, latencyP99: {maxMs: 0, maxRatioToStable: 0.5}, minRequests: 0, failureThreshold: 0}\n",
    );
    let errs = check(&doc);
    for (field, reason) in [
        ("spec.target.versions", "not supported"),
        ("spec.canary", "must differ"),
        ("spec.steps[0].pause", ""),
        ("spec.interval", "between 2s and 1h"),
        ("spec.analysis.successRate", "at least one of `min`"),
        ("spec.analysis.latencyP99.maxMs", "1-300000"),
        (
            "spec.analysis.latencyP99.maxRatioToStable",
            "between 1 and 100",
        ),
        ("spec.analysis.minRequests", "1-1000000"),
        ("spec.analysis.failureThreshold", "1-100"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.field == field && e.reason.contains(reason)),
            "expected `{field}`: `{reason}` in {errs:#?}"
        );
    }
    let doc = mk_rollout(
        "r",
        "  target: {service: reviews}\n  stable: v1\n  canary: v2\n  steps: [{weight: 10}]\n  interval: 2s\n  analysis: {minRequests: 5, failureThreshold: 1, typo: 1}\n",
    );
    assert_error(&doc, "spec.analysis.typo", "unknown field");
}

#[test]
fn ab_mode_takes_a_cohort_and_iterations_and_no_steps() {
    let ab = "  stable: v1\n  canary: v2\n  ab: {match: {cookie: {name: beta}}, iterations: 3}\n";
    assert_eq!(check(&rollout_with(ab)), vec![]);
    let both = "  stable: v1\n  canary: v2\n  steps: [{weight: 10}]\n  ab: {match: {cookie: {name: beta}}, iterations: 3}\n";
    assert_error(&rollout_with(both), "spec.ab", "takes no `steps`");
    let two = "  stable: v1\n  canary: v2\n  ab: {match: {cookie: {name: beta}, header: {name: x-beta}}, iterations: 0}\n";
    assert_error(&rollout_with(two), "spec.ab.match", "exactly one of");
    assert_error(&rollout_with(two), "spec.ab.iterations", "1-1000");
    let bad = "  stable: v1\n  canary: v2\n  ab: {match: {header: {name: \"bad header\"}}, iterations: 2}\n";
    assert_error(&rollout_with(bad), "spec.ab.match.header.name", "");
}

#[test]
fn hostile_numbers_are_refused_not_panicked_on() {
    let head = "  target: {service: reviews}\n  stable: v1\n  canary: v2\n";
    let ok_analysis = "{successRate: {min: 99}, minRequests: 5, failureThreshold: 1}";
    let cases = [
        (
            "spec.steps[0].weight",
            "  steps: [{weight: .nan}]\n",
            "2s",
            ok_analysis,
        ),
        (
            "spec.steps[0].weight",
            "  steps: [{weight: .inf}]\n",
            "2s",
            ok_analysis,
        ),
        (
            "spec.stepWeight",
            "  stepWeight: -5\n  maxWeight: 50\n",
            "2s",
            ok_analysis,
        ),
        (
            "spec.maxWeight",
            "  stepWeight: 5\n  maxWeight: 1e308\n",
            "2s",
            ok_analysis,
        ),
        (
            "spec.interval",
            "  steps: [{weight: 5}]\n",
            "999999h",
            ok_analysis,
        ),
        (
            "spec.analysis.successRate.min",
            "  steps: [{weight: 5}]\n",
            "2s",
            "{successRate: {min: 1e308}, minRequests: 5, failureThreshold: 1}",
        ),
        (
            "spec.analysis.latencyP99.maxRatioToStable",
            "  steps: [{weight: 5}]\n",
            "2s",
            "{latencyP99: {maxRatioToStable: .inf}, minRequests: 5, failureThreshold: 1}",
        ),
        (
            "spec.analysis.minRequests",
            "  steps: [{weight: 5}]\n",
            "2s",
            "{successRate: {min: 99}, minRequests: 18446744073709551615, failureThreshold: 1}",
        ),
        (
            "spec.analysis.failureThreshold",
            "  steps: [{weight: 5}]\n",
            "2s",
            "{successRate: {min: 99}, minRequests: 5, failureThreshold: 4294967295}",
        ),
    ];
    for (field, steps, interval, analysis) in cases {
        let doc = mk_rollout(
            "r",
            &format!("{head}{steps}  interval: {interval}\n  analysis: {analysis}\n"),
        );
        let errs = check(&doc);
        assert!(
            errs.iter().any(|e| e.field == field),
            "{field} in {errs:#?}"
        );
    }
}
