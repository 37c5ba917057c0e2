//! Control-plane replicas over etcd, end to end: a real 3-member etcd cluster, three real
//! `weft serve --store etcd` replicas, six real Envoy sidecars spread over them.
//!
//! - an apply through replica 1 is enforced by every sidecar, whichever replica it is
//!   connected to (apply → enforced everywhere, p50/p99 over several applies);
//! - two applies through two replicas, both computed on the same version
//!   (`--expect-version`): exactly one wins, the other exits 5 naming the version;
//! - `weft status` through any replica lists the three, with version and streams;
//! - one etcd member stopped: changes still go through; two stopped: a change is refused
//!   with a clear error (exit 1, 503), `/healthz` fails saying since when and that writes are
//!   refused and SVID renewal degraded (so do the replica's own row of `weft status` and
//!   `weft_etcd_degraded` in `/metrics`), and the sidecars keep enforcing
//!   the last version (0 mis-authorized requests); members back: the replicas converge and
//!   the history holds every acknowledged version, without a gap;
//! - kill -9 the replica with the most sidecars under steady traffic: its sidecars move to the
//!   survivors (each bootstrap lists every replica), 0 failed or mis-authorized requests, and
//!   a change through a survivor reaches all six.
#![cfg(test)]

mod etcd_common;
mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_common::{etcd_flags, kek_file, share_admin_token, EtcdCluster};
use weft_e2e::{
    http_client, xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams};
use xds_common::{status_of, until_statuses, INBOUND};

const SIDECARS: usize = 6;

fn replica(bin: &Path, data: &Path, endpoints: &str, kek: &Path) -> WeftServer {
    let mut flags = etcd_flags(endpoints, Some(kek));
    flags.extend(["--xds-listen", "0.0.0.0:0", "--etcd-health-ms", "3000"].map(str::to_string));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    WeftServer::start(bin, data, &flags)
}

