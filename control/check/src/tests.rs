#![cfg(test)]
//! `weft check` over the demo's own policy files (envoy-configs/examples/demo/policies) and a
//! few documents of its own: every stage's trace, the request normalisation the filters do,
//! hostile input, the matrix and the API route.

use super::*;
use serde_json::{json, Value};
use std::sync::Arc;

const DEMO: [&str; 6] = [
    include_str!("../../../envoy-configs/examples/demo/policies/00-services.yaml"),
    include_str!("../../../envoy-configs/examples/demo/policies/10-authorization.yaml"),
    include_str!("../../../envoy-configs/examples/demo/policies/15-gateway.yaml"),
    include_str!("../../../envoy-configs/examples/demo/policies/20-traffic-split.yaml"),
    include_str!("../../../envoy-configs/examples/demo/policies/30-fault-injection.yaml"),
    include_str!("../../../envoy-configs/examples/demo/policies/40-circuit-breaker.yaml"),
];

const LOGIN_SECRET: &str = "weft-demo-login-secret-32-bytes-long!";

/// More documents on top of the demo's (shared with tests/tests/check.rs).
const EXTRA: &str = include_str!("../testdata/demo-extra.yaml");

fn documents(extra: &str) -> weft_policy::PolicySet {
    let mut text = DEMO.join("\n---\n");
    if !extra.is_empty() {
        text.push_str("\n---\n");
        text.push_str(extra);
    }
    let docs = weft_policy::load(text.as_bytes(), &weft_policy::Limits::default()).unwrap();
    weft_policy::PolicySet::from_documents(docs)
}

fn snapshot() -> weft_state::Snapshot {
    offline_snapshot(documents(EXTRA)).unwrap()
}

