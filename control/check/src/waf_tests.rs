#![cfg(test)]
//! `weft check` through a target's WAF: attacks blocked with their rules and score, benign
//! calls and bodies passing, a detect-mode WAF's would-block, exclusions shown, limits.

use super::*;

const DOCS: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: gateway, namespace: shop}
spec: {port: 8443, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {port: 9080, versions: [v1, v2]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: anyone, namespace: shop}
spec:
  target: {service: gateway}
  action: ALLOW
  rules: [{to: {paths: ["/*"]}}]
---
apiVersion: weft.dev/v1alpha1
kind: WebApplicationFirewall
metadata: {name: edge, namespace: shop}
spec:
  target: {service: gateway}
  limits: {maxBodyBytes: 4096}
  exclusions:
  - {pathPrefix: /api/posts, rules: [942100], args: [body]}
---
apiVersion: weft.dev/v1alpha1
kind: WebApplicationFirewall
metadata: {name: watch, namespace: shop}
spec:
  target: {service: reviews, versions: [v2]}
  mode: detect
"#;

fn snapshot() -> weft_state::Snapshot {
    let docs = weft_policy::load(DOCS.as_bytes(), &weft_policy::Limits::default()).unwrap();
    offline_snapshot(weft_policy::PolicySet::from_documents(docs)).unwrap()
}

fn run(c: &Call) -> CheckResult {
    let snap = snapshot();
    Checker::new(&snap).check(c, 1_000_000, None).unwrap()
}

fn get(to: &str, path: &str) -> Call {
    Call {
        to: to.into(),
        method: "GET".into(),
        path: path.into(),
        headers: vec![Header {
            name: "user-agent".into(),
            value: "curl/8".into(),
        }],
        ..Call::default()
    }
}

fn post(path: &str, content_type: &str, body: &str) -> Call {
    let mut c = get("gateway", path);
    c.method = "POST".into();
    c.headers.push(Header {
        name: "content-type".into(),
        value: content_type.into(),
    });
    c.body = Some(body.into());
    c
}

fn rule_ids(w: &WafTrace) -> Vec<u32> {
    let mut ids: Vec<u32> = w.rules.iter().map(|r| r.rule).collect();
    ids.dedup();
    ids
}

#[test]
fn an_attack_is_blocked_with_its_rules_score_and_log_line() {
    let r = run(&get("gateway", "/search?q=1%27%20OR%20%271%27%3D%271"));
    let w = r.waf.as_ref().expect("the gateway has a WAF");
    assert_eq!((r.allowed, r.status), (false, Some(403)));
    assert_eq!((w.outcome.as_str(), w.status), ("blocked", Some(403)));
    assert_eq!(w.reason.as_deref(), Some("anomaly_score"));
    assert_eq!((w.name.as_str(), w.mode.as_str()), ("shop/edge", "block"));
    assert_eq!((w.paranoia, w.threshold), (1, 5));
    assert!(rule_ids(w).contains(&942100), "{w:?}");
    assert!(w.rules.iter().all(|m| m.target == "q"), "{w:?}");
    assert!(w.score >= 5);
    let log = w.log.as_deref().unwrap();
    assert!(
        log.starts_with(&format!(
            "waf[shop/edge]: 403 anomaly score {} >= 5: rules 942100@q",
            w.score
        )),
        "{log}"
    );
    assert_eq!(w.sidecar, "shop/gateway/v1");
    // authz did not run; the text says so.
    let text = render_text(&r);
    assert!(text.contains("waf      BLOCK 403 by shop/edge"), "{text}");
    assert!(text.contains("authz    not reached"), "{text}");
    assert!(text.contains("result   blocked by the WAF (403)"), "{text}");
}

#[test]
fn a_benign_call_passes_the_waf_and_authz_decides() {
    let r = run(&get("gateway", "/search?q=select%20a%20union%20rep"));
    let w = r.waf.as_ref().unwrap();
    assert_eq!((w.outcome.as_str(), w.score), ("pass", 0), "{w:?}");
    assert_eq!(
        (r.allowed, r.authz.policy.as_deref()),
        (true, Some("anyone"))
    );
    assert!(render_text(&r).contains("waf      PASS by shop/edge"));
    // No WAF targets reviews v1: no trace.
    assert!(run(&get("reviews", "/x?q=%3Cscript%3E")).waf.is_none());
}

#[test]
fn bodies_are_inspected_and_exclusions_are_shown() {
    let attack = r#"{"comment": "<script>alert(1)</script>"}"#;
    let r = run(&post("/api/comments", "application/json", attack));
    let w = r.waf.as_ref().unwrap();
    assert_eq!((r.status, w.body.as_str()), (Some(403), "inspected"));
    assert_eq!(w.body_inspected_bytes, attack.len());
    assert!(
        w.rules
            .iter()
            .any(|m| m.rule == 941100 && m.target == "comment"),
        "{w:?}"
    );
    // The same body as a form field on an excluded route: 942100 on `body` is excluded.
    let sql = "body=1%27%20OR%20%271%27%3D%271";
    let r = run(&post(
        "/api/posts/7",
        "application/x-www-form-urlencoded",
        sql,
    ));
    let w = r.waf.as_ref().unwrap();
    assert!(
        w.excluded
            .iter()
            .any(|e| e.rule == 942100 && e.target == "body" && e.exclusions == [0]),
        "{w:?}"
    );
    assert!(!rule_ids(w).contains(&942100), "{w:?}");
    let elsewhere = run(&post(
        "/api/other",
        "application/x-www-form-urlencoded",
        sql,
    ));
    let e = elsewhere.waf.as_ref().unwrap();
    assert!(
        rule_ids(e).contains(&942100) && e.excluded.is_empty(),
        "{e:?}"
    );
    assert!(render_text(&r).contains("excluded 942100@body (exclusion 0)"));
    // Benign JSON passes.
    let r = run(&post(
        "/api/comments",
        "application/json",
        r#"{"comment": "Great product, I'd buy it again"}"#,
    ));
    assert_eq!(r.waf.unwrap().outcome, "pass");
}

#[test]
fn limits_refuse_with_their_status_and_detect_mode_only_counts() {
    let big = format!("a={}", "x".repeat(5000));
    let r = run(&post("/upload", "application/x-www-form-urlencoded", &big));
    let w = r.waf.as_ref().unwrap();
    assert_eq!(
        (r.status, w.limit.as_deref()),
        (Some(413), Some("body_too_large")),
        "{w:?}"
    );
    let mut m = get("gateway", "/");
    m.method = "TRACE".into();
    assert_eq!(run(&m).status, Some(405));
    // reviews v2 runs a detect-mode WAF: would block, allowed.
    let mut c = get("reviews", "/x?q=%3Cscript%3Ealert(1)%3C/script%3E");
    c.version = Some("v2".into());
    let r = run(&c);
    let w = r.waf.as_ref().unwrap();
    assert_eq!(
        (w.outcome.as_str(), w.status, r.status),
        ("would-block", None, None)
    );
    assert!(w
        .log
        .as_deref()
        .unwrap()
        .ends_with("(detect mode: not blocked)"));
    assert!(r.allowed);
}

#[test]
fn a_body_over_the_bound_is_refused_naming_the_field() {
    let mut c = post("/x", "text/plain", "");
    c.body = Some("x".repeat(MAX_BODY_TEXT + 1));
    let snap = snapshot();
    let e = Checker::new(&snap).check(&c, 0, None).unwrap_err();
    assert_eq!(e, CheckError::invalid("body", "at most 524288 bytes"));
}
