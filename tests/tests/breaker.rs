//! weft breaker in real Envoy with two worker threads, against a test service that can be
//! switched to fail or slow down and that counts what reaches it.
#![cfg(test)]

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};
use weft_e2e::{
    http_client, poll_until, Envoy, EnvoyConfig, EnvoyOptions, Route, TestNet, Upstream, WasmFilter,
};

const STAT: &str = "wasmcustom.weft.breaker.upstream";

async fn start(net: &TestNet, upstream: &Upstream, config: Value) -> Envoy {
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("breaker", config))
        .to_yaml();
    let options = EnvoyOptions::new(bootstrap).concurrency(2);
    Envoy::start(net, options).await.unwrap()
}

async fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).await.unwrap().unwrap_or(0)
}

/// Waits until the breaker's shared in-flight count is back to zero (every `on_log` ran).
async fn settle(envoy: &Envoy) {
    settle_cluster(envoy, &format!("{STAT}.in_flight")).await;
}

/// `(status, x-weft-breaker header)` of one GET on a fresh connection.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let client = http_client();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let breaker = response
        .headers()
        .get("x-weft-breaker")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), breaker)
}

async fn worker_connections(envoy: &Envoy) -> [u64; 2] {
    let stats = envoy.stats().await.unwrap();
    [0, 1].map(|w| {
        stats
            .get(&format!(
                "listener.0.0.0.0_10000.worker_{w}.downstream_cx_total"
            ))
            .copied()
            .unwrap_or(0)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn opens_after_n_failures_fails_fast_probes_exactly_k_and_recovers() {
    let net = TestNet::new("breaker-states");
    let upstream = Upstream::start(&net, "reviews", "v1").await.unwrap();
    let open_ms = 3_000;
    let config = json!({"clusters": {"upstream": {
        "consecutive_failures": 5, "failure_on": ["5xx"], "open_interval_ms": open_ms,
        "max_open_interval_ms": open_ms, "jitter_percent": 0, "half_open_probes": 3,
    }}});
    let envoy = start(&net, &upstream, config).await;
    let url = format!("{}/reviews", envoy.url(10_000));

    // The shared record was created once, by the main thread, before any worker used it.
    let logs = envoy
        .logs_showing(&[
            "seeded shared state weft.breaker.v1/upstream",
            "starting main dispatch loop",
        ])
        .await;
    let seeded: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("seeded shared state weft.breaker.v1/upstream"))
        .collect();
    let main_thread = logs
        .lines()
        .find(|l| l.contains("starting main dispatch loop"))
        .and_then(thread_id);
    assert_eq!(seeded.len(), 1, "{logs}");
    assert_eq!(
        thread_id(seeded[0]),
        main_thread,
        "seeded off the main thread:\n{logs}"
    );

    // closed -> open after exactly 5 consecutive upstream failures.
    upstream.set_mode(503, 0).await.unwrap();
    for i in 0..5 {
        assert_eq!(
            get(&url, &[]).await,
            (503, None),
            "failure {i} must reach the upstream"
        );
        settle(&envoy).await;
    }
    let opened_at = Instant::now();
    assert_eq!(stat(&envoy, &format!("{STAT}.opens")).await, 1);
    assert_eq!(stat(&envoy, &format!("{STAT}.state")).await, 1);
    assert_eq!(upstream.stats().await.unwrap().requests, 5);

    // Open: fail fast, and the upstream sees nothing for the whole interval we probe it.
    let mut fast_failed = 0;
    while opened_at.elapsed() < Duration::from_millis(open_ms - 1_000) {
        assert_eq!(get(&url, &[]).await, (503, Some("open".into())));
        fast_failed += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        upstream.stats().await.unwrap().requests,
        5,
        "the upstream was reached while open"
    );
    assert_eq!(
        stat(&envoy, &format!("{STAT}.rejected.open")).await,
        fast_failed
    );
    println!("open interval: {fast_failed} requests failed fast, upstream still at 5");

    // Half-open: 20 concurrent requests on 20 connections, over both workers; the upstream
    // is healthy but slow so all 20 arrive while the probes are still out.
    upstream.set_mode(0, 1_500).await.unwrap();
    sleep_until(opened_at + Duration::from_millis(open_ms + 200)).await;
    let before = worker_connections(&envoy).await;
    let burst: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get(&url, &[]).await }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in burst {
        outcomes.push(task.await.unwrap());
    }
    let after = worker_connections(&envoy).await;
    let probes_ok = outcomes.iter().filter(|o| **o == (200, None)).count();
    let rejected = outcomes
        .iter()
        .filter(|o| **o == (503, Some("half-open".into())))
        .count();
    println!("half-open burst: {probes_ok} probes, {rejected} rejected; connections per worker {before:?} -> {after:?}");
    assert_eq!((probes_ok, rejected), (3, 17), "{outcomes:?}");
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "the burst did not reach both workers"
    );
    assert_eq!(upstream.stats().await.unwrap().requests, 5 + 3);
    assert_eq!(stat(&envoy, &format!("{STAT}.probes")).await, 3);

    // Three successful probes closed it: traffic flows again.
    settle(&envoy).await;
    assert_eq!(stat(&envoy, &format!("{STAT}.closes")).await, 1);
    assert_eq!(stat(&envoy, &format!("{STAT}.state")).await, 0);
    upstream.set_mode(0, 0).await.unwrap();
    for _ in 0..10 {
        assert_eq!(get(&url, &[]).await, (200, None));
    }
    assert_eq!(upstream.stats().await.unwrap().requests, 5 + 3 + 10);
    assert_eq!(stat(&envoy, "wasmcustom.weft.breaker.unseeded").await, 0);
    assert_eq!(
        stat(&envoy, "wasmcustom.weft.breaker.cas_exhausted").await,
        0
    );
    println!(
        "cas retries: {}",
        stat(&envoy, "wasmcustom.weft.breaker.cas_retries").await
    );
    let changes = [
        "-> open for 3000 ms",
        "open -> half-open",
        "half-open -> closed",
    ];
    let logs = envoy.logs_showing(&changes).await;
    for change in changes {
        assert!(
            logs.contains(change),
            "state change `{change}` not logged:\n{logs}"
        );
    }
}

