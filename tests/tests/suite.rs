//! weft suite (authz, canary, fault and breaker in one module) in real Envoy, in front of
//! `reviews` v1 and v2: it decides like the four chained filters — authz denies by path and
//! header before anything else runs, canary routes by rule, sticky key and split through
//! `x-weft-cluster`, fault aborts, and a delayed request still goes through the breaker when
//! the tick lets it go, so the breaker counts it, opens, and then fails fast, delayed or not.
#![cfg(test)]

mod suite_cases;

use weft_e2e::Runtime;

#[tokio::test(flavor = "multi_thread")]
async fn the_suite_decides_like_the_four_chained_filters() {
    suite_cases::the_suite_decides_like_the_four_chained_filters(Runtime::Wasm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_section_is_refused_naming_the_section_and_field() {
    suite_cases::a_bad_section_is_refused_naming_the_section_and_field(Runtime::Wasm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn marks_reach_envoy_only_for_a_reader_outside_the_module() {
    suite_cases::marks_reach_envoy_only_for_a_reader_outside_the_module(Runtime::Wasm).await;
}
