//! Every replica sees every sidecar, end to end: a real 3-member etcd cluster, three real
//! `weft serve --store etcd` replicas, real Envoy sidecars each connected to another replica.
//!
//! - `weft apply` through replica 1 waits for the ACKs of the sidecars connected to replicas
//!   2 and 3 (sidecar status shared through etcd under each replica's lease), and when a
//!   sidecar connected to replica 2 does not sync (its Envoy paused), the wait times out
//!   naming it and its replica;
//! - `GET /api/v1/xds/sidecars` from replica 3 lists replica 1's sidecar, with its replica;
//! - mesh calls between sidecars on different replicas (their endpoints known through etcd)
//!   show on the graph asked from each replica with the exact counts (every replica's
//!   telemetry merged, one telemetry secret shared);
//! - the telemetry secret an older version kept in etcd in clear is sealed with the KEK (the
//!   same value) and its clear copy deleted; no secret is in clear in etcd;
//! - kill -9 replica 2 under steady mesh traffic to its sidecar: the endpoint stays (0 failed
//!   calls), and the sidecar reappears as connected to a survivor.
#![cfg(test)]

mod etcd_common;
mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_common::{
    assert_nothing_secret_in_clear, etcd_flags, kek_file, raw_values, share_admin_token,
    EtcdCluster,
};
use serde_json::Value;
use weft_e2e::{http_client, poll_until, xds_support::network_gateway, Pod, TestNet};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::BootstrapParams;
use xds_common::pod_from;

const OUTBOUND: u16 = 15001;
const IDS: [&str; 3] = ["r1", "r2", "r3"];

const SERVICES: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: web}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: api}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: db}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: stuck}
spec: {port: 8080, versions: [v1]}
";

