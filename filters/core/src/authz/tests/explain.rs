//! `Authz::explain`: the decision of `decide`, and per rule the first condition that failed.

use super::*;

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn each_rule_names_its_first_failing_condition() {
    let authz = mk_authz(json!({"policies": [
        {"name": "readers", "action": "ALLOW", "rules": [
            {"principals": ["spiffe://cluster.local/ns/a/sa/x"]},
            {"methods": ["GET"], "paths": ["/admin/*"]},
            {"methods": ["POST"]},
            {"headers": [{"name": "x-tenant", "values": ["acme"]}]},
            {"claims": [{"name": "role", "values": ["admin"]}]}]},
        {"name": "rehearsal", "action": "DENY", "dry_run": true,
         "rules": [{"paths": ["/reports/*"]}]}]}));
    let mut req = mk_req();
    req.method = Some("GET");
    req.path = Some("/reports/q3");
    req.peer = Some("spiffe://cluster.local/ns/b/sa/y");
    req.headers = vec![("x-tenant", "acme".into()), ("x-tenant", "evil".into())];
    let e = authz.explain(&req, NOW);
    assert_eq!(e.decision, authz.decide(&req, NOW));
    assert!(matches!(e.decision.reason, Reason::NoAllowMatched { .. }));
    let fields: Vec<Option<String>> = e.policies[0]
        .rules
        .iter()
        .map(|m| m.map(Mismatch::field))
        .collect();
    assert_eq!(
        fields,
        ["principals", "paths", "methods", "headers[0]", "claims[0]"].map(|f| Some(f.to_string()))
    );
    // The dry-run DENY matched (the request was denied before it could count).
    assert_eq!(e.policies[1].matched_rule(), Some(0));
    assert!(e.policies[1].dry_run);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_request_answered_before_any_policy_has_no_rule_trace() {
    let authz = mk_authz(json!({"policies": [
        {"name": "p", "action": "ALLOW", "rules": [{"methods": ["GET"]}]}]}));
    let mut req = mk_req();
    req.path = Some("/a;b");
    let e = authz.explain(&req, NOW);
    assert_eq!(e.decision.reason, decide_reason(&authz, &req));
    assert!(e.policies.is_empty());
    req.path = Some("/a/../b");
    let e = authz.explain(&req, NOW);
    assert_eq!(e.policies.len(), 1);
}

fn decide_reason(authz: &Authz, req: &Req) -> Reason {
    authz.decide(req, NOW).reason
}
