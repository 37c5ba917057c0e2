//! The fault stage against `MockHost`: aborts, delays held on the root's tick, releases,
//! cancellations and the concurrency cap. Natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use std::time::Duration;
use weft_filter_core::host::{Call, MockHost};

const ROOT: u32 = 1;
const REQUEST: u32 = 7;

fn stage(host: &MockHost, policy: &str, extra: &str) -> FaultStage<()> {
    let json = format!(
        r#"{{"percent_cap": 100{extra}, "policies": [{{"name": "chaos", "match": {{"hosts": ["reviews"]}}, {policy}}}]}}"#
    );
    let stage = FaultStage::new(Fault::from_json(json.as_bytes()).unwrap(), ROOT, host);
    host.clear_calls();
    stage
}

/// One GET to reviews through a stage with `policy`.
fn one_request(policy: &str) -> (MockHost, FaultStage<()>, Flow) {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, policy, "");
    let flow = stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    (host, stage, flow)
}

const DELAY: &str = r#""delay": {"percent": 100, "fixed_ms": 200}"#;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_abort_is_one_local_reply_counted_in_total_and_per_policy() {
    let (host, _, flow) =
        one_request(r#""abort": {"percent": 100, "http_status": 503, "body": "injected"}"#);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(host.replies(), vec![(503, "injected".to_string())]);
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.fault.aborts_injected".to_string(), 1),
            ("weft.fault.policy.chaos.aborts_injected".to_string(), 1)
        ]
    );
    let why = Call::SetProperty(
        DECISION_PROPERTY.into(),
        b"fault: 503 injected by policy chaos".to_vec(),
    );
    assert_eq!(host.count(|c| *c == why), 1, "{:?}", host.calls());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_dry_run_policy_counts_what_it_would_inject_and_injects_nothing() {
    let (host, stage, flow) = one_request(
        r#""dry_run": true, "abort": {"percent": 100, "http_status": 503}, "delay": {"percent": 100, "fixed_ms": 200}"#,
    );
    assert_eq!(flow, Flow::Continue);
    assert!(host.replies().is_empty());
    assert!(!stage.is_holding());
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.fault.policy.chaos.would_abort".to_string(), 1),
            ("weft.fault.policy.chaos.would_delay".to_string(), 1),
            ("weft.fault.would_abort".to_string(), 1),
            ("weft.fault.would_delay".to_string(), 1),
        ]
    );
    // No decision (nothing was answered); telemetry is told what would have happened.
    let marks = Call::SetProperty(FAULT_PROPERTY.into(), b"would_abort,would_delay".to_vec());
    assert_eq!(
        host.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::SetProperty(..)))
            .collect::<Vec<_>>(),
        vec![marks]
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_delayed_request_is_marked_for_telemetry_once() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, DELAY, "");
    host.set_now(1_000);
    let flow = stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    assert_eq!(flow, Flow::Pause);
    assert_eq!(
        FaultMarks::parse(host.property(&[FAULT_PROPERTY]).as_deref()),
        FaultMarks {
            delayed: true,
            ..FaultMarks::default()
        }
    );
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 1);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn another_host_is_untouched() {
    let host = MockHost::request("GET", "ratings", "/");
    let stage = stage(&host, DELAY, "");
    let flow = stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    assert_eq!(flow, Flow::Continue);
    assert!(host.moved_metrics().is_empty());
    assert_eq!(host.count(|c| matches!(c, Call::SetTick(_))), 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_delay_arms_the_roots_tick_and_resumes_when_due() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, DELAY, "");
    host.set_now(1_000);
    let flow = stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    assert_eq!(flow, Flow::Pause);
    // The tick is the root's: set as the root, then back to the request.
    let switches: Vec<Call> = host
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::SetContext(_) | Call::SetTick(_)))
        .collect();
    assert_eq!(switches.len(), 3);
    assert_eq!(switches[0], Call::SetContext(ROOT));
    assert!(matches!(switches[1], Call::SetTick(p) if p > Duration::ZERO));
    assert_eq!(switches[2], Call::SetContext(REQUEST));
    assert_eq!(host.metric("weft.fault.delays_pending"), Some(1));
    assert_eq!(
        host.metric("weft.fault.policy.chaos.delays_injected"),
        Some(1)
    );
    assert!(stage.is_holding());

    let mut resumed = Vec::new();
    stage.release(&host, 1_199, |id, ()| {
        resumed.push(id);
        resume(&host, id)
    });
    assert!(resumed.is_empty(), "not due yet");
    stage.release(&host, 1_200, |id, ()| {
        resumed.push(id);
        resume(&host, id)
    });
    assert_eq!(resumed, vec![REQUEST]);
    assert_eq!(host.count(|c| *c == Call::Resume), 1);
    assert_eq!(
        host.count(|c| *c == Call::SetTick(Duration::ZERO)),
        1,
        "disarmed"
    );
    assert_eq!(host.metric("weft.fault.delays_pending"), Some(0));
    assert!(!stage.is_holding());
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_delayed_abort_is_answered_as_its_request_after_the_delay() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(
        &host,
        r#""delay": {"percent": 100, "fixed_ms": 200}, "abort": {"percent": 100, "http_status": 500}"#,
        "",
    );
    host.set_now(0);
    stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    assert!(host.replies().is_empty(), "held first");
    host.clear_calls();
    stage.release(&host, 200, |_, ()| panic!("an abort is not resumed"));
    let calls = host.calls();
    let at = calls.iter().position(|c| *c == Call::SetContext(REQUEST));
    let reply = calls
        .iter()
        .position(|c| matches!(c, Call::LocalReply { .. }));
    assert!(at.is_some() && reply.is_some() && at < reply, "{calls:?}");
    // Named for the access log as the request's own property, before its reply.
    let why = Call::SetProperty(
        DECISION_PROPERTY.into(),
        b"fault: 500 injected by policy chaos".to_vec(),
    );
    let set = calls.iter().position(|c| *c == why);
    assert!(set.is_some() && at < set && set < reply, "{calls:?}");
    assert_eq!(host.replies()[0].0, 500);
    assert_eq!(host.metric("weft.fault.aborts_injected"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_client_that_leaves_cancels_its_delay_and_a_gone_context_is_not_resumed() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, DELAY, "");
    stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    stage.on_done(&host, REQUEST);
    assert_eq!(host.metric("weft.fault.delays_cancelled"), Some(1));
    assert_eq!(host.metric("weft.fault.delays_pending"), Some(0));
    stage.on_done(&host, REQUEST);
    assert_eq!(host.metric("weft.fault.delays_cancelled"), Some(1), "once");

    host.context_gone(9);
    assert!(!resume(&host, 9));
    assert_eq!(host.count(|c| *c == Call::Resume), 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn past_the_concurrency_cap_no_delay_is_injected() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, DELAY, r#", "max_concurrent_delays": 1"#);
    let first = stage.on_request_headers(REQUEST, &MemoRequest::new(&host), || ());
    let second = stage.on_request_headers(REQUEST + 1, &MemoRequest::new(&host), || ());
    assert_eq!((first, second), (Flow::Pause, Flow::Continue));
    assert_eq!(
        host.metric("weft.fault.policy.chaos.skipped_by_cap"),
        Some(1)
    );
    assert_eq!(host.metric("weft.fault.delays_pending"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn max_active_counts_held_requests_until_they_are_released_or_cancelled() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, &format!(r#""max_active": 1, {DELAY}"#), "");
    let req = MemoRequest::new(&host);
    let flows: Vec<Flow> = (0..2)
        .map(|i| stage.on_request_headers(REQUEST + i, &req, || ()))
        .collect();
    assert_eq!(flows, [Flow::Pause, Flow::Continue]);
    assert_eq!(
        host.metric("weft.fault.policy.chaos.skipped_by_max_active"),
        Some(1)
    );
    // Released on its due tick: the place is free again.
    stage.release(&host, u64::MAX, |_, ()| true);
    assert_eq!(
        stage.on_request_headers(REQUEST + 2, &req, || ()),
        Flow::Pause
    );
    // A client that leaves frees it too.
    stage.on_done(&host, REQUEST + 2);
    assert_eq!(
        stage.on_request_headers(REQUEST + 3, &req, || ()),
        Flow::Pause
    );
    assert_eq!(
        host.metric("weft.fault.policy.chaos.skipped_by_max_active"),
        Some(1)
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn max_percent_counts_what_it_holds_back() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(
        &host,
        r#""max_percent": 50, "abort": {"percent": 100, "http_status": 503}"#,
        "",
    );
    let req = MemoRequest::new(&host);
    let flows: Vec<Flow> = (0..4)
        .map(|i| stage.on_request_headers(REQUEST + i, &req, || ()))
        .collect();
    assert_eq!(
        flows,
        [Flow::Continue, Flow::Pause, Flow::Continue, Flow::Pause]
    );
    assert_eq!(host.metric("weft.fault.aborts_injected"), Some(2));
    assert_eq!(host.metric("weft.fault.skipped_by_max_percent"), Some(2));
}
