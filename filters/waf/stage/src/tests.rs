//! The stage against `MockHost`: replies, the access-log property, stats, held and streamed
//! bodies, the body limit. Natively and on wasm32.

use super::*;
use serde_json::json;
use weft_filter_core::host::Call;
use weft_filter_core::MockHost;

fn stage(config: serde_json::Value, host: &MockHost) -> WafStage {
    let waf = Waf::from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    WafStage::new(waf, host)
}

fn decision(host: &MockHost) -> Option<String> {
    host.calls().into_iter().find_map(|c| match c {
        Call::SetProperty(name, value) if name == DECISION_PROPERTY => {
            Some(String::from_utf8_lossy(&value).into_owned())
        }
        _ => None,
    })
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_attack_is_refused_explained_and_counted() {
    let host = MockHost::request("GET", "shop", "/s?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .header("user-agent", "curl/8");
    let s = stage(json!({"name": "edge"}), &host);
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, true), Flow::Pause);
    let replies = host.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies.first().map(|r| r.0), Some(403));
    assert!(replies
        .first()
        .is_some_and(|r| r.1.contains("anomaly_score") && !r.1.contains("941100")));
    let why = decision(&host).unwrap_or_default();
    assert!(
        why.starts_with("waf[edge]: 403 anomaly score") && why.contains("941100@q"),
        "{why}"
    );
    assert_eq!(host.metric("weft.waf.blocked"), Some(1));
    assert_eq!(host.metric("weft.waf.rule.941100"), Some(1));
    assert_eq!(host.metric("weft.waf.category.xss"), Some(1));
    assert_eq!(host.metric("weft.waf.reason.anomaly_score"), Some(1));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn detect_mode_lets_it_through_but_logs_and_counts() {
    let host = MockHost::request("GET", "shop", "/s?id=1%20or%201%3D1").header("user-agent", "x");
    let s = stage(json!({"mode": "detect"}), &host);
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, true), Flow::Continue);
    assert!(host.replies().is_empty());
    assert!(decision(&host).is_some_and(|d| d.contains("942100") && d.contains("detect mode")));
    assert_eq!(host.metric("weft.waf.detected"), Some(1));
    assert_eq!(host.metric("weft.waf.blocked"), Some(0));
    assert_eq!(host.metric("weft.waf.rule.942100"), Some(1));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_clean_request_passes_without_a_decision() {
    let host = MockHost::request("GET", "shop", "/products?page=2").header("user-agent", "x");
    let s = stage(json!({}), &host);
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, true), Flow::Continue);
    assert_eq!(decision(&host), None);
    assert_eq!(host.metric("weft.waf.passed"), Some(1));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_json_body_is_held_until_it_ends_then_judged() {
    let body = br#"{"comment":"<img src=x onerror=alert(1)>"}"#;
    let host = MockHost::request("POST", "shop", "/c")
        .header("user-agent", "x")
        .header("content-type", "application/json")
        .body(body);
    let s = stage(json!({}), &host);
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, false), Flow::Continue);
    assert!(
        WafStage::is_holding(&r),
        "the head goes on, the body is held"
    );
    assert_eq!(s.on_request_body(&mut r, &host, 10, false), Flow::Pause);
    assert_eq!(
        s.on_request_body(&mut r, &host, body.len(), true),
        Flow::Pause
    );
    assert_eq!(host.replies().first().map(|r| r.0), Some(403));
    assert!(decision(&host).is_some_and(|d| d.contains("941100@comment")));
    assert_eq!(host.metric("weft.waf.body_inspected"), Some(1));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_clean_body_is_released_and_a_long_one_streams_after_its_inspected_part() {
    let body = format!(r#"{{"note":"{}"}}"#, "a".repeat(300));
    let host = MockHost::request("POST", "shop", "/c")
        .header("user-agent", "x")
        .header("content-type", "application/json")
        .body(body.as_bytes());
    let s = stage(
        json!({"inspect_body_bytes": 100, "limits": {"max_body_bytes": 1000}}),
        &host,
    );
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, false), Flow::Continue);
    // 120 bytes held: over the inspection size, judged on its first 100, released.
    assert_eq!(s.on_request_body(&mut r, &host, 120, false), Flow::Continue);
    assert!(host.calls().contains(&Call::ReadBody(100)));
    assert_eq!(s.on_request_body(&mut r, &host, 500, false), Flow::Continue);
    // 120 + 500 + 500 > 1000: refused mid-stream.
    assert_eq!(s.on_request_body(&mut r, &host, 500, true), Flow::Pause);
    assert_eq!(host.replies().first().map(|r| r.0), Some(413));
    assert_eq!(host.metric("weft.waf.reason.body_too_large"), Some(1));
    assert_eq!(host.metric("weft.waf.passed"), Some(1));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn an_upload_streams_untouched_and_a_declared_oversize_is_refused_at_once() {
    let host = MockHost::request("PUT", "shop", "/u")
        .header("user-agent", "x")
        .header("content-type", "application/octet-stream");
    let s = stage(json!({"limits": {"max_body_bytes": 1000}}), &host);
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, false), Flow::Continue);
    assert_eq!(s.on_request_body(&mut r, &host, 1000, true), Flow::Continue);
    assert!(!host.calls().iter().any(|c| matches!(c, Call::ReadBody(_))));
    let host = MockHost::request("PUT", "shop", "/u")
        .header("user-agent", "x")
        .header("content-length", "5000");
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, false), Flow::Pause);
    assert_eq!(host.replies().first().map(|r| r.0), Some(413));
    assert!(decision(&host).is_some_and(|d| d.contains("body_too_large")));
}

#[test]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_held_body_over_the_limit_is_refused_not_buffered() {
    let host = MockHost::request("POST", "shop", "/f")
        .header("user-agent", "x")
        .header("content-type", "application/x-www-form-urlencoded");
    let s = stage(
        json!({"inspect_body_bytes": 4096, "limits": {"max_body_bytes": 100}}),
        &host,
    );
    let mut r = WafRequest::default();
    assert_eq!(s.on_request_headers(&mut r, &host, false), Flow::Continue);
    assert_eq!(s.on_request_body(&mut r, &host, 101, false), Flow::Pause);
    assert_eq!(host.replies().first().map(|r| r.0), Some(413));
    // Nothing after the refusal.
    assert_eq!(s.on_request_body(&mut r, &host, 50, true), Flow::Continue);
    assert_eq!(host.replies().len(), 1);
}
