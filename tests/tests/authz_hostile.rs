//! The authz filter against a hostile caller, in real Envoy: path variants sent byte for byte
//! (a raw HTTP/1.1 client, no URL library tidying them first), a header sent twice in both
//! orders, forged claim headers, a repeated token header and an empty configuration.
//!
//! The harness's listener does no path normalization of its own here, so these requests test
//! authz's own normalization (defence in depth); the sidecar listeners weft generates also
//! normalize in Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pki_common;

use pki_common::{hs256_jwt, now};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_e2e::{Envoy, EnvoyConfig, EnvoyOptions, TestNet, Upstream, WasmFilter};

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
        .to_yaml();
    let envoy = Envoy::start(net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    (upstream, envoy)
}

struct Raw {
    status: u16,
    body: String,
}

/// One request written exactly as given: `path` and each header line untouched.
async fn raw(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Raw {
    let url = envoy.url(10_000);
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: finance-reporting\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Raw { status, body }
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
async fn a_header_sent_twice_neither_dodges_a_deny_nor_satisfies_an_allow() {
    let net = TestNet::new("authz-hostile-headers");
    let (_upstream, envoy) = start(&net, config()).await;
    // DENY on mallory: any copy, in either order, or inside one comma-joined copy.
    for users in [
        &["mallory"][..],
        &["alice", "mallory"],
        &["mallory", "alice"],
        &["alice, mallory"],
    ] {
        let headers: Vec<(&str, &str)> = users.iter().map(|u| ("x-user", *u)).collect();
        let reply = raw(&envoy, "/public", &headers).await;
        assert_eq!(reply.status, 403, "{users:?}: {}", reply.body);
        assert!(reply.body.contains("no-admin"), "{users:?}: {}", reply.body);
    }
    assert_eq!(
        raw(&envoy, "/public", &[("x-user", "alice")]).await.status,
        200
    );
    // ALLOW for alice only: every copy must be alice.
    assert_eq!(
        raw(&envoy, "/alice/x", &[("x-user", "alice")]).await.status,
        200
    );
    for users in [&["alice", "bob"][..], &["bob", "alice"], &[]] {
        let headers: Vec<(&str, &str)> = users.iter().map(|u| ("x-user", *u)).collect();
        let reply = raw(&envoy, "/alice/x", &headers).await;
        assert_eq!(reply.status, 403, "{users:?}: {}", reply.body);
    }
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
