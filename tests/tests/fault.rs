//! weft fault in real Envoy, in front of a test service that counts what reaches it:
//! abort status and gRPC form, abort percentage, delay accuracy, header triggers, expiry,
//! the concurrent-delay cap, clients that disconnect while delayed, and refused config.
//!
//! The load and timing tests hold one lock so that they do not disturb each other's
//! measurements on a small machine.
#![cfg(test)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Mutex;
use weft_e2e::{
    artifact, binomial_interval_999, http_client, poll_until, reqwest, within_binomial_999, Envoy,
    EnvoyConfig, EnvoyOptions, TestNet, Upstream, WasmFilter,
};

/// Serializes the tests whose figures depend on the machine not being busy.
static TIMING: Mutex<()> = Mutex::const_new(());

const PREFIX: &str = "wasmcustom.weft.fault";

/// Drop order is field order: Envoy, then the upstream, then the network.
struct Rig {
    envoy: Envoy,
    upstream: Upstream,
    _net: TestNet,
}

impl Rig {
    async fn start(label: &str, config: Value) -> Self {
        artifact("fault").unwrap();
        let net = TestNet::new(label);
        let upstream = Upstream::start(&net, "ratings", "v1").await.unwrap();
        let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
            .wasm_filter(WasmFilter::new("fault", config))
            .to_yaml();
        let envoy = Envoy::start(&net, EnvoyOptions::new(bootstrap))
            .await
            .unwrap();
        Self {
            envoy,
            upstream,
            _net: net,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoy.url(10_000))
    }

    async fn stat(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!("{PREFIX}.{name}"))
            .await
            .unwrap()
            .unwrap_or(0)
    }

    async fn upstream_requests(&self) -> u64 {
        self.upstream.stats().await.unwrap().requests
    }
}

/// `(status, elapsed)` of a GET with extra headers, measured at the client.
async fn timed_get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Duration) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    (status, started.elapsed())
}

