//! The breaker stage against `MockHost`: admissions and releases as shared-data CAS
//! sequences, fail-fast replies, exactly K half-open probes, contention. Natively and,
//! through wasm-bindgen-test, on wasm32.

use super::*;
use weft_filter_core::breaker::worker::ADMIT_ATTEMPTS;
use weft_filter_core::host::{Call, MockHost};
use weft_filter_core::suite::MemoRequest;

const KEY: &str = "weft.breaker.v1/reviews-v1";

fn stage(host: &MockHost, policy: &str) -> BreakerStage {
    let json = format!(
        r#"{{"cluster_header": "x-weft-cluster", "clusters": {{"reviews-v1": {policy}}}}}"#
    );
    let stage = BreakerStage::new(Breaker::from_json(json.as_bytes()).unwrap(), 1, host);
    host.clear_calls();
    stage
}

fn to_cluster() -> MockHost {
    MockHost::request("GET", "reviews", "/").header("x-weft-cluster", "reviews-v1")
}

/// One request: headers, then (when admitted) `on_log` with `status`.
fn request(host: &MockHost, stage: &BreakerStage, status: u64) -> Gate {
    let gate = stage.on_request_headers(&MemoRequest::new(host));
    if let Gate::Admitted(slot) = gate {
        host.put_property("response.code", &status.to_le_bytes());
        stage.on_log(host, slot);
    }
    gate
}

