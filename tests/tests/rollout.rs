//! Rollouts (`kind: Rollout`) run by the real `weft serve` from the telemetry of real Envoy
//! sidecars: one mesh (reviews v1 and v2, a caller) and, one after the other,
//!
//! 1. a v2 answering 503 to every 5th request is rolled back within `interval ×
//!    failureThreshold` + 3 s of its first weight reaching the sidecars, every sidecar back
//!    at 0 % v2 (measured: detection → rollback → enforced);
//! 2. a v2 200 ms slower is rolled back on the p99 check;
//! 3. a v2 with fewer requests than `minRequests` is neither promoted nor rolled back
//!    (inconclusive) and the graph page (headless Chromium) shows it on the service; then
//!    `weft rollout abort` takes it back to 0 %;
//! 4. `weft serve` killed mid-rollout and restarted on the same data resumes at the same step;
//!    `weft rollout pause` holds it through healthy intervals, `resume` moves it on;
//! 5. a healthy v2 behind a sticky split is promoted through every step, each sidecar's applied
//!    weight read from its stats; 1,000 keys: every key on v2 at a weight stays on v2 at every
//!    larger one, and each step's share is inside the 99.9 % binomial interval.
//!
//! Each scenario's timeline (weights seen on the sidecars, checks, decisions) is printed.
//! (Over 400 lines: five scenarios share one mesh, which is most of the cost.)
#![cfg(test)]

mod weft_serve;
mod xds_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_e2e::{
    artifacts_dir, chromium, http_client, poll_until, within_binomial_999,
    xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions, ADMIN_SOCKET,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams};
use xds_common::{INBOUND, OUTBOUND};

const MESH: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec: {port: 9080, versions: [v1, v2], stableVersion: v1}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: productpage}
spec: {port: 9080, versions: [v1]}
";

/// A Rollout of reviews v1 -> v2, interval 2 s; `steps` and `analysis` as given.
fn rollout(steps: &str, analysis: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1
kind: Rollout
metadata: {{name: reviews}}
spec:
  target: {{service: reviews}}
  stable: v1
  canary: v2
  steps: {steps}
  interval: 2s
  analysis: {analysis}
"
    )
}

/// Longer than the sidecars' 1 s telemetry period.
const TELEMETRY_FLUSH: Duration = Duration::from_millis(2_500);

const CHECKS: &str =
    "{successRate: {min: 95}, latencyP99: {maxMs: 100}, minRequests: 10, failureThreshold: 2}";

struct Mesh {
    bin: std::path::PathBuf,
    data: tempfile::TempDir,
    files: tempfile::TempDir,
    server: WeftServer,
    pods: Vec<(String, Pod)>,
    started: Instant,
}

impl Mesh {
    fn cli(&self, args: &[&str]) -> String {
        let (code, out, err) = self.server.cli(&self.bin, args);
        assert_eq!(code, 0, "weft {args:?}\n{out}\n{err}");
        out
    }

    fn apply(&self, yaml: &str) {
        let path = self.files.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.cli(&["apply", "-f", path.to_str().unwrap()]);
    }

    fn pod(&self, name: &str) -> &Pod {
        &self.pods.iter().find(|(n, _)| n == name).unwrap().1
    }

    async fn status(&self) -> Value {
        self.server
            .api_json("/api/v1/rollouts/default/reviews")
            .await
    }

