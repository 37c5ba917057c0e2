//! The raw JSON (stamped with the commit and the machine) and the Markdown made from it.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::envoy::EnvoyResult;
use crate::sim::SimResult;

/// Targets of issue 10.
pub const P99_TARGET_MS: f64 = 50.0;
pub const P99_TARGET_SIDECARS: usize = 100;
pub const RSS_TARGET_MIB: f64 = 1024.0;
pub const RSS_TARGET_STREAMS: usize = 10_000;
/// Targets of issue 21 for sidecars that register endpoints: apply -> all ACKed p99 at
/// 10,000 and 1,000 of them (and the RSS target at 10,000).
pub const P99_TARGET_REGISTERING_10K_MS: f64 = 250.0;
pub const P99_TARGET_REGISTERING_1K_MS: f64 = 50.0;

pub const README_START: &str = "<!-- bench-control:start -->";
pub const README_END: &str = "<!-- bench-control:end -->";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub commit: String,
    pub dirty: bool,
    pub timestamp: String,
    pub machine: Machine,
    pub setup: Setup,
    pub real: Vec<EnvoyResult>,
    pub simulated: Vec<SimResult>,
    /// Free text, e.g. "other builds ran concurrently".
    pub note: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub load_average_before: String,
    pub load_average_after: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Setup {
    pub server_core: Option<usize>,
    pub server_workers: Option<u16>,
    pub load_core: Option<usize>,
    pub streams_per_connection: usize,
    pub services: usize,
    pub versions: usize,
    pub envoy: String,
}

// === impl Machine ===

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self {
            cpu,
            // Not available_parallelism: the tool itself runs pinned to one core.
            cores: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            kernel,
            load_average_before: load_average(),
            load_average_after: String::new(),
        }
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `(short commit, uncommitted changes)` of the tree at `root`.
pub fn commit(root: &Path) -> (String, bool) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    (commit, dirty)
}

// === impl Report ===

