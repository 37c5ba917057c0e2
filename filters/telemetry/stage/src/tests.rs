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
        .response_header_value("x-weft-breaker", "open");
    let stage = stage(&host, "outbound", false);
    stage.on_log(&host, None);
    let counters = edge_counters(&host);
    assert_eq!(counters.len(), 1);
    for tag in [".outbound", ".reviews", ".ratings", ".v2", ".5xx", ".open"] {
        assert!(counters[0].0.contains(tag), "{counters:?} lacks {tag}");
    }
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
