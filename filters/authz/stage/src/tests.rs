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

// === explain tokens ===

const NOW_MS: u64 = 1_796_601_600_000;

/// The stage with the test policies explaining `shop/ratings`, and a token for `service`.
fn explaining(host: &MockHost, service: &str, expires: u64) -> (AuthzStage, String) {
    use weft_filter_core::explain::{mint, service_key, ExplainConfig};
    let mut config = Authz::from_json(POLICIES.as_bytes())
        .unwrap()
        .config()
        .clone();
    let key = service_key(b"master", "shop", "ratings");
    config.explain = Some(ExplainConfig {
        namespace: "shop".into(),
        service: "ratings".into(),
        key,
    });
    let stage = AuthzStage::new(Authz::new(config).unwrap(), host);
    host.clear_calls();
    let token = mint(
        &service_key(b"master", "shop", service),
        "shop",
        service,
        expires,
    )
    .unwrap();
    (stage, token)
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn a_valid_explain_token_gets_the_trace_and_never_reaches_the_app() {
    let probe = MockHost::request("GET", "ratings", "/reports/a");
    let token = explaining(&probe, "ratings", NOW_MS / 1000 + 60).1;
    let host = MockHost::request("GET", "ratings", "/reports/a").header(TOKEN_HEADER, &token);
    host.set_now(NOW_MS);
    let (stage, _) = explaining(&host, "ratings", 0);
    assert!(stage.explains());
    let (flow, _, trace) = stage.decide_explained(&MemoRequest::new(&host), true);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        trace.as_deref(),
        Some(
            r#"shop/ratings inbound authz=allow by readers (ALLOW policy "readers" rule 0 matched)"#
        )
    );
    assert_eq!(
        host.request_header(TOKEN_HEADER),
        None,
        "removed before the app"
    );
    assert_eq!(host.metric("weft.authz.explain.granted"), Some(1));
    // A denial carries the trace in its own reply.
    let host = MockHost::request("GET", "ratings", "/admin/x").header(TOKEN_HEADER, &token);
    host.set_now(NOW_MS);
    let (stage, _) = explaining(&host, "ratings", 0);
    let (flow, _, trace) = stage.decide_explained(&MemoRequest::new(&host), true);
    assert_eq!(flow, Flow::Pause);
    let expected = r#"shop/ratings inbound authz=418 by block-admin (DENY policy "block-admin" rule 0 matched)"#;
    assert_eq!(trace.as_deref(), Some(expected));
    let headers = host.calls().into_iter().find_map(|c| match c {
        Call::LocalReply { headers, .. } => Some(headers),
        _ => None,
    });
    let explained = headers
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == TRACE_HEADER)
        .map(|(_, v)| v);
    assert_eq!(
        explained.as_deref(),
        Some(
            r#"shop/ratings inbound authz=418 by block-admin (DENY policy "block-admin" rule 0 matched)"#
        )
    );
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[test]
fn missing_forged_expired_or_foreign_tokens_explain_nothing_and_are_counted() {
    let now = NOW_MS / 1000;
    let probe = MockHost::new();
    let valid = explaining(&probe, "ratings", now + 60).1;
    let mut forged = valid.clone();
    forged.replace_range(forged.len() - 4.., "0000");
    let cases = [
        (Some(forged), "forged"),
        (Some(explaining(&probe, "ratings", now - 1).1), "expired"),
        (
            Some(explaining(&probe, "reviews", now + 60).1),
            "other_service",
        ),
        (Some("x".repeat(5000)), "malformed"),
        (None, ""),
    ];
    for (token, refusal) in cases {
        let mut host = MockHost::request("GET", "ratings", "/reports/a");
        if let Some(token) = &token {
            host = host.header(TOKEN_HEADER, token);
        }
        host.set_now(NOW_MS);
        let (stage, _) = explaining(&host, "ratings", 0);
        let (flow, _, trace) = stage.decide_explained(&MemoRequest::new(&host), true);
        assert_eq!((flow, trace), (Flow::Continue, None), "{refusal}");
        assert_eq!(host.request_header(TOKEN_HEADER), None, "{refusal}");
        if token.is_some() {
            let name = format!("weft.authz.explain.refused.{refusal}");
            assert_eq!(host.metric(&name), Some(1), "{refusal}");
        } else {
            // No token: one header read, nothing written, nothing counted.
            assert_eq!(host.count(|c| matches!(c, Call::SetHeader(..))), 0);
            assert!(host
                .moved_metrics()
                .iter()
                .all(|(n, _)| !n.contains("explain")));
        }
    }
}