    async fn events(&self) -> Vec<Value> {
        self.server
            .api_json("/api/v1/rollouts/default/reviews/events?limit=1000")
            .await["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// v2's applied weight (basis points) on every sidecar.
    async fn weights(&self) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for (_, pod) in &self.pods {
            out.push(weight_bp(pod, "v2").await);
        }
        out
    }

    /// Polls until every sidecar applies v2 at `bp`; the time it took.
    async fn until_weight(&self, bp: u64, timeout: Duration) -> Duration {
        let start = Instant::now();
        poll_until(
            &format!("every sidecar at v2 {bp} bp"),
            timeout,
            Duration::from_millis(25),
            || async {
                Ok(self
                    .weights()
                    .await
                    .iter()
                    .all(|w| *w == Some(bp))
                    .then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        start.elapsed()
    }

    /// Polls until the rollout's phase is `phase`.
    async fn until_phase(&self, phase: &str, timeout: Duration) -> Value {
        let reached = poll_until(
            &format!("phase {phase}"),
            timeout,
            Duration::from_millis(25),
            || async {
                let s = self.status().await;
                Ok((s["phase"] == phase).then_some(s))
            },
        )
        .await;
        match reached {
            Ok(status) => status,
            Err(e) => {
                print_timeline("events so far", &self.events().await, 0, 0);
                panic!("{e}: {:#}", self.status().await)
            }
        }
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

async fn get_json(url: &str) -> Value {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The weight `version` of reviews has on `pod`'s sidecar, from its stats.
async fn weight_bp(pod: &Pod, version: &str) -> Option<u64> {
    let text = pod
        .admin_get("/stats?format=json&filter=weight_bp")
        .await
        .ok()?;
    let body: Value = serde_json::from_str(&text).ok()?;
    // `wasmcustom.weft.canary.reviews_default.v2.weight_bp`
    let suffix = format!(".{version}.weight_bp");
    body["stats"]
        .as_array()?
        .iter()
        .find(|s| {
            s["name"].as_str().is_some_and(|n| {
                n.starts_with("wasmcustom.weft.canary.reviews") && n.ends_with(&suffix)
            })
        })
        .and_then(|s| s["value"].as_u64())
}

/// Sends requests to reviews through the caller's outbound listener until stopped, with
/// `workers` in parallel: the traffic the rollout's checks judge.
fn load(url: String, workers: usize, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    for _ in 0..workers {
        let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let client = http_client();
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .get(format!("{url}/reviews/1"))
                    .header("host", "reviews")
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Prints the events since `from` (index) as a timeline.
fn print_timeline(title: &str, events: &[Value], from: usize, t0_ms: u64) {
    println!("--- {title}");
    for e in &events[from..] {
        let t = e["timeUnixMs"].as_u64().unwrap_or(0).saturating_sub(t0_ms);
        let checks: Vec<String> = e["analysis"]["checks"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| {
                        format!(
                            "{}={} (vs {})",
                            c["name"].as_str().unwrap_or(""),
                            c["value"],
                            c["threshold"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "  +{:>6.2}s {:<13} weight {:>5}%  {}  {}",
            t as f64 / 1000.0,
            e["kind"].as_str().unwrap_or(""),
            e["weightBp"].as_u64().unwrap_or(0) as f64 / 100.0,
            e["message"].as_str().unwrap_or(""),
            checks.join(", ")
        );
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn start_server(bin: &Path, data: &Path, xds_port: u16) -> WeftServer {
    WeftServer::start(bin, data, &["--xds-listen", &format!("0.0.0.0:{xds_port}")])
}

async fn mk_mesh(net: &TestNet) -> Mesh {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gateway = network_gateway(net).unwrap();
    let server = start_server(&bin, data.path(), 0);
    let mut mesh = Mesh {
        bin,
        data,
        files,
        server,
        pods: Vec::new(),
        started: Instant::now(),
    };
    mesh.apply(MESH);
    for (service, version) in [("reviews", "v1"), ("reviews", "v2"), ("productpage", "v1")] {
        let mut params = BootstrapParams::new(service, version, &gateway, mesh.server.xds_port);
        params.admin_socket = Some(ADMIN_SOCKET.into());
        let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
        options.hostname = format!("{service}-{version}-sidecar");
        let pod = Pod::start(net, options, UpstreamOptions::new(service, version))
            .await
            .unwrap();
        mesh.pods.push((format!("{service}-{version}"), pod));
    }
    mesh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollouts_are_gated_by_live_telemetry_in_real_envoy() {
    let net = TestNet::new("rollout");
    let mut mesh = mk_mesh(&net).await;
    // Every sidecar has accepted the current version (a module download can fail and be
    // retried on a loaded machine before the first configuration is in).
    let sidecars = format!("http://127.0.0.1:{}/v1/sidecars", mesh.server.xds_port);
    poll_until(
        "3 sidecars synced",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let body = get_json(&sidecars).await;
            let revision = body["revision"].as_u64();
            let synced = body["sidecars"].as_array().is_some_and(|list| {
                list.len() == 3
                    && list.iter().all(|s| {
                        s["connected"] == true && s["synced_revision"].as_u64() == revision
                    })
            });
            Ok(synced.then_some(()))
        },
    )
    .await
    .unwrap();
    let caller_url = mesh.pod("productpage-v1").local_url(OUTBOUND);
    // The mesh is up when the caller reaches v1 through its sidecar.
    poll_until(
        "caller reaches reviews",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let url = caller_url.clone();
            async move {
                let r = http_client()
                    .get(format!("{url}/reviews/1"))
                    .header("host", "reviews")
                    .send()
                    .await?;
                Ok(r.status().is_success().then_some(()))
            }
        },
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    load(caller_url.clone(), 6, stop.clone(), sent.clone());

    // 1. 20 % 5xx: rolled back.
    mesh.pod("reviews-v2")
        .app()
        .set_fail_every(503, 5)
        .await
        .unwrap();
    let t0 = now_ms();
    let from = mesh.events().await.len();
    mesh.apply(&rollout("[{weight: 20}, {weight: 50}]", CHECKS));
    let first_weight = mesh.until_weight(2000, Duration::from_secs(10)).await;
    let failures_start_ms = now_ms();
    let _ = mesh
        .until_phase("RolledBack", Duration::from_secs(15))
        .await;
    let enforced = mesh.until_weight(0, Duration::from_secs(10)).await;
    let enforced_ms = now_ms();
    let events = mesh.events().await;
    print_timeline("20 % 5xx v2", &events, from, t0);
    let at = |kind: &str| {
        events[from..]
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:#?}"))["timeUnixMs"]
            .as_u64()
            .unwrap()
    };
    let (detected, rolled_back) = (at("checkFailed"), at("rolledBack"));
    println!(
        "first weight on every sidecar {} ms after apply; first failed check +{} ms after it, rollback written +{} ms, every sidecar at 0 % +{} ms (rollback -> enforced {} ms)",
        first_weight.as_millis(),
        detected.saturating_sub(failures_start_ms),
        rolled_back.saturating_sub(failures_start_ms),
        enforced_ms - failures_start_ms,
        enforced.as_millis(),
    );
    assert!(
        enforced_ms - failures_start_ms <= 2_000 * 2 + 3_000,
        "rolled back and enforced within interval x failureThreshold + 3 s"
    );
    let failed = events[from..]
        .iter()
        .filter(|e| e["kind"] == "checkFailed")
        .count();
    assert_eq!(failed, 2, "exactly failureThreshold failed checks");
    let rate = &events[from..]
        .iter()
        .find(|e| e["kind"] == "checkFailed")
        .unwrap()["analysis"]["checks"][0];
    assert_eq!(rate["name"], "successRate");
    let value = rate["value"].as_f64().unwrap();
    assert!(
        (70.0..=90.0).contains(&value),
        "canary success rate near 80 %: {value}"
    );
    let history = mesh.cli(&["history"]);
    assert!(history.contains("rollout/reviews"), "{history}");
    mesh.pod("reviews-v2")
        .app()
        .set_fail_every(0, 0)
        .await
        .unwrap();
    // Sidecars report every second: let the last failures reach the control plane before the
    // next rollout's first interval begins.
    tokio::time::sleep(TELEMETRY_FLUSH).await;

    // 2. +200 ms: rolled back on p99 (a new spec is a new rollout).
    mesh.pod("reviews-v2").app().set_mode(0, 200).await.unwrap();
    let t0 = now_ms();
    let from = mesh.events().await.len();
    mesh.apply(&rollout(
        "[{weight: 20}, {weight: 50}]",
        &CHECKS.replace("min: 95", "min: 94"),
    ));
    mesh.until_weight(2000, Duration::from_secs(10)).await;
    mesh.until_phase("RolledBack", Duration::from_secs(15))
        .await;
    mesh.until_weight(0, Duration::from_secs(10)).await;
    let events = mesh.events().await;
    print_timeline("+200 ms v2", &events, from, t0);
    let failed = events[from..]
        .iter()
        .find(|e| e["kind"] == "checkFailed")
        .unwrap();
    let checks = failed["analysis"]["checks"].as_array().unwrap();
    let p99 = checks.iter().find(|c| c["name"] == "latencyP99").unwrap();
    assert_eq!(p99["passed"], false, "{failed}");
    assert!(p99["value"].as_f64().unwrap() >= 200.0, "{p99}");
    let rate = checks.iter().find(|c| c["name"] == "successRate").unwrap();
    assert_eq!(rate["passed"], true, "only latency fails: {failed}");
    mesh.pod("reviews-v2").app().set_mode(0, 0).await.unwrap();
    tokio::time::sleep(TELEMETRY_FLUSH).await;

    // 3. Below minRequests: inconclusive, neither promoted nor rolled back; then aborted.
    let t0 = now_ms();
    let from = mesh.events().await.len();
    mesh.apply(&rollout(
        "[{weight: 10}, {weight: 50}]",
        &CHECKS.replace("minRequests: 10", "minRequests: 1000000"),
    ));
    mesh.until_weight(1000, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let status = mesh.status().await;
    assert_eq!(
        (status["phase"].as_str(), status["step"].as_u64()),
        (Some("Progressing"), Some(1)),
        "{status}"
    );
    assert_eq!(mesh.weights().await, vec![Some(1000); 3]);
    let events = mesh.events().await;
    let kinds: BTreeSet<&str> = events[from..]
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["started", "inconclusive"]),
        "{events:#?}"
    );
    assert!(
        events[from..]
            .iter()
            .filter(|e| e["kind"] == "inconclusive")
            .count()
            >= 2
    );
    let out = mesh.cli(&["rollout", "status", "reviews"]);
    println!("weft rollout status (inconclusive):\n{out}");
    assert!(
        out.contains("Progressing") && out.contains("below minRequests 1000000"),
        "{out}"
    );
    // The graph page shows the running rollout on the service (rendered by a real browser).
    let screenshot = artifacts_dir().unwrap().join("rollout-graph.png");
    let ui = format!("{}/ui#token={}", mesh.server.api, mesh.server.token);
    let dom = tokio::task::spawn_blocking(move || chromium(&ui, &screenshot).unwrap())
        .await
        .unwrap();
    assert!(dom.contains("data-loaded=\"true\""), "{dom}");
    assert!(
        dom.contains("data-rollout=\"default/reviews\""),
        "rollouts table: {dom}"
    );
    assert!(
        dom.contains("class=\"rollout-badge\"") && dom.contains("rollout progressing 1/2: v2 10%"),
        "badge on reviews: {dom}"
    );
    let out = mesh.cli(&["rollout", "abort", "reviews"]);
    assert!(out.contains("Aborted"), "{out}");
    mesh.until_weight(0, Duration::from_secs(10)).await;
    let (code, _, err) = mesh
        .server
        .cli(&mesh.bin, &["rollout", "promote", "reviews"]);
    assert_eq!(code, 5, "a finished rollout refuses commands: {err}");
    assert!(err.contains("is Aborted: nothing to promote"), "{err}");
    print_timeline(
        "below minRequests, then aborted",
        &mesh.events().await,
        from,
        t0,
    );

    // 4. Killed mid-rollout: the restarted control plane resumes at the same step.
    let t0 = now_ms();
    let from = mesh.events().await.len();
    mesh.apply(&rollout(
        "[{weight: 10}, {weight: 20}, {weight: 30}, {weight: 40}, {weight: 50}, {weight: 60}]",
        CHECKS,
    ));
    mesh.until_weight(3000, Duration::from_secs(15)).await;
    let xds_port = mesh.server.xds_port;
    mesh.server.kill();
    let killed = now_ms();
    let step_at_kill = 3;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mesh.server = start_server(&mesh.bin, mesh.data.path(), xds_port);
    let restarted = now_ms();
    let status = mesh.status().await;
    assert_eq!(
        status["step"].as_u64(),
        Some(step_at_kill),
        "resumed at the same step: {status}"
    );
    assert_eq!(status["phase"], "Progressing");
    // It goes on from there (the weight never goes back to an earlier step).
    mesh.until_weight(4000, Duration::from_secs(30)).await;
    let events = mesh.events().await;
    print_timeline("killed at step 3 and restarted", &events, from, t0);
    let after: Vec<&Value> = events[from..]
        .iter()
        .filter(|e| e["timeUnixMs"].as_u64().unwrap() > killed)
        .collect();
    assert!(
        after.iter().all(|e| e["kind"] != "started"),
        "no restart from step 1: {after:#?}"
    );
    let advanced = after.iter().find(|e| e["kind"] == "advanced").unwrap();
    assert_eq!(advanced["weightBp"], 4000);
    println!(
        "restart: process up {} ms after the kill; next step written +{} ms after the restart",
        restarted - killed,
        advanced["timeUnixMs"].as_u64().unwrap() - restarted
    );
    // Paused by hand: healthy intervals do not move it; resumed, it goes on.
    let out = mesh.cli(&["rollout", "pause", "reviews"]);
    assert!(out.contains("Paused"), "{out}");
    let paused_at = weight_bp(mesh.pod("productpage-v1"), "v2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        mesh.weights().await,
        vec![Some(paused_at); 3],
        "held while paused"
    );
    assert_eq!(mesh.status().await["phase"], "Paused");
    mesh.cli(&["rollout", "resume", "reviews"]);
    mesh.until_weight(paused_at + 1000, Duration::from_secs(10))
        .await;
    mesh.cli(&["rollout", "abort", "reviews"]);
    mesh.until_weight(0, Duration::from_secs(10)).await;

    // 5. Sticky split, healthy v2: promoted through every step; 1,000 keys stay monotone.
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = Arc::new(AtomicBool::new(false));
    load(caller_url.clone(), 4, stop.clone(), sent.clone());
    let sticky = "apiVersion: weft.dev/v1alpha1
kind: TrafficSplit
metadata: {name: reviews}
spec:
  target: {service: reviews}
  split: [{version: v1, weight: 100}, {version: v2, weight: 0}]
  sticky: {header: x-user}
";
    let t0 = now_ms();
    let from = mesh.events().await.len();
    let steps = [1000u64, 3000, 6000, 9000];
    mesh.apply(&format!(
        "{sticky}---\n{}",
        rollout(
            "[{weight: 10, pause: 8s}, {weight: 30, pause: 8s}, {weight: 60, pause: 8s}, {weight: 90, pause: 8s}]",
            CHECKS
        )
    ));
    let mut on_v2: BTreeSet<usize> = BTreeSet::new();
    let mut applied: Vec<(f64, u64)> = Vec::new();
    for bp in steps {
        mesh.until_weight(bp, Duration::from_secs(20)).await;
        applied.push((mesh.secs(), bp));
        let seen = sticky_keys(&caller_url, 1000).await;
        let now: BTreeSet<usize> = seen
            .iter()
            .filter(|(_, v)| v.as_str() == "v2")
            .map(|(k, _)| *k)
            .collect();
        let lost: Vec<&usize> = on_v2.difference(&now).collect();
        assert!(
            lost.is_empty(),
            "keys left v2 when its weight grew to {bp}: {lost:?}"
        );
        let share = now.len() as u64;
        println!(
            "weight {}%: {share} of 1000 keys on v2 (99.9 % interval {:?})",
            bp as f64 / 100.0,
            weft_e2e::binomial_interval_999(1000, bp as f64 / 10_000.0)
        );
        assert!(
            within_binomial_999(share, 1000, bp as f64 / 10_000.0),
            "{share} of 1000 at {bp}"
        );
        on_v2 = now;
    }
    mesh.until_phase("Promoted", Duration::from_secs(20)).await;
    mesh.until_weight(10_000, Duration::from_secs(10)).await;
    for (name, pod) in &mesh.pods {
        assert_eq!(weight_bp(pod, "v1").await, Some(0), "{name}: v1 unused");
    }
    stop.store(true, Ordering::Relaxed);
    let events = mesh.events().await;
    print_timeline("healthy v2, sticky split: promoted", &events, from, t0);
    let transitions: Vec<u64> = events[from..]
        .iter()
        .filter(|e| e["kind"] == "started" || e["kind"] == "advanced" || e["kind"] == "promoted")
        .map(|e| e["weightBp"].as_u64().unwrap())
        .collect();
    assert_eq!(transitions, vec![1000, 3000, 6000, 9000, 10_000]);
    let service = mesh.cli(&["get", "service", "reviews", "-o", "json"]);
    assert!(service.contains("\"stableVersion\": \"v2\""), "{service}");
    // The live display returns once the rollout has finished.
    let out = mesh.cli(&["rollout", "status", "-w", "reviews"]);
    assert!(
        out.contains("Promoted") && out.contains("weight 100%"),
        "{out}"
    );
    let out = mesh.cli(&["rollout", "events", "reviews"]);
    println!("weft rollout events:\n{out}");
    println!("{} requests sent in all", sent.load(Ordering::Relaxed));
    let _ = applied;
}

/// `n` requests, each with its own `x-user` key, 16 at a time: key -> the version that
/// answered.
async fn sticky_keys(caller_url: &str, n: usize) -> BTreeMap<usize, String> {
    let client = http_client();
    let mut out = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    for key in 0..n {
        let request = client
            .get(format!("{caller_url}/reviews/1"))
            .header("host", "reviews")
            .header("x-user", format!("user-{key}"))
            .send();
        running.spawn(async move {
            let body: Value = request.await.unwrap().json().await.unwrap();
            (key, body["version"].as_str().unwrap_or("?").to_string())
        });
        if running.len() == 16 {
            let (key, version) = running.join_next().await.unwrap().unwrap();
            out.insert(key, version);
        }
    }
    while let Some(done) = running.join_next().await {
        let (key, version) = done.unwrap();
        out.insert(key, version);
    }
    out
}