fn call(from: Option<&str>, to: &str, method: &str, path: &str) -> Call {
    Call {
        from: from.map(str::to_string),
        to: to.into(),
        method: method.into(),
        path: path.into(),
        ..Call::default()
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hs256(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(LOGIN_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn token(role: &str) -> String {
    hs256(
        &json!({"iss": "https://login.demo.weft", "sub": "ann", "aud": "weft-demo",
                  "role": role, "exp": now_ms() / 1000 + 600}),
    )
}

fn run(c: &Call) -> CheckResult {
    let snap = snapshot();
    Checker::new(&snap).check(c, now_ms(), None).unwrap()
}

#[test]
fn an_allow_names_the_policy_rule_and_the_condition_that_held() {
    let r = run(&call(
        Some("exec-portal"),
        "finance-reporting",
        "GET",
        "/reports/q3",
    ));
    assert!(r.allowed);
    assert_eq!(r.status, None);
    let a = &r.authz;
    assert_eq!(
        (a.policy.as_deref(), a.rule),
        (Some("finance-exec-only"), Some(0))
    );
    assert_eq!(
        a.reason,
        r#"ALLOW policy "finance-exec-only" rule 0 matched"#
    );
    assert_eq!(
        a.condition,
        Some(json!({"principals": ["spiffe://cluster.local/ns/demo/sa/exec-portal"]}))
    );
    assert_eq!(a.sidecar, "demo/finance-reporting/v1");
    assert_eq!(
        r.caller.principal.as_deref(),
        Some("spiffe://cluster.local/ns/demo/sa/exec-portal")
    );
    assert_eq!(r.caller.sidecar.as_deref(), Some("demo/exec-portal/v1"));
}

#[test]
fn a_default_deny_names_the_allow_policies_and_where_each_rule_failed() {
    let r = run(&call(
        Some("shipping"),
        "finance-reporting",
        "GET",
        "/reports",
    ));
    assert!(!r.allowed);
    assert_eq!(r.status, Some(403));
    assert_eq!(r.authz.policy.as_deref(), Some("default-deny"));
    assert_eq!(
        r.authz.reason,
        "no ALLOW policy matched; ALLOW policies present: finance-exec-only"
    );
    let p = &r.authz.policies[0];
    assert_eq!(
        (p.name.as_str(), p.action.as_str()),
        ("finance-exec-only", "ALLOW")
    );
    assert_eq!(p.rules, vec![Some("principals".to_string())]);
    let text = render_text(&r);
    assert!(
        text.contains("failed: finance-exec-only (rule 0: principals)"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("result   denied (403)")),
        "{text}"
    );
}

#[test]
fn a_deny_policy_decides_with_its_rule() {
    let r = run(&call(
        Some("shadow-dashboard"),
        "shipping",
        "GET",
        "/orders",
    ));
    assert_eq!(r.status, Some(403));
    assert_eq!(
        (r.authz.policy.as_deref(), r.authz.rule),
        (Some("shipping-no-shadow-dashboard"), Some(0))
    );
    // A SPIFFE id of a declared service is the same caller.
    let by_id = run(&call(
        Some("spiffe://cluster.local/ns/demo/sa/shadow-dashboard"),
        "demo/shipping",
        "GET",
        "/orders",
    ));
    assert_eq!(by_id.authz, r.authz);
    assert_eq!(
        by_id.caller.sidecar.as_deref(),
        Some("demo/shadow-dashboard/v1")
    );
}

#[test]
fn jwt_claims_decide_and_a_bad_token_is_a_401() {
    let admin = |jwt: Option<String>| {
        let mut c = call(Some("exec-portal"), "shipping", "GET", "/admin/users");
        c.jwt = jwt;
        run(&c)
    };
    let r = admin(Some(token("admin")));
    assert!(r.allowed, "{:?}", r.authz);
    let r = admin(Some(token("customer")));
    assert_eq!(
        (r.status, r.authz.policy.as_deref(), r.authz.rule),
        (Some(403), Some("shipping-admin"), Some(0))
    );
    let r = admin(None);
    assert_eq!(r.authz.policy.as_deref(), Some("shipping-admin"));
    let r = admin(Some(format!("{}x", token("admin"))));
    assert_eq!(
        (r.status, r.authz.policy.as_deref()),
        (Some(401), Some("jwt:shipping-login"))
    );
    assert!(r.authz.policies.is_empty(), "answered before any policy");
    // The gateway's customers: a caller without a mesh identity.
    let mut c = call(None, "gateway", "GET", "/reviews/1");
    c.jwt = Some(hs256(
        &json!({"iss": "https://login.demo.weft", "aud": "weft-demo",
        "role": "customer", "exp": now_ms() / 1000 + 600}),
    ));
    let r = run(&c);
    assert_eq!(
        (r.allowed, r.authz.policy.as_deref()),
        (true, Some("gateway-customers"))
    );
    assert_eq!(r.caller.principal, None);
    assert!(r.canary.note.is_some(), "no caller sidecar");
}

#[test]
fn the_path_is_normalised_as_the_filter_does() {
    let mut c = call(Some("exec-portal"), "shipping", "GET", "/public/../admin/x");
    c.jwt = Some(token("customer"));
    let r = run(&c);
    assert_eq!(r.authz.policy.as_deref(), Some("shipping-admin"));
    let r = run(&call(
        Some("exec-portal"),
        "shipping",
        "GET",
        "/admin;x=1/users",
    ));
    assert_eq!(
        (r.status, r.authz.policy.as_deref()),
        (Some(400), Some("invalid-path"))
    );
}

#[test]
fn a_repeated_header_never_turns_a_deny_into_an_allow() {
    let mut c = call(Some("reviews"), "ratings", "GET", "/ratings/1");
    c.headers = vec![header("X-Tenant", "acme")];
    assert!(run(&c).allowed, "one copy");
    c.headers.push(header("x-tenant", "evil"));
    let r = run(&c);
    assert_eq!(r.authz.policy.as_deref(), Some("default-deny"));
    assert_eq!(
        r.authz.policies[0].rules,
        vec![Some("headers[0]".to_string())]
    );
}

#[test]
fn dry_run_policies_show_what_they_would_deny() {
    let r = run(&call(Some("shipping"), "payments", "POST", "/pay"));
    assert!(r.allowed);
    assert_eq!(
        r.authz.dry_run_denied,
        vec!["payments-rehearsal".to_string()]
    );
    assert!(render_text(&r).contains("dry run would deny: payments-rehearsal"));
    let r = run(&call(Some("exec-portal"), "payments", "POST", "/pay"));
    assert!(r.authz.dry_run_denied.is_empty());
    let p = r.authz.policies.iter().find(|p| p.dry_run).unwrap();
    assert_eq!(p.matched_rule, Some(0));
}

#[test]
fn canary_rules_pick_the_version_and_a_random_split_says_so() {
    let mut c = call(Some("exec-portal"), "reviews", "GET", "/reviews/1");
    let r = run(&c);
    assert_eq!(r.canary.decided_by.as_deref(), Some("random"));
    assert_eq!(r.canary.version, None);
    assert_eq!(
        r.canary.split,
        vec![("v1".to_string(), 7500), ("v2".to_string(), 2500)]
    );
    assert_eq!(
        (r.target.version.as_str(), r.target.version_from.as_str()),
        ("v1", "stable")
    );
    c.headers = vec![header("x-beta", "true")];
    let r = run(&c);
    assert_eq!(
        (
            r.canary.decided_by.as_deref(),
            r.canary.rule,
            r.canary.version.as_deref()
        ),
        (Some("rule"), Some(0), Some("v2"))
    );
    assert_eq!(
        (r.target.version.as_str(), r.target.version_from.as_str()),
        ("v2", "canary")
    );
    c.version = Some("v1".into());
    assert_eq!(run(&c).target.version_from, "given");
    assert!(render_text(&r).contains("canary   v2 by rule 0 (split v1 75%, v2 25%)"));
}

#[test]
fn faults_show_policy_and_probability_and_breakers_their_cluster() {
    let r = run(&call(Some("reviews"), "ratings", "GET", "/ratings/1"));
    // The compiled policy name, as the fault filter's stats and access log show it.
    assert_eq!(r.fault.policy.as_deref(), Some("ratings-chaos_demo"));
    assert_eq!(
        r.fault.abort,
        Some(FaultAbort {
            percent: 50.0,
            status: 503
        })
    );
    let r = run(&call(Some("reviews"), "payments", "GET", "/pay"));
    assert_eq!(r.fault.policy, None);
    let b = &r.breaker;
    assert_eq!(
        (
            b.cluster.as_deref(),
            b.guarded,
            b.consecutive_failures,
            b.state.as_str()
        ),
        (Some("payments"), true, Some(3), "unknown")
    );
    assert_eq!(b.open_interval_ms, Some(30_000));
    let r = run(&call(Some("reviews"), "shipping", "GET", "/"));
    assert!(!r.breaker.guarded);
}

struct Seen(EdgeObservation);

impl BreakerView for Seen {
    fn edge(&self, caller: &str, target: &str) -> Option<EdgeObservation> {
        (caller == "demo/reviews" && target == "demo/payments").then_some(self.0)
    }
}

#[test]
fn the_breaker_state_comes_from_the_telemetry_of_the_edge() {
    let snap = snapshot();
    let checker = Checker::new(&snap);
    let c = call(Some("reviews"), "payments", "GET", "/pay");
    let state = |requests, fail_fasts, phase| {
        let seen = Seen(EdgeObservation {
            window_secs: 30,
            requests,
            fail_fasts,
            phase,
        });
        checker
            .check(&c, now_ms(), Some(&seen))
            .unwrap()
            .breaker
            .state
    };
    // The phase the caller's breaker reported wins over what the counts suggest.
    assert_eq!(state(10, 4, Some("half-open")), "half-open");
    assert_eq!(state(10, 0, Some("open")), "open");
    assert_eq!(state(10, 4, None), "open");
    assert_eq!(state(10, 0, None), "closed");
    assert_eq!(state(0, 0, None), "unknown");
}

#[test]
fn hostile_calls_are_refused_naming_the_field() {
    let snap = snapshot();
    let checker = Checker::new(&snap);
    let field = |c: Call| match checker.check(&c, now_ms(), None) {
        Err(CheckError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let base = || call(Some("reviews"), "ratings", "GET", "/");
    assert_eq!(
        field(Call {
            method: "G ET".into(),
            ..base()
        }),
        "method"
    );
    assert_eq!(
        field(Call {
            path: String::new(),
            ..base()
        }),
        "path"
    );
    assert_eq!(
        field(Call {
            path: "/a b".into(),
            ..base()
        }),
        "path"
    );
    assert_eq!(
        field(Call {
            path: "/".repeat(MAX_TEXT + 1),
            ..base()
        }),
        "path"
    );
    let mut c = base();
    c.headers = vec![header(":authority", "x")];
    assert_eq!(field(c), "headers[0].name");
    let mut c = base();
    c.headers = vec![header("x-a", "ok\r\nx-b: injected")];
    assert_eq!(field(c), "headers[0].value");
    let mut c = base();
    c.headers = (0..=MAX_HEADERS)
        .map(|i| header(&format!("x-{i}"), "v"))
        .collect();
    assert_eq!(field(c), "headers");
    assert_eq!(
        field(Call {
            ip: Some("10.0.0.300".into()),
            ..base()
        }),
        "ip"
    );
    assert_eq!(
        field(Call {
            jwt: Some("a b".into()),
            ..base()
        }),
        "jwt"
    );
    assert_eq!(
        field(Call {
            version: Some("v9".into()),
            ..base()
        }),
        "version"
    );
    assert!(matches!(
        checker.check(&call(Some("nobody"), "ratings", "GET", "/"), now_ms(), None),
        Err(CheckError::NotFound(_))
    ));
    assert!(matches!(
        checker.check(&call(None, "demo/nobody", "GET", "/"), now_ms(), None),
        Err(CheckError::NotFound(_))
    ));
    // A SPIFFE id of no declared service: a peer with no weft sidecar of its own.
    let r = checker
        .check(
            &call(
                Some("spiffe://elsewhere/x"),
                "finance-reporting",
                "GET",
                "/",
            ),
            now_ms(),
            None,
        )
        .unwrap();
    assert_eq!((r.caller.sidecar, r.status), (None, Some(403)));
}

#[test]
fn a_name_declared_in_two_namespaces_must_be_qualified() {
    let extra = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ratings, namespace: other}
spec: {port: 8080, versions: [v1]}
";
    let snap = offline_snapshot(documents(extra)).unwrap();
    let checker = Checker::new(&snap);
    let c = call(Some("reviews"), "ratings", "GET", "/");
    match checker.check(&c, now_ms(), None) {
        Err(CheckError::Invalid { field, reason }) => {
            assert_eq!(field, "to");
            assert!(reason.contains("namespace/name"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let c = call(Some("reviews"), "other/ratings", "GET", "/");
    assert!(checker.check(&c, now_ms(), None).unwrap().allowed);
}

#[test]
fn the_matrix_shows_who_can_call_whom() {
    let snap = offline_snapshot(documents("")).unwrap();
    let m = Checker::new(&snap).matrix("GET", "/", now_ms()).unwrap();
    assert_eq!(m.services.len(), 8);
    assert_eq!(m.callers.len(), 9);
    assert_eq!(m.cells.len(), 72);
    let cell = |from: &str, to: &str| {
        m.cells
            .iter()
            .find(|c| c.from == from && c.to == to)
            .map(|c| (c.allowed, c.policy.clone()))
            .unwrap()
    };
    assert_eq!(
        cell("demo/exec-portal", "demo/finance-reporting"),
        (true, Some("finance-exec-only".into()))
    );
    assert_eq!(
        cell("demo/shipping", "demo/finance-reporting"),
        (false, Some("default-deny".into()))
    );
    assert_eq!(
        cell("demo/shadow-dashboard", "demo/shipping"),
        (false, Some("shipping-no-shadow-dashboard".into()))
    );
    assert_eq!(cell("(no identity)", "demo/payments"), (true, None));
    let text = render_matrix(&m);
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(text.contains("403 default-deny"), "{text}");
}

async fn post(router: axum::Router, path: &str, body: &str) -> (u16, Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_checks_against_the_current_set_and_refuses_bad_requests() {
    let store = Arc::new(weft_store::MemoryStore::new());
    let plane =
        Arc::new(weft_state::ControlPlane::open(store, weft_policy::Limits::default()).unwrap());
    let text = DEMO.join("\n---\n");
    plane.apply(text.as_bytes(), "test", false, None).unwrap();
    let router = routes::router(plane, None);
    let body = r#"{"from": "shipping", "to": "finance-reporting", "path": "/reports"}"#;
    let (status, out) = post(router.clone(), "/api/v1/check", body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["allowed"], false);
    assert_eq!(out["authz"]["policy"], "default-deny");
    assert_eq!(out["policyVersion"], 1);
    let back: CheckResult = serde_json::from_value(out).unwrap();
    assert_eq!(back.status, Some(403));
    for (body, status) in [
        ("{", 400),
        (r#"{"to": "x", "path": "/", "extra": 1}"#, 400),
        (r#"{"to": "nobody", "path": "/"}"#, 404),
        (r#"{"to": "shipping", "path": "/", "ip": "x"}"#, 400),
    ] {
        let (got, out) = post(router.clone(), "/api/v1/check", body).await;
        assert_eq!(got, status, "{body}: {out}");
        assert!(out["error"].is_string(), "{out}");
    }
    let big = format!(
        r#"{{"to": "shipping", "path": "/{}"}}"#,
        "a".repeat(routes::MAX_BODY)
    );
    assert_eq!(post(router.clone(), "/api/v1/check", &big).await.0, 413);
    let (status, out) = post(router, "/api/v1/check/matrix", r#"{"path": "/"}"#).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["cells"].as_array().map(Vec::len), Some(72));
}