/// Envoy's default log line is `[date time][thread id][level][logger] ...`.
fn thread_id(line: &str) -> Option<String> {
    line.split('[')
        .nth(2)?
        .split(']')
        .next()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_cap_holds_under_100_clients() {
    let net = TestNet::new("breaker-cap");
    let upstream = Upstream::start(&net, "reviews", "v1").await.unwrap();
    let cap = 10;
    let config = json!({"clusters": {"upstream": {"max_concurrent": cap}}});
    let envoy = start(&net, &upstream, config).await;
    let url = format!("{}/slow", envoy.url(10_000));
    upstream.set_mode(0, 50).await.unwrap();

    // 100 clients, each sending back to back on its own connection for 3 s.
    let until = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move {
                    let client = http_client();
                    let mut seen = Vec::new();
                    while Instant::now() < until {
                        let response = client.get(&url).send().await.unwrap();
                        let header = response
                            .headers()
                            .get("x-weft-breaker")
                            .map(|v| v.to_str().unwrap().to_string());
                        seen.push((response.status().as_u16(), header));
                    }
                    seen
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    let ok = outcomes.iter().filter(|o| **o == (200, None)).count();
    let overflow = outcomes
        .iter()
        .filter(|o| **o == (503, Some("overflow".into())))
        .count();
    assert_eq!(
        ok + overflow,
        outcomes.len(),
        "unexpected answers: {outcomes:?}"
    );

    let stats = upstream.stats().await.unwrap();
    let retries = stat(&envoy, "wasmcustom.weft.breaker.cas_retries").await;
    println!(
        "cap {cap}: {ok} admitted, {overflow} overflow; upstream peak in flight {}; cas retries {retries}",
        stats.peak_in_flight
    );
    assert!(
        stats.peak_in_flight <= cap,
        "peak {} over the cap {cap}",
        stats.peak_in_flight
    );
    assert!(
        stats.peak_in_flight >= cap / 2,
        "the load never approached the cap: {stats:?}"
    );
    assert_eq!(stats.requests, ok as u64);
    assert_eq!(
        stat(&envoy, &format!("{STAT}.rejected.overflow")).await,
        overflow as u64
    );

    // Every path released its slot: the shared count and the upstream are back at zero.
    settle(&envoy).await;
    assert_eq!(upstream.stats().await.unwrap().in_flight, 0);
    assert_eq!(
        stat(&envoy, "wasmcustom.weft.breaker.cas_exhausted").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_and_connect_failures_count_through_response_flags() {
    let net = TestNet::new("breaker-flags");
    let upstream = Upstream::start(&net, "reviews", "v1").await.unwrap();
    // `resets` is the real upstream (`x-reset: 1` ends in flag UC, 0x40, in Envoy 1.40);
    // `refused` is a port nothing listens on (flag UF, 0x20). Routing by header
    // also checks that `xds.cluster_name` names the cluster the route picked.
    let policy = |kind: &str| json!({"consecutive_failures": 2, "failure_on": [kind], "open_interval_ms": 60_000});
    let config =
        json!({"clusters": {"resets": policy("reset"), "refused": policy("connect_failure")}});
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .cluster("resets", upstream.alias(), 8080)
        .cluster("refused", upstream.alias(), 9)
        .route(Route::ClusterHeader("x-cluster".into()))
        .wasm_filter(WasmFilter::new("breaker", config))
        .to_yaml();
    let envoy = Envoy::start(&net, EnvoyOptions::new(bootstrap).concurrency(2))
        .await
        .unwrap();
    let url = format!("{}/flags", envoy.url(10_000));
    let stat_of = |cluster: &str, name: &str| format!("wasmcustom.weft.breaker.{cluster}.{name}");

    // Plain 503s are not resets: the reset-only breaker stays closed.
    for _ in 0..3 {
        assert_eq!(
            get(&url, &[("x-cluster", "resets"), ("x-fail", "503")]).await,
            (503, None)
        );
        settle_cluster(&envoy, &stat_of("resets", "in_flight")).await;
    }
    assert_eq!(stat(&envoy, &stat_of("resets", "state")).await, 0);
    for _ in 0..2 {
        let (status, breaker) = get(&url, &[("x-cluster", "resets"), ("x-reset", "1")]).await;
        assert_eq!(
            (status, breaker),
            (503, None),
            "a reset reaches the client as Envoy's 503"
        );
        settle_cluster(&envoy, &stat_of("resets", "in_flight")).await;
    }
    assert_eq!(
        get(&url, &[("x-cluster", "resets")]).await,
        (503, Some("open".into()))
    );

    for _ in 0..2 {
        assert_eq!(get(&url, &[("x-cluster", "refused")]).await.1, None);
        settle_cluster(&envoy, &stat_of("refused", "in_flight")).await;
    }
    assert_eq!(
        get(&url, &[("x-cluster", "refused")]).await,
        (503, Some("open".into()))
    );
    assert_eq!(stat(&envoy, &stat_of("refused", "opens")).await, 1);
    assert_eq!(stat(&envoy, &stat_of("resets", "opens")).await, 1);
    // The unguarded default cluster passes untouched.
    assert_eq!(get(&url, &[("x-cluster", "upstream")]).await, (200, None));
}

async fn settle_cluster(envoy: &Envoy, gauge: &str) {
    poll_until(
        "breaker in_flight to reach 0",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { Ok((envoy.stat(gauge).await?.unwrap_or(0) == 0).then_some(())) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_is_refused_naming_the_field() {
    let net = TestNet::new("breaker-bad");
    let config = json!({"clusters": {"upstream": {"half_open_probes": 0}}});
    let bootstrap = EnvoyConfig::sidecar_inbound("nowhere")
        .wasm_filter(WasmFilter::new("breaker", config))
        .to_yaml();
    let logs = Envoy::start_expect_failure(&net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    assert!(
        logs.contains("field `clusters.upstream.half_open_probes`"),
        "{logs}"
    );
}

/// `dryRun`: the machine opens as an enforced one would, and every request it would fail fast
/// is counted and reaches the upstream; nothing is answered by the breaker.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_breaker_opens_counts_would_fail_fast_and_fails_nothing() {
    let net = TestNet::new("breaker-dry-run");
    let upstream = Upstream::start(&net, "reviews", "v1").await.unwrap();
    // An open interval far longer than the test: the machine stays open throughout.
    let config = json!({"clusters": {"upstream": {
        "consecutive_failures": 3, "failure_on": ["5xx"], "open_interval_ms": 600_000,
        "max_open_interval_ms": 600_000, "jitter_percent": 0, "dry_run": true,
    }}});
    let envoy = start(&net, &upstream, config).await;
    let url = format!("{}/reviews", envoy.url(10_000));

    upstream.set_mode(503, 0).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).await, (503, None));
        settle(&envoy).await;
    }
    assert_eq!(stat(&envoy, &format!("{STAT}.opens")).await, 1);
    assert_eq!(stat(&envoy, &format!("{STAT}.state")).await, 1);
    // Open: still failing and still reaching the upstream, then healthy again.
    for _ in 0..10 {
        assert_eq!(get(&url, &[]).await, (503, None));
    }
    upstream.set_mode(0, 0).await.unwrap();
    for _ in 0..5 {
        assert_eq!(get(&url, &[]).await, (200, None));
    }
    assert_eq!(upstream.stats().await.unwrap().requests, 3 + 10 + 5);
    assert_eq!(stat(&envoy, &format!("{STAT}.would_fail_fast")).await, 15);
    assert_eq!(stat(&envoy, &format!("{STAT}.rejections")).await, 0);
    assert_eq!(stat(&envoy, &format!("{STAT}.state")).await, 1);
}
