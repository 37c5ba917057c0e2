//! A real etcd cluster for the multi-replica scenario: `n` members as host processes on
//! loopback (Debian's `etcd-server`, installed by `scripts/setup`), every port picked free,
//! data in the work directory; killed when dropped. The same way the e2e tests start it
//! (`tests/tests/etcd_common`), trimmed to what a benchmark needs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct EtcdCluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    logs: Vec<PathBuf>,
}

impl EtcdCluster {
    /// Starts `n` members of a fresh cluster under `dir` and waits until each is healthy.
    pub fn start(etcd: &Path, dir: &Path, n: usize) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(2 * n)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial: Vec<String> = (0..n).map(|i| format!("m{i}={}", peer(i))).collect();
        let initial = initial.join(",");
        let mut cluster = Self {
            children: Vec::new(),
            client_ports: (0..n).map(|i| ports[2 * i]).collect(),
            logs: Vec::new(),
        };
        for i in 0..n {
            let client = format!("http://127.0.0.1:{}", ports[2 * i]);
            let log = dir.join(format!("m{i}.log"));
            let child = Command::new(etcd)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}.etcd")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial])
                .args([
                    "--initial-cluster-token",
                    &format!("weft-bench-{}", std::process::id()),
                ])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| {
                    format!(
                        "starting {} (scripts/setup installs etcd-server)",
                        etcd.display()
                    )
                })?;
            cluster.children.push(child);
            cluster.logs.push(log);
        }
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// The client URLs, comma-separated (`weft serve --etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        let urls: Vec<String> = self
            .client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    fn wait_healthy(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/health", self.client_ports[i]);
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = ureq::get(&url)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|body| body.contains("\"health\":\"true\""));
            if healthy {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "etcd member {i} not healthy after {timeout:?}; its log:\n{}",
                    std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` distinct free loopback ports (held open together, then released).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
