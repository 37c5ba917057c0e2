//! The canary stage against `MockHost`: the cluster header written, cohorts, counters and
//! mirrored copies. Natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use weft_filter_core::host::{Call, MockHost};

fn config(mirror_percent_bp: u32) -> String {
    format!(
        r#"{{"cluster_header": "x-weft-cluster", "services": [{{
        "host": "reviews", "stable": "v1",
        "versions": {{"v1": {{"cluster": "reviews-v1"}}, "v2": {{"cluster": "reviews-v2"}}}},
        "rules": [{{"header": {{"name": "x-beta", "value": "1"}}, "version": "v2"}}],
        "split": [{{"version": "v1", "weight": 10000}}, {{"version": "v2", "weight": 0}}],
        "cohort": {{"request_header": "x-cohort", "response_header": "x-version"}},
        "mirror": {{"cluster": "reviews-shadow", "percent_bp": {mirror_percent_bp}, "max_body_bytes": 8}}}}]}}"#
    )
}

fn stage(host: &MockHost, mirror_percent_bp: u32) -> CanaryStage {
    let canary = Canary::from_json(config(mirror_percent_bp).as_bytes()).unwrap();
    let stage = CanaryStage::new(canary, 1, host);
    host.clear_calls();
    stage
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_rule_writes_the_cluster_and_cohort_headers_and_counts_the_version() {
    let host = MockHost::request("GET", "reviews", "/").header("x-beta", "1");
    let stage = stage(&host, 0);
    let mut state = CanaryRequest::default();
    stage.on_request_headers(&mut state, &MemoRequest::new(&host), true);
    assert_eq!(
        host.request_header("x-weft-cluster").as_deref(),
        Some("reviews-v2")
    );
    assert_eq!(host.request_header("x-cohort").as_deref(), Some("v2"));
    assert_eq!(
        state.take_response_header(),
        Some(("x-version".to_string(), "v2".to_string()))
    );
    assert_eq!(state.take_response_header(), None, "added once");
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.canary.reviews.v1.weight_bp".to_string(), 10_000),
            ("weft.canary.reviews.v2.requests".to_string(), 1)
        ]
    );
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 0);
}