fn replica(bin: &Path, data: &Path, endpoints: &str, id: &str, kek: &Path) -> WeftServer {
    let mut flags = etcd_flags(endpoints, Some(kek));
    flags.extend(
        [
            "--xds-listen",
            "0.0.0.0:0",
            "--mesh-warmup-ms",
            "0",
            "--replica-id",
            id,
        ]
        .map(str::to_string),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    WeftServer::start(bin, data, &flags)
}

/// `SERVICES` plus a policy named after `tag` for `target` (each apply makes a new version;
/// only `target`'s sidecars are sent a change).
fn policies(dir: &Path, tag: &str, target: &str) -> PathBuf {
    let path = dir.join(format!("{tag}.yaml"));
    let yaml = format!(
        "{SERVICES}---\napiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {target}-{tag}}}\nspec:\n  target: {{service: {target}}}\n  action: ALLOW\n\
         \x20 rules:\n  - to: {{methods: [GET]}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A sidecar of `service` connected to replica `first`, the others as fallbacks.
async fn sidecar(
    net: &TestNet,
    gateway: &str,
    replicas: &[WeftServer],
    service: &str,
    first: usize,
) -> Pod {
    let mut params = BootstrapParams::new(service, "v1", gateway, replicas[first].xds_port);
    params.xds_more = (1..3)
        .map(|d| (gateway.to_string(), replicas[(first + d) % 3].xds_port))
        .collect();
    params.node_id = Some(format!("{service}-0"));
    pod_from(net, &params).await
}

/// The sidecar `node` as `replica` lists it.
async fn listed(replica: &WeftServer, node: &str) -> Value {
    let body = replica.api_get("/api/v1/xds/sidecars").await;
    body["sidecars"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["node_id"] == node).cloned())
        .unwrap_or(Value::Null)
}

/// Requests of the edge `web -> destination` on `replica`'s graph.
async fn edge_requests(replica: &WeftServer, destination: &str) -> u64 {
    let graph = replica.api_get("/api/v1/graph?window=5m").await;
    graph["edges"]
        .as_array()
        .and_then(|edges| {
            edges
                .iter()
                .find(|e| e["source"] == "web" && e["destination"] == destination)
        })
        .and_then(|e| e["requests"].as_u64())
        .unwrap_or(0)
}

/// `n` calls from web's sidecar to `host`; their statuses.
async fn call(web: &Pod, host: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let response = http_client()
            .get(format!("{}/call/{i}", web.local_url(OUTBOUND)))
            .header("host", host)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        out.push(response.map_or(0, |r| r.status().as_u16()));
    }
    out
}

/// etcd's revision now (each write transaction moves it by one), through its JSON gateway.
async fn etcd_revision(endpoint: &str) -> u64 {
    let body: Value = http_client()
        .post(format!("{endpoint}/v3/kv/range"))
        .json(&serde_json::json!({"key": "L3dlZnQvcG9saWN5L2hlYWQ="}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn docker(args: &[&str]) {
    let status = std::process::Command::new("docker")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "docker {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_replica_sees_every_sidecar_its_acks_endpoints_and_telemetry() {
    let bin = weft_bin();
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let files = tempfile::tempdir().unwrap();
    let kek = kek_file(files.path(), "kek", 0x77);
    // An older version kept the telemetry secret in clear: the first replica seals it (the
    // same bytes) and deletes the clear copy.
    let legacy = "ab".repeat(32);
    {
        let mut client =
            etcd_client::Client::connect(endpoints.split(',').collect::<Vec<_>>(), None)
                .await
                .unwrap();
        client
            .put("/weft/secrets/telemetry", legacy.clone(), None)
            .await
            .unwrap();
    }
    let mut replicas = vec![replica(&bin, dirs[0].path(), &endpoints, IDS[0], &kek)];
    share_admin_token(dirs[0].path(), dirs[1..].iter().map(|d| d.path()));
    for (d, id) in dirs.iter().zip(IDS).skip(1) {
        replicas.push(replica(&bin, d.path(), &endpoints, id, &kek));
    }
    let values = raw_values(&endpoints).await;
    let sealed = assert_nothing_secret_in_clear(&values, &["telemetry", "explain"]);
    assert!(
        !values.iter().any(|(k, _)| k == "/weft/secrets/telemetry"),
        "the clear copy is deleted"
    );
    let telemetry = &values
        .iter()
        .find(|(k, _)| k == "/weft/state/secrets/telemetry")
        .unwrap()
        .1;
    let opened = weft_ca::Kek::from_file(&kek)
        .unwrap()
        .open(
            &serde_json::from_str(telemetry).unwrap(),
            "secrets/telemetry",
        )
        .unwrap();
    assert_eq!(
        opened,
        vec![0xab; 32],
        "the migrated secret keeps its value"
    );
    println!(
        "etcd after start: {} keys, {sealed} sealed values, nothing secret in clear; the clear \
         telemetry secret of an older version was sealed (same value) and deleted",
        values.len()
    );
    let net = TestNet::new("replicas-status");
    let gateway = network_gateway(&net).unwrap();
    let apply = |replica: &WeftServer, tag: &str, target: &str, extra: &[&str]| {
        let file = policies(files.path(), tag, target);
        let mut args = vec!["apply", "-f", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        replica.cli(&bin, &args)
    };
    let (code, out, err) = apply(&replicas[0], "v0", "api", &["--ack-timeout", "0"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // web on replica 1, api on replica 2, db on replica 3.
    let web = sidecar(&net, &gateway, &replicas, "web", 0).await;
    let _api = sidecar(&net, &gateway, &replicas, "api", 1).await;
    let _db = sidecar(&net, &gateway, &replicas, "db", 2).await;

    // The list from replica 3 holds replica 1's sidecar, connected there.
    poll_until(
        "web listed by replica 3 as on r1",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let web = listed(&replicas[2], "web-0").await;
            Ok((web["connected"] == true && web["replica"] == "r1").then_some(()))
        },
    )
    .await
    .unwrap();
    // Each on its replica, synced to version 1 (a first module load may be refused and
    // retried 11 s later on a loaded machine), as replica 1 sees them.
    poll_until(
        "the three synced, listed by replica 1",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let mut ok = true;
            for (node, replica) in [("web-0", "r1"), ("api-0", "r2"), ("db-0", "r3")] {
                let row = listed(&replicas[0], node).await;
                ok &= row["replica"] == replica
                    && row["connected"] == true
                    && row["synced_revision"] == 1;
            }
            Ok(ok.then_some(()))
        },
    )
    .await
    .unwrap();

    // etcd writes of a quiet mesh: the replicas' registrations (one a second each).
    let member = endpoints.split(',').next().unwrap().to_string();
    let quiet = etcd_revision(&member).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet = etcd_revision(&member).await - quiet;
    println!("etcd writes, 3 replicas and 3 sidecars, quiet: {quiet} in 5 s");
    // An apply through replica 1 waits for all three, two of them on other replicas.
    let before = etcd_revision(&member).await;
    let started = Instant::now();
    let (code, out, err) = apply(&replicas[0], "v1", "api", &["--ack-timeout", "60"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("3 of 3 sidecar(s) acknowledged"), "{err}");
    println!(
        "apply through r1, ACKed by the sidecars of r1, r2, r3 in {} ms",
        started.elapsed().as_millis()
    );
    let took = started.elapsed();
    for node in ["web-0", "api-0", "db-0"] {
        let row = listed(&replicas[0], node).await;
        assert_eq!(row["synced_revision"], 2, "{row}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = etcd_revision(&member).await - before;
    println!(
        "etcd writes for one apply and its 3 ACKs (and {} s of registrations): {writes}",
        (took + Duration::from_secs(1)).as_secs_f64().ceil()
    );

    // Mesh calls between replicas' sidecars, counted on every replica's graph.
    // Every call web makes is counted (the probes included, answered or not).
    let probes = std::sync::Mutex::new((0u64, 0u64));
    poll_until(
        "web reaches api and db",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let api = call(&web, "api", 1).await == [200];
            let db = call(&web, "db", 1).await == [200];
            let mut p = probes.lock().unwrap();
            (p.0, p.1) = (p.0 + 1, p.1 + 1);
            Ok((api && db).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(call(&web, "api", 13).await, [200; 13]);
    assert_eq!(call(&web, "db", 7).await, [200; 7]);
    // Every replica shows the same, exact counts (each telemetry batch reached one of them).
    let (probe_api, probe_db) = *probes.lock().unwrap();
    let want = (probe_api + 13, probe_db + 7);
    let last = std::sync::Mutex::new(Vec::new());
    let complete = poll_until(
        "the graph complete from each replica",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let mut seen = Vec::new();
            for r in &replicas {
                seen.push((edge_requests(r, "api").await, edge_requests(r, "db").await));
            }
            *last.lock().unwrap() = seen.clone();
            Ok(seen.iter().all(|s| *s == want).then_some(seen))
        },
    )
    .await;
    if complete.is_err() {
        let graph = replicas[0].api_get("/api/v1/graph?window=5m").await;
        panic!(
            "want {want:?} (web -> api, web -> db) on r1, r2, r3; last seen {:?}\ngraph from r1: {}",
            last.lock().unwrap(),
            graph["edges"]
        );
    }
    println!(
        "graph from r1, r2, r3: web -> api {}, web -> db {}",
        want.0, want.1
    );
    // Settled: one more read from each, still exact (no batch counted twice).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in &replicas {
        assert_eq!(
            (edge_requests(r, "api").await, edge_requests(r, "db").await),
            want
        );
    }

    // A sidecar on replica 2 that does not sync: the wait through replica 1 names it.
    let stuck = sidecar(&net, &gateway, &replicas, "stuck", 1).await;
    poll_until(
        "stuck synced",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let row = listed(&replicas[0], "stuck-0").await;
            Ok((row["synced_revision"] == 2).then_some(()))
        },
    )
    .await
    .unwrap();
    docker(&["pause", stuck.sidecar().id()]);
    let (code, out, err) = apply(&replicas[0], "v2", "stuck", &["--ack-timeout", "3"]);
    docker(&["unpause", stuck.sidecar().id()]);
    println!("apply with a paused sidecar: exit {code}: {}", err.trim());
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("3 of 4 sidecar(s) acknowledged version 3"),
        "{err}"
    );
    assert!(err.contains("stuck-0 (replica r2, at 2)"), "{err}");
    drop(stuck);

    // kill -9 replica 2 under steady calls to api (its sidecar): no call fails, api's
    // sidecar is back as connected to a survivor.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, url) = (std::sync::Arc::clone(&stop), web.local_url(OUTBOUND));
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                let ok = http_client()
                    .get(format!("{url}/steady"))
                    .header("host", "api")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200);
                failed += u64::from(!ok);
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    replicas[1].kill();
    poll_until(
        "api on a survivor",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let row = listed(&replicas[2], "api-0").await;
            let moved =
                row["connected"] == true && (row["replica"] == "r1" || row["replica"] == "r3");
            Ok(moved.then_some(()))
        },
    )
    .await
    .unwrap();
    println!(
        "api's sidecar listed on a survivor {} ms after kill -9 of r2",
        killed.elapsed().as_millis()
    );
    // Past the killed replica's lease (the grace, 5 s): its rows are gone, the endpoint is not.
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = traffic.await.unwrap();
    println!("kill -9 r2 under steady calls web -> api: {sent} sent, {failed} failed");
    assert!(sent > 20, "{sent}");
    assert_eq!(failed, 0);
    assert_eq!(call(&web, "api", 5).await, [200; 5]);
    drop(etcd);
}
