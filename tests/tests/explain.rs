//! Explain tokens through the real `weft serve` and real Envoy sidecars: productpage calls
//! ratings (ALLOW `readers`: GET /ratings/*) through its outbound listener, as its app would.
//!
//! - a token minted with `weft explain-token --to ratings` gets `x-weft-explain` naming the
//!   allowing policy and rule (and, on a denied call, the default deny), and the ratings app
//!   never sees the token header;
//! - no token, a forged one (last MAC digit changed), an expired one (1 s TTL) and a valid
//!   token for reviews sent to ratings: no header, the same answer as without a token, each
//!   refusal counted by ratings' sidecar;
//! - a viewer operator may not mint one (403).
#![cfg(test)]

mod served_mesh;
mod weft_serve;
mod xds_common;

use std::time::Duration;

use served_mesh::{counter, ServedMesh, SHOP_SERVICES};
use weft_e2e::{api_client, http_client, Pod, TestNet};
use weft_filter_core::explain::{TOKEN_HEADER, TRACE_HEADER};
use xds_common::OUTBOUND;

const READERS: &str = "apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: readers}
spec:
  target: {service: ratings}
  rules: [{to: {methods: [GET], paths: [\"/ratings/*\"]}}]
";

/// `GET path` on ratings from `caller`'s app, with `token` if given: status and the trace.
async fn call(caller: &Pod, path: &str, token: Option<&str>) -> (u16, Option<String>) {
    let mut request = http_client()
        .get(format!("{}{path}", caller.local_url(OUTBOUND)))
        .header("host", "ratings")
        .timeout(Duration::from_secs(10));
    if let Some(token) = token {
        request = request.header(TOKEN_HEADER, token);
    }
    let response = request.send().await.unwrap();
    let trace = response
        .headers()
        .get(TRACE_HEADER)
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), trace)
}

const REFUSED: &str = "wasmcustom.weft.authz.explain.refused.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_tokens_in_real_envoy() {
    let net = TestNet::new("explain");
    let mesh = ServedMesh::start(
        &net,
        &format!("{SHOP_SERVICES}---\n{READERS}"),
        &[("ratings", "v1"), ("productpage", "v1")],
    )
    .await;
    let (caller, ratings) = (mesh.pod("productpage"), mesh.pod("ratings"));
    let token = mesh.cli(&["explain-token", "--to", "ratings", "--ttl", "5m"]);
    let token = token.trim();

    // A valid token: the trace, and the app never sees the token.
    let (status, trace) = call(caller, "/ratings/1", Some(token)).await;
    println!("valid token: {status} {trace:?}");
    assert_eq!(status, 200);
    assert_eq!(
        trace.as_deref(),
        Some(
            r#"default/ratings inbound authz=allow by readers (ALLOW policy "readers" rule 0 matched)"#
        )
    );
    let seen = ratings.app().last_headers().await.unwrap();
    assert!(!seen.contains_key(TOKEN_HEADER), "{seen:?}");
    let (status, trace) = call(caller, "/admin", Some(token)).await;
    println!("valid token, denied call: {status} {trace:?}");
    assert_eq!(status, 403);
    assert!(
        trace.as_deref().is_some_and(|t| t.starts_with(
            "default/ratings inbound authz=403 by default-deny (no ALLOW policy matched; ALLOW policies present: readers)"
        )),
        "{trace:?}"
    );
    assert_eq!(
        counter(ratings, "wasmcustom.weft.authz.explain.granted").await,
        2
    );

    // Without a token: nothing new.
    assert_eq!(call(caller, "/ratings/1", None).await, (200, None));
    assert_eq!(call(caller, "/admin", None).await.1, None);

    // Forged, expired, another service's: refused, answered as without a token, counted.
    let mut forged = token.to_string();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    let short = mesh.cli(&["explain-token", "--to", "ratings", "--ttl", "1s"]);
    let reviews = mesh.cli(&["explain-token", "--to", "reviews"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (what, bad) in [
        ("forged", forged.as_str()),
        ("expired", short.trim()),
        ("other_service", reviews.trim()),
        ("malformed", &"v1.".repeat(300)),
    ] {
        let before = counter(ratings, &format!("{REFUSED}{what}")).await;
        let answer = call(caller, "/ratings/1", Some(bad)).await;
        let after = counter(ratings, &format!("{REFUSED}{what}")).await;
        println!("{what}: {answer:?}, refused {}", after - before);
        assert_eq!(answer, (200, None), "{what}");
        assert_eq!(after - before, 1, "{what}");
        let seen = ratings.app().last_headers().await.unwrap();
        assert!(!seen.contains_key(TOKEN_HEADER), "{what}: {seen:?}");
    }

    // A viewer may not mint one.
    let viewer = mesh.cli(&[
        "operator", "create", "--name", "watcher", "--role", "viewer",
    ]);
    let status = api_client(None, viewer.trim())
        .post(format!(
            "{}/api/v1/explain/default/ratings/tokens",
            mesh.server.api
        ))
        .json(&serde_json::json!({"ttlSeconds": 60}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 403);
}
