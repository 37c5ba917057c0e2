//! Each of the four filters changed at run time over ECDS, in real Envoy sidecars: the time
//! from publishing a new policy revision to the new behaviour being enforced is measured, and
//! config-only changes reuse the running wasm VMs (no code reload).
#![cfg(test)]

mod xds_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_e2e::{http_client, poll_until, xds_support::network_gateway, Envoy, Pod, TestNet};
use weft_xds::{FilterSpec, SidecarGroup};
use xds_common::{reviews_services, ControlPlane, OUTBOUND};

const V1: &str = "outbound|9080|v1|reviews.default";
const V2: &str = "outbound|9080|v2|reviews.default";

#[derive(Clone, Copy, Default)]
struct Knobs {
    canary_to_v2: bool,
    fault: bool,
    breaker: bool,
    strict_authz: bool,
}

fn config(k: Knobs) -> BTreeMap<SidecarGroup, Vec<FilterSpec>> {
    let authz = if k.strict_authz {
        json!({"policies": [{"name": "reviews-only", "action": "ALLOW",
            "rules": [{"methods": ["GET"], "paths": ["/reviews/*"]}]}]})
    } else {
        json!({"allow_all": true})
    };
    let split = if k.canary_to_v2 {
        (0, 10_000)
    } else {
        (10_000, 0)
    };
    let canary = json!({"services": [{
        "host": "reviews", "stable": "v1",
        "versions": {"v1": {"cluster": V1}, "v2": {"cluster": V2}},
        "split": [{"version": "v1", "weight": split.0}, {"version": "v2", "weight": split.1}],
    }]});
    let fault = if k.fault {
        json!({"percent_cap": 100.0, "policies": [{"name": "teapot", "match": {"hosts": ["reviews"]},
            "abort": {"percent": 100.0, "http_status": 418}}]})
    } else {
        json!({})
    };
    let breaker = if k.breaker {
        let policy = json!({"consecutive_failures": 1, "failure_on": ["5xx"], "open_interval_ms": 60_000,
            "max_open_interval_ms": 60_000, "jitter_percent": 0, "reject_status": 429});
        // The canary filter just wrote the cluster into this header (the route is re-picked later).
        json!({"cluster_header": "x-weft-cluster", "clusters": {V1: policy, V2: policy}})
    } else {
        json!({})
    };
    let spec = |module: &str, value: &Value| FilterSpec::new(module, value.to_string());
    let caller = vec![
        spec("authz", &json!({"allow_all": true})),
        spec("canary", &canary),
        spec("fault", &fault),
        spec("breaker", &breaker),
    ];
    BTreeMap::from([
        (
            SidecarGroup::new("default", "reviews", "v1"),
            vec![spec("authz", &authz)],
        ),
        (
            SidecarGroup::new("default", "reviews", "v2"),
            vec![spec("authz", &authz)],
        ),
        (SidecarGroup::new("default", "productpage", "v1"), caller),
    ])
}

/// `(status, version that answered)` of one call to reviews through the caller's sidecar.
async fn call(caller: &Pod, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = http_client()
        .get(format!("{}{path}", caller.local_url(OUTBOUND)))
        .header("host", "reviews");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let Ok(response) = request.send().await else {
        return (0, String::new());
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["version"].as_str().unwrap_or("").to_string())
}

/// Publishes `knobs` as `revision` and polls (5 ms) until `enforced` holds; returns the ms.
async fn apply_and_time<F, Fut>(
    cp: &ControlPlane,
    revision: u64,
    knobs: Knobs,
    what: &str,
    enforced: F,
) -> u128
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    cp.state
        .set_config(revision, config(knobs), reviews_services())
        .unwrap();
    poll_until(
        what,
        Duration::from_secs(10),
        Duration::from_millis(5),
        || {
            let check = enforced();
            async move { Ok(check.await.then_some(())) }
        },
    )
    .await
    .unwrap();
    start.elapsed().as_millis()
}

