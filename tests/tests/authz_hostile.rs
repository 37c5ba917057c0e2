//! authz.wasm alone against a hostile caller, in real Envoy: the filter in a user's own Envoy
//! listener that sets none of Envoy's path normalisation (`normalize_path`, `merge_slashes`,
//! escaped slashes). Paths sent byte for byte must still be decided as the app will read them
//! (authz normalises on its own: defence in depth); a repeated token header, a token without
//! `exp` and an empty configuration are refused.
//!
//! The same attacks through a sidecar made by `weft bootstrap` (both layers) are in
//! `hostile.rs`.
#![cfg(test)]

mod pki_common;

use pki_common::{hs256_jwt, now};
use serde_json::{json, Value};
use weft_e2e::{
    raw_get, raw_request, Envoy, EnvoyConfig, EnvoyOptions, RawReply, TestNet, Upstream, WasmFilter,
};

const JWT_SECRET: &str = "weft-e2e-shared-secret-of-32-bytes-or-more";
const ISSUER: &str = "https://issuer.weft.test";

/// The issue's policy (DENY `/admin`, `/admin/*` and `x-user: mallory`), an ALLOW-only
/// family under `/public`, and a claim header fed from a validated token.
fn config() -> Value {
    json!({
        "jwt": [{"name": "corp", "issuer": ISSUER, "keys": {"hs256_secrets": [JWT_SECRET]}}],
        "claim_headers": [{"claim": "role", "header": "x-weft-claim-role"}],
        "policies": [
            {"name": "no-admin", "action": "DENY", "rules": [
                {"paths": ["/admin", "/admin/*"]},
                {"headers": [{"name": "x-user", "values": ["mallory"]}]}]},
            {"name": "public-or-alice", "action": "ALLOW", "rules": [
                {"paths": ["/public", "/public/*"]},
                {"paths": ["/alice/*"], "headers": [{"name": "x-user", "values": ["alice"]}]}]}
        ]
    })
}

async fn start(net: &TestNet, authz: Value) -> (Upstream, Envoy) {
    weft_e2e::artifact("authz").unwrap();
    let upstream = Upstream::start(net, "finance-reporting", "v1")
        .await
        .unwrap();
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("authz", authz))
        .without_listener_hardening()
        .to_yaml();
    let envoy = Envoy::start(net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    (upstream, envoy)
}

