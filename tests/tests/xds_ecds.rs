//! ECDS over ADS in real Envoy: the authz filter's policy replaced at run time without a
//! restart (timed), a bad policy refused before it reaches anyone, and a module whose
//! SHA-256 does not match refused by Envoy with a NACK recorded for `weft status`.
#![cfg(test)]

mod xds_common;

use std::time::Duration;

use serde_json::json;
use weft_e2e::{xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions};
use weft_filter_core::authz::Authz;
use weft_xds::{bootstrap, WasmModules};
use xds_common::{status_of, until_statuses, ControlPlane, INBOUND};

fn allow_prefix(prefix: &str) -> serde_json::Value {
    json!({"policies": [{"name": format!("allow-{prefix}"), "action": "ALLOW",
        "rules": [{"methods": ["GET"], "paths": [format!("/{prefix}/*")]}]}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_authz_policy_changes_apply_without_restart_and_refusals_keep_the_last_good() {
    policy_changes_and_refusals(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_authz_policy_changes_apply_without_restart_and_refusals_keep_the_last_good() {
    policy_changes_and_refusals(true).await;
}

async fn policy_changes_and_refusals(delta: bool) {
    let protocol = if delta { "delta" } else { "sotw" };
    let net = TestNet::new(&format!("xds-ecds-{protocol}"));
    let gateway = network_gateway(&net).unwrap();
    let cp = ControlPlane::start(0).await;

    // Policy A before Envoy starts: the first config it gets is A.
    cp.apply_authz(1, ("finance", "v1"), &allow_prefix("a"));
    let mut params = cp.bootstrap(&gateway, "finance", "v1");
    params.delta = delta;
    let yaml = bootstrap::render(&params).unwrap();
    let envoy = Pod::start(
        &net,
        EnvoyOptions::new(yaml).ports([INBOUND]),
        UpstreamOptions::new("finance", "v1"),
    )
    .await
    .unwrap();
    let url = |path: &str| format!("{}{path}", envoy.url(INBOUND));

    let first = until_statuses(
        "policy A enforced",
        &[(url("/a/1"), 200), (url("/b/1"), 403)],
        Duration::from_secs(20),
    )
    .await;
    println!(
        "[{protocol}] first config (incl. module fetch) enforced {} ms after Envoy was ready",
        first.as_millis()
    );
    let synced = cp
        .state
        .wait_synced(1, Some(1), Duration::from_secs(5))
        .await;
    assert_eq!(synced[0].synced_revision, Some(1), "{synced:?}");
    assert_eq!(synced[0].service, "finance");
    assert_eq!(synced[0].protocol, protocol);

    // A -> B: new behaviour, same Envoy, no restart; timed from publish to enforced.
    let mut timings = Vec::new();
    for (revision, (allowed, denied)) in [(2, ("b", "a")), (3, ("a", "b")), (4, ("b", "a"))] {
        let published = std::time::Instant::now();
        cp.apply_authz(revision, ("finance", "v1"), &allow_prefix(allowed));
        until_statuses(
            "new policy enforced",
            &[
                (url(&format!("/{allowed}/1")), 200),
                (url(&format!("/{denied}/1")), 403),
            ],
            Duration::from_secs(10),
        )
        .await;
        timings.push(published.elapsed().as_millis());
        let acked = cp
            .state
            .wait_synced(revision, Some(1), Duration::from_secs(5))
            .await;
        assert_eq!(acked[0].synced_revision, Some(revision));
    }
    println!("[{protocol}] apply -> enforced (ms, policy change, same VM): {timings:?}");

    // A bad policy is refused with its field path before it is published; B stays.
    let bad =
        json!({"policies": [{"name": "x", "action": "ALLOW", "rules": [{"methodz": ["GET"]}]}]});
    let error = Authz::from_json(bad.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "policies[0].rules[0].methodz", "{error}");
    assert_eq!(status_of(&url("/b/1")).await, 200);
    assert_eq!(status_of(&url("/a/1")).await, 403);

    // A module whose hash does not match: Envoy refuses it (NACK), keeps enforcing B.
    let nacks_before = cp.state.sidecars()[0].nack_count;
    let mut wrong = WasmModules::default();
    let authz = std::fs::read(weft_e2e::artifact("authz").unwrap()).unwrap();
    wrong.insert("authz", authz, "0".repeat(64));
    cp.state.set_modules(wrong).unwrap();
    cp.apply_authz(5, ("finance", "v1"), &allow_prefix("c"));
    let nacked = weft_e2e::poll_until(
        "a NACK",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            Ok(cp
                .state
                .sidecars()
                .into_iter()
                .find(|s| s.nack_count > nacks_before)
                .and_then(|s| s.current_nack))
        },
    )
    .await;
    let nack = match nacked {
        Ok(nack) => nack,
        Err(error) => panic!("{error}\n{}", envoy.logs().await),
    };
    println!("[{protocol}] NACK recorded: {nack:?}");
    assert_eq!(nack.type_url, weft_xds::type_url::EXTENSION_CONFIG);
    assert!(!nack.message.is_empty());
    assert_eq!(
        status_of(&url("/b/1")).await,
        200,
        "last good config still enforced"
    );
    assert_eq!(status_of(&url("/a/1")).await, 403);
    assert_eq!(status_of(&url("/c/1")).await, 403);
    let status = &cp.state.sidecars()[0];
    assert_eq!(status.synced_revision, Some(4), "{status:?}");
    assert!(status.current_nack.is_some(), "{status:?}");
    cp.stop().await;
}