/// What the stage wrote into the cluster header of a request whose route Envoy had sent to
/// `routed` (`None`: the host does not say), with the caller's own `x-weft-cluster`.
fn cluster_written(rule: bool, routed: Option<&str>, callers: Option<&str>) -> Vec<Option<String>> {
    let mut host = MockHost::request("GET", "reviews", "/");
    if rule {
        host = host.header("x-beta", "1");
    }
    if let Some(cluster) = routed {
        host = host.with_property("xds.cluster_name", cluster.as_bytes());
    }
    if let Some(cluster) = callers {
        host = host.header("x-weft-cluster", cluster);
    }
    let stage = stage(&host, 0);
    stage.on_request_headers(
        &mut CanaryRequest::default(),
        &MemoRequest::new(&host),
        true,
    );
    assert_eq!(
        host.request_header("x-cohort").as_deref(),
        Some(if rule { "v2" } else { "v1" })
    );
    host.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SetHeader(name, value) if name == "x-weft-cluster" => Some(value),
            _ => None,
        })
        .collect()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_pick_the_route_already_made_is_not_written_again() {
    let v1 = || vec![Some("reviews-v1".to_string())];
    let v2 = || vec![Some("reviews-v2".to_string())];
    // The split picks v1, where the route's fallback already goes: no write, no new match.
    assert_eq!(
        cluster_written(false, Some("reviews-v1"), None),
        Vec::<Option<String>>::new()
    );
    // The rule picks v2: written.
    assert_eq!(cluster_written(true, Some("reviews-v1"), None), v2());
    // The route went elsewhere, or the host does not say where: written.
    assert_eq!(cluster_written(false, Some("reviews-v9"), None), v1());
    assert_eq!(cluster_written(false, None, None), v1());
    // A caller's own header is always overwritten, even naming the pick: the route it
    // matched is the caller's choice, not this filter's.
    assert_eq!(
        cluster_written(false, Some("reviews-v2"), Some("reviews-v2")),
        v1()
    );
    assert_eq!(
        cluster_written(false, Some("reviews-v1"), Some("reviews-v1")),
        v1()
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn an_unmatched_host_drops_the_callers_own_cluster_header() {
    let host = MockHost::request("GET", "ratings", "/").header("x-weft-cluster", "forged");
    let stage = stage(&host, 0);
    stage.on_request_headers(
        &mut CanaryRequest::default(),
        &MemoRequest::new(&host),
        true,
    );
    assert_eq!(host.request_header("x-weft-cluster"), None);
    assert_eq!(
        host.count(|c| *c == Call::SetHeader("x-weft-cluster".into(), None)),
        1
    );
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.canary.reviews.v1.weight_bp".to_string(), 10_000),
            ("weft.canary.unmatched".to_string(), 1)
        ]
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_mirrored_request_without_body_is_copied_at_once_to_the_shadow() {
    let host = MockHost::request("GET", "reviews:9080", "/").header("content-length", "0");
    let stage = stage(&host, 10_000);
    stage.on_request_headers(
        &mut CanaryRequest::default(),
        &MemoRequest::new(&host),
        true,
    );
    assert_eq!(
        host.count(|c| *c == Call::Dispatch("reviews-shadow".into())),
        1
    );
    assert_eq!(host.metric("weft.canary.reviews.mirrored"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_body_waits_for_its_end_and_an_oversized_one_cancels_the_copy() {
    let host = MockHost::request("POST", "reviews", "/").body(b"abcd");
    let stage = stage(&host, 10_000);
    let mut state = CanaryRequest::default();
    stage.on_request_headers(&mut state, &MemoRequest::new(&host), false);
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 0);
    stage.on_request_body(&host, &mut state, 4, false);
    stage.on_request_body(&host, &mut state, 4, true);
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 1);
    assert_eq!(host.metric("weft.canary.reviews.mirrored"), Some(1));

    // 4 + 8 bytes is over the 8-byte limit: no copy, counted as failed.
    let mut state = CanaryRequest::default();
    stage.on_request_headers(&mut state, &MemoRequest::new(&host), false);
    stage.on_request_body(&host, &mut state, 4, false);
    stage.on_request_body(&host, &mut state, 8, true);
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 1);
    assert_eq!(host.metric("weft.canary.reviews.mirror_failed"), Some(1));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_refused_dispatch_counts_a_failed_mirror() {
    let host = MockHost::request("GET", "reviews", "/").failing_dispatch();
    let stage = stage(&host, 10_000);
    stage.on_request_headers(
        &mut CanaryRequest::default(),
        &MemoRequest::new(&host),
        true,
    );
    assert_eq!(host.metric("weft.canary.reviews.mirror_failed"), Some(1));
    assert_eq!(host.metric("weft.canary.reviews.mirrored"), Some(0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn copies_get_the_shadow_authority_and_no_hop_by_hop_headers() {
    let headers = vec![
        (":authority".to_string(), "reviews:9080".to_string()),
        ("connection".to_string(), "close".to_string()),
        ("x-user".to_string(), "u".to_string()),
    ];
    assert_eq!(
        headers_for_copy(headers, "-shadow"),
        vec![
            (":authority".to_string(), "reviews-shadow:9080".to_string()),
            ("x-user".to_string(), "u".to_string()),
        ]
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn the_applied_weights_are_gauges_in_basis_points() {
    let host = MockHost::request("GET", "reviews", "/");
    let _stage = stage(&host, 0);
    assert_eq!(
        host.metric("weft.canary.reviews.v1.weight_bp"),
        Some(10_000)
    );
    assert_eq!(host.metric("weft.canary.reviews.v2.weight_bp"), Some(0));
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_dry_run_split_counts_the_version_it_would_pick_and_routes_as_before() {
    let json = config(10_000).replace(
        r#""host": "reviews""#,
        r#""dry_run": true, "host": "reviews""#,
    );
    let host = MockHost::request("GET", "reviews", "/")
        .header("x-beta", "1")
        .header("x-weft-cluster", "reviews-v2");
    let stage = CanaryStage::new(Canary::from_json(json.as_bytes()).unwrap(), 1, &host);
    host.clear_calls();
    let mut state = CanaryRequest::default();
    stage.on_request_headers(&mut state, &MemoRequest::new(&host), true);
    // The rule picked v2: counted, not applied (the caller's own choice is dropped too).
    assert_eq!(host.request_header("x-weft-cluster"), None);
    assert_eq!(host.request_header("x-cohort"), None);
    assert_eq!(state.take_response_header(), None);
    assert_eq!(host.count(|c| matches!(c, Call::Dispatch(_))), 0);
    assert_eq!(
        host.moved_metrics(),
        vec![
            // Set at configuration: the split as configured.
            ("weft.canary.reviews.v1.weight_bp".to_string(), 10_000),
            ("weft.canary.reviews.v2.would_route".to_string(), 1)
        ]
    );
}
