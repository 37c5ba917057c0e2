//! Every error kind, each from a small document, checked for its field path and reason.

use super::*;
use crate::parse::Limits;
use crate::PolicyError;

const SERVICES: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {port: 9080, versions: [v1, v2, v3]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ratings, namespace: shop}
spec: {port: 9080, versions: [v1]}
"#;

fn mk_doc(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: weft.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}")
}

fn mk_stored() -> PolicySet {
    PolicySet::from_documents(crate::load(SERVICES.as_bytes(), &Limits::default()).unwrap())
}

/// Everything a request would be told: per-document errors, else set errors over the
/// stored services plus the request.
fn check(input: &str) -> Vec<FieldError> {
    let docs = match crate::load(input.as_bytes(), &Limits::default()) {
        Ok(docs) => docs,
        Err(PolicyError::Invalid(errs)) => return errs,
        Err(e) => panic!("{e}"),
    };
    let mut set = mk_stored();
    for d in &docs {
        set.insert(d.clone());
    }
    validate_set(&set, &labels(&docs), References::Strict)
}

fn assert_error(input: &str, field: &str, reason: &str) {
    let errs = check(input);
    assert!(
        errs.iter()
            .any(|e| e.field == field && e.reason.contains(reason)),
        "expected `{field}`: `{reason}` in {errs:#?}"
    );
}

const AUTHZ_OK: &str = "  target: {service: reviews}\n  rules:\n  - from: {principals: [\"spiffe://cluster.local/ns/shop/sa/web\"]}\n";

#[test]
fn valid_documents_pass() {
    assert_eq!(check(&mk_doc("AuthorizationPolicy", "a", AUTHZ_OK)), vec![]);
    let split = "  target: {service: reviews}\n  split: [{version: v1, weight: 33.33}, {version: v2, weight: 33.33}, {version: v3, weight: 33.34}]\n";
    assert_eq!(check(&mk_doc("TrafficSplit", "s", split)), vec![]);
    let calls = "  port: 80\n  versions: [v1]\n  calls: [ratings, shop/reviews]\n";
    assert_eq!(check(&mk_doc("Service", "web", calls)), vec![]);
    let leaf = "  port: 80\n  versions: [v1]\n  calls: []\n";
    assert_eq!(check(&mk_doc("Service", "web", leaf)), vec![]);
}

