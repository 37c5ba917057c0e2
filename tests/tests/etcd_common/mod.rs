//! A real etcd cluster (Debian's `etcd-server`, etcd 3.4, installed by `scripts/setup`) as
//! host processes on loopback, every client and peer port picked free; stopped (SIGKILL) and
//! its data removed when dropped. Members can be stopped and brought back one by one, on the
//! same data, to test quorum loss.
//!
//! Why host processes rather than a container: etcd is one static binary the Debian package
//! already installed, a member stopped with SIGTERM and restarted on its own data is exactly
//! what an operator does, and no image build is needed.
#![cfg(test)]
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster of [`EtcdCluster::start`]`(n)` members.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// `n` distinct free loopback ports (all held open together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl EtcdCluster {
    /// Starts `n` members and waits (up to 30 s) until every one reports healthy.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "weft-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut cluster = Self {
            members,
            initial_cluster,
            token,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30));
        }
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", state])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is not installed: run scripts/setup (Debian package etcd-server)");
        m.child = Some(child);
    }

    /// The client URLs of every member, comma-separated (`--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Is member `i` running and answering `/health` with `"health":"true"`?
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.members[i].client_port).into(),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// Waits until member `i` is healthy; panics with its log after `timeout`.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.healthy(i) {
            if Instant::now() > deadline {
                panic!(
                    "etcd member {i} not healthy after {timeout:?}; its log:\n{}",
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Stops member `i` with SIGTERM (as an operator would) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Brings member `i` back on its own data (it rejoins the existing cluster); does not
    /// wait: a member alone cannot be healthy without a quorum.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i, "existing");
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A key-encryption key file (`--etcd-kek`): 32 bytes derived from `byte`, mode 0600.
pub fn kek_file(dir: &std::path::Path, name: &str, byte: u8) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ byte).collect();
    std::fs::write(&path, key).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The `weft serve` flags of a replica on `endpoints`: the etcd store, 1.5 s per etcd call,
/// and the key-encryption key when given (without one, a replica with the CA must refuse).
pub fn etcd_flags(endpoints: &str, kek: Option<&std::path::Path>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoints,
        "--etcd-timeout-ms",
        "1500",
    ]
    .map(str::to_string)
    .to_vec();
    if let Some(kek) = kek {
        flags.extend(["--etcd-kek".to_string(), kek.display().to_string()]);
    }
    flags
}

/// The operators are etcd's, shared by every replica (D87): the first replica's first start
/// writes the admin token, and the CLI run against any other replica's data directory uses
/// the same one.
pub fn share_admin_token<'a>(
    first: &std::path::Path,
    others: impl IntoIterator<Item = &'a std::path::Path>,
) {
    for other in others {
        std::fs::copy(first.join("admin.token"), other.join("admin.token")).unwrap();
    }
}

/// Every key under `/weft` and its value, read with etcd's own client (what anyone who
/// reads etcd sees).
pub async fn raw_values(endpoints: &str) -> Vec<(String, String)> {
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let all = client
        .get("/weft", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    all.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

/// Panics on a value that is a secret in clear: a PEM private key, or 32 bytes in hex (how
/// an older version kept the shared secrets); checks that each shared secret in `sealed`
/// (`telemetry`, `explain`) is there, sealed (`kekId`, `ciphertext`). The number of sealed
/// values.
pub fn assert_nothing_secret_in_clear(values: &[(String, String)], sealed: &[&str]) -> usize {
    for (key, value) in values {
        assert!(
            !value.contains("PRIVATE KEY"),
            "{key} holds a private key in clear"
        );
        let trimmed = value.trim();
        assert!(
            !(trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit())),
            "{key} holds a secret in clear"
        );
    }
    for name in sealed {
        let key = format!("/weft/state/secrets/{name}");
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} missing"));
        let sealed: serde_json::Value = serde_json::from_str(value).unwrap();
        assert!(
            sealed["kekId"].is_string() && sealed["ciphertext"].is_string(),
            "{key} is not sealed: {value}"
        );
    }
    values
        .iter()
        .map(|(_, v)| v.matches("\"ciphertext\"").count())
        .sum()
}