async fn vms_created(envoy: &Envoy) -> u64 {
    envoy
        .stat("wasm.envoy.wasm.runtime.v8.created")
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn vms_active(envoy: &Envoy) -> u64 {
    envoy
        .stat("wasm.envoy.wasm.runtime.v8.active")
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_filter_changes_behaviour_without_restart_and_keeps_its_vm() {
    let net = TestNet::new("xds-filters");
    let gateway = network_gateway(&net).unwrap();
    let cp = ControlPlane::start(0).await;
    cp.state
        .set_config(1, config(Knobs::default()), reviews_services())
        .unwrap();
    let _v1 = cp.sidecar(&net, &gateway, "reviews", "v1").await;
    let _v2 = cp.sidecar(&net, &gateway, "reviews", "v2").await;
    let caller = cp.sidecar(&net, &gateway, "productpage", "v1").await;
    let synced = cp
        .state
        .wait_synced(1, Some(3), Duration::from_secs(30))
        .await;
    assert!(
        synced
            .iter()
            .filter(|s| s.synced_revision == Some(1))
            .count()
            == 3,
        "{synced:?}"
    );
    poll_until(
        "v1 answers through the caller",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            Ok((call(&caller, "/reviews/1", &[]).await == (200, "v1".to_string())).then_some(()))
        },
    )
    .await
    .unwrap();
    let (created_before, active_before) = (vms_created(&caller).await, vms_active(&caller).await);

    let mut knobs = Knobs::default();
    let mut timings = Vec::new();

    knobs.canary_to_v2 = true;
    let ms = apply_and_time(&cp, 2, knobs, "canary sends to v2", || async {
        for _ in 0..5 {
            if call(&caller, "/reviews/1", &[]).await != (200, "v2".to_string()) {
                return false;
            }
        }
        true
    })
    .await;
    timings.push(("canary (split 100% v1 -> 100% v2)", ms));

    knobs.fault = true;
    let ms = apply_and_time(&cp, 3, knobs, "fault aborts with 418", || async {
        call(&caller, "/reviews/1", &[]).await.0 == 418
    })
    .await;
    timings.push(("fault (abort 418 on)", ms));
    knobs.fault = false;
    let ms = apply_and_time(&cp, 4, knobs, "fault off", || async {
        call(&caller, "/reviews/1", &[]).await.0 == 200
    })
    .await;
    timings.push(("fault (abort off)", ms));

    knobs.breaker = true;
    let ms = apply_and_time(&cp, 5, knobs, "breaker opens after one 5xx", || async {
        call(&caller, "/reviews/1", &[("x-fail", "503")]).await;
        call(&caller, "/reviews/1", &[]).await.0 == 429
    })
    .await;
    timings.push(("breaker (open after 1 failure)", ms));
    knobs.breaker = false;
    let ms = apply_and_time(&cp, 6, knobs, "breaker removed", || async {
        call(&caller, "/reviews/1", &[]).await.0 == 200
    })
    .await;
    timings.push(("breaker (removed)", ms));

    knobs.strict_authz = true;
    let ms = apply_and_time(&cp, 7, knobs, "authz denies /other", || async {
        call(&caller, "/other", &[]).await.0 == 403
            && call(&caller, "/reviews/1", &[]).await.0 == 200
    })
    .await;
    timings.push(("authz (inbound, on reviews v2)", ms));

    for (what, ms) in &timings {
        println!("apply -> enforced: {what}: {ms} ms");
    }
    let (created_after, active_after) = (vms_created(&caller).await, vms_active(&caller).await);
    // Envoy makes (and drops) a short-lived VM to check some new plugin configs, so `created`
    // grows; the VMs serving traffic are the same ones (`active` is unchanged, and the
    // changes take effect in milliseconds, not the ~90 ms of a code load).
    println!(
        "caller wasm VMs: active {active_before} -> {active_after}, created {created_before} -> {created_after}"
    );
    assert_eq!(
        active_before, active_after,
        "config-only changes keep the running VMs"
    );
    cp.stop().await;
}
