//! The native dynamic module `libweft_suite.so` (issue #21 part 2) in real Envoy 1.40
//! (`envoy.filters.http.dynamic_modules`): the same decision tests the wasm modules pass —
//! authz's (`authz_cases`: every condition kind, JWT, dry-run, mTLS SPIFFE identities, a
//! refused configuration) and the suite's (`suite_cases`: authz, canary, fault delays through
//! the scheduler, the breaker's shared state across two workers).
#![cfg(test)]

mod authz_cases;
mod pki_common;
mod suite_cases;

use weft_e2e::{Envoy, EnvoyConfig, EnvoyOptions, Runtime, TestNet, WasmFilter};

const NATIVE: Runtime = Runtime::Native;

#[tokio::test(flavor = "multi_thread")]
async fn authz_allows_and_denies_by_path_method_header_cidr_with_configured_replies() {
    authz_cases::allow_and_deny_by_path_method_header_cidr_with_configured_replies(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authz_jwt_claims_decide_and_bad_tokens_get_401() {
    authz_cases::jwt_claims_decide_and_bad_tokens_get_401(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authz_dry_run_counts_without_denying_and_audit_never_changes_the_outcome() {
    authz_cases::dry_run_counts_without_denying_and_audit_never_changes_the_outcome(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authz_bad_configuration_is_refused_and_the_log_names_the_field() {
    authz_cases::bad_configuration_is_refused_and_the_log_names_the_field(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authz_only_exec_portal_may_call_finance_reporting_over_mtls() {
    authz_cases::only_exec_portal_may_call_finance_reporting_over_mtls(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_suite_decides_like_the_four_chained_filters() {
    suite_cases::the_suite_decides_like_the_four_chained_filters(NATIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_section_is_refused_naming_the_section_and_field() {
    suite_cases::a_bad_section_is_refused_naming_the_section_and_field(NATIVE).await;
}

/// Envoy loads the module, says which stages run, and an empty configuration fails closed
/// (authz on an inbound listener with no section denies every request).
#[tokio::test(flavor = "multi_thread")]
async fn the_module_loads_and_an_empty_configuration_denies() {
    NATIVE.artifact("suite").unwrap();
    let net = TestNet::new("native-load");
    let bootstrap = EnvoyConfig::sidecar_inbound("nowhere")
        .wasm_filter(WasmFilter::new("suite", serde_json::json!({})).runtime(NATIVE))
        .to_yaml();
    let envoy = Envoy::start(&net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    let reply = weft_e2e::http_client()
        .get(format!("{}/anything", envoy.url(10_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let configured = "weft-suite (native): configured, stages [authz]";
    let logs = envoy.logs_showing(&[configured]).await;
    assert!(logs.contains(configured), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn marks_reach_envoy_only_for_a_reader_outside_the_module() {
    suite_cases::marks_reach_envoy_only_for_a_reader_outside_the_module(NATIVE).await;
}
