//! FaultInjection as documented, compiled by the real `weft serve` into real Envoy sidecars
//! (productpage and reviews both call ratings):
//!
//! 1. a fault scoped to one caller (`match.principals`: productpage) aborts every one of
//!    productpage's calls and none of reviews' -- reviews' sidecar is not even given it;
//! 2. `expiry: 4s` is stored as an RFC 3339 time (kept by a restart), aborts before it, and
//!    the first request after it passes (the filter checks each request's time: no tick to
//!    wait for);
//! 3. `maxActive: 2` with 6 concurrent requests delayed 3 s: 2 held, 4 passed at once;
//! 4. `maxPercent: 25` with 40 requests that each ask for an abort by header: exactly 10
//!    aborted.
#![cfg(test)]

mod served_mesh;
mod weft_serve;
mod xds_common;

use std::time::{Duration, Instant};

use served_mesh::{counter, ServedMesh, SHOP_SERVICES as SERVICES};
use weft_e2e::{http_client, Pod, TestNet};
use weft_serve::WeftServer;
use xds_common::OUTBOUND;

/// The one FaultInjection on ratings (each scenario replaces it), with `spec` below target.
fn fault(spec: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {{name: ratings-fault}}
spec:
  target: {{service: ratings}}
  percentCap: 100
{spec}"
    )
}

const ABORTS: &str = "wasmcustom.weft.fault.aborts_injected";
const DELAYS: &str = "wasmcustom.weft.fault.delays_injected";
const SKIPPED_ACTIVE: &str = "wasmcustom.weft.fault.skipped_by_max_active";
const SKIPPED_PERCENT: &str = "wasmcustom.weft.fault.skipped_by_max_percent";
const SKIPPED_EXPIRED: &str = "wasmcustom.weft.fault.skipped_expired";

/// `n` calls to ratings from `caller`: how many answered each status.
async fn statuses(caller: &Pod, n: usize, header: Option<(&str, &str)>) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut request = http_client()
            .get(format!("{}/ratings/1", caller.local_url(OUTBOUND)))
            .header("host", "ratings")
            .timeout(Duration::from_secs(10));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        out.push(request.send().await.map_or(0, |r| r.status().as_u16()));
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_policies_work_as_documented_in_real_envoy() {
    let net = TestNet::new("fault-scope");
    let mut mesh = ServedMesh::start(
        &net,
        SERVICES,
        &[("ratings", "v1"), ("reviews", "v1"), ("productpage", "v1")],
    )
    .await;
    let (productpage, reviews) = (mesh.pod("productpage"), mesh.pod("reviews"));

    // 1. Caller scope.
    mesh.apply(&fault(
        "  match: {principals: [\"spiffe://cluster.local/ns/default/sa/productpage\"]}
  abort: {httpStatus: 503, percent: 100}
",
    ));
    let (pp_before, rv_before) = (
        counter(productpage, ABORTS).await,
        counter(reviews, ABORTS).await,
    );
    let from_productpage = statuses(productpage, 20, None).await;
    let from_reviews = statuses(reviews, 20, None).await;
    let pp_aborts = counter(productpage, ABORTS).await - pp_before;
    let rv_aborts = counter(reviews, ABORTS).await - rv_before;
    println!(
        "caller scope: productpage {} x 503 ({pp_aborts} injected), reviews {} x 200 ({rv_aborts} injected)",
        count(&from_productpage, 503),
        count(&from_reviews, 200)
    );
    assert_eq!(count(&from_productpage, 503), 20, "{from_productpage:?}");
    assert_eq!(pp_aborts, 20);
    assert_eq!(count(&from_reviews, 200), 20, "{from_reviews:?}");
    assert_eq!(rv_aborts, 0);
    let config = mesh
        .get_api("/api/v1/sidecars/default/reviews/v1/config")
        .await;
    assert_eq!(
        config["filters"]["fault"]["policies"],
        serde_json::json!([]),
        "{config}"
    );

    // 2. Expiry: a duration becomes a stored time.
    mesh.apply(&fault(
        "  expiry: 4s\n  abort: {httpStatus: 503, percent: 100}\n",
    ));
    let doc = mesh
        .get_api("/api/v1/policies/FaultInjection/default/ratings-fault")
        .await;
    let expiry = doc["spec"]["expiry"].as_str().unwrap().to_string();
    let expiry_version = mesh.get_api("/api/v1/status").await["policyVersion"]
        .as_u64()
        .unwrap();
    let expires_ms = weft_policy::expiry::parse_rfc3339(&expiry).unwrap();
    println!(
        "expiry stored as {expiry} ({} ms from now)",
        expires_ms as i64 - now_ms() as i64
    );
    let before = statuses(productpage, 3, None).await;
    assert!(
        now_ms() < expires_ms,
        "the machine is too slow for a 4 s expiry"
    );
    assert_eq!(count(&before, 503), 3, "{before:?}");
    while now_ms() < expires_ms {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expired_before = counter(productpage, SKIPPED_EXPIRED).await;
    let after = statuses(productpage, 5, None).await;
    println!("after the expiry: {after:?}");
    assert_eq!(
        count(&after, 200),
        5,
        "the first request after the expiry passes: {after:?}"
    );
    assert_eq!(
        counter(productpage, SKIPPED_EXPIRED).await - expired_before,
        5
    );

    // 3. maxActive: 2 of 6 concurrent requests held 3 s, 4 pass at once.
    mesh.apply(&fault(
        "  maxActive: 2\n  delay: {fixedDelay: 3s, percent: 100}\n",
    ));
    let (delays_before, skipped_before) = (
        counter(productpage, DELAYS).await,
        counter(productpage, SKIPPED_ACTIVE).await,
    );
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let url = productpage.local_url(OUTBOUND);
            tokio::spawn(async move {
                let t = Instant::now();
                let status = call_outbound_url(&url).await;
                (status, t.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let delayed = counter(productpage, DELAYS).await - delays_before;
    let skipped = counter(productpage, SKIPPED_ACTIVE).await - skipped_before;
    println!(
        "maxActive 2: {delayed} delayed, {skipped} skipped by the cap, in {:?}: {results:?}",
        started.elapsed()
    );
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!((delayed, skipped), (2, 4));

    // 4. maxPercent: 40 requests asking for an abort, 10 get one.
    mesh.apply(&fault(
        "  maxPercent: 25\n  allowHeaderTrigger: true\n  abort: {httpStatus: 500, percent: 0.01}\n",
    ));
    let skipped_before = counter(productpage, SKIPPED_PERCENT).await;
    let asked = statuses(productpage, 40, Some(("x-weft-fault", "abort=503"))).await;
    let skipped = counter(productpage, SKIPPED_PERCENT).await - skipped_before;
    println!(
        "maxPercent 25: {} of 40 aborted (503), {} passed, {skipped} skipped by the cap",
        count(&asked, 503),
        count(&asked, 200)
    );
    assert_eq!(
        (count(&asked, 503), count(&asked, 200)),
        (10, 30),
        "{asked:?}"
    );
    assert_eq!(skipped, 30);

    // The stored expiry is what a restarted control plane reads back.
    mesh.server.kill();
    mesh.server = WeftServer::start(&mesh.bin, mesh.data.path(), &["--xds-listen", "0.0.0.0:0"]);
    let record = mesh
        .get_api(&format!("/api/v1/history/{expiry_version}"))
        .await;
    assert!(record.to_string().contains(&expiry), "{record}");
}

async fn call_outbound_url(base: &str) -> u16 {
    http_client()
        .get(format!("{base}/ratings/1"))
        .header("host", "ratings")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}
