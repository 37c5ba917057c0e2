//! Router-only Envoy in front of one test service: the harness itself works end to end.
#![cfg(test)]

use weft_e2e::{http_client, Envoy, EnvoyConfig, EnvoyOptions, TestNet, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn request_through_envoy_reaches_the_upstream() {
    let net = TestNet::new("smoke");
    let upstream = Upstream::start(&net, "reviews", "v1").await.unwrap();
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias()).to_yaml();
    let options = EnvoyOptions {
        wasm_dir: None,
        ..EnvoyOptions::new(bootstrap)
    };
    let envoy = Envoy::start(&net, options).await.unwrap();

    let response = http_client()
        .get(format!("{}/hello", envoy.url(10_000)))
        .header("x-probe", "smoke")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-service"], "reviews");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["service"], "reviews", "{body}");
    assert_eq!(body["version"], "v1", "{body}");
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["headers"]["x-probe"], "smoke");

    let stats = upstream.stats().await.unwrap();
    assert_eq!(stats.requests, 1, "{stats:?}");
    assert_eq!(
        envoy
            .stat("cluster.upstream.upstream_rq_200")
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_config_returns_envoys_log() {
    let net = TestNet::new("refused");
    let options = EnvoyOptions {
        wasm_dir: None,
        ..EnvoyOptions::new("static_resources: {clusters: [{name: x, type: NOT_A_TYPE}]}")
    };
    let logs = Envoy::start_expect_failure(&net, options).await.unwrap();
    assert!(logs.contains("NOT_A_TYPE"), "{logs}");
}