/// One request written exactly as given: `path` and each header line untouched.
async fn raw(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> RawReply {
    let port = envoy.host_port(10_000).unwrap();
    let reply = raw_request(port, &raw_get(path, "finance-reporting", headers)).await;
    assert_ne!(reply.status, 0, "{path:?}: no reply");
    reply
}

/// Paths the application would act on as `/admin...`; from the issue and from Envoy's and
/// Istio's path-normalization advisories.
const ADMIN_VARIANTS: &[&str] = &[
    "/admin",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/%61dmin",
    "/admin%2fsecret",
    "/admin%2Fsecret",
    "/admin/",
    "/admin/.",
    "/admin%2F",
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/.%2e/admin",
    "/%2e/admin",
    "///admin",
    "/admin//secret",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public%2f..%2fadmin",
    "/public%2F%2E%2E%2Fadmin",
    "/public%5c..%5cadmin",
    "/%61%64%6d%69%6e",
    "/a/b/c/../../../admin",
    "/../../../admin",
    "/admin?x=/public",
    "/admin/x/..",
    "/./././admin/./x",
];

fn deny_only() -> Value {
    json!({"policies": [{"name": "no-admin", "action": "DENY",
        "rules": [{"paths": ["/admin", "/admin/*"]}]}]})
}

fn allow_only() -> Value {
    json!({"policies": [{"name": "public-only", "action": "ALLOW",
        "rules": [{"paths": ["/public", "/public/*"]}]}]})
}

/// Every variant is refused by the policy named `by` (403) and nothing reaches the app;
/// `;`, NUL and bad escapes are 400; legitimate paths pass.
async fn variants_against(name: &str, config: Value, by: &str) {
    let net = TestNet::new(name);
    let (upstream, envoy) = start(&net, config).await;
    let before = upstream.stats().await.unwrap().requests;
    for path in ADMIN_VARIANTS {
        let reply = raw(&envoy, path, &[]).await;
        assert_eq!(reply.status, 403, "{name}: {path:?}: {}", reply.body);
        assert!(reply.body.contains(by), "{name}: {path:?}: {}", reply.body);
    }
    for path in [
        "/admin;x",
        "/public/..;/admin",
        "/public;jsessionid=1",
        "/admin%00",
        "/%zz",
    ] {
        let reply = raw(&envoy, path, &[]).await;
        assert_eq!(reply.status, 400, "{name}: {path:?}: {}", reply.body);
        assert!(
            reply.body.starts_with("bad request: "),
            "{name}: {}",
            reply.body
        );
    }
    assert_eq!(upstream.stats().await.unwrap().requests, before, "{name}");
    for path in [
        "/public",
        "/public/a",
        "//public//a",
        "/%70ublic/x",
        "/x/../public/y",
    ] {
        let reply = raw(&envoy, path, &[]).await;
        assert_eq!(reply.status, 200, "{name}: {path:?}: {}", reply.body);
    }
    assert_eq!(
        upstream.stats().await.unwrap().requests,
        before + 5,
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_variant_gets_past_a_deny_policy() {
    variants_against("authz-hostile-deny", deny_only(), "no-admin").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_variant_gets_past_an_allow_only_policy() {
    variants_against(
        "authz-hostile-allow",
        allow_only(),
        "no ALLOW policy matched",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_claim_headers_are_all_replaced_and_a_repeated_token_is_refused() {
    let net = TestNet::new("authz-hostile-claims");
    let (_upstream, envoy) = start(&net, config()).await;
    let token = hs256_jwt(
        JWT_SECRET,
        &json!({"iss": ISSUER, "sub": "bob", "role": "user", "exp": now() + 600}),
    );
    let bearer = format!("Bearer {token}");
    // Two forged copies before and after the token: the app sees exactly the validated one.
    let reply = raw(
        &envoy,
        "/public/echo",
        &[
            ("x-weft-claim-role", "admin"),
            ("authorization", &bearer),
            ("x-weft-claim-role", "root"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen: Value = serde_json::from_str(reply.body.trim()).unwrap_or_else(|e| {
        panic!("upstream body is not JSON ({e}): {}", reply.body);
    });
    assert_eq!(seen["headers"]["x-weft-claim-role"], "user", "{seen}");
    // Without a token every forged copy is removed.
    let reply = raw(
        &envoy,
        "/public/echo",
        &[
            ("x-weft-claim-role", "admin"),
            ("x-weft-claim-role", "root"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen: Value = serde_json::from_str(reply.body.trim()).unwrap();
    assert!(seen["headers"].get("x-weft-claim-role").is_none(), "{seen}");
    // The token header twice: ambiguous credentials, 401.
    let reply = raw(
        &envoy,
        "/public/echo",
        &[("authorization", &bearer), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // A token without `exp` is refused by default.
    let forever = hs256_jwt(
        JWT_SECRET,
        &json!({"iss": ISSUER, "sub": "bob", "role": "user"}),
    );
    let reply = raw(
        &envoy,
        "/public/echo",
        &[("authorization", &format!("Bearer {forever}"))],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_authz_configuration_denies_everything() {
    let net = TestNet::new("authz-hostile-empty");
    let (upstream, envoy) = start(&net, json!({})).await;
    let reply = raw(&envoy, "/public", &[]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        reply.body,
        "access denied: no authorization configuration\n"
    );
    assert_eq!(upstream.stats().await.unwrap().requests, 0);
}
