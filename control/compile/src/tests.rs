use super::*;
use weft_filter_core::grammar::{HostMatcher, Patterns};
use weft_policy::{load, Limits};

fn compile_ok(set: &PolicySet) -> Compiled {
    compile(set).unwrap()
}

/// Documents as parsed, without `load`'s validation: what compile must not trust.
fn mk_unvalidated_set(yaml: &str) -> PolicySet {
    let docs = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str::<weft_policy::model::Document>(d).unwrap())
        .collect::<Vec<_>>();
    PolicySet::from_documents(docs)
}

/// The filters of the first sidecar group `yaml` compiles to.
fn only_sidecar(yaml: &str) -> SidecarFilters {
    compile_ok(&mk_set(yaml)).into_values().next().unwrap()
}

fn mk_set(yaml: &str) -> PolicySet {
    PolicySet::from_documents(load(yaml.as_bytes(), &Limits::default()).unwrap())
}

const SERVICE: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n";

fn mk_policy(versions: &str) -> String {
    format!("---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  target: {{service: reviews{versions}}}\n  rules: [{{to: {{methods: [GET]}}}}]\n")
}

#[test]
fn one_sidecar_per_service_version() {
    let compiled = compile_ok(&mk_set(SERVICE));
    let ids: Vec<String> = compiled.keys().map(ToString::to_string).collect();
    assert_eq!(ids, ["shop/reviews/v1", "shop/reviews/v2"]);
    assert!(compiled
        .values()
        .all(|f| f.authz.policies.is_empty() && f.canary.services.is_empty()));
}

#[test]
fn diff_names_sidecars_and_filters() {
    let before = compile_ok(&mk_set(SERVICE));
    let after = compile_ok(&mk_set(&format!(
        "{SERVICE}{}",
        mk_policy(", versions: [v2]")
    )));
    let changes = diff(&before, &after);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].sidecar.to_string(), "shop/reviews/v2");
    assert_eq!(
        (changes[0].change.as_str(), changes[0].filters.clone()),
        ("changed", vec!["authz".to_string()])
    );
    assert_eq!(diff(&after, &after), vec![]);
    let removed = diff(&after, &Compiled::new());
    assert!(removed
        .iter()
        .all(|c| c.change == "removed" && c.filters == FILTERS));
}

#[test]
fn check_reports_what_a_filter_refuses() {
    let mut compiled = compile_ok(&mk_set(&format!("{SERVICE}{}", mk_policy(""))));
    assert_eq!(check(&compiled), vec![]);
    if let Some(f) = compiled.values_mut().next() {
        f.authz.trust_domain = "Not Valid".into();
    }
    let errs = check(&compiled);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].document.as_str(), errs[0].field.as_str()),
        ("sidecar shop/reviews/v1", "authz.trust_domain")
    );
}

#[test]
fn cluster_names_are_istio_like() {
    assert_eq!(
        cluster_name("shop", "reviews", 9080, "v2"),
        "outbound|9080|v2|reviews.shop"
    );
}

#[test]
fn a_breaker_on_the_stable_version_also_guards_the_fallback_cluster() {
    let breaker = |versions: &str| {
        let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: {{name: b, namespace: shop}}\nspec:\n  target: {{service: reviews{versions}}}\n  consecutiveFailures: 3\n");
        let filters = only_sidecar(&yaml);
        filters.breaker.clusters.keys().cloned().collect::<Vec<_>>()
    };
    // Callers without a split reach v1 (the stable version) through the cluster named by the host.
    assert_eq!(
        breaker(""),
        [
            "outbound|9080|v1|reviews.shop",
            "outbound|9080|v2|reviews.shop",
            "reviews"
        ]
    );
    assert_eq!(
        breaker(", versions: [v2]"),
        ["outbound|9080|v2|reviews.shop"]
    );
}

