//! `weft-xds-load`: see `weft-xds-load --help` and `scripts/bench-control`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use weft_xds_load::{envoy, fleet::FleetSpec, report, server::ServerSpec, sim};

/// Control-plane benchmark: apply -> enforced with real Envoy sidecars and simulated ADS
/// streams, and `weft serve`'s RSS and CPU per stream count.
#[derive(Debug, Parser)]
#[command(name = "weft-xds-load")]
struct Args {
    /// The `weft` binary under test.
    #[arg(long, default_value = "target/release/weft")]
    weft: PathBuf,
    #[arg(long, default_value = "dist/filters")]
    modules_dir: PathBuf,
    #[arg(long, default_value = ".weft/envoy/1.40.0/envoy")]
    envoy: PathBuf,
    /// Real Envoy sidecar counts, comma separated (`--real` alone: none).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1,10")]
    real: Vec<usize>,
    /// Simulated stream counts, comma separated (`--sim` alone: none).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "100,1000,10000")]
    sim: Vec<usize>,
    /// Simulated stream counts run again with every sidecar registering an inbound endpoint
    /// (each connect then changes EDS for every sidecar), comma separated.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000")]
    sim_endpoints: Vec<usize>,
    /// Simulated stream counts (registering endpoints) spread over --replicas `weft serve
    /// --store etcd` replicas over a fresh 3-member etcd (host processes), applies through
    /// the first replica, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1000")]
    sim_replicated: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// The etcd binary (Debian's etcd-server, installed by scripts/setup).
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Simulated sidecars speak incremental (Delta) ADS instead of state of the world.
    #[arg(long)]
    delta: bool,
    /// Each benchmark `Service` declares `calls` to the next N services (a ring), so each
    /// sidecar is served only those services' clusters and endpoints; absent: no `calls`.
    #[arg(long)]
    calls: Option<usize>,
    /// Applies timed per scenario.
    #[arg(long, default_value_t = 20)]
    applies: usize,
    /// Seconds of idle CPU measurement per simulated scenario.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// ADS streams multiplexed on one HTTP/2 connection; at most the server's per-connection
    /// limit (`weft serve` allows 64, as `max_concurrent_streams`: more are refused with
    /// REFUSED_STREAM).
    #[arg(long, default_value_t = 50)]
    streams_per_connection: usize,
    #[arg(long, default_value_t = 10)]
    services: usize,
    #[arg(long, default_value_t = 2)]
    versions: usize,
    /// Core `weft serve` is pinned to (`taskset`); negative: not pinned.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    server_core: i64,
    /// `weft serve --workers`; 0: its default.
    #[arg(long, default_value_t = 1)]
    server_workers: u16,
    /// Core the Envoys run on, recorded too for this tool (pin it with `taskset`).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    load_core: i64,
    #[arg(long, default_value_t = 26000)]
    envoy_base_port: u16,
    #[arg(long, default_value = "target/bench-control")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/control.json")]
    out_json: PathBuf,
    #[arg(long, default_value = "bench/results/control.md")]
    out_md: PathBuf,
    /// Also write the Markdown between README's bench-control markers.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// A note stamped into the results (e.g. what else ran on the machine).
    #[arg(long, default_value = "")]
    note: String,
    /// Measure nothing: re-render the Markdown (and README) from --out-json.
    #[arg(long)]
    report_only: bool,
}

fn core(n: i64) -> Option<usize> {
    usize::try_from(n).ok()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = if args.report_only {
        serde_json::from_slice(&std::fs::read(&args.out_json)?)?
    } else {
        // On SIGINT/SIGTERM the measurement is dropped, which kills its `weft serve` and Envoys.
        runtime.block_on(async {
            tokio::select! {
                report = measure(&args) => report,
                signal = interrupted() => Err(anyhow::anyhow!("stopped by {signal}")),
            }
        })?
    };
    if !args.report_only {
        if let Some(dir) = args.out_json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            &args.out_json,
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
    }
    let markdown = format!(
        "# weft control-plane benchmark\n\nMade by `scripts/bench-control`; see README § Performance.\n\n{}",
        // Links relative to bench/results/ rather than to the README.
        report
            .markdown()
            .replace("](bench/results/control.json)", "](control.json)")
    );
    std::fs::write(&args.out_md, markdown)?;
    if let Some(readme) = &args.readme {
        report.update_readme(readme)?;
    }
    print!("{}", report.markdown());
    Ok(())
}

async fn measure(args: &Args) -> anyhow::Result<report::Report> {
    let mut machine = report::Machine::probe();
    let server = ServerSpec {
        weft: args.weft.clone(),
        modules_dir: args.modules_dir.clone(),
        core: core(args.server_core),
        workers: (args.server_workers > 0).then_some(args.server_workers),
        work_dir: args.work_dir.clone(),
        extra_args: Vec::new(),
    };
    std::fs::create_dir_all(&args.work_dir)?;
    let namespace = "bench".to_string();
    let timeout = Duration::from_secs(120);
    let mut real = Vec::new();
    for &sidecars in &args.real {
        eprintln!("real Envoy sidecars: {sidecars}");
        let spec = envoy::EnvoySpec {
            envoy: args.envoy.clone(),
            sidecars,
            namespace: namespace.clone(),
            services: args.services,
            versions: args.versions,
            base_port: args.envoy_base_port,
            core: core(args.load_core),
            applies: args.applies,
            pause: Duration::from_millis(200),
            timeout,
            poll: Duration::from_millis(1),
        };
        real.push(envoy::run(&server, &spec).await?);
    }
    let mut simulated = Vec::new();
    let runs = args
        .sim
        .iter()
        .map(|&n| (n, false, false))
        .chain(args.sim_endpoints.iter().map(|&n| (n, true, false)))
        .chain(args.sim_replicated.iter().map(|&n| (n, true, true)));
    for (streams, endpoints, replicated) in runs {
        eprintln!(
            "simulated sidecars: {streams}{}{}",
            if endpoints {
                ", registering endpoints"
            } else {
                ""
            },
            if replicated {
                format!(", over {} replicas", args.replicas)
            } else {
                String::new()
            }
        );
        let spec = sim::SimSpec {
            fleet: FleetSpec {
                streams,
                per_connection: args.streams_per_connection,
                namespace: namespace.clone(),
                services: args.services,
                versions: args.versions,
                endpoints,
                delta: args.delta,
                calls: args.calls,
            },
            applies: args.applies,
            idle: Duration::from_secs(args.idle_secs),
            pause: Duration::from_millis(100),
            timeout,
            replicated: replicated.then(|| (args.replicas, args.etcd.clone())),
        };
        simulated.push(sim::run(&server, &spec).await?);
    }
    machine.load_average_after = report::load_average();
    let (commit, dirty) = report::commit(std::path::Path::new("."));
    let envoy_version = args
        .envoy
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(report::Report {
        commit,
        dirty,
        timestamp: timestamp(),
        machine,
        setup: report::Setup {
            server_core: server.core,
            server_workers: server.workers,
            load_core: core(args.load_core),
            streams_per_connection: args.streams_per_connection,
            services: args.services,
            versions: args.versions,
            envoy: envoy_version,
        },
        real,
        simulated,
        note: args.note.clone(),
    })
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

fn timestamp() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