fn shared_calls(host: &MockHost) -> Vec<Call> {
    host.calls()
        .into_iter()
        .filter(|c| matches!(c, Call::SharedGet(_) | Call::SharedSet { .. }))
        .collect()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn configuring_seeds_each_record_once() {
    let host = to_cluster();
    let _first = BreakerStage::new(
        Breaker::from_json(
            br#"{"cluster_header": "x-weft-cluster", "clusters": {"reviews-v1": {}}}"#,
        )
        .unwrap(),
        1,
        &host,
    );
    let seeds = |host: &MockHost| host.count(|c| matches!(c, Call::SharedSet { cas: None, .. }));
    assert_eq!(seeds(&host), 1);
    assert!(host.shared_record(KEY).is_some());
    host.clear_calls();
    let _again = BreakerStage::new(
        Breaker::from_json(
            br#"{"cluster_header": "x-weft-cluster", "clusters": {"reviews-v1": {}}}"#,
        )
        .unwrap(),
        1,
        &host,
    );
    assert_eq!(seeds(&host), 0, "the second configuration finds the key");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_closed_breaker_costs_one_read_per_request_and_no_write() {
    let host = to_cluster();
    let stage = stage(&host, "{}");
    for _ in 0..3 {
        assert!(matches!(request(&host, &stage, 200), Gate::Admitted(_)));
    }
    assert_eq!(shared_calls(&host), vec![Call::SharedGet(KEY.into()); 3]);
    // No gauge, counter or clock moved on the way either.
    assert_eq!(
        host.count(|c| matches!(c, Call::Increment(..) | Call::Record(..) | Call::Now)),
        0,
        "{:?}",
        host.calls()
    );
    assert!(host.replies().is_empty());
    // Telemetry learns the phase the admission saw.
    assert_eq!(
        BreakerMark::parse(host.property(&[BREAKER_PROPERTY]).as_deref()).phase,
        Some(Phase::Closed)
    );
    // A failure is written at once.
    assert!(matches!(request(&host, &stage, 503), Gate::Admitted(_)));
    assert_eq!(host.count(|c| matches!(c, Call::SharedSet { .. })), 1);
    let state = BreakerState::decode(&host.shared_record(KEY).unwrap().0).unwrap();
    assert_eq!(state.consecutive_failures, 1);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_open_breaker_fails_fast_then_admits_exactly_k_probes() {
    let host = to_cluster();
    let policy = r#"{"consecutive_failures": 2, "open_interval_ms": 1000, "jitter_percent": 0,
        "half_open_probes": 2}"#;
    let stage = stage(&host, policy);
    host.set_now(10_000);
    for _ in 0..2 {
        assert!(matches!(request(&host, &stage, 500), Gate::Admitted(_)));
    }
    assert_eq!(host.metric("weft.breaker.reviews-v1.opens"), Some(1));
    assert_eq!(host.metric("weft.breaker.reviews-v1.state"), Some(1));

    // Open: one fail-fast reply, no write (the record does not change).
    host.clear_calls();
    assert!(matches!(request(&host, &stage, 200), Gate::Rejected));
    assert_eq!(
        host.replies(),
        vec![(
            503,
            "upstream reviews-v1 unavailable: circuit breaker open\n".to_string()
        )]
    );
    assert_eq!(shared_calls(&host), vec![Call::SharedGet(KEY.into())]);
    let why = Call::SetProperty(
        DECISION_PROPERTY.into(),
        b"breaker: 503 fail-fast for cluster reviews-v1: open".to_vec(),
    );
    assert_eq!(host.count(|c| *c == why), 1, "{:?}", host.calls());
    assert_eq!(
        host.metric("weft.breaker.reviews-v1.rejected.open"),
        Some(1)
    );

    // After the interval: exactly two probes in flight, the third is rejected.
    host.set_now(11_000);
    let probes: Vec<Gate> = (0..3)
        .map(|_| stage.on_request_headers(&MemoRequest::new(&host)))
        .collect();
    assert!(matches!(probes[0], Gate::Admitted(s) if s.held.ticket.probe));
    assert!(matches!(probes[1], Gate::Admitted(s) if s.held.ticket.probe));
    assert!(matches!(probes[2], Gate::Rejected));
    assert_eq!(
        host.property(&[BREAKER_PROPERTY]).as_deref(),
        Some(&b"half-open"[..])
    );
    assert_eq!(host.metric("weft.breaker.reviews-v1.probes"), Some(2));
    assert_eq!(host.metric("weft.breaker.reviews-v1.half_opens"), Some(1));
    assert_eq!(
        host.metric("weft.breaker.reviews-v1.rejected.half_open"),
        Some(1)
    );
    // Both probes succeed: closed again.
    host.put_property("response.code", &200u64.to_le_bytes());
    for gate in &probes[..2] {
        if let Gate::Admitted(slot) = gate {
            stage.on_log(&host, *slot);
        }
    }
    assert_eq!(host.metric("weft.breaker.reviews-v1.closes"), Some(1));
    assert_eq!(host.metric("weft.breaker.reviews-v1.in_flight"), Some(0));
    assert!(matches!(request(&host, &stage, 200), Gate::Admitted(_)));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_lost_cas_race_is_retried_and_counted() {
    let host = to_cluster();
    // Under a cap the first admission leases slots by CAS (after its read of the record).
    let stage = stage(&host, r#"{"max_concurrent": 10}"#);
    host.conflict_next_cas(2);
    let gate = stage.on_request_headers(&MemoRequest::new(&host));
    assert!(matches!(gate, Gate::Admitted(_)));
    assert_eq!(host.count(|c| matches!(c, Call::SharedGet(_))), 1 + 3);
    assert_eq!(host.count(|c| matches!(c, Call::SharedSet { .. })), 3);
    assert_eq!(host.metric("weft.breaker.cas_retries"), Some(2));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn exhausted_contention_fails_safe_and_unguarded_traffic_is_untouched() {
    let host = to_cluster();
    let stage = stage(&host, r#"{"max_concurrent": 10}"#);
    host.conflict_next_cas(ADMIT_ATTEMPTS);
    assert!(matches!(
        stage.on_request_headers(&MemoRequest::new(&host)),
        Gate::Rejected
    ));
    assert_eq!(host.metric("weft.breaker.cas_exhausted"), Some(1));
    assert_eq!(
        host.metric("weft.breaker.reviews-v1.rejected.overflow"),
        Some(1)
    );
    assert_eq!(host.replies()[0].0, 503);

    let other = MockHost::request("GET", "ratings", "/").header("x-weft-cluster", "ratings-v1");
    let stage = BreakerStage::new(
        Breaker::from_json(
            br#"{"cluster_header": "x-weft-cluster", "clusters": {"reviews-v1": {}}}"#,
        )
        .unwrap(),
        1,
        &other,
    );
    other.clear_calls();
    assert!(matches!(
        stage.on_request_headers(&MemoRequest::new(&other)),
        Gate::Unguarded
    ));
    assert_eq!(shared_calls(&other), vec![]);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_dry_run_breaker_runs_its_machine_and_counts_what_it_would_fail_fast() {
    let host = to_cluster();
    let policy = r#"{"consecutive_failures": 2, "open_interval_ms": 1000, "jitter_percent": 0,
        "half_open_probes": 1, "dry_run": true}"#;
    let stage = stage(&host, policy);
    host.set_now(10_000);
    for _ in 0..2 {
        assert!(matches!(request(&host, &stage, 500), Gate::Admitted(_)));
    }
    // Open, as an enforced breaker would be: the next three pass, unguarded and counted.
    assert_eq!(host.metric("weft.breaker.reviews-v1.opens"), Some(1));
    host.clear_calls();
    for _ in 0..3 {
        assert!(matches!(request(&host, &stage, 200), Gate::Unguarded));
    }
    assert!(host.replies().is_empty());
    // No decision (nothing was answered); telemetry is told the phase and the verdict.
    let mark = Call::SetProperty(BREAKER_PROPERTY.into(), b"open,would_fail_fast".to_vec());
    assert_eq!(host.count(|c| *c == mark), 3, "{:?}", host.calls());
    assert_eq!(
        host.count(|c| matches!(c, Call::SetProperty(n, _) if n == DECISION_PROPERTY)),
        0
    );
    assert_eq!(
        host.metric("weft.breaker.reviews-v1.would_fail_fast"),
        Some(3)
    );
    assert_eq!(host.metric("weft.breaker.reviews-v1.rejections"), Some(0));
    // After the interval the probe is admitted and its success closes the machine.
    host.set_now(11_000);
    assert!(matches!(request(&host, &stage, 200), Gate::Admitted(_)));
    assert_eq!(host.metric("weft.breaker.reviews-v1.closes"), Some(1));
}