#[test]
fn suite_configs_are_the_separate_configurations_as_sections() {
    use weft_filter_core::suite::Suite;
    use weft_filter_core::telemetry::{Direction, TelemetryConfig};
    let compiled = compile_ok(&mk_set(&format!("{SERVICE}{}", mk_policy(""))));
    let filters = compiled.values().next().unwrap();
    let telemetry = |direction| TelemetryConfig {
        direction,
        namespace: "shop".into(),
        service: "reviews".into(),
        version: "v1".into(),
        key: "ab".repeat(32),
        ..TelemetryConfig::default()
    };
    let (inbound_t, outbound_t) = (
        telemetry(Direction::Inbound),
        telemetry(Direction::Outbound),
    );
    let configs = suite_configs(filters, Some((&inbound_t, &outbound_t))).unwrap();
    let inbound = Suite::from_json(configs.inbound.as_bytes()).unwrap();
    assert_eq!(inbound.enabled(), ["telemetry", "authz"]);
    assert_eq!(inbound.telemetry.unwrap(), inbound_t);
    assert_eq!(inbound.authz.unwrap().config(), &filters.authz);
    let outbound = Suite::from_json(configs.outbound.as_bytes()).unwrap();
    assert_eq!(
        outbound.enabled(),
        ["telemetry", "canary", "fault", "breaker"]
    );
    assert_eq!(outbound.telemetry.unwrap().direction, Direction::Outbound);
    // With telemetry here the marks stay in memory; the flag is not written.
    assert!(!configs.inbound.contains("publish_marks"));
    assert!(!configs.outbound.contains("publish_marks"));
    // Without telemetry the section is left out, not null, and no filter beside the suite
    // reads the marks: they are not published.
    let bare = suite_configs(filters, None).unwrap();
    assert!(!bare.inbound.contains("telemetry"));
    for json in [&bare.inbound, &bare.outbound] {
        assert!(
            !Suite::from_json(json.as_bytes()).unwrap().publish_marks,
            "{json}"
        );
    }
    assert_eq!(
        Suite::from_json(bare.outbound.as_bytes())
            .unwrap()
            .enabled(),
        ["canary", "fault", "breaker"]
    );
}

