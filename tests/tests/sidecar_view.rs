//! The sidecar-config API shows what a sidecar receives: policies are translated by
//! `weft-translate` (as `weft serve` does), published by the xDS server to a real Envoy
//! sidecar, and Envoy's `config_dump` (ECDS filters and CDS clusters) is compared with the
//! API's `GET /api/v1/xds/sidecars/{ns}/{svc}/{ver}/resources` and the server's snapshot.
//! Secrets (an HS256 secret, the group's telemetry key) reach the sidecar but the API shows
//! them as `<redacted sha256:HEX>`: the comparison redacts what Envoy holds with the same
//! function and compares the digests.
#![cfg(test)]

mod xds_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weft_e2e::{http_client, poll_until, xds_support::network_gateway, Envoy, TestNet};
use weft_policy::secret::{redact, redact_json_text};
use weft_policy::{load, Limits, PolicySet};
use weft_state::Snapshot;
use weft_telemetry_plane::GroupKeys;
use weft_translate::{sidecar_resources, Layout, Mode};
use weft_xds::{type_url, SidecarGroup};
use xds_common::ControlPlane;

const DOCS: &str = "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec: {port: 9080, versions: [v1, v2]}\n---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: readers, namespace: default}\nspec:\n  target: {service: reviews, versions: [v1]}\n  rules: [{to: {methods: [GET], paths: [\"/reviews/*\"]}}]\n---\napiVersion: weft.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: default}\nspec:\n  target: {service: reviews}\n  jwtRules: [{issuer: https://issuer.example, hs256Secrets: [\"sidecar-view-hs256-secret-32-bytes!!\"]}]\n";

const SECRET: &str = "sidecar-view-hs256-secret-32-bytes!!";

fn mk_snapshot(version: u64) -> Snapshot {
    let documents = PolicySet::from_documents(load(DOCS.as_bytes(), &Limits::default()).unwrap());
    Snapshot {
        version,
        compiled: weft_compile::compile(&documents).unwrap(),
        documents,
    }
}

/// Serves the sidecar-config API route with the view `weft serve` wires: the translation of
/// `snapshot`, one group's part of it.
fn serve_api(snapshot: Arc<Snapshot>, keys: Arc<GroupKeys>, mode: Mode) -> String {
    let view: weft_api::SidecarResourcesView = Arc::new(move |namespace, service, version| {
        let resources = sidecar_resources(&snapshot, &keys, mode);
        let view = resources.group_view(&SidecarGroup::new(namespace, service, version))?;
        serde_json::to_value(view).ok()
    });
    let router = weft_api::redacting(weft_api::xds_resources_router(Some(view)));
    let (tx, rx) = std::sync::mpsc::channel();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        axum::serve(listener, router).await.unwrap();
    });
    format!(
        "http://{}",
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    )
}

/// A configuration string as JSON, its secrets redacted (a no-op on the API's side).
fn redacted(configuration: &str) -> Value {
    let text = redact_json_text(configuration).unwrap_or_else(|| configuration.to_string());
    serde_json::from_str(&text).unwrap()
}

/// name -> (configuration string, failure policy) of every ECDS wasm filter Envoy holds.
fn ecds_filters(dump: &Value) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        for filter in config["ecds_filters"].as_array().into_iter().flatten() {
            let ecds = &filter["ecds_filter"];
            let plugin = &ecds["typed_config"]["config"];
            out.insert(
                ecds["name"].as_str().unwrap_or_default().to_string(),
                (
                    plugin["configuration"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    plugin["failure_policy"].as_str().unwrap_or("").to_string(),
                ),
            );
        }
    }
    out
}

/// Names of the clusters Envoy got over CDS.
fn dynamic_clusters(dump: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        for cluster in config["dynamic_active_clusters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(name) = cluster["cluster"]["name"].as_str() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

async fn config_dump(envoy: &Envoy) -> Value {
    serde_json::from_str(&envoy.admin_get("/config_dump").await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_config_api_equals_what_the_sidecar_received() {
    let net = TestNet::new("sidecar-view");
    let cp = ControlPlane::start(0).await;
    let mode = Mode {
        layout: Layout::Separate,
        telemetry: cp.state.module("telemetry").is_some(),
    };
    let keys = Arc::new(GroupKeys::new(b"sidecar-view".to_vec()));
    let snapshot = Arc::new(mk_snapshot(3));
    let resources = sidecar_resources(&snapshot, &keys, mode);
    assert!(resources.errors.is_empty(), "{:?}", resources.errors);
    cp.state
        .set_config(
            resources.revision,
            resources.filters.clone(),
            resources.services.clone(),
        )
        .unwrap();
    let api = serve_api(Arc::clone(&snapshot), Arc::clone(&keys), mode);

    let gateway = network_gateway(&net).unwrap();
    let pod = cp.sidecar(&net, &gateway, "reviews", "v1").await;
    let synced = cp
        .state
        .wait_synced(3, Some(1), Duration::from_secs(60))
        .await;
    assert!(
        synced.iter().any(|s| s.synced_revision == Some(3)),
        "{synced:?}\n{}",
        pod.sidecar().logs().await
    );

    let shown: Value = http_client()
        .get(format!(
            "{api}/api/v1/xds/sidecars/default/reviews/v1/resources"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["revision"], 3, "{shown}");
    let want: BTreeMap<String, (Value, String)> = shown["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let failure = match f["failure"].as_str().unwrap() {
                "FailClosed" => "FAIL_CLOSED",
                "FailOpen" => "FAIL_OPEN",
                other => panic!("failure mode {other}"),
            };
            (
                f["name"].as_str().unwrap().to_string(),
                (
                    redacted(f["configuration"].as_str().unwrap()),
                    failure.to_string(),
                ),
            )
        })
        .collect();
    // The view is not trivially empty: the authz rule for v1 is in it, and the secret only
    // as its digest.
    let authz = want["weft.authz"].0.to_string();
    assert!(authz.contains("/reviews/"), "{shown}");
    assert!(authz.contains(&redact(SECRET)), "{shown}");
    assert!(!shown.to_string().contains(SECRET), "{shown}");

    // Envoy may still be applying the last ECDS entries when the ACK is recorded.
    let envoy = pod.sidecar();
    let received = poll_until(
        "the sidecar's ECDS filters",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let got = ecds_filters(&config_dump(envoy).await);
            Ok((got.len() >= want.len()).then_some(got))
        },
    )
    .await;
    let received = match received {
        Ok(received) => received,
        Err(error) => panic!("{error}\n{}", envoy.logs().await),
    };
    // Envoy holds the secret itself; redacted, it is the API's view.
    assert!(received["weft.authz"].0.contains(SECRET));
    let received: BTreeMap<String, (Value, String)> = received
        .into_iter()
        .map(|(name, (config, failure))| (name, (redacted(&config), failure)))
        .collect();
    assert_eq!(received, want, "config_dump ECDS vs the sidecar-config API");

    // CDS: the clusters Envoy holds are the group's snapshot's: the declared service and
    // the version cluster of each registered sidecar (v1; no v2 sidecar runs).
    let group = SidecarGroup::new("default", "reviews", "v1");
    let served: BTreeSet<String> = cp
        .state
        .snapshot(&group)
        .resources(type_url::CLUSTER)
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        served,
        BTreeSet::from([
            "outbound|9080|v1|reviews.default".to_string(),
            "reviews".to_string()
        ])
    );
    assert_eq!(dynamic_clusters(&config_dump(envoy).await), served);

    drop(pod);
    cp.stop().await;
}