/// `n` GETs, at most `concurrency` in flight; outcomes in completion order.
async fn load(url: &str, n: usize, concurrency: usize) -> Vec<(u16, Duration)> {
    let client = http_client();
    let mut set = tokio::task::JoinSet::new();
    let mut outcomes = Vec::with_capacity(n);
    for _ in 0..n {
        if set.len() >= concurrency {
            outcomes.push(set.join_next().await.unwrap().unwrap());
        }
        let (client, url) = (client.clone(), url.to_string());
        set.spawn(async move { timed_get(&client, &url, &[]).await });
    }
    while let Some(outcome) = set.join_next().await {
        outcomes.push(outcome.unwrap());
    }
    outcomes
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread")]
async fn full_abort_answers_the_configured_status_and_the_upstream_sees_nothing() {
    let rig = Rig::start("fault-abort", json!({"percent_cap": 100.0, "policies": [{
        "name": "all", "abort": {"percent": 100.0, "http_status": 503, "body": "injected by weft"},
    }]}))
    .await;
    let client = http_client();
    for i in 0..50 {
        let response = client
            .get(rig.url(&format!("/ratings/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.text().await.unwrap(), "injected by weft");
    }
    // A gRPC request gets a trailers-only reply: HTTP 200, grpc-status UNAVAILABLE.
    let response = client
        .post(rig.url("/ratings.Ratings/Get"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["grpc-message"], "injected by weft");
    assert_eq!(rig.upstream_requests().await, 0, "the upstream was reached");
    assert_eq!(rig.stat("policy.all.aborts_injected").await, 51);
    assert_eq!(rig.stat("aborts_injected").await, 51);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_percent_abort_lies_within_the_binomial_interval() {
    let _serial = TIMING.lock().await;
    let rig = Rig::start(
        "fault-20pct",
        json!({"policies": [{
            "name": "some", "abort": {"percent": 20.0, "http_status": 503},
        }]}),
    )
    .await;
    const N: u64 = 2_000;
    let outcomes = load(&rig.url("/ratings"), N as usize, 16).await;
    let aborted = outcomes.iter().filter(|(s, _)| *s == 503).count() as u64;
    let passed = outcomes.iter().filter(|(s, _)| *s == 200).count() as u64;
    println!(
        "20 % abort: {aborted}/{N} aborted, 99.9 % interval {:?}",
        binomial_interval_999(N, 0.2)
    );
    assert_eq!(aborted + passed, N);
    assert!(within_binomial_999(aborted, N, 0.2), "{aborted} of {N}");
    assert_eq!(rig.upstream_requests().await, passed);
    assert_eq!(rig.stat("policy.some.aborts_injected").await, aborted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200ms_delay_holds_every_request_for_200ms_and_no_longer_than_a_tick_typically() {
    let _serial = TIMING.lock().await;
    let rig = Rig::start(
        "fault-delay",
        json!({"percent_cap": 100.0, "policies": [{
            "name": "slow", "delay": {"percent": 100.0, "fixed_ms": 200},
        }]}),
    )
    .await;
    // 200 ms / 20: the tick while a delay is pending.
    let tick = Duration::from_millis(10);
    // A few at a time: requests resumed by the same tick would otherwise queue behind each
    // other at the client and the upstream, which measures the test rig, not the delay.
    let outcomes = load(&rig.url("/ratings"), 100, 4).await;
    assert!(outcomes.iter().all(|(s, _)| *s == 200), "{outcomes:?}");
    let slow: Vec<(usize, Duration)> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, (_, d))| *d > Duration::from_millis(215))
        .map(|(i, (_, d))| (i, *d))
        .collect();
    let mut latencies: Vec<Duration> = outcomes.into_iter().map(|(_, d)| d).collect();
    latencies.sort();
    let (p1, p50, p99) = (
        percentile(&latencies, 1.0),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
    println!(
        "200 ms delay over 100 requests: p1 {p1:?} p50 {p50:?} p99 {p99:?} max {:?}",
        latencies[99]
    );
    // Correctness, not speed: no request is released early, and the typical one is released by
    // the first tick after its 200 ms (a lost timer would hold it until the 1 s idle tick, a
    // doubled delay for 400 ms). The tail is printed, not asserted: on a loaded machine it
    // measures the scheduler, and accuracy belongs to the benchmark.
    assert!(p1 >= Duration::from_millis(200), "p1 {p1:?}");
    assert!(
        p50 < Duration::from_millis(400) - tick,
        "p50 {p50:?}; (index, latency) over 215 ms: {slow:?}"
    );
    assert_eq!(rig.stat("policy.slow.delays_injected").await, 100);
    assert_eq!(rig.stat("delays_pending").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn header_triggered_faults_work_only_where_the_policy_allows_them() {
    let rig = Rig::start("fault-header", json!({"policies": [
        {"name": "open", "match": {"path_prefixes": ["/open"]}, "allow_header_trigger": true},
        {"name": "closed", "match": {"path_prefixes": ["/closed"]}, "delay": {"percent": 0.01, "fixed_ms": 100}},
    ]}))
    .await;
    let client = http_client();
    let cases: Vec<(&str, Option<&str>, u16, Option<u64>)> = vec![
        ("/open", Some("abort=418"), 418, None),
        ("/open", Some("delay=300ms"), 200, Some(300)),
        ("/open", Some("delay=250ms, abort=502"), 502, Some(250)),
        ("/open", None, 200, None),
        ("/open", Some("abort=nonsense"), 200, None),
        ("/closed", Some("abort=418"), 200, None),
        ("/closed", Some("delay=300ms"), 200, None),
    ];
    let mut forwarded = 0;
    for (path, value, status, delay_ms) in cases {
        let headers: Vec<(&str, &str)> = value.map(|v| ("x-weft-fault", v)).into_iter().collect();
        let (got, elapsed) = timed_get(&client, &rig.url(path), &headers).await;
        assert_eq!(got, status, "{path} {value:?}");
        match delay_ms {
            Some(ms) => assert!(
                elapsed >= Duration::from_millis(ms),
                "{path} {value:?}: {elapsed:?}"
            ),
            None => assert!(
                elapsed < Duration::from_millis(150),
                "{path} {value:?} was delayed: {elapsed:?}"
            ),
        }
        forwarded += u64::from(status == 200);
    }
    assert_eq!(rig.upstream_requests().await, forwarded);
    assert_eq!(rig.stat("policy.open.aborts_injected").await, 2);
    assert_eq!(rig.stat("policy.open.delays_injected").await, 2);
    assert_eq!(rig.stat("policy.closed.aborts_injected").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_fault_stops() {
    // Long enough for Envoy to start; the first request must still be aborted.
    let expires_at = unix_ms() + 8_000;
    let rig = Rig::start("fault-expiry", json!({"percent_cap": 100.0, "policies": [
        {"name": "past", "match": {"path_prefixes": ["/past"]}, "abort": {"percent": 100.0, "http_status": 500},
         "expires_at_unix_ms": unix_ms() - 1},
        {"name": "until", "abort": {"percent": 100.0, "http_status": 503}, "expires_at_unix_ms": expires_at},
    ]}))
    .await;
    let client = http_client();
    let (status, _) = timed_get(&client, &rig.url("/now"), &[]).await;
    assert_eq!(
        status, 503,
        "Envoy took too long to start to see the fault before its expiry"
    );
    // Already expired: falls through to `until` (which aborts with 503, not 500).
    assert_eq!(timed_get(&client, &rig.url("/past"), &[]).await.0, 503);
    let switched_off = poll_until(
        "the fault to expire",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let (client, url) = (client.clone(), rig.url("/now"));
            async move {
                let (status, _) = timed_get(&client, &url, &[]).await;
                Ok((status == 200).then(unix_ms))
            }
        },
    )
    .await
    .unwrap();
    assert!(
        switched_off >= expires_at,
        "switched off {} ms early",
        expires_at - switched_off
    );
    println!(
        "expired fault switched off {} ms after its expiry time",
        switched_off - expires_at
    );
    for path in ["/now", "/past"].iter().cycle().take(20) {
        assert_eq!(
            timed_get(&client, &rig.url(path), &[]).await.0,
            200,
            "{path}"
        );
    }
    assert!(rig.stat("policy.until.skipped_expired").await >= 21);
    assert!(rig.stat("policy.past.skipped_expired").await >= 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrent_delay_cap_holds_with_50_concurrent_requests() {
    let _serial = TIMING.lock().await;
    let rig = Rig::start(
        "fault-cap",
        json!({"percent_cap": 100.0, "max_concurrent_delays": 10, "policies": [{
            "name": "capped", "delay": {"percent": 100.0, "fixed_ms": 1500},
        }]}),
    )
    .await;
    let url = rig.url("/ratings");
    let burst = tokio::spawn(async move { load(&url, 50, 50).await });
    let peak = poll_until(
        "10 delays pending",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let pending = rig.stat("delays_pending").await;
            Ok((pending >= 10).then_some(pending))
        },
    )
    .await
    .unwrap();
    let outcomes = burst.await.unwrap();
    assert!(outcomes.iter().all(|(s, _)| *s == 200), "{outcomes:?}");
    let delayed = outcomes
        .iter()
        .filter(|(_, d)| *d >= Duration::from_millis(1500))
        .count();
    println!("cap 10, 50 concurrent: {delayed} delayed, pending gauge peaked at {peak}");
    assert_eq!(peak, 10);
    assert_eq!(delayed, 10, "{outcomes:?}");
    assert_eq!(rig.stat("policy.capped.delays_injected").await, 10);
    assert_eq!(rig.stat("policy.capped.skipped_by_cap").await, 40);
    assert_eq!(rig.stat("delays_pending").await, 0);
    assert_eq!(rig.upstream_requests().await, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_disconnect_while_delayed_leave_no_error_and_no_pending_entry() {
    let _serial = TIMING.lock().await;
    let rig = Rig::start("fault-disconnect", json!({"percent_cap": 100.0, "policies": [{
        "name": "held", "match": {"path_prefixes": ["/slow"]}, "delay": {"percent": 100.0, "fixed_ms": 5000},
    }]}))
    .await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let gone: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (impatient.clone(), rig.url("/slow"));
            tokio::spawn(async move { client.get(url).send().await.is_err() })
        })
        .collect();
    let held = poll_until(
        "20 delays pending",
        Duration::from_secs(3),
        Duration::from_millis(20),
        || async { Ok((rig.stat("delays_pending").await == 20).then_some(())) },
    )
    .await;
    for task in gone {
        assert!(
            task.await.unwrap(),
            "a request was answered before its client gave up"
        );
    }
    held.unwrap();
    // Back to zero long before the 5 s due time: removed on disconnect, not on resume.
    poll_until(
        "the pending set to empty",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { Ok((rig.stat("delays_pending").await == 0).then_some(())) },
    )
    .await
    .unwrap();
    let emptied = started.elapsed();
    assert!(
        emptied < Duration::from_millis(4_000),
        "emptied only after {emptied:?}"
    );
    assert_eq!(rig.stat("delays_cancelled").await, 20);
    // Let the original due time pass: the tick must find nothing to resume.
    tokio::time::sleep(Duration::from_millis(5_200).saturating_sub(started.elapsed())).await;
    assert_eq!(
        timed_get(&http_client(), &rig.url("/fast"), &[]).await.0,
        200
    );
    assert_eq!(rig.upstream_requests().await, 1);
    let logs = rig.envoy.logs().await;
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("][error]") || l.contains("][critical]"))
        .collect();
    assert!(
        errors.is_empty(),
        "Envoy logged errors:\n{}",
        errors.join("\n")
    );
    println!(
        "20 disconnected while delayed: pending back to 0 after {emptied:?}, no errors logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_is_rejected_naming_the_field() {
    artifact("fault").unwrap();
    let net = TestNet::new("fault-refused");
    let config =
        json!({"policies": [{"name": "greedy", "abort": {"percent": 80.0, "http_status": 503}}]});
    let bootstrap = EnvoyConfig::sidecar_inbound("nowhere")
        .wasm_filter(WasmFilter::new("fault", config))
        .to_yaml();
    let logs = Envoy::start_expect_failure(&net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    assert!(
        logs.contains("field `policies[0].abort.percent`: 80.00 exceeds percent_cap 50.00"),
        "{logs}"
    );
}

/// The closing note's idle-tick figure: Envoy's CPU over 10 s with no traffic, for a
/// config without delays, one whose delays need a 1 ms tick (nothing pending, so the
/// tick is not armed), and the same while one request is held (the 1 ms tick running).
/// Reads Envoy's user+system time from `/proc/<host pid>/stat` (pid from `docker
/// inspect`), so run it on the Docker host; resolution is 10 ms of CPU (0.1 %).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement for the closing note, not an assertion; run with --ignored --nocapture"]
async fn idle_tick_cost() {
    let _serial = TIMING.lock().await;
    let window = Duration::from_secs(10);
    let no_delay =
        json!({"policies": [{"name": "a", "abort": {"percent": 0.01, "http_status": 503}}]});
    let one_ms_tick = json!({"policies": [
        {"name": "d", "match": {"path_prefixes": ["/never"]}, "delay": {"percent": 1.0, "fixed_ms": 20}},
        {"name": "h", "match": {"path_prefixes": ["/held"]}, "allow_header_trigger": true},
    ]});
    for (label, config, hold) in [
        ("no delay configured", &no_delay, false),
        ("1 ms tick configured, idle", &one_ms_tick, false),
        ("1 ms tick running (1 request held)", &one_ms_tick, true),
    ] {
        let rig = Rig::start("fault-idle", config.clone()).await;
        let holder = hold.then(|| {
            let url = rig.url("/held");
            tokio::spawn(async move {
                timed_get(&http_client(), &url, &[("x-weft-fault", "delay=9s")]).await
            })
        });
        if hold {
            poll_until(
                "the held request",
                Duration::from_secs(3),
                Duration::from_millis(20),
                || async { Ok((rig.stat("delays_pending").await == 1).then_some(())) },
            )
            .await
            .unwrap();
        }
        let before = container_cpu_ns(rig.envoy.id());
        tokio::time::sleep(window).await;
        let after = container_cpu_ns(rig.envoy.id());
        let percent = (after - before) as f64 / window.as_nanos() as f64 * 100.0;
        println!("idle Envoy CPU, {label}: {percent:.2} % of a core");
        if let Some(holder) = holder {
            holder.abort();
        }
    }
}

/// Cumulative user+system CPU of a container's main process, via its host PID.
fn container_cpu_ns(id: &str) -> u64 {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", id])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`: utime and stime are the 14th and 15th of the line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}
