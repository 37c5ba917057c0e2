//! The telemetry stage against `MockHost`: tagged counters per edge, signed reports and
//! their failures. Natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use weft_filter_core::host::{Call, MockHost};

const KEY: &str = "00ff00ff00ff00ff00ff00ff00ff00ff";

fn stage(host: &MockHost, direction: &str, key: bool) -> TelemetryStage {
    let key = if key {
        format!(r#", "key": "{KEY}""#)
    } else {
        String::new()
    };
    let json = format!(
        r#"{{"direction": "{direction}", "namespace": "default", "service": "reviews", "version": "v1"{key}}}"#
    );
    let stage = TelemetryStage::new(TelemetryConfig::from_json(json.as_bytes()).unwrap(), host);
    host.clear_calls();
    stage
}

/// The `*.requests` counters that moved, by name.
fn edge_counters(host: &MockHost) -> Vec<(String, i64)> {
    host.moved_metrics()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".requests"))
        .collect()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_inbound_deny_is_counted_on_its_tagged_edge() {
    let host = MockHost::request("GET", "reviews", "/r/1?x=1")
        .peer("spiffe://cluster.local/ns/default/sa/productpage")
        .with_property_u64("response.code", 403)
        .with_property_u64("request.duration", 7_000_000);
    let stage = stage(&host, "inbound", true);
    stage.on_log(&host, Some(AuthzOutcome::Denied));
    stage.on_log(&host, Some(AuthzOutcome::Denied));
    let counters = edge_counters(&host);
    assert_eq!(counters.len(), 1, "{counters:?}");
    let (name, count) = &counters[0];
    assert_eq!(*count, 2);
    for tag in [
        ".inbound",
        ".productpage",
        ".reviews",
        ".v1",
        ".4xx",
        ".deny",
        ".pass",
    ] {
        assert!(name.contains(tag), "{name} lacks {tag}");
    }
    // 7 ms twice into the latency histogram; the outcome came from memory, no property read.
    assert_eq!(
        host.count(|c| matches!(c, Call::Record(n, 7) if n.ends_with(".latency_ms"))),
        2
    );
    assert_eq!(
        host.count(|c| *c == Call::ReadProperty(AUTHZ_PROPERTY.into())),
        0
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_separate_authz_filter_is_read_from_the_stream_property() {
    let host = MockHost::request("GET", "reviews", "/")
        .with_property(AUTHZ_PROPERTY, b"dry_run_deny")
        .with_property_u64("response.code", 200);
    let stage = stage(&host, "inbound", false);
    stage.on_log(&host, None);
    let counters = edge_counters(&host);
    assert_eq!(counters.len(), 1);
    assert!(counters[0].0.contains(".dry_run_deny"), "{counters:?}");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_outbound_breaker_reply_is_tagged_open_with_the_cluster_version() {
    let host = MockHost::request("GET", "ratings:9080", "/")
        .with_property(
            "xds.cluster_name",
            b"outbound|9080|v2|ratings.default.svc.cluster.local",
        )
        .with_property_u64("response.code", 503)
        .with_property(
            DECISION_PROPERTY,
            b"breaker: 503 fail-fast for cluster outbound|9080|v2|ratings.default: half-open",
        );
    let stage = stage(&host, "outbound", false);
    stage.on_log(&host, None);
    let counters = edge_counters(&host);
    assert_eq!(counters.len(), 1);
    for tag in [".outbound", ".reviews", ".ratings", ".v2", ".5xx", ".open"] {
        assert!(counters[0].0.contains(tag), "{counters:?} lacks {tag}");
    }
}

/// The one edge of the stage's pending batch.
fn pending_edge(stage: &TelemetryStage) -> weft_filter_core::telemetry::EdgeReport {
    let report = stage
        .batch
        .borrow_mut()
        .take(Direction::Outbound, "default", "reviews", "v1")
        .unwrap();
    assert_eq!(report.edges.len(), 1, "{report:?}");
    report.edges.into_iter().next().unwrap()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_injected_abort_is_a_local_reply_on_the_version_the_canary_picked() {
    // Answered before the route read the canary's header: no mesh cluster yet.
    let host = MockHost::request("GET", "ratings", "/")
        .header("x-weft-cluster", "outbound|9080|v2|ratings.default")
        .with_property("xds.cluster_name", b"ratings")
        .with_property_u64("response.code", 503)
        .with_property(DECISION_PROPERTY, b"fault: 503 injected by policy chaos");
    let stage = stage(&host, "outbound", true);
    stage.on_log(&host, None);
    let edge = pending_edge(&stage);
    assert_eq!(
        (edge.destination.as_str(), edge.version.as_str()),
        ("ratings", "v2")
    );
    assert_eq!(
        (edge.requests, edge.aborted, edge.local_status[5]),
        (1, 1, 1)
    );
    assert_eq!((edge.breaker_open, edge.unreached, edge.denied), (0, 0, 0));
    // A header naming another service's cluster (an app's own) does not move the reply.
    let host = MockHost::request("GET", "ratings:9080", "/")
        .header("x-weft-cluster", "outbound|9080|v9|payments.default")
        .with_property_u64("response.code", 503)
        .with_property(DECISION_PROPERTY, b"fault: 503 injected by policy chaos");
    stage.on_log(&host, None);
    let edge = pending_edge(&stage);
    assert_eq!(
        (edge.destination.as_str(), edge.version.as_str()),
        ("ratings", "")
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn delays_dry_runs_and_the_breaker_phase_are_read_from_the_other_stages() {
    let host = MockHost::request("GET", "ratings", "/")
        .with_property("xds.cluster_name", b"outbound|9080|v1|ratings.default")
        .with_property("upstream.address", b"10.0.0.7:9080")
        .with_property_u64("response.code", 200)
        .with_property(FAULT_PROPERTY, b"delayed,would_abort")
        .with_property(BREAKER_PROPERTY, b"half-open,would_fail_fast");
    let stage = stage(&host, "outbound", true);
    stage.on_log(&host, None);
    let edge = pending_edge(&stage);
    assert_eq!(edge.local_status, [0; 6], "it reached the callee");
    assert_eq!(
        (
            edge.delayed,
            edge.would_abort,
            edge.would_delay,
            edge.would_fail_fast
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(edge.breaker_phases, [0, 0, 1]);
    assert_eq!(edge.breaker_state.as_deref(), Some("half-open"));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn envoys_own_reply_without_an_upstream_is_unreached_and_a_gateway_deny_is_denied() {
    let host = MockHost::request("GET", "ratings", "/")
        .with_property("xds.cluster_name", b"outbound|9080|v1|ratings.default")
        .with_property_u64("response.code", 503);
    let stage = stage(&host, "outbound", true);
    stage.on_log(&host, None);
    let edge = pending_edge(&stage);
    assert_eq!((edge.unreached, edge.local_status[5]), (1, 1));

    let host = MockHost::request("GET", "ratings", "/")
        .with_property("xds.cluster_name", b"outbound|9080|v1|ratings.default")
        .with_property_u64("response.code", 403)
        .with_property(DECISION_PROPERTY, b"authz: 403 by jwt-required");
    stage.on_log(&host, None);
    let edge = pending_edge(&stage);
    assert_eq!(
        (edge.denied, edge.unreached, edge.local_status[4]),
        (1, 0, 1)
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_flush_sends_one_signed_report_and_a_refused_one_counts_as_dropped() {
    let host = MockHost::request("GET", "reviews", "/").with_property_u64("response.code", 200);
    let stage = stage(&host, "inbound", true);
    assert_eq!(stage.flush_period(), Some(Duration::from_millis(1000)));
    stage.flush(&host);
    assert_eq!(
        host.count(|c| matches!(c, Call::Dispatch(_))),
        0,
        "empty batch"
    );
    stage.on_log(&host, Some(AuthzOutcome::Allowed));
    stage.flush(&host);
    assert_eq!(host.count(|c| *c == Call::Dispatch("weft_xds".into())), 1);
    assert_eq!(host.metric("weft.telemetry.batches"), Some(1));
    // The control plane refuses it: one failure, its request dropped.
    host.set_call_response(Some(500));
    stage.on_http_call_response(&host, 1);
    assert_eq!(host.metric("weft.telemetry.batch_failures"), Some(1));
    assert_eq!(host.metric("weft.telemetry.dropped"), Some(1));
    // Another token is not this stage's.
    stage.on_http_call_response(&host, 7);
    assert_eq!(host.metric("weft.telemetry.batch_failures"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn without_a_key_nothing_is_reported() {
    let host = MockHost::request("GET", "reviews", "/");
    let stage = stage(&host, "inbound", false);
    assert_eq!(stage.flush_period(), None);
    stage.on_log(&host, Some(AuthzOutcome::Allowed));
    stage.flush(&host);
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 0);
}

/// Every edge of the stage's pending batch.
fn pending_edges(stage: &TelemetryStage) -> Vec<weft_filter_core::telemetry::EdgeReport> {
    stage
        .batch
        .borrow_mut()
        .take(Direction::Outbound, "default", "reviews", "v1")
        .map(|r| r.edges)
        .unwrap_or_default()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_gateway_waf_verdict_is_on_the_edge_into_the_gateway() {
    // Refused by the edge WAF: on the edge from outside only (it went nowhere).
    let host = MockHost::request("GET", "ratings", "/?q=x")
        .with_property_u64("response.code", 403)
        .with_property(
            DECISION_PROPERTY,
            b"waf[shop/edge]: 403 anomaly score 5 >= 5: rules 942100@q",
        )
        .with_property(WAF_PROPERTY, b"blocked");
    let stage = stage(&host, "outbound", true);
    stage.on_log(&host, None);
    let edges = pending_edges(&stage);
    assert_eq!(edges.len(), 1, "{edges:?}");
    let e = &edges[0];
    assert_eq!(
        (
            e.source.as_str(),
            e.destination.as_str(),
            e.version.as_str()
        ),
        (INGRESS_SOURCE, "reviews", "v1")
    );
    assert_eq!(
        (e.requests, e.waf_blocked, e.local_status[4], e.unreached),
        (1, 1, 1, 0)
    );
    // Detect mode: counted into the gateway, and the request's own edge onwards as usual.
    let host = MockHost::request("GET", "ratings", "/?q=x")
        .with_property("xds.cluster_name", b"outbound|9080|v1|ratings.default")
        .with_property("upstream.address", b"10.0.0.7:9080")
        .with_property_u64("response.code", 200)
        .with_property(
            DECISION_PROPERTY,
            b"waf[shop/edge]: 403 ... (detect mode: not blocked)",
        )
        .with_property(WAF_PROPERTY, b"detected");
    stage.on_log(&host, None);
    let edges = pending_edges(&stage);
    assert_eq!(edges.len(), 2, "{edges:?}");
    let into = edges.iter().find(|e| e.source == INGRESS_SOURCE).unwrap();
    assert_eq!(
        (into.waf_detected, into.waf_blocked, into.local_status),
        (1, 0, [0; 6])
    );
    let onwards = edges.iter().find(|e| e.destination == "ratings").unwrap();
    assert_eq!((onwards.waf_detected, onwards.local_status), (0, [0; 6]));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_retired_root_reports_what_is_pending_and_waits_for_the_answer() {
    let host = MockHost::request("GET", "reviews", "/").with_property_u64("response.code", 200);
    let stage = stage(&host, "inbound", true);
    assert!(!stage.flush_final(&host), "nothing pending: done at once");
    stage.on_log(&host, Some(AuthzOutcome::Allowed));
    assert!(stage.flush_final(&host), "a report on its way");
    assert_eq!(host.count(|c| *c == Call::Dispatch("weft_xds".into())), 1);
    host.set_call_response(Some(200));
    stage.on_http_call_response(&host, 1);
    assert!(!stage.reporting());
    assert_eq!(host.metric("weft.telemetry.dropped"), Some(0));
}
