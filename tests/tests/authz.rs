//! The authz filter in real Envoy: every condition kind, precedence, dry-run, JWT, mTLS
//! SPIFFE identities and a refused configuration (the cases in `authz_cases`, run here on the
//! wasm module), and request principals compiled from policy documents.
#![cfg(test)]

mod authz_cases;
mod pki_common;

use authz_cases::{hs256_token, send, ISSUER, JWT_SECRET};
use pki_common::now;
use serde_json::json;
use weft_e2e::{Envoy, EnvoyConfig, EnvoyOptions, Runtime, TestNet, Upstream, WasmFilter};

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_by_path_method_header_cidr_with_configured_replies() {
    authz_cases::allow_and_deny_by_path_method_header_cidr_with_configured_replies(Runtime::Wasm)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_claims_decide_and_bad_tokens_get_401() {
    authz_cases::jwt_claims_decide_and_bad_tokens_get_401(Runtime::Wasm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_counts_without_denying_and_audit_never_changes_the_outcome() {
    authz_cases::dry_run_counts_without_denying_and_audit_never_changes_the_outcome(Runtime::Wasm)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_is_refused_and_the_log_names_the_field() {
    authz_cases::bad_configuration_is_refused_and_the_log_names_the_field(Runtime::Wasm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_exec_portal_may_call_finance_reporting_over_mtls() {
    authz_cases::only_exec_portal_may_call_finance_reporting_over_mtls(Runtime::Wasm).await;
}

/// Policy documents for `reports/v1`: a Service, one JWT issuer, and an ALLOW policy with `rules`.
fn request_principal_docs(rules: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: reports, namespace: shop}}\nspec: {{port: 8080, versions: [v1]}}\n---\n\
         apiVersion: weft.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {{name: corp, namespace: shop}}\nspec:\n  target: {{service: reports}}\n  jwtRules: [{{issuer: \"{ISSUER}\", hs256Secrets: [{JWT_SECRET}]}}]\n---\n\
         apiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: people, namespace: shop}}\nspec:\n  target: {{service: reports}}\n  rules: {rules}\n"
    )
}

/// `from.requestPrincipals` end to end: a bad pattern is refused at its field, a good document
/// is compiled by weft-compile and the filter decides on the token's `<iss>/<sub>` in Envoy.
#[tokio::test(flavor = "multi_thread")]
async fn request_principals_from_documents_decide_on_the_token_in_envoy() {
    use weft_policy::{load, Limits, PolicySet};
    for (rules, field, reason) in [
        (
            "[{from: {requestPrincipals: [\"a*b\"]}}]",
            "spec.rules[0].from.requestPrincipals[0]",
            "`*` is allowed only alone",
        ),
        (
            "[{from: {requestPrincipals: [\"*\"], notRequestPrincipals: []}}]",
            "spec.rules[0].from.notRequestPrincipals",
            "must not be empty",
        ),
    ] {
        let err = load(request_principal_docs(rules).as_bytes(), &Limits::default()).unwrap_err();
        let details = err.details();
        assert_eq!(details.len(), 1, "{details:?}");
        assert_eq!(details[0].field, field);
        assert!(details[0].reason.contains(reason), "{details:?}");
    }

    let rules = format!(
        "[{{from: {{requestPrincipals: [\"{ISSUER}/ada\"]}}}}, \
         {{from: {{requestPrincipals: [\"{ISSUER}/*\"], notRequestPrincipals: [\"*/mallory\"]}}, to: {{paths: [\"/shared/*\"]}}}}]"
    );
    let documents = load(
        request_principal_docs(&rules).as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    let compiled = weft_compile::compile(&PolicySet::from_documents(documents)).unwrap();
    let (_, filters) = compiled.into_iter().next().unwrap();
    let config = serde_json::to_value(&filters.authz).unwrap();
    assert_eq!(
        config["policies"][0]["rules"][1]["not_request_principals"],
        json!(["*/mallory"])
    );

    let net = TestNet::new("authz-reqp");
    let upstream = Upstream::start(&net, "reports", "v1").await.unwrap();
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("authz", config))
        .to_yaml();
    weft_e2e::artifact("authz").unwrap();
    let envoy = Envoy::start(&net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    let t = now();
    let token = |sub: Option<&str>| {
        let mut claims = json!({"iss": ISSUER, "exp": t + 600});
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        format!("Bearer {}", hs256_token(claims))
    };
    let (ada, bob, mallory, nobody) = (
        token(Some("ada")),
        token(Some("bob")),
        token(Some("mallory")),
        token(None),
    );
    for (path, auth, want) in [
        ("/private/q3", Some(&ada), 200),
        ("/private/q3", Some(&bob), 403),
        ("/shared/q3", Some(&bob), 200),
        ("/shared/q3", Some(&mallory), 403),
        // A valid token without `sub` has no request principal.
        ("/shared/q3", Some(&nobody), 403),
        ("/shared/q3", None, 403),
    ] {
        let headers: Vec<(&str, &str)> = auth
            .map(|a| ("authorization", a.as_str()))
            .into_iter()
            .collect();
        let reply = send(&envoy, "GET", path, &headers).await;
        assert_eq!(reply.status, want, "{path} {auth:?}: {}", reply.body);
    }
    assert_eq!(upstream.stats().await.unwrap().requests, 2);
}