impl Report {
    /// The Markdown section: a stamp, the two tables and the targets.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let dirty = if self.dirty {
            " + uncommitted changes"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "_commit `{}`{dirty} · {} · {} × {} cores · Linux {} · load average {} before, {} after{}; \
             `weft serve` pinned to core {} with {} runtime worker(s), the load tool and Envoys on core {}; \
             raw numbers in [bench/results/control.json](bench/results/control.json)._\n",
            self.commit,
            self.timestamp,
            self.machine.cpu,
            self.machine.cores,
            self.machine.kernel,
            self.machine.load_average_before,
            self.machine.load_average_after,
            if self.note.is_empty() { String::new() } else { format!(" · {}", self.note) },
            opt(self.setup.server_core),
            opt(self.setup.server_workers),
            opt(self.setup.load_core),
        );
        let _ = writeln!(
            out,
            "| sidecars | kind | apply → all enforced p50 / p99 / max (ms) | per sidecar p50 / p99 (ms) | p99 / {P99_TARGET_MS} ms target |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for r in &self.real {
            let a = &r.apply_to_all_enforced_ms;
            let e = &r.apply_to_each_enforced_ms;
            let _ = writeln!(
                out,
                "| {} | Envoy {}, 403 observed in traffic | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
                r.sidecars,
                self.setup.envoy,
                a.p50,
                a.p99,
                a.max,
                e.p50,
                e.p99,
                a.p99 / P99_TARGET_MS
            );
        }
        for r in &self.simulated {
            let a = &r.apply_to_all_acked_ms;
            let e = &r.apply_to_each_acked_ms;
            let _ = writeln!(
                out,
                "| {} | simulated {} streams{}, ACK sent | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
                r.streams,
                if r.delta { "delta ADS" } else { "ADS" },
                sim_kind(r),
                a.p50,
                a.p99,
                a.max,
                e.p50,
                e.p99,
                a.p99 / P99_TARGET_MS
            );
        }
        let _ = writeln!(
            out,
            "\n| ADS streams | HTTP/2 connections | groups | connect + first sync (s) | RSS synced / after applies / peak (MiB) | peak RSS / 1 GiB target | idle CPU (% of a core) | CPU per apply (ms) | POST p50 (ms) |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for r in &self.simulated {
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {:.2} | {:.1} / {:.1} / {:.1}{} | {:.3} | {:.2} | {:.1} | {:.1} |",
                r.streams,
                sim_kind(r),
                r.connections,
                r.groups,
                r.connect_s,
                r.rss_synced_mib,
                r.rss_after_applies_mib,
                r.peak_rss_mib,
                replica_peaks(r),
                r.peak_rss_mib / RSS_TARGET_MIB,
                r.idle_cpu_pct,
                r.cpu_ms_per_apply,
                r.post_ms.p50
            );
        }
        out.push('\n');
        let latency = self
            .simulated
            .iter()
            .find(|r| r.streams == P99_TARGET_SIDECARS && !r.endpoints)
            .map(|r| r.apply_to_all_acked_ms.p99);
        match latency {
            Some(p99) => {
                let _ = writeln!(
                    out,
                    "- apply → every one of {P99_TARGET_SIDECARS} sidecars ACKed: p99 **{p99:.1} ms** (target < {P99_TARGET_MS} ms: {})",
                    verdict(p99 < P99_TARGET_MS)
                );
            }
            None => {
                let _ = writeln!(out, "- apply → enforced at {P99_TARGET_SIDECARS} sidecars: not measured in this run");
            }
        }
        match self
            .simulated
            .iter()
            .find(|r| r.streams == RSS_TARGET_STREAMS && !r.endpoints)
        {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "- {RSS_TARGET_STREAMS} ADS streams: peak RSS **{:.0} MiB** on one core (target < 1 GiB: {})",
                    r.peak_rss_mib,
                    verdict(r.peak_rss_mib < RSS_TARGET_MIB && self.setup.server_core.is_some())
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "- {RSS_TARGET_STREAMS} ADS streams: not measured in this run"
                );
            }
        }
        for r in self.simulated.iter().filter(|r| r.endpoints) {
            let _ = writeln!(out, "- {}", registering_verdict(r));
        }
        let _ = writeln!(
            out,
            "- simulated sidecars multiplex {} ADS streams per HTTP/2 connection; they register no inbound endpoint except in the rows marked so; \
             `calls N`: each `Service` declares it calls N others, so its sidecars get only their clusters and endpoints; \
             `N replicas`: `weft serve --store etcd` replicas over a 3-member etcd, the connections spread over them, applies through the first (its RSS and CPU in the columns, every replica's peak RSS after `;`)",
            self.setup.streams_per_connection
        );
        out
    }

    /// Replaces the section between the README markers.
    pub fn update_readme(&self, readme: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(readme)
            .with_context(|| format!("reading {}", readme.display()))?;
        let (Some(start), Some(end)) = (text.find(README_START), text.find(README_END)) else {
            anyhow::bail!(
                "{} has no {README_START} ... {README_END} markers",
                readme.display()
            );
        };
        if end < start {
            anyhow::bail!(
                "{}: the bench-control markers are out of order",
                readme.display()
            );
        }
        let updated = format!(
            "{}{README_START}\n{}{}",
            &text[..start],
            self.markdown(),
            &text[end..]
        );
        std::fs::write(readme, updated).with_context(|| format!("writing {}", readme.display()))
    }
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// What sets a simulated row apart: endpoints, scoped `calls`, replicas.
fn sim_kind(r: &SimResult) -> String {
    let mut kind = String::new();
    if r.endpoints {
        kind.push_str(" registering endpoints");
    }
    if let Some(n) = r.calls {
        let _ = write!(kind, ", calls {n}");
    }
    if r.replicas > 1 {
        let _ = write!(kind, ", {} replicas", r.replicas);
    }
    kind
}

/// `; a / b / c` peak RSS per replica, for multi-replica rows.
fn replica_peaks(r: &SimResult) -> String {
    if r.replica_peak_rss_mib.is_empty() {
        return String::new();
    }
    let peaks: Vec<String> = r
        .replica_peak_rss_mib
        .iter()
        .map(|p| format!("{p:.1}"))
        .collect();
    format!("; {}", peaks.join(" / "))
}

/// The issue-21 verdict of a row of registering sidecars.
fn registering_verdict(r: &SimResult) -> String {
    let p99 = r.apply_to_all_acked_ms.p99;
    let what = format!(
        "{} registering sidecars{}",
        r.streams,
        sim_kind(r).replacen(" registering endpoints", "", 1)
    );
    match r.streams {
        RSS_TARGET_STREAMS => format!(
            "{what}: apply → all ACKed p99 **{p99:.1} ms** (target < {P99_TARGET_REGISTERING_10K_MS} ms: {}), peak RSS **{:.0} MiB** (target < 1 GiB: {})",
            verdict(p99 < P99_TARGET_REGISTERING_10K_MS),
            r.peak_rss_mib,
            verdict(r.peak_rss_mib < RSS_TARGET_MIB)
        ),
        1000 => format!(
            "{what}: apply → all ACKed p99 **{p99:.1} ms** (target < {P99_TARGET_REGISTERING_1K_MS} ms: {})",
            verdict(p99 < P99_TARGET_REGISTERING_1K_MS)
        ),
        _ => format!("{what}: apply → all ACKed p99 **{p99:.1} ms** (no target at this size)"),
    }
}
