//! The simulated-sidecar scenario: N ADS streams against a fresh `weft serve`, K applies timed
//! to the last ACK, and the server's RSS and CPU while idle and while applying.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::etcd::EtcdCluster;
use crate::fleet::{Fleet, FleetSpec};
use crate::server::{self, ServerSpec, WeftServer};
use crate::stats::Summary;
use crate::tracker::Tracker;
use crate::{apply_async, policy};

#[derive(Clone, Debug)]
pub struct SimSpec {
    pub fleet: FleetSpec,
    pub applies: usize,
    /// How long the idle CPU is measured.
    pub idle: Duration,
    /// Pause between applies.
    pub pause: Duration,
    pub timeout: Duration,
    /// `Some((replicas, etcd binary))`: that many `weft serve --store etcd` replicas over a
    /// fresh 3-member etcd, the streams' connections spread over them, applies through the
    /// first.
    pub replicated: Option<(usize, std::path::PathBuf)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimResult {
    pub streams: usize,
    /// The simulated sidecars registered inbound endpoints (EDS changes on every connect).
    #[serde(default)]
    pub endpoints: bool,
    /// Delta ADS streams (else state of the world).
    #[serde(default)]
    pub delta: bool,
    /// Each service declared `calls` to this many others (else none: every sidecar may call
    /// every service).
    #[serde(default)]
    pub calls: Option<usize>,
    /// Replicas the streams were spread over (0 or 1: one `weft serve`).
    #[serde(default)]
    pub replicas: usize,
    /// Peak RSS of each replica (multi-replica runs).
    #[serde(default)]
    pub replica_peak_rss_mib: Vec<f64>,
    pub connections: usize,
    pub groups: usize,
    pub applies: usize,
    /// From the first connection to every stream having ACKed its filters.
    pub connect_s: f64,
    pub connect_cpu_s: f64,
    /// Per apply: from the POST to the last stream's ACK of the new filters.
    pub apply_to_all_acked_ms: Summary,
    /// Every (apply, stream) pair: from the POST to that stream's ACK.
    pub apply_to_each_acked_ms: Summary,
    /// The POST alone, until its answer (validation, the fsync'ed store write, compiling).
    #[serde(default)]
    pub post_ms: Summary,
    pub rss_synced_mib: f64,
    pub rss_after_applies_mib: f64,
    pub peak_rss_mib: f64,
    pub idle_cpu_pct: f64,
    pub cpu_ms_per_apply: f64,
    /// `GET /v1/sidecars` showed every sidecar synced to the last revision afterwards.
    pub server_confirmed: bool,
}

pub async fn run(server_spec: &ServerSpec, spec: &SimSpec) -> anyhow::Result<SimResult> {
    let fleet = &spec.fleet;
    let label = format!(
        "sim-{}{}{}{}{}",
        fleet.streams,
        if fleet.endpoints { "-ep" } else { "" },
        if fleet.delta { "-delta" } else { "" },
        fleet
            .calls
            .map(|n| format!("-calls{n}"))
            .unwrap_or_default(),
        spec.replicated
            .as_ref()
            .map(|(n, _)| format!("-replicas{n}"))
            .unwrap_or_default()
    );
    let (_etcd, servers) = start_servers(server_spec, spec, &label)?;
    let server = &servers[0];
    let pid = server.pid();
    let ticks = server::clock_ticks();
    let marker = |k: usize| format!("sim{}r{k}", fleet.streams);
    let documents = |k: usize| {
        policy::documents(
            &fleet.namespace,
            fleet.services,
            fleet.versions,
            fleet.calls,
            &marker(k),
        )
    };
    apply_async(server, documents(0)).await?;
    let xds: Vec<String> = servers.iter().map(|s| s.xds.clone()).collect();

    let tracker = Tracker::new();
    let before = server::sample(pid)?;
    let started = Instant::now();
    let running = Fleet::start_spread(&xds, fleet, std::sync::Arc::clone(&tracker)).await?;
    tracker.wait_ready(fleet.streams, spec.timeout).await?;
    let connect_s = started.elapsed().as_secs_f64();
    let synced = server::sample(pid)?;
    eprintln!(
        "  {} streams on {} connections ready in {connect_s:.2} s",
        fleet.streams,
        fleet.connections()
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_start = server::sample(pid)?;
    tokio::time::sleep(spec.idle).await;
    let idle_end = server::sample(pid)?;

    let mut all = Vec::with_capacity(spec.applies);
    let mut each = Vec::with_capacity(spec.applies * fleet.streams);
    let mut posts = Vec::with_capacity(spec.applies);
    let mut last_version = 0;
    for k in 1..=spec.applies {
        let expectation = tracker.expect(k as u64, &marker(k));
        let posted = Instant::now();
        last_version = apply_async(server, documents(k)).await?;
        posts.push(posted.elapsed());
        let latencies = tracker
            .wait_observed(&expectation, fleet.streams, spec.timeout)
            .await?;
        all.extend(latencies.iter().max().copied());
        each.extend(latencies);
        tokio::time::sleep(spec.pause).await;
    }
    let applied = server::sample(pid)?;
    if running.running() < fleet.streams {
        anyhow::bail!("{} streams ended", fleet.streams - running.running());
    }
    // Each replica's own view of its streams (connection c went to replica c % n).
    let mut wants = vec![0usize; xds.len()];
    for c in 0..fleet.connections() {
        wants[c % xds.len()] += fleet.streams_of(c);
    }
    let timeout = spec.timeout;
    let server_confirmed = tokio::task::spawn_blocking(move || {
        xds.iter().zip(wants).try_for_each(|(xds, want)| {
            server::wait_server_synced(xds, last_version, want, timeout)
        })
    })
    .await?
    .map(|()| true)
    .map_err(|e| eprintln!("  warning: {e:#}"))
    .unwrap_or(false);
    let replica_peak_rss_mib = if servers.len() > 1 {
        servers
            .iter()
            .map(|s| Ok(server::sample(s.pid())?.hwm_kib as f64 / 1024.0))
            .collect::<anyhow::Result<Vec<f64>>>()?
    } else {
        Vec::new()
    };
    let final_sample = server::sample(pid)?;
    drop(running);
    drop(servers);

    let cpu_s = |a: &server::ProcSample, b: &server::ProcSample| {
        b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let idle_wall = idle_end.at.duration_since(idle_start.at).as_secs_f64();
    Ok(SimResult {
        streams: fleet.streams,
        endpoints: fleet.endpoints,
        delta: fleet.delta,
        calls: fleet.calls,
        replicas: spec.replicated.as_ref().map_or(1, |(n, _)| *n),
        replica_peak_rss_mib,
        connections: fleet.connections(),
        groups: fleet.services * fleet.versions,
        applies: spec.applies,
        connect_s,
        connect_cpu_s: cpu_s(&before, &synced),
        apply_to_all_acked_ms: Summary::of(&all),
        apply_to_each_acked_ms: Summary::of(&each),
        post_ms: Summary::of(&posts),
        rss_synced_mib: mib(synced.rss_kib),
        rss_after_applies_mib: mib(applied.rss_kib),
        peak_rss_mib: mib(final_sample.hwm_kib),
        idle_cpu_pct: 100.0 * cpu_s(&idle_start, &idle_end) / idle_wall.max(1e-9),
        cpu_ms_per_apply: 1000.0 * cpu_s(&idle_end, &applied) / spec.applies.max(1) as f64,
        server_confirmed,
    })
}

/// One `weft serve`, or the replicas over a fresh etcd cluster (kept alive by the returned
/// handle) when `spec.replicated`.
fn start_servers(
    server_spec: &ServerSpec,
    spec: &SimSpec,
    label: &str,
) -> anyhow::Result<(Option<EtcdCluster>, Vec<WeftServer>)> {
    let Some((replicas, etcd_bin)) = &spec.replicated else {
        return Ok((None, vec![WeftServer::start(server_spec, label)?]));
    };
    let etcd = EtcdCluster::start(
        etcd_bin,
        &server_spec.work_dir.join(format!("etcd-{label}")),
        3,
    )?;
    // Every replica needs the same key-encryption key (`--etcd-kek`): 32 random bytes, 0600.
    let kek = server_spec.work_dir.join(format!("etcd-{label}.kek"));
    {
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let _ = std::fs::remove_file(&kek);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&kek)?
            .write_all(&key)?;
    }
    let mut servers = Vec::new();
    for r in 0..(*replicas).max(1) {
        let mut replica = server_spec.clone();
        replica.extra_args.extend([
            "--store".to_string(),
            "etcd".to_string(),
            "--etcd-endpoints".to_string(),
            etcd.endpoints(),
            "--etcd-kek".to_string(),
            kek.display().to_string(),
            "--replica-id".to_string(),
            format!("bench-{r}"),
        ]);
        servers.push(WeftServer::start(&replica, &format!("{label}-r{r}"))?);
    }
    Ok((Some(etcd), servers))
}