/// Compile is total: what it cannot map is a located error, never a dropped condition (an
/// ALLOW that matches more) or a 0 weight or duration. The sets here skip validation.
#[test]
fn unmappable_values_are_located_errors() {
    let policy = |spec: &str| {
        format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n{spec}")
    };
    let doc = |kind: &str, name: &str| format!("{kind}/shop/{name}");
    let cases = [
        (
            policy("  rules: [{when: [{key: \"source.ip\", values: [a]}]}]\n"),
            doc("AuthorizationPolicy", "p"),
            "spec.rules[0].when[0].key",
            "unsupported key",
        ),
        (
            policy("  rules: [{when: [{key: \"request.headers[x-a]\"}]}]\n"),
            doc("AuthorizationPolicy", "p"),
            "spec.rules[0].when[0]",
            "one of `values` or `notValues`",
        ),
        (
            format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: {{name: cb, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  openInterval: 5parsecs\n"),
            doc("CircuitBreaker", "cb"),
            "spec.openInterval",
            "bad duration",
        ),
        (
            format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {{name: ts, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  split: [{{version: v1, weight: 50.001}}, {{version: v2, weight: 49.999}}]\n"),
            doc("TrafficSplit", "ts"),
            "spec.split[0].weight",
            "more than two decimals",
        ),
    ];
    for (yaml, document, field, reason) in cases {
        let errors = compile(&mk_unvalidated_set(&yaml)).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.document == document && e.field == field && e.reason.contains(reason)),
            "expected {document} {field}: {reason} in {errors:#?}"
        );
    }
}

#[test]
fn to_hosts_reach_the_authz_rule() {
    let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  rules: [{{to: {{hosts: [\"*.example\"], notHosts: [admin.example]}}}}]\n");
    let compiled = compile_ok(&mk_set(&yaml));
    let rule = &compiled.values().next().unwrap().authz.policies[0].rules[0];
    let text = |p: &Option<Patterns<HostMatcher>>| {
        p.as_ref()
            .map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    assert_eq!(text(&rule.hosts), Some(vec!["*.example".to_string()]));
    assert_eq!(
        text(&rule.not_hosts),
        Some(vec!["admin.example".to_string()])
    );
}

#[test]
fn a_dry_run_fault_injection_compiles_to_a_dry_run_policy() {
    let fault = |extra: &str| {
        let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: FaultInjection\nmetadata: {{name: f, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  abort: {{httpStatus: 503, percent: 10}}\n{extra}");
        let filters = only_sidecar(&yaml);
        filters
            .fault
            .policies
            .iter()
            .map(|p| p.dry_run)
            .collect::<Vec<_>>()
    };
    assert_eq!(fault("  dryRun: true\n"), [true]);
    assert_eq!(fault(""), [false]);
    // Validated like every field: a string is refused with the field named.
    let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: FaultInjection\nmetadata: {{name: f, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  dryRun: maybe\n");
    let err = load(yaml.as_bytes(), &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dryRun"), "{err}");
}

#[test]
fn a_dry_run_traffic_split_compiles_to_a_dry_run_service() {
    let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {{name: s, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  split: [{{version: v1, weight: 90}}, {{version: v2, weight: 10}}]\n  dryRun: true\n");
    let filters = only_sidecar(&yaml);
    assert_eq!(
        filters
            .canary
            .services
            .iter()
            .map(|s| s.dry_run)
            .collect::<Vec<_>>(),
        [true]
    );
}

#[test]
fn a_dry_run_circuit_breaker_compiles_to_dry_run_clusters() {
    let yaml = format!("{SERVICE}---\napiVersion: weft.dev/v1alpha1\nkind: CircuitBreaker\nmetadata: {{name: b, namespace: shop}}\nspec:\n  target: {{service: reviews}}\n  dryRun: true\n");
    let filters = only_sidecar(&yaml);
    let dry: Vec<bool> = filters
        .breaker
        .clusters
        .values()
        .map(|p| p.dry_run)
        .collect();
    assert_eq!(dry, [true, true, true]);
}

const CALLERS: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\nspec: {port: 9080, versions: [v1]}\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {port: 9080, versions: [v1, v2]}\n---\napiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: productpage, namespace: shop}\nspec: {port: 9080, versions: [v1]}\n";

fn mk_fault(spec: &str) -> String {
    format!("{CALLERS}---\napiVersion: weft.dev/v1alpha1\nkind: FaultInjection\nmetadata: {{name: f, namespace: shop}}\nspec:\n  target: {{service: ratings}}\n  abort: {{httpStatus: 503, percent: 10}}\n{spec}")
}

/// Per sidecar: the names of its fault policies.
fn fault_policies(compiled: &Compiled) -> Vec<(String, Vec<String>)> {
    compiled
        .iter()
        .map(|(id, f)| {
            let names = f.fault.policies.iter().map(|p| p.name.clone()).collect();
            (id.to_string(), names)
        })
        .collect()
}

#[test]
fn a_caller_scoped_fault_goes_to_the_named_callers_only() {
    let compiled = compile_ok(&mk_set(&mk_fault(
        "  match: {principals: [\"spiffe://cluster.local/ns/shop/sa/reviews\"], pathPrefixes: [/r]}\n",
    )));
    let f = || vec!["f_shop".to_string()];
    assert_eq!(
        fault_policies(&compiled),
        vec![
            ("shop/productpage/v1".into(), vec![]),
            ("shop/ratings/v1".into(), vec![]),
            ("shop/reviews/v1".into(), f()),
            ("shop/reviews/v2".into(), f()),
        ]
    );
    // The scope is in who gets the policy: the filter's own matcher keeps the rest only.
    let policy = &compiled[&SidecarId {
        namespace: "shop".into(),
        service: "reviews".into(),
        version: "v1".into(),
    }]
        .fault
        .policies[0];
    assert!(policy.matcher.principals.is_empty());
    assert_eq!(policy.matcher.path_prefixes, ["/r"]);
    // Patterns and several callers; no principals = every caller.
    let compiled = compile_ok(&mk_set(&mk_fault(
        "  match: {principals: [\"spiffe://cluster.local/ns/shop/sa/product*\", \"spiffe://cluster.local/ns/shop/sa/ratings\"]}\n",
    )));
    let with: Vec<String> = fault_policies(&compiled)
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(with, ["shop/productpage/v1", "shop/ratings/v1"]);
    let compiled = compile_ok(&mk_set(&mk_fault("")));
    assert!(fault_policies(&compiled).iter().all(|(_, p)| p == &f()));
}

#[test]
fn expiry_and_caps_reach_the_fault_filter() {
    let compiled = compile_ok(&mk_set(&mk_fault(
        "  expiry: 2026-12-07T00:00:00Z\n  maxActive: 3\n  maxPercent: 12.5\n",
    )));
    let policy = &compiled.values().next().unwrap().fault.policies[0];
    assert_eq!(policy.expires_at_unix_ms, Some(1_796_601_600_000));
    assert_eq!(
        (policy.max_active, policy.max_percent),
        (Some(3), Some(12.5))
    );
    // A duration not turned into a time by an apply is an error, never "no expiry".
    let errors = compile(&mk_set(&mk_fault("  expiry: 10m\n"))).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "spec.expiry");
    // After `resolve` (what an apply does), it is the apply's time plus the duration.
    let mut docs = load(mk_fault("  expiry: 10m\n").as_bytes(), &Limits::default()).unwrap();
    weft_policy::expiry::resolve(&mut docs, 1_000);
    let compiled = compile_ok(&PolicySet::from_documents(docs));
    let policy = &compiled.values().next().unwrap().fault.policies[0];
    assert_eq!(policy.expires_at_unix_ms, Some(601_000));
}

#[test]
fn a_web_application_firewall_reaches_its_target_versions_only_and_the_inbound_suite() {
    let waf = "---\napiVersion: weft.dev/v1alpha1\nkind: WebApplicationFirewall\nmetadata: {name: edge, namespace: shop}\nspec:\n  target: {service: reviews, versions: [v2]}\n  mode: detect\n  limits: {maxArgs: 10, status: {tooManyArgs: 422}}\n  exclusions: [{pathPrefix: /api, rules: [942100], args: [q]}]\n";
    let before = compile_ok(&mk_set(SERVICE));
    let after = compile_ok(&mk_set(&format!("{SERVICE}{waf}")));
    let by_version = |v: &str| {
        after
            .iter()
            .find(|(id, _)| id.version == v)
            .map(|(_, f)| f.waf.clone())
            .unwrap()
    };
    assert_eq!(by_version("v1"), None);
    let config = by_version("v2").unwrap();
    assert_eq!(config.name, "shop/edge");
    assert_eq!(config.mode, weft_filter_core::waf::Mode::Detect);
    assert_eq!(
        (config.limits.max_args, config.limits.status.too_many_args),
        (10, 422)
    );
    assert_eq!(config.limits.status.body_too_large, 413);
    assert_eq!(config.exclusions[0].args, ["q"]);
    assert!(check(&after).is_empty());
    let changes = diff(&before, &after);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].filters, ["waf"]);
    let v2 = after.values().find(|f| f.waf.is_some()).unwrap();
    let suite = suite_configs(v2, None).unwrap();
    let inbound: serde_json::Value = serde_json::from_str(&suite.inbound).unwrap();
    assert_eq!(inbound["waf"]["name"], "shop/edge");
    assert!(
        weft_filter_core::suite::Suite::from_json(suite.inbound.as_bytes())
            .unwrap()
            .waf
            .is_some()
    );
}
