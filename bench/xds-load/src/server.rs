//! The `weft serve` under test: a child process with a fresh data directory, optionally pinned
//! to one core with one runtime worker, plus the two HTTP calls the benchmark makes to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// How to start `weft serve`.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub weft: PathBuf,
    pub modules_dir: PathBuf,
    /// `taskset -c <core>`; `None`: not pinned.
    pub core: Option<usize>,
    /// `--workers`; `None`: tokio's default (one per core).
    pub workers: Option<u16>,
    /// Where its data directory and log go.
    pub work_dir: PathBuf,
    /// More `weft serve` arguments (the etcd store of a replica).
    pub extra_args: Vec<String>,
}

/// A running `weft serve`; killed on drop.
pub struct WeftServer {
    child: Child,
    pub api: String,
    /// The admin token the first start wrote to `<data>/admin.token`. Replicas over one etcd
    /// share their operators: only the first to start writes it, the others have none.
    pub token: Option<String>,
    /// `http://127.0.0.1:<port>` of ADS, the modules and `/v1/sidecars`.
    pub xds: String,
    pub xds_port: u16,
    pub log: PathBuf,
}

impl WeftServer {
    pub fn start(spec: &ServerSpec, label: &str) -> anyhow::Result<Self> {
        let data = spec.work_dir.join(format!("data-{label}"));
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("{}", data.display()))?;
        }
        std::fs::create_dir_all(&data)?;
        let log = spec.work_dir.join(format!("weft-serve-{label}.log"));
        let mut command = match spec.core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&spec.weft);
                c
            }
            None => Command::new(&spec.weft),
        };
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--insecure-listen",
                "127.0.0.1:0",
                "--xds-listen",
                "127.0.0.1:0",
            ])
            .arg("--modules-dir")
            .arg(&spec.modules_dir)
            // The development trust list scripts/build-filters signs dist/filters for.
            .arg("--module-signers")
            .arg(".weft/module-signing/signers")
            .args(["--mesh-warmup-ms", "0", "--log-level"])
            // `WEFT_BENCH_LOG_LEVEL=info` to see what a server did when (its log is kept).
            .arg(std::env::var("WEFT_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into()));
        if let Some(workers) = spec.workers {
            command.args(["--workers", &workers.to_string()]);
        }
        command.args(&spec.extra_args);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", spec.weft.display()))?;
        // Held from here on, so that any error below kills the child (Drop) rather than
        // leaving a server running after the tool exits.
        let mut server = Self {
            child,
            api: String::new(),
            token: None,
            xds: String::new(),
            xds_port: 0,
            log,
        };
        let stdout = server.child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut xds) = (None, None);
        while api.is_none() || xds.is_none() {
            let Some(line) = lines.next().transpose()? else {
                anyhow::bail!(
                    "weft serve exited before listening; log {}:\n{}",
                    server.log.display(),
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            };
            if let Some(url) = line.strip_prefix("listening on ") {
                api = Some(url.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("xds listening on ") {
                xds = Some(addr.trim().to_string());
            }
        }
        let (Some(api), Some(xds)) = (api, xds) else {
            anyhow::bail!("unreachable: both addresses were read");
        };
        server.xds_port = xds
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .context("xds port")?;
        server.token = match std::fs::read_to_string(data.join("admin.token")) {
            Ok(token) => Some(token.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("reading {}", data.join("admin.token").display())))
            }
        };
        server.api = api;
        server.xds = format!("http://{xds}");
        Ok(server)
    }

    /// With `taskset` exec'ing, the child is `weft` itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WeftServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /api/v1/apply`: the new policy version.
pub fn apply(api: &str, token: &str, documents: &str) -> anyhow::Result<u64> {
    let mut response = ureq::post(format!("{api}/api/v1/apply"))
        .header("content-type", "application/yaml")
        .header("authorization", format!("Bearer {token}"))
        .send(documents)
        .context("POST /api/v1/apply")?;
    let body = response.body_mut().read_to_string()?;
    let value: Value = serde_json::from_str(&body)?;
    value["version"]
        .as_u64()
        .with_context(|| format!("no version in the apply answer: {body}"))
}

/// Polls `GET /v1/sidecars` until `want` connected sidecars report `synced_revision >=
/// revision` (the server's own view of the ACKs).
pub fn wait_server_synced(
    xds: &str,
    revision: u64,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let body = ureq::get(format!("{xds}/v1/sidecars"))
            .call()?
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()?;
        let value: Value = serde_json::from_str(&body)?;
        let synced = value["sidecars"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|s| {
                        s["connected"] == true
                            && s["synced_revision"].as_u64().is_some_and(|r| r >= revision)
                    })
                    .count()
            })
            .unwrap_or(0);
        if synced >= want {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the server shows {synced} of {want} sidecars synced to {revision}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process's resident memory and CPU time from /proc.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub at: std::time::Instant,
}

pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let proc = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(proc.join("status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(proc.join("stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
    Ok(ProcSample {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu_ticks: field(14) + field(15),
        at: std::time::Instant::now(),
    })
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux in practice).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
