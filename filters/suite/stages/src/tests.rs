//! The whole suite pipeline against `MockHost`: stage order, one host read per attribute,
//! local replies stopping later stages, a delayed request finishing on the tick. Natively
//! and, through wasm-bindgen-test, on wasm32.

use super::*;
use weft_filter_core::host::{Call, MockHost};
use weft_filter_core::testing::suite_config::{AUTHZ, BREAKER, CANARY, NO_FAULT, TELEMETRY};

const ALWAYS_DELAY: &str = r#"{"percent_cap": 100, "policies": [{"name": "slow",
    "match": {"hosts": ["reviews"]}, "delay": {"percent": 100, "fixed_ms": 20}}]}"#;

const ROOT: u32 = 1;
const REQUEST: u32 = 2;

fn stages(host: &MockHost, fault: &str) -> Stages {
    let json = format!(
        r#"{{"telemetry": {TELEMETRY}, "authz": {AUTHZ}, "canary": {CANARY}, "fault": {fault}, "breaker": {BREAKER}}}"#
    );
    let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, host);
    host.clear_calls();
    stages
}

/// How often each request attribute was read from the host.
fn reads(host: &MockHost) -> Vec<(String, usize)> {
    let mut reads: Vec<(String, usize)> = Vec::new();
    for call in host.calls() {
        let name = match call {
            Call::ReadHeader(name) | Call::ReadProperty(name) => name,
            _ => continue,
        };
        match reads.iter_mut().find(|(n, _)| *n == name) {
            Some((_, n)) => *n += 1,
            None => reads.push((name, 1)),
        }
    }
    reads
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_allowed_request_runs_every_stage_reading_each_attribute_once() {
    let host = MockHost::request("GET", "reviews", "/reports/q1").header("x-user", "ann");
    let stages = stages(&host, NO_FAULT);
    let mut request = SuiteRequest::new(REQUEST);
    assert_eq!(
        request.on_request_headers(&stages, &host, true),
        Flow::Continue
    );
    for (name, count) in reads(&host) {
        assert_eq!(count, 1, "{name} read {count} times: {:?}", host.calls());
    }
    // Canary wrote the cluster; the breaker took it from memory and admitted the request.
    let cluster = host.request_header("x-weft-cluster").unwrap();
    assert!(cluster == "v1" || cluster == "v2");
    assert_eq!(
        host.count(|c| *c == Call::ReadHeader("x-weft-cluster".into())),
        0
    );
    // A closed breaker admits on one read of its record, without a write.
    let key = format!("weft.breaker.v1/{cluster}");
    assert_eq!(
        host.count(|c| matches!(c, Call::SharedGet(k) if *k == key)),
        1
    );
    assert_eq!(host.count(|c| matches!(c, Call::SharedSet { .. })), 0);
    assert!(host.replies().is_empty());
    assert_eq!(host.metric("weft.authz.allowed"), Some(1));
    let per_request = host.call_count();

    host.put_property("response.code", &200u64.to_le_bytes());
    request.on_log(&stages, &host);
    assert_eq!(
        host.metric(&format!("weft.breaker.{cluster}.in_flight")),
        Some(0)
    );
    // Outbound telemetry: one edge counter, authz outcome from memory. The breaker's phase
    // is a mark only telemetry reads, and telemetry runs here: it stays in memory, nothing is
    // written to the host and telemetry does not ask the host for it.
    assert_eq!(
        host.moved_metrics()
            .iter()
            .filter(|(n, _)| n.ends_with(".requests") && n.starts_with("weft.telemetry"))
            .count(),
        1
    );
    assert_eq!(properties_written(&host), Vec::<String>::new());
    assert_eq!(
        host.count(
            |c| *c == Call::ReadProperty(weft_filter_core::telemetry::BREAKER_PROPERTY.into())
        ),
        0
    );
    // The whole request, headers to log, stays small: a regression here is a host-call cost.
    assert!(
        per_request <= 20,
        "{per_request} host calls: {:?}",
        host.calls()
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_deny_stops_the_later_stages_and_is_still_recorded() {
    let host = MockHost::request("GET", "reviews", "/admin/users");
    let stages = stages(&host, ALWAYS_DELAY);
    let mut request = SuiteRequest::new(REQUEST);
    assert_eq!(
        request.on_request_headers(&stages, &host, true),
        Flow::Pause
    );
    assert_eq!(host.replies().len(), 1);
    assert_eq!(host.replies()[0].0, 403);
    // No canary header, no delay, no breaker slot.
    assert_eq!(host.request_header("x-weft-cluster"), None);
    assert_eq!(host.count(|c| matches!(c, Call::SetHeader(..))), 0);
    assert_eq!(host.count(|c| matches!(c, Call::SetTick(_))), 0);
    assert_eq!(host.count(|c| matches!(c, Call::SharedGet(_))), 0);
    host.put_property("response.code", &403u64.to_le_bytes());
    request.on_log(&stages, &host);
    assert_eq!(host.metric("weft.authz.denied"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_delayed_request_is_admitted_by_the_breaker_on_the_tick_and_released_in_on_log() {
    let host = MockHost::request("GET", "reviews", "/reports/q1").header("x-user", "ann");
    let stages = stages(&host, ALWAYS_DELAY);
    let mut ticks = Ticks::default();
    ticks.configure(&host, &stages);
    host.set_now(1_000);
    let mut request = SuiteRequest::new(REQUEST);
    assert_eq!(
        request.on_request_headers(&stages, &host, true),
        Flow::Pause
    );
    assert_eq!(
        host.count(|c| matches!(c, Call::SharedSet { .. })),
        0,
        "held first"
    );

    ticks.on_tick(&host, &stages, 1_010);
    assert_eq!(host.count(|c| *c == Call::Resume), 0, "not due");
    let cluster = host.request_header("x-weft-cluster").unwrap();
    let key = format!("weft.breaker.v1/{cluster}");
    let reads = |host: &MockHost| host.count(|c| matches!(c, Call::SharedGet(k) if *k == key));
    let before = reads(&host);
    ticks.on_tick(&host, &stages, 1_020);
    assert_eq!(host.count(|c| *c == Call::Resume), 1);
    assert_eq!(reads(&host), before + 1, "admitted");

    // The ticket came back to the request's context: its failure is written in on_log.
    host.put_property("response.code", &503u64.to_le_bytes());
    request.on_log(&stages, &host);
    assert_eq!(host.count(|c| matches!(c, Call::SharedSet { .. })), 1);
    let record = host.shared_record(&key).unwrap().0;
    let state = weft_filter_core::breaker::BreakerState::decode(&record).unwrap();
    assert_eq!(state.consecutive_failures, 1);
}

/// The stream properties a request's stages write to the host, by name.
fn properties_written(host: &MockHost) -> Vec<String> {
    host.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SetProperty(name, _) => Some(name),
            _ => None,
        })
        .collect()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn without_telemetry_the_marks_go_to_the_host_unless_no_one_outside_reads_them() {
    use weft_filter_core::telemetry::{AUTHZ_PROPERTY, BREAKER_PROPERTY, DECISION_PROPERTY};
    let suite = |extra: &str, fault: &str| {
        format!(
            r#"{{{extra}"authz": {AUTHZ}, "canary": {CANARY}, "fault": {fault}, "breaker": {BREAKER}}}"#
        )
    };
    // (configuration, whether a filter later in the chain gets the marks)
    let cases = [
        (suite("", NO_FAULT), true),
        (suite(r#""publish_marks": true, "#, NO_FAULT), true),
        (suite(r#""publish_marks": false, "#, NO_FAULT), false),
        // With telemetry here, the marks stay in memory whatever the flag says.
        (
            suite(
                &format!(r#""telemetry": {TELEMETRY}, "publish_marks": true, "#),
                NO_FAULT,
            ),
            false,
        ),
    ];
    for (json, published) in cases {
        let host = MockHost::request("GET", "reviews", "/reports/q1").header("x-user", "ann");
        let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, &host);
        host.clear_calls();
        // An admitted request: the breaker marks the phase it saw.
        let mut request = SuiteRequest::new(REQUEST);
        request.on_request_headers(&stages, &host, true);
        host.put_property("response.code", &200u64.to_le_bytes());
        request.on_log(&stages, &host);
        let expected: Vec<String> = if published {
            vec![BREAKER_PROPERTY.to_string()]
        } else {
            vec![]
        };
        assert_eq!(properties_written(&host), expected, "{json}");

        // A denied request: authz's outcome is a mark; the access log's decision is not.
        let host = MockHost::request("GET", "reviews", "/admin/users");
        let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, &host);
        host.clear_calls();
        let mut request = SuiteRequest::new(REQUEST);
        assert_eq!(
            request.on_request_headers(&stages, &host, true),
            Flow::Pause
        );
        let mut expected = vec![DECISION_PROPERTY.to_string()];
        if published {
            expected.insert(0, AUTHZ_PROPERTY.to_string());
        }
        let mut written = properties_written(&host);
        written.sort();
        expected.sort();
        assert_eq!(written, expected, "{json}");
    }

    // A request the fault stage delayed meets the breaker on the tick, in a view of its own.
    for (flag, published) in [("", true), (r#""publish_marks": false, "#, false)] {
        let json = suite(flag, ALWAYS_DELAY);
        let host = MockHost::request("GET", "reviews", "/reports/q1").header("x-user", "ann");
        let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, &host);
        host.set_now(1_000);
        let mut request = SuiteRequest::new(REQUEST);
        assert_eq!(
            request.on_request_headers(&stages, &host, true),
            Flow::Pause
        );
        host.clear_calls();
        stages.release_delayed(&host, 1_020);
        assert_eq!(host.count(|c| *c == Call::Resume), 1);
        let breaker_marks = properties_written(&host)
            .iter()
            .filter(|n| *n == BREAKER_PROPERTY)
            .count();
        assert_eq!(breaker_marks, usize::from(published), "{json}");
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn the_slow_tick_is_the_shorter_of_gauge_refresh_and_flush() {
    let host = MockHost::new();
    let stages = stages(&host, NO_FAULT);
    Ticks::default().configure(&host, &stages);
    // Breaker gauges every second, telemetry flush every second by default.
    assert_eq!(host.calls(), vec![Call::SetTick(Duration::from_secs(1))]);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_module_holding_counters_ticks_even_without_breaker_or_telemetry() {
    let host = MockHost::new();
    let json = format!(r#"{{"authz": {AUTHZ}, "canary": {CANARY}}}"#);
    let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, &host);
    host.clear_calls();
    Ticks::default().configure(&host, &stages);
    assert_eq!(host.calls(), vec![], "nothing to tick for");
    Ticks::with_counter_flush().configure(&host, &stages);
    assert_eq!(host.calls(), vec![Call::SetTick(COUNTER_FLUSH)]);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_client_gone_while_delayed_is_cancelled_not_resumed() {
    let host = MockHost::request("GET", "reviews", "/reports/q1");
    let stages = stages(&host, ALWAYS_DELAY);
    let mut request = SuiteRequest::new(REQUEST);
    request.on_request_headers(&stages, &host, true);
    request.on_done(&stages, &host);
    assert_eq!(host.metric("weft.fault.delays_cancelled"), Some(1));
    stages.release_delayed(&host, u64::MAX);
    assert_eq!(host.count(|c| *c == Call::Resume), 0);
}

/// Host calls of one allowed request (headers to `on_log`) per stage alone and for the whole
/// suite: what each costs in a real proxy. A measurement, not an assertion.
#[test]
#[ignore = "measurement for the closing note; run with --ignored --nocapture"]
fn host_calls_per_request() {
    let cases = [
        (
            "telemetry",
            format!(r#"{{"listener": "outbound", "telemetry": {TELEMETRY}}}"#),
        ),
        ("authz", format!(r#"{{"authz": {AUTHZ}}}"#)),
        ("canary", format!(r#"{{"canary": {CANARY}}}"#)),
        ("fault", format!(r#"{{"fault": {NO_FAULT}}}"#)),
        ("breaker", format!(r#"{{"breaker": {BREAKER}}}"#)),
        (
            "suite",
            format!(
                r#"{{"telemetry": {TELEMETRY}, "authz": {AUTHZ}, "canary": {CANARY}, "fault": {NO_FAULT}, "breaker": {BREAKER}}}"#
            ),
        ),
    ];
    for (name, json) in cases {
        let host = MockHost::request("GET", "reviews", "/reports/q1")
            .header("x-user", "ann")
            .header("x-weft-cluster", "v1")
            .with_property_u64("response.code", 200);
        let stages = Stages::new(Suite::from_json(json.as_bytes()).unwrap(), ROOT, &host);
        host.clear_calls();
        let mut request = SuiteRequest::new(REQUEST);
        request.on_request_headers(&stages, &host, true);
        let headers = host.call_count();
        request.on_log(&stages, &host);
        println!(
            "{name:10} headers {headers:2}  +on_log {:2}  = {:2}",
            host.call_count() - headers,
            host.call_count()
        );
    }
}