/// `finance` allowing `GET /<prefix>/*` only.
fn allowing(dir: &Path, prefix: &str) -> PathBuf {
    let path = dir.join(format!("allow-{prefix}.yaml"));
    let yaml = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: finance}}\n\
         spec: {{port: 8080, versions: [v1]}}\n---\n\
         apiVersion: weft.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: finance-gate}}\n\
         spec:\n  target: {{service: finance}}\n  action: ALLOW\n\
         \x20 rules:\n  - to: {{methods: [GET], paths: [\"/{prefix}/*\"]}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn policy_version(server: &WeftServer) -> u64 {
    server.api_get("/api/v1/status").await["policyVersion"]
        .as_u64()
        .unwrap()
}

/// The replica's `/metrics` text, as an operator reads it.
async fn metrics_text(server: &WeftServer) -> String {
    server.api_text("/metrics").await
}

async fn healthz(server: &WeftServer) -> (u16, String) {
    let response = http_client()
        .get(format!("{}/healthz", server.api))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// Every sidecar allows `/<now>/x` and refuses `/<before>/x`.
fn expectations(pods: &[Pod], now: &str, before: &str) -> Vec<(String, u16)> {
    pods.iter()
        .flat_map(|p| {
            [
                (format!("{}/{now}/x", p.url(INBOUND)), 200),
                (format!("{}/{before}/x", p.url(INBOUND)), 403),
            ]
        })
        .collect()
}

/// When `weft status` lists `alive` (exactly those with `exact`), each with its bound xDS
/// address and `version`: the sum of their streams.
fn listed(out: &str, alive: &[&WeftServer], version: u64, exact: bool) -> Option<usize> {
    if exact && !out.contains(&format!("replicas: {}", alive.len())) {
        return None;
    }
    let mut streams = 0;
    for r in alive {
        let row = out.lines().find(|l| l.contains(&format!("{} ", r.api)))?;
        let cells: Vec<&str> = row.split_whitespace().collect();
        if cells.get(2) != Some(&format!("0.0.0.0:{}", r.xds_port).as_str())
            || cells.get(3) != Some(&version.to_string().as_str())
        {
            return None;
        }
        streams += cells.get(5)?.parse::<usize>().ok()?;
    }
    Some(streams)
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_over_etcd_share_versions_race_safely_and_survive_quorum_loss() {
    let bin = weft_bin();
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let files = tempfile::tempdir().unwrap();
    let kek = kek_file(files.path(), "kek", 0x11);
    let mut replicas = vec![replica(&bin, dirs[0].path(), &endpoints, &kek)];
    share_admin_token(dirs[0].path(), dirs[1..].iter().map(|d| d.path()));
    for d in &dirs[1..] {
        replicas.push(replica(&bin, d.path(), &endpoints, &kek));
    }
    let net = TestNet::new("replicas");
    let gateway = network_gateway(&net).unwrap();

    let apply = |i: usize, prefix: &str, extra: &[&str]| {
        let file = allowing(files.path(), prefix);
        let mut args = vec!["apply", "-f", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        replicas[i].cli(&bin, &args)
    };
    let (code, out, err) = apply(0, "p0", &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Six sidecars, two per replica.
    let mut pods = Vec::new();
    for i in 0..SIDECARS {
        // Its replica first, the two others as fallbacks (`weft bootstrap --xds-replica`).
        let mut params = BootstrapParams::new("finance", "v1", &gateway, replicas[i % 3].xds_port);
        params.xds_more = (1..3)
            .map(|d| (gateway.clone(), replicas[(i + d) % 3].xds_port))
            .collect();
        params.node_id = Some(format!("finance-v1-{i}"));
        let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
        options.hostname = format!("finance-v1-{i}");
        pods.push(
            Pod::start(&net, options, UpstreamOptions::new("finance", "v1"))
                .await
                .unwrap(),
        );
    }
    until_statuses(
        "p0 on every sidecar",
        &expectations(&pods, "p0", "p1"),
        Duration::from_secs(60),
    )
    .await;

    // Apply through replica 1, enforced by every sidecar on every replica.
    let mut enforced_ms = Vec::new();
    for k in 1..=10 {
        let (now, before) = (format!("p{k}"), format!("p{}", k - 1));
        let started = Instant::now();
        let (code, out, err) = apply(0, &now, &[]);
        assert_eq!(code, 0, "{out}\n{err}");
        until_statuses(
            &format!("{now} on every sidecar"),
            &expectations(&pods, &now, &before),
            Duration::from_secs(30),
        )
        .await;
        enforced_ms.push(started.elapsed().as_millis());
    }
    enforced_ms.sort_unstable();
    println!(
        "apply through replica 1 -> enforced by all {SIDECARS} sidecars on 3 replicas: \
         p50 {} ms, p99 {} ms, max {} ms over {} applies",
        percentile(&enforced_ms, 0.5),
        percentile(&enforced_ms, 0.99),
        enforced_ms.last().unwrap(),
        enforced_ms.len()
    );
    let mut acknowledged: Vec<u64> = (1..=11).collect();
    for r in &replicas {
        assert_eq!(policy_version(r).await, 11);
    }
    // `weft status` through any replica lists all three (registered under etcd leases,
    // refreshed each second), each with the version it publishes; their streams add up to
    // the six sidecars.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, err) = replicas[2].cli(&bin, &["status"]);
        assert_eq!(code, 0, "{out}\n{err}");
        if listed(&out, &replicas.iter().collect::<Vec<_>>(), 11, true) == Some(SIDECARS) {
            println!("weft status:\n{out}");
            break;
        }
        assert!(Instant::now() < deadline, "replicas not listed:\n{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Two applies through two replicas on the same version: exactly one wins.
    let mut race_winners = Vec::new();
    for round in 0..5 {
        let at = *acknowledged.last().unwrap();
        let expect = at.to_string();
        let (a, b) = (format!("ra{round}"), format!("rb{round}"));
        let (fa, fb) = (allowing(files.path(), &a), allowing(files.path(), &b));
        let race = |i: usize, file: PathBuf| {
            let (bin, replica, expect) = (bin.clone(), &replicas[i], expect.clone());
            move || {
                replica.cli(
                    &bin,
                    &[
                        "apply",
                        "-f",
                        file.to_str().unwrap(),
                        "--expect-version",
                        &expect,
                    ],
                )
            }
        };
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(race(1, fa));
            let tb = s.spawn(race(2, fb));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let codes = [ra.0, rb.0];
        assert!(
            codes == [0, 5] || codes == [5, 0],
            "round {round}: {ra:?} {rb:?}"
        );
        let (winner, loser) = if ra.0 == 0 { (&a, &rb) } else { (&b, &ra) };
        // Refused by the CAS in etcd ("change computed from version N, store is at N+1") or,
        // when it planned after the winner landed, by the version check ("expected version
        // N, current version is N+1").
        let named = [
            format!("computed from version {at}, store is at {}", at + 1),
            format!("expected version {at}, current version is {}", at + 1),
        ];
        assert!(
            named.iter().any(|n| loser.2.contains(n.as_str())),
            "the loser names the versions: {}",
            loser.2
        );
        acknowledged.push(at + 1);
        race_winners.push(winner.clone());
        until_statuses(
            "the winner on every sidecar",
            &expectations(&pods, winner, "p0"),
            Duration::from_secs(30),
        )
        .await;
    }
    println!(
        "5 races through replicas 2 and 3: one winner each ({race_winners:?}), the loser exit 5"
    );

    // One etcd member down: changes still go through.
    etcd.stop(2);
    let (code, out, err) = apply(1, "one-down", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    acknowledged.push(acknowledged.last().unwrap() + 1);
    until_statuses(
        "one-down on every sidecar",
        &expectations(&pods, "one-down", "p0"),
        Duration::from_secs(30),
    )
    .await;

    // Two down: refused clearly, sidecars keep enforcing, /healthz fails past the bound.
    etcd.stop(1);
    let (code, out, err) = apply(0, "no-quorum", &[]);
    println!("no etcd quorum: weft apply exit {code}: {}", err.trim());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("store unavailable") && err.contains("etcd"),
        "{err}"
    );
    let mut wrong = 0;
    let mut sent = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        for (url, want) in expectations(&pods, "one-down", "no-quorum") {
            sent += 1;
            if status_of(&url).await != want {
                wrong += 1;
            }
        }
    }
    println!("etcd without quorum: {sent} requests through the sidecars, {wrong} mis-authorized");
    assert_eq!(wrong, 0);
    let (status, body) = healthz(&replicas[2]).await;
    println!("/healthz without quorum: {status} {body}");
    assert_eq!(status, 503, "{body}");
    let degraded = "writes refused, SVID renewal degraded";
    assert!(
        body.contains("etcd unreachable since") && body.contains(degraded),
        "{body}"
    );
    // `weft status` through a replica without etcd: its own row says so in words, the
    // others are marked as last seen; `/metrics` has the gauge.
    let (code, out, err) = replicas[2].cli(&bin, &["status"]);
    println!("weft status without quorum:\n{out}");
    assert_eq!(code, 0, "{out}\n{err}");
    let own = out
        .lines()
        .find(|l| l.contains(&format!("{} ", replicas[2].api)))
        .unwrap_or_else(|| panic!("replica 3 not listed:\n{out}"));
    assert!(
        own.contains("etcd unreachable since") && own.contains(degraded),
        "{own}"
    );
    for r in &replicas[..2] {
        let row = out
            .lines()
            .find(|l| l.contains(&format!("{} ", r.api)))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", r.api));
        assert!(row.contains("as last seen"), "{row}");
    }
    let metrics = metrics_text(&replicas[2]).await;
    assert!(
        metrics.lines().any(|l| l == "weft_etcd_degraded 1"),
        "{metrics}"
    );
    // Neither says anything to a caller without a credential (`/healthz` alone is open,
    // and names no etcd address).
    for path in ["/api/v1/replicas", "/metrics"] {
        let response = http_client()
            .get(format!("{}{path}", replicas[2].api))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            401,
            "{path} without a credential"
        );
    }
    assert!(!body.contains("127.0.0.1"), "{body}");

    // Back: converge, no acknowledged version lost.
    etcd.restart(1);
    etcd.restart(2);
    for i in 0..etcd.len() {
        etcd.wait_healthy(i, Duration::from_secs(30));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = apply(1, "back", &[]);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{out}\n{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acknowledged.push(acknowledged.last().unwrap() + 1);
    until_statuses(
        "back on every sidecar",
        &expectations(&pods, "back", "no-quorum"),
        Duration::from_secs(30),
    )
    .await;
    let last = *acknowledged.last().unwrap();
    for r in &replicas {
        assert_eq!(policy_version(r).await, last);
        assert_eq!(healthz(r).await.0, 200);
        let metrics = metrics_text(r).await;
        assert!(
            metrics.lines().any(|l| l == "weft_etcd_degraded 0"),
            "{metrics}"
        );
    }
    let (code, out, err) = replicas[2].cli(&bin, &["history", "-o", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let history: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let versions: Vec<u64> = history
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions, acknowledged,
        "history = every acknowledged version"
    );
    println!(
        "converged at version {last}; history holds all {} acknowledged versions",
        acknowledged.len()
    );
    // kill -9 the replica with the most sidecars, under steady traffic: its sidecars move to
    // the others (no failed, no mis-authorized request meanwhile), and a change through a
    // survivor reaches all six.
    let (code, out, _) = replicas[0].cli(&bin, &["status"]);
    assert_eq!(code, 0);
    let most = (0..3)
        .max_by_key(|&i| {
            out.lines()
                .find(|l| l.contains(&format!("{} ", replicas[i].api)))
                .and_then(|row| row.split_whitespace().nth(5)?.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .unwrap();
    let steady = expectations(&pods, "back", "no-quorum");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (stop, steady) = (std::sync::Arc::clone(&stop), steady.clone());
        tokio::spawn(async move {
            let (mut sent, mut wrong) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (url, want) in &steady {
                    sent += 1;
                    if status_of(url).await != *want {
                        wrong += 1;
                    }
                }
            }
            (sent, wrong)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    replicas[most].kill();
    let survivors: Vec<&WeftServer> = (0..3)
        .filter(|&i| i != most)
        .map(|i| &replicas[i])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = loop {
        let (code, out, err) = survivors[0].cli(&bin, &["status"]);
        assert_eq!(code, 0, "{out}\n{err}");
        if listed(&out, &survivors, last, false) == Some(SIDECARS) {
            break killed.elapsed();
        }
        assert!(Instant::now() < deadline, "sidecars did not move:\n{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The dead replica's registration lapses with its lease.
    let lapsed = loop {
        let (_, out, _) = survivors[0].cli(&bin, &["status"]);
        if listed(&out, &survivors, last, true) == Some(SIDECARS) {
            break killed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the dead replica is still listed:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, wrong) = traffic.await.unwrap();
    println!(
        "kill -9 replica {}: all {SIDECARS} sidecars on the 2 survivors after {} ms, the dead \
         one unlisted after {} ms ({} s lease); {sent} requests meanwhile, {wrong} failed or \
         mis-authorized",
        most + 1,
        moved.as_millis(),
        lapsed.as_millis(),
        weft_etcd::REPLICA_TTL_SECS
    );
    assert_eq!(wrong, 0);
    let after = allowing(files.path(), "after-kill");
    let (code, out, err) = survivors[0].cli(&bin, &["apply", "-f", after.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    until_statuses(
        "after-kill on every sidecar",
        &expectations(&pods, "after-kill", "back"),
        Duration::from_secs(30),
    )
    .await;
    drop(pods);
}
