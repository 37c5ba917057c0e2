//! Scoped CDS/EDS/RDS in real Envoy sidecars, served by the real `weft serve`: a `Service`
//! that declares `calls` has sidecars that are sent only the clusters, endpoints and routes
//! of those services (Istio's `Sidecar` egress hosts):
//!
//! 1. productpage calls reviews, reviews calls ratings, ratings calls nothing: each sidecar's
//!    config dump holds exactly the mesh clusters and endpoints of what it calls (never the
//!    others' pod addresses), and each still reaches what it calls through its outbound
//!    listener while an undeclared call is answered 404 by the sidecar itself;
//! 2. productpage is then declared to call ratings too: the next apply gives it ratings'
//!    cluster and endpoint, and the call that was refused goes through.
#![cfg(test)]

mod served_mesh;
mod weft_serve;
mod xds_common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use served_mesh::ServedMesh;
use weft_e2e::{http_client, Pod, TestNet};
use xds_common::OUTBOUND;

fn services(productpage_calls: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{name: ratings}}
spec: {{port: 9080, versions: [v1], calls: []}}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{name: reviews}}
spec: {{port: 9080, versions: [v1], calls: [ratings]}}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{name: productpage}}
spec: {{port: 9080, versions: [v1], calls: [{productpage_calls}]}}
"
    )
}

/// What a sidecar holds, read from its config dump (EDS included): the mesh clusters (the
/// bootstrap's own are left out) and every endpoint address as `cluster=ip`.
struct Dump {
    clusters: BTreeSet<String>,
    endpoints: BTreeSet<String>,
}

async fn dump(pod: &Pod) -> Dump {
    let text = pod
        .sidecar()
        .admin_get("/config_dump?include_eds")
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let configs = body["configs"].as_array().cloned().unwrap_or_default();
    let of_type = |suffix: &str| {
        configs
            .iter()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(suffix)))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let clusters = of_type("ClustersConfigDump")["dynamic_active_clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cluster"]["name"].as_str().map(String::from))
        .collect();
    let mut endpoints = BTreeSet::new();
    let eds = of_type("EndpointsConfigDump");
    for config in eds["dynamic_endpoint_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let assignment = &config["endpoint_config"];
        let name = assignment["cluster_name"].as_str().unwrap_or_default();
        for locality in assignment["endpoints"].as_array().into_iter().flatten() {
            for lb in locality["lb_endpoints"].as_array().into_iter().flatten() {
                let ip = &lb["endpoint"]["address"]["socket_address"]["address"];
                endpoints.insert(format!("{name}={}", ip.as_str().unwrap_or_default()));
            }
        }
    }
    Dump {
        clusters,
        endpoints,
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// The mesh clusters of `service` (v1 only) and its endpoints at `ip`.
fn mesh_of(service: &str, ip: &str) -> (Vec<String>, Vec<String>) {
    let version = format!("outbound|9080|v1|{service}.default");
    (
        vec![version.clone(), service.to_string()],
        vec![format!("{version}={ip}"), format!("{service}={ip}")],
    )
}

/// The status of a GET from `caller` to `host` through its outbound listener.
async fn call(caller: &Pod, host: &str) -> u16 {
    http_client()
        .get(format!("{}/scoped/{host}", caller.local_url(OUTBOUND)))
        .header("host", host)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Polls until `pod`'s dump holds exactly `clusters` and `endpoints` (EDS follows CDS).
async fn until_dump(pod: &Pod, clusters: &[String], endpoints: &[String]) -> Dump {
    let (clusters, endpoints) = (set(clusters), set(endpoints));
    let mut last = None;
    for _ in 0..100 {
        let got = dump(pod).await;
        if got.clusters.is_superset(&clusters)
            && got.clusters.iter().filter(|c| is_mesh(c)).count() == clusters.len()
            && got.endpoints == endpoints
        {
            return got;
        }
        last = Some((got.clusters, got.endpoints));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("want clusters {clusters:?} endpoints {endpoints:?}, last dump: {last:?}");
}

/// A mesh cluster (the bootstrap's own `local_app`, `weft_xds`, ... are not).
fn is_mesh(name: &str) -> bool {
    name.starts_with("outbound|") || ["ratings", "reviews", "productpage"].contains(&name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_sidecar_holds_and_reaches_only_the_services_it_calls() {
    let net = TestNet::new("scoped-mesh");
    let mesh = ServedMesh::start(
        &net,
        &services("reviews"),
        &[("ratings", "v1"), ("reviews", "v1"), ("productpage", "v1")],
    )
    .await;
    let (ratings, reviews, productpage) = (
        mesh.pod("ratings"),
        mesh.pod("reviews"),
        mesh.pod("productpage"),
    );
    let ip_ratings = ratings.ip().await.unwrap();
    let ip_reviews = reviews.ip().await.unwrap();
    let ip_productpage = productpage.ip().await.unwrap();

    // 1. Each sidecar holds exactly the mesh of what it calls.
    let (rv_clusters, rv_endpoints) = mesh_of("reviews", &ip_reviews);
    let (ra_clusters, ra_endpoints) = mesh_of("ratings", &ip_ratings);
    let pp = until_dump(productpage, &rv_clusters, &rv_endpoints).await;
    let rv = until_dump(reviews, &ra_clusters, &ra_endpoints).await;
    let ra = until_dump(ratings, &[], &[]).await;
    println!(
        "productpage holds {:?} / {:?}\nreviews holds {:?} / {:?}\nratings holds {} mesh clusters",
        pp.clusters,
        pp.endpoints,
        rv.clusters,
        rv.endpoints,
        ra.clusters.iter().filter(|c| is_mesh(c)).count()
    );
    for (name, d) in [("productpage", &pp), ("reviews", &rv), ("ratings", &ra)] {
        let text = format!("{:?}", d.endpoints);
        assert!(
            !text.contains(&format!("={ip_productpage}")),
            "{name} was sent productpage's address (nobody calls it): {text}"
        );
    }
    assert!(!format!("{:?}", pp.endpoints).contains(&ip_ratings));

    // ... and reaches what it calls; anything else is the sidecar's own 404.
    let calls = [
        (
            "productpage -> reviews",
            call(productpage, "reviews").await,
            200,
        ),
        (
            "productpage -> ratings",
            call(productpage, "ratings").await,
            404,
        ),
        ("reviews -> ratings", call(reviews, "ratings").await, 200),
        (
            "reviews -> productpage",
            call(reviews, "productpage").await,
            404,
        ),
        ("ratings -> reviews", call(ratings, "reviews").await, 404),
    ];
    println!("calls: {calls:?}");
    for (what, got, want) in calls {
        assert_eq!(got, want, "{what}");
    }

    // 2. Declaring a new call gives it the cluster, the endpoint and the route.
    mesh.apply(&services("reviews, ratings"));
    let both: Vec<String> = [rv_clusters, ra_clusters].concat();
    let both_endpoints: Vec<String> = [rv_endpoints, ra_endpoints].concat();
    until_dump(productpage, &both, &both_endpoints).await;
    assert_eq!(call(productpage, "ratings").await, 200);
    assert_eq!(call(productpage, "reviews").await, 200);
}
