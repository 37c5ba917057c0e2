//! Service registration over xDS in real Envoy: a sidecar's node becomes an endpoint of its
//! service version in every sidecar's CDS/EDS while its stream is up; a canary split then
//! reaches the new version; when the sidecar goes, it is removed after the grace period.
#![cfg(test)]

mod xds_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_e2e::{http_client, poll_until, xds_support::network_gateway, Envoy, Pod, TestNet};
use weft_xds::{FilterSpec, MeshService, SidecarGroup};
use xds_common::{ControlPlane, OUTBOUND};

const V1: &str = "outbound|9080|v1|reviews.default";
const V2: &str = "outbound|9080|v2|reviews.default";

fn services() -> Vec<MeshService> {
    xds_common::reviews_services()
}

/// Filters for every group: reviews allow everything inbound; productpage calls reviews with
/// `split` (v1 weight, v2 weight) or no canary entry at all.
fn filters(split: Option<(u32, u32)>) -> BTreeMap<SidecarGroup, Vec<FilterSpec>> {
    let allow_all = FilterSpec::new("authz", r#"{"allow_all": true}"#.into());
    let canary = match split {
        Some((v1, v2)) => json!({"services": [{
            "host": "reviews", "stable": "v1",
            "versions": {"v1": {"cluster": V1}, "v2": {"cluster": V2}},
            "split": [{"version": "v1", "weight": v1}, {"version": "v2", "weight": v2}],
        }]}),
        None => json!({}),
    };
    BTreeMap::from([
        (
            SidecarGroup::new("default", "reviews", "v1"),
            vec![allow_all.clone()],
        ),
        (
            SidecarGroup::new("default", "reviews", "v2"),
            vec![allow_all.clone()],
        ),
        (
            SidecarGroup::new("default", "productpage", "v1"),
            vec![allow_all, FilterSpec::new("canary", canary.to_string())],
        ),
    ])
}

/// Endpoints of `cluster` in Envoy's admin /clusters (empty when the cluster does not exist).
async fn cluster_members(envoy: &Envoy, cluster: &str) -> BTreeSet<String> {
    let text = envoy.admin_get("/clusters").await.unwrap();
    let prefix = format!("{cluster}::");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("::").map(|(addr, _)| addr.to_string()))
        .filter(|addr| {
            addr.contains(':')
                && !addr.starts_with("default_priority")
                && !addr.starts_with("high_priority")
                && !addr.starts_with("added_via_api")
                && !addr.starts_with("observability_name")
                && !addr.starts_with("outlier")
        })
        .collect()
}

async fn wait_members(envoy: &Envoy, cluster: &str, want: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let result = poll_until(
        &format!("{cluster} with {want} endpoint(s)"),
        timeout,
        Duration::from_millis(20),
        || async { Ok((cluster_members(envoy, cluster).await.len() == want).then_some(())) },
    )
    .await;
    if let Err(error) = result {
        panic!("{error}\n{}", envoy.logs().await);
    }
    start.elapsed()
}

/// The versions that answered `n` requests sent by `caller`'s app through its sidecar's
/// outbound listener.
async fn versions_seen(caller: &Pod, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let response = http_client()
            .get(format!("{}/reviews/1", caller.local_url(OUTBOUND)))
            .header("host", "reviews")
            .send()
            .await
            .unwrap();
        let key = if response.status().is_success() {
            let body: serde_json::Value = response.json().await.unwrap();
            body["version"].as_str().unwrap_or("?").to_string()
        } else {
            format!("status {}", response.status().as_u16())
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_version_appears_in_callers_eds_gets_its_split_and_is_removed_when_it_leaves() {
    let net = TestNet::new("xds-mesh");
    let cp = ControlPlane::start(0).await;
    cp.state.set_config(1, filters(None), services()).unwrap();

    let gateway = network_gateway(&net).unwrap();
    let v1 = cp.sidecar(&net, &gateway, "reviews", "v1").await;
    let caller = cp.sidecar(&net, &gateway, "productpage", "v1").await;
    wait_members(&caller, V1, 1, Duration::from_secs(20)).await;
    wait_members(&caller, "reviews", 1, Duration::from_secs(5)).await;
    assert!(cluster_members(&caller, V2).await.is_empty());
    // Until its first filter config (module fetched) is in, reviews' inbound authz runs the
    // bootstrap's safe default: deny everything.
    let synced = cp
        .state
        .wait_synced(1, Some(2), Duration::from_secs(20))
        .await;
    assert!(
        synced.iter().all(|s| s.synced_revision == Some(1)),
        "{synced:?}"
    );
    // No canary entry yet: the route's fallback sends everything to the stable cluster.
    let seen = versions_seen(&caller, 20).await;
    assert_eq!(seen, BTreeMap::from([("v1".to_string(), 20)]), "{seen:?}");

    // v2 joins: its node registers it; callers see it in CDS/EDS.
    let joined = Instant::now();
    let v2 = cp.sidecar(&net, &gateway, "reviews", "v2").await;
    let ready = joined.elapsed();
    let visible = wait_members(&caller, V2, 1, Duration::from_secs(20)).await;
    let synced = cp
        .state
        .wait_synced(1, Some(3), Duration::from_secs(20))
        .await;
    assert!(
        synced.iter().all(|s| s.synced_revision == Some(1)),
        "{synced:?}"
    );
    println!(
        "v2 sidecar ready after {} ms; in the caller's EDS {} ms later",
        ready.as_millis(),
        visible.as_millis()
    );
    let statuses = cp.state.sidecars();
    let v2_status = statuses
        .iter()
        .find(|s| s.service == "reviews" && s.version == "v2")
        .unwrap();
    assert!(
        v2_status.connected && v2_status.inbound_address.is_some(),
        "{v2_status:?}"
    );
    assert_eq!(
        cluster_members(&caller, "reviews").await.len(),
        1,
        "v2 is not stable"
    );

    // A 50/50 split now reaches both versions.
    cp.state
        .set_config(2, filters(Some((5000, 5000))), services())
        .unwrap();
    let synced = cp.state.wait_synced(2, None, Duration::from_secs(10)).await;
    assert!(
        synced.iter().all(|s| s.synced_revision == Some(2)),
        "{synced:?}"
    );
    let seen = versions_seen(&caller, 200).await;
    println!("200 requests with a 50/50 split: {seen:?}");
    for version in ["v1", "v2"] {
        let count = seen.get(version).copied().unwrap_or(0) as u64;
        assert!(
            weft_e2e::within_binomial_999(count, 200, 0.5),
            "{version}: {count} of 200 {seen:?}"
        );
    }

    // v2 leaves: shown disconnected at once, removed from callers after the grace period.
    let left = Instant::now();
    drop(v2);
    let removed = wait_members(&caller, V2, 0, Duration::from_secs(20)).await;
    println!(
        "v2 removed from the caller's EDS {} ms after its container was removed (grace 2 s)",
        (left.elapsed()).as_millis()
    );
    let _ = removed;
    assert!(cp
        .state
        .sidecars()
        .iter()
        .all(|s| s.version != "v2" || s.service != "reviews"));
    drop(v1);
    cp.stop().await;
}
