//! The authz stage against `MockHost`: replies, counters, header writes and the host calls
//! each request costs. Natively and, through wasm-bindgen-test, on wasm32.

use super::*;
use weft_filter_core::host::{Call, MockHost};

const POLICIES: &str = r#"{"policies": [
    {"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}],
     "deny_response": {"status": 418, "body": "no admin", "headers": {"x-why": "admin"}}},
    {"name": "readers", "action": "ALLOW", "rules": [{"methods": ["GET"], "paths": ["/reports/*"]}]},
    {"name": "probe", "action": "DENY", "dry_run": true, "rules": [{"paths": ["/reports/secret"]}]}]}"#;

fn stage(host: &MockHost) -> AuthzStage {
    let stage = AuthzStage::new(Authz::from_json(POLICIES.as_bytes()).unwrap(), host);
    host.clear_calls();
    stage
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn deny_sends_one_reply_with_the_policy_response_and_counts_it() {
    let host = MockHost::request("GET", "reviews", "/admin/users");
    let stage = stage(&host);
    let (flow, outcome) = stage.decide(&MemoRequest::new(&host), true);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(outcome, AuthzOutcome::Denied);
    assert_eq!(host.replies(), vec![(418, "no admin".to_string())]);
    let headers = host.calls().into_iter().find_map(|c| match c {
        Call::LocalReply { headers, .. } => Some(headers),
        _ => None,
    });
    assert_eq!(
        headers,
        Some(vec![("x-why".to_string(), "admin".to_string())])
    );
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.authz.denied".to_string(), 1),
            ("weft.authz.policy.block-admin.denied".to_string(), 1)
        ]
    );
    // A separate telemetry filter learns the outcome from the stream property.
    assert_eq!(
        host.count(|c| *c == Call::SetProperty(AUTHZ_PROPERTY.into(), b"deny".to_vec())),
        1
    );
    // The access log's account names the policy and the rule.
    assert_eq!(
        decision_property(&host),
        vec![r#"authz: 418 by block-admin: DENY policy "block-admin" rule 0 matched"#]
    );
}

/// Every value the stage set for the access log's `wasm.weft_decision`.
fn decision_property(host: &MockHost) -> Vec<String> {
    host.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SetProperty(name, value) if name == DECISION_PROPERTY => {
                Some(String::from_utf8_lossy(&value).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn allow_continues_without_a_reply_or_a_property() {
    let host = MockHost::request("GET", "reviews", "/reports/q1");
    let stage = stage(&host);
    let flow = stage.on_request_headers(&MemoRequest::new(&host));
    assert_eq!(flow, Flow::Continue);
    assert!(host.replies().is_empty());
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 0);
    assert_eq!(
        host.moved_metrics(),
        vec![
            ("weft.authz.allowed".to_string(), 1),
            ("weft.authz.policy.readers.allowed".to_string(), 1)
        ]
    );
    // One read each of :path and :method, nothing else (no clock without JWT providers).
    assert_eq!(
        host.count(|c| matches!(c, Call::ReadHeader(_) | Call::ReadProperty(_))),
        2,
        "{:?}",
        host.calls()
    );
    assert_eq!(host.count(|c| *c == Call::Now), 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn dry_run_deny_lets_the_request_through_and_counts_the_policy() {
    let host = MockHost::request("GET", "reviews", "/reports/secret");
    let stage = stage(&host);
    let (flow, outcome) = stage.decide(&MemoRequest::new(&host), false);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(outcome, AuthzOutcome::DryRunDenied);
    assert!(host.replies().is_empty());
    assert_eq!(
        host.metric("weft.authz.policy.probe.dry_run_denied"),
        Some(1)
    );
    assert_eq!(host.metric("weft.authz.allowed"), Some(1));
    // publish = false: the suite's telemetry takes the outcome from memory.
    assert_eq!(host.count(|c| matches!(c, Call::SetProperty(..))), 0);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn no_matching_allow_is_the_default_deny() {
    let host = MockHost::request("POST", "reviews", "/reports/q1");
    let stage = stage(&host);
    assert_eq!(
        stage.on_request_headers(&MemoRequest::new(&host)),
        Flow::Pause
    );
    assert_eq!(host.replies().len(), 1);
    assert_eq!(host.replies()[0].0, 403);
    let policy = format!(
        "weft.authz.policy.{}.denied",
        stat_segment(weft_filter_core::authz::DEFAULT_DENY_POLICY)
    );
    assert_eq!(host.metric(&policy), Some(1));
    // Attributed: the access log says no ALLOW matched and which ALLOW policies exist.
    assert_eq!(
        decision_property(&host),
        vec![
            "authz: 403 by default-deny: no ALLOW policy matched; ALLOW policies present: readers"
        ]
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn configuring_defines_four_outcomes_per_policy_and_in_total() {
    let host = MockHost::new();
    let _stage = AuthzStage::new(Authz::from_json(POLICIES.as_bytes()).unwrap(), &host);
    // 3 policies + 3 built-in (default deny, invalid path, no configuration), 4 outcomes
    // each, plus 4 totals.
    assert_eq!(
        host.count(|c| matches!(c, Call::DefineMetric(..))),
        (3 + 3) * 4 + 4
    );
}