#[test]
fn error_kinds_name_field_and_reason() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (kind, spec, field, reason) -- unknown field
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rulez: []\n", "spec.rulez", "unknown field `rulez`", ""),
        // weights not summing to 100%
        ("TrafficSplit", "  target: {service: reviews}\n  split: [{version: v1, weight: 90}, {version: v2, weight: 5.5}]\n", "spec.split", "weights sum to 95.5%, expected 100%", ""),
        ("TrafficSplit", "  target: {service: reviews}\n  split: [{version: v1, weight: 99.995}, {version: v2, weight: 0.005}]\n", "spec.split[0].weight", "more than two decimals", ""),
        ("TrafficSplit", "  target: {service: reviews}\n  split: [{version: v1, weight: 120}, {version: v2, weight: -20}]\n", "spec.split[1].weight", "not a percentage", ""),
        // unknown service version, in every place one can be named
        ("TrafficSplit", "  target: {service: reviews}\n  split: [{version: v1, weight: 50}, {version: v9, weight: 50}]\n", "spec.split[1].version", "unknown service version \"v9\"", ""),
        ("TrafficSplit", "  target: {service: reviews}\n  routes: [{match: {header: {name: x-beta}}, version: v7}]\n  split: [{version: v1, weight: 100}]\n", "spec.routes[0].version", "unknown service version", ""),
        ("CircuitBreaker", "  target: {service: reviews, versions: [v1, v4]}\n", "spec.target.versions[1]", "unknown service version \"v4\"", ""),
        // unknown service
        ("AuthorizationPolicy", "  target: {service: payments}\n", "spec.target.service", "unknown service \"payments\"", ""),
        // bad duration
        ("FaultInjection", "  target: {service: reviews}\n  delay: {fixedDelay: 200 ms, percent: 10}\n", "spec.delay.fixedDelay", "bad duration", ""),
        ("CircuitBreaker", "  target: {service: reviews}\n  openInterval: 5x\n", "spec.openInterval", "unknown unit", ""),
        ("RequestAuthentication", "  target: {service: reviews}\n  jwtRules: [{issuer: i, hs256Secrets: [0123456789abcdef0123456789abcdef], clockSkew: ten}]\n", "spec.jwtRules[0].clockSkew", "bad duration", ""),
        // bad CIDR
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {ipBlocks: [10.0.0.0/8, 10.0.0.1/8]}}]\n", "spec.rules[0].from.ipBlocks[1]", "host bits are set", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {notIpBlocks: [\"10.0.0.0/33\"]}}]\n", "spec.rules[0].from.notIpBlocks[0]", "invalid IP or CIDR", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {ipBlocks: [\"fd00::zz/8\"]}}]\n", "spec.rules[0].from.ipBlocks[0]", "invalid IP address", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {remoteIpBlocks: [\"fd00::zz/8\"]}}]\n", "spec.rules[0].from.remoteIpBlocks[0]", "invalid IP address", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {notRemoteIpBlocks: [10.0.0.1/8]}}]\n", "spec.rules[0].from.notRemoteIpBlocks[0]", "host bits are set", ""),
        // malformed SPIFFE id
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {principals: [\"spiffe://cluster.local/ns/a/sa/b\", \"cluster.local/ns/shop\"]}}]\n", "spec.rules[0].from.principals[1]", "malformed SPIFFE id", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {principals: [\"spiffe://Cluster/ns\"]}}]\n", "spec.rules[0].from.principals[0]", "invalid trust domain", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {principals: [\"spiffe://td/a//b\"]}}]\n", "spec.rules[0].from.principals[0]", "path segments", ""),
        // the rest of what can be wrong
        ("AuthorizationPolicy", "  target: {service: reviews}\n  action: PERMIT\n", "spec.action", "unknown variant `PERMIT`", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{to: {methods: [get], paths: [\"/a/*/b\"]}}]\n", "spec.rules[0].to.methods[0]", "invalid method", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{to: {paths: [\"/a/*/b\"]}}]\n", "spec.rules[0].to.paths[0]", "`*` is allowed only alone", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{from: {principals: []}}]\n", "spec.rules[0].from.principals", "must not be empty", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{to: {hosts: [a.example], notHosts: [\"a/b\"]}}]\n", "spec.rules[0].to.notHosts[0]", "invalid host", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{when: [{key: request.ip, values: [a]}]}]\n", "spec.rules[0].when[0].key", "unsupported key", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  rules: [{when: [{key: \"request.headers[x-a]\"}]}]\n", "spec.rules[0].when[0]", "one of `values` or `notValues`", ""),
        ("AuthorizationPolicy", "  target: {service: reviews}\n  denyResponse: {status: 99}\n", "spec.denyResponse.status", "not an HTTP status", ""),
        ("RequestAuthentication", "  target: {service: reviews}\n  jwtRules: [{issuer: i, jwks: \"{}\"}]\n", "spec.jwtRules[0].jwks", "non-empty `keys`", ""),
        ("RequestAuthentication", "  target: {service: reviews}\n  jwtRules: [{issuer: i, hs256Secrets: [short]}]\n", "spec.jwtRules[0].hs256Secrets[0]", "at least 32 bytes", ""),
        // every count has an upper bound
        ("CircuitBreaker", "  target: {service: reviews}\n  consecutiveFailures: 4294967295\n", "spec.consecutiveFailures", "more than the maximum of 100000", ""),
        ("CircuitBreaker", "  target: {service: reviews}\n  maxConcurrent: 2000000\n", "spec.maxConcurrent", "more than the maximum of 1000000", ""),
        ("CircuitBreaker", "  target: {service: reviews}\n  failureRate: {thresholdPercent: 50, minRequests: 100001}\n", "spec.failureRate.minRequests", "more than the maximum", ""),
        ("TrafficSplit", "  target: {service: reviews}\n  split: [{version: v1, weight: 100}]\n  mirror: {version: v2, percent: 1, maxBodyBytes: 4294967295}\n", "spec.mirror.maxBodyBytes", "more than the maximum of 16777216", ""),
        ("TrafficSplit", "  target: {service: reviews}\n  sticky: {header: a, cookie: b}\n  split: [{version: v1, weight: 100}]\n", "spec.sticky", "exactly one", ""),
        ("FaultInjection", "  target: {service: reviews}\n", "spec", "at least one of `delay` or `abort`", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 700, percent: 1}\n", "spec.abort.httpStatus", "not an HTTP status", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  expiry: tomorrow\n", "spec.expiry", "RFC 3339", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  expiry: 2026-02-30T00:00:00Z\n", "spec.expiry", "no such day", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  expiry: 0s\n", "spec.expiry", "more than 0", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  maxActive: 0\n", "spec.maxActive", "at least 1", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  maxActive: 100001\n", "spec.maxActive", "more than the maximum of 100000", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  maxPercent: 0\n", "spec.maxPercent", "at least 0.01", ""),
        ("FaultInjection", "  target: {service: reviews}\n  abort: {httpStatus: 503, percent: 1}\n  maxPercent: 150\n", "spec.maxPercent", "not a percentage", ""),
        ("CircuitBreaker", "  target: {service: reviews}\n  failureOn: [5xx, teapot]\n", "spec.failureOn[1]", "unknown failure kind", ""),
        ("CircuitBreaker", "  target: {service: reviews}\n  openInterval: 10s\n  maxOpenInterval: 1s\n", "spec.maxOpenInterval", "must not be less", ""),
        ("Service", "  port: 0\n  versions: [v1, v1]\n", "spec.versions[1]", "duplicate version", ""),
        ("Service", "  port: 80\n  versions: [v1]\n  stableVersion: v2\n", "spec.stableVersion", "unknown service version", ""),
        // what a service calls: names, each once, each declared
        ("Service", "  port: 80\n  versions: [v1]\n  calls: [Reviews]\n", "spec.calls[0]", "invalid name \"Reviews\"", ""),
        ("Service", "  port: 80\n  versions: [v1]\n  calls: [a/b/c]\n", "spec.calls[0]", "expected `name` or `namespace/name`", ""),
        ("Service", "  port: 80\n  versions: [v1]\n  calls: [ratings, ratings]\n", "spec.calls[1]", "duplicate service \"ratings\"", ""),
        ("Service", "  port: 80\n  versions: [v1]\n  calls: [ratings, payments]\n", "spec.calls[1]", "unknown service \"payments\" in namespace \"shop\"", ""),
        ("Service", "  port: 80\n  versions: [v1]\n  calls: [billing/ratings]\n", "spec.calls[0]", "unknown service \"ratings\" in namespace \"billing\"", ""),
    ];
    for (kind, spec, field, reason, _) in cases {
        assert_error(&mk_doc(kind, "doc", spec), field, reason);
    }
}

#[test]
fn all_errors_of_all_documents_are_reported_at_once() {
    let input = format!(
        "{}---\n{}---\n{}",
        mk_doc("AuthorizationPolicy", "a", "  target: {service: reviews}\n  rules: [{from: {ipBlocks: [bad], principals: [nope]}, to: {methods: [get]}}]\n"),
        mk_doc("TrafficSplit", "s", "  target: {service: reviews}\n  split: [{version: v1, weight: 1}]\n  extra: 1\n"),
        mk_doc("FaultInjection", "Bad_Name", "  target: {service: reviews}\n  delay: {fixedDelay: soon, percent: 10}\n"),
    );
    let errs = check(&input);
    let got: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.document.as_str(), e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "AuthorizationPolicy/shop/a (#1)",
                "spec.rules[0].from.principals[0]"
            ),
            (
                "AuthorizationPolicy/shop/a (#1)",
                "spec.rules[0].from.ipBlocks[0]"
            ),
            (
                "AuthorizationPolicy/shop/a (#1)",
                "spec.rules[0].to.methods[0]"
            ),
            ("TrafficSplit/shop/s (#2)", "spec.extra"),
            ("FaultInjection/shop/Bad_Name (#3)", "metadata.name"),
            ("FaultInjection/shop/Bad_Name (#3)", "spec.delay.fixedDelay"),
        ]
    );
}

#[test]
fn duplicate_documents_in_one_request() {
    let one = mk_doc("AuthorizationPolicy", "a", AUTHZ_OK);
    assert_error(
        &format!("{one}---\n{one}"),
        "metadata.name",
        "duplicate of document #1",
    );
}

#[test]
fn conflicting_documents_for_one_service() {
    let split = "  target: {service: reviews}\n  split: [{version: v1, weight: 100}]\n";
    let input = format!(
        "{}---\n{}",
        mk_doc("TrafficSplit", "a", split),
        mk_doc("TrafficSplit", "b", split)
    );
    assert_error(&input, "spec.target", "conflicts with TrafficSplit/shop/a");
    // Breakers on different versions of one service do not conflict.
    let b = |v: &str| format!("  target: {{service: reviews, versions: [{v}]}}\n");
    let input = format!(
        "{}---\n{}",
        mk_doc("CircuitBreaker", "a", &b("v1")),
        mk_doc("CircuitBreaker", "b", &b("v2"))
    );
    assert_eq!(check(&input), vec![]);
}

#[test]
fn a_stored_document_broken_by_a_request_is_named() {
    let mut set = mk_stored();
    let split = mk_doc("TrafficSplit", "s", "  target: {service: reviews}\n  split: [{version: v1, weight: 50}, {version: v3, weight: 50}]\n");
    set.insert(
        crate::load(split.as_bytes(), &Limits::default())
            .unwrap()
            .remove(0),
    );
    let shrink = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";
    let docs = crate::load(shrink.as_bytes(), &Limits::default()).unwrap();
    set.insert(docs[0].clone());
    let errs = validate_set(&set, &labels(&docs), References::Strict);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].document, "TrafficSplit/shop/s (stored)");
    assert_eq!(errs[0].field, "spec.split[1].version");
}

#[test]
fn lenient_references_skip_undeclared_services_only() {
    let docs = crate::load(
        mk_doc(
            "AuthorizationPolicy",
            "a",
            "  target: {service: payments}\n",
        )
        .as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    let set = PolicySet::from_documents(docs.clone());
    assert_eq!(
        validate_set(&set, &labels(&docs), References::Lenient),
        vec![]
    );
    assert_eq!(
        validate_set(&set, &labels(&docs), References::Strict).len(),
        1
    );
}

#[test]
fn units() {
    use crate::units::*;
    assert_eq!(parse_duration("200ms"), Ok(200));
    assert_eq!(parse_duration("1m30s"), Ok(90_000));
    assert_eq!(parse_duration("2h"), Ok(7_200_000));
    for bad in [
        "",
        "10",
        "ms",
        "1.5s",
        "25h",
        "-1s",
        "99999999999999999999s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(percent_to_bp(12.5), Ok(1250));
    assert_eq!(percent_to_bp(0.01), Ok(1));
    assert_eq!(percent_to_bp(33.33), Ok(3333));
    assert!(percent_to_bp(f64::NAN).is_err());
    for ok in ["10.0.0.0/8", "10.1.2.3", "::1", "fd00::/8", "0.0.0.0/0"] {
        assert_eq!(check_cidr(ok), Ok(()), "{ok}");
    }
    for ok in [
        "spiffe://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/*",
        "*",
        "*/sa/b",
    ] {
        assert_eq!(check_principal(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        parse_condition_key("request.auth.claims[realm][role]"),
        Ok(ConditionKey::Claim("realm.role".into()))
    );
    assert_eq!(
        parse_condition_key("request.headers[X-A]"),
        Ok(ConditionKey::Header("x-a".into()))
    );
}

mod rollout;

#[test]
fn web_application_firewall_errors_name_the_document_field() {
    let cases = [
        ("  paranoia: 3\n", "spec.paranoia"),
        (
            "  limits: {status: {bodyTooLarge: 200}}\n",
            "spec.limits.status.bodyTooLarge",
        ),
        ("  inspectBodyBytes: 9000000\n", "spec.inspectBodyBytes"),
        (
            "  exclusions: [{pathPrefix: /x, rules: [1]}]\n",
            "spec.exclusions[0].rules[0]",
        ),
        ("  exclusions: [{pathPrefix: /x}]\n", "spec.exclusions[0]"),
        ("  limits: {methods: [get]}\n", "spec.limits.methods[0]"),
    ];
    for (spec, field) in cases {
        let doc = mk_doc(
            "WebApplicationFirewall",
            "edge",
            &format!("  target: {{service: reviews}}\n{spec}"),
        );
        let errors = check(&doc);
        assert!(
            errors.iter().any(|e| e.field == field),
            "{spec}: {errors:?}"
        );
    }
    let ok = mk_doc(
        "WebApplicationFirewall",
        "edge",
        "  target: {service: reviews}\n",
    );
    assert_eq!(check(&ok), vec![]);
    // One per service version.
    let two = format!(
        "{ok}---\n{}",
        mk_doc(
            "WebApplicationFirewall",
            "other",
            "  target: {service: reviews}\n"
        )
    );
    assert!(check(&two)
        .iter()
        .any(|e| e.reason.contains("conflicts with")));
    // A typo is refused by name.
    let typo = mk_doc(
        "WebApplicationFirewall",
        "edge",
        "  target: {service: reviews}\n  mdoe: detect\n",
    );
    assert!(check(&typo).iter().any(|e| e.reason.contains("mdoe")));
}
