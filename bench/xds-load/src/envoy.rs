//! Real sidecars: Envoy host processes (`--concurrency 1`) with bootstraps made by
//! `weft bootstrap`'s code, each with its own ports. "Enforced" is observed in traffic: after
//! an apply, each sidecar's inbound listener is polled for the newly denied path until it
//! answers 403 (before, the request passes authz and gets 503 from the absent local app).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_xds::bootstrap::{render_value, BootstrapParams};

use crate::fleet::service_name;
use crate::server::{ServerSpec, WeftServer};
use crate::stats::Summary;
use crate::{apply_async, policy};

#[derive(Clone, Debug)]
pub struct EnvoySpec {
    pub envoy: PathBuf,
    pub sidecars: usize,
    pub namespace: String,
    pub services: usize,
    pub versions: usize,
    /// Sidecar `i` listens on `base_port + 3i` (inbound), `+1` (outbound), `+2` (admin).
    pub base_port: u16,
    pub core: Option<usize>,
    pub applies: usize,
    pub pause: Duration,
    pub timeout: Duration,
    /// Time between two probes of one sidecar.
    pub poll: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvoyResult {
    pub sidecars: usize,
    pub applies: usize,
    /// What "enforced" means here.
    pub enforced: String,
    /// From starting the Envoys to every one enforcing the first policy (includes the
    /// modules' download and compilation).
    pub first_enforced_s: f64,
    /// Per apply: from the POST to the last sidecar answering 403.
    pub apply_to_all_enforced_ms: Summary,
    pub apply_to_each_enforced_ms: Summary,
    pub poll_interval_ms: f64,
}

/// Envoy processes, killed on drop.
struct Sidecars(Vec<Child>);

impl Drop for Sidecars {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn run(server_spec: &ServerSpec, spec: &EnvoySpec) -> anyhow::Result<EnvoyResult> {
    let label = format!("envoy-{}", spec.sidecars);
    let server = WeftServer::start(server_spec, &label)?;
    let marker = |k: usize| format!("envoy{}r{k}", spec.sidecars);
    let documents = |k: usize| {
        policy::documents(
            &spec.namespace,
            spec.services,
            spec.versions,
            None,
            &marker(k),
        )
    };
    apply_async(&server, documents(0)).await?;
    let dir = server_spec.work_dir.join(&label);
    std::fs::create_dir_all(&dir)?;
    let mut sidecars = Sidecars(Vec::new());
    let mut inbound = Vec::new();
    let started = Instant::now();
    for i in 0..spec.sidecars {
        let port = spec.base_port + 3 * u16::try_from(i)?;
        sidecars.0.push(start_envoy(spec, &server, &dir, i, port)?);
        inbound.push(port);
    }
    wait_enforced(&inbound, &marker(0), Instant::now(), spec)
        .await
        .with_context(|| format!("first policy; Envoy logs in {}", dir.display()))?;
    let first_enforced_s = started.elapsed().as_secs_f64();
    eprintln!(
        "  {} Envoy sidecars enforce the first policy after {first_enforced_s:.1} s",
        spec.sidecars
    );
    let mut all = Vec::new();
    let mut each = Vec::new();
    for k in 1..=spec.applies {
        let start = Instant::now();
        let probes = tokio::spawn({
            let (inbound, marker, spec) = (inbound.clone(), marker(k), spec.clone());
            async move { wait_enforced(&inbound, &marker, start, &spec).await }
        });
        apply_async(&server, documents(k)).await?;
        let latencies = probes.await??;
        all.extend(latencies.iter().max().copied());
        each.extend(latencies);
        tokio::time::sleep(spec.pause).await;
    }
    drop(sidecars);
    drop(server);
    Ok(EnvoyResult {
        sidecars: spec.sidecars,
        applies: spec.applies,
        enforced: "observed in traffic: the newly denied path answers 403 with the new policy's deny body on the sidecar's inbound listener".into(),
        first_enforced_s,
        apply_to_all_enforced_ms: Summary::of(&all),
        apply_to_each_enforced_ms: Summary::of(&each),
        poll_interval_ms: spec.poll.as_secs_f64() * 1000.0,
    })
}

fn start_envoy(
    spec: &EnvoySpec,
    server: &WeftServer,
    dir: &std::path::Path,
    i: usize,
    port: u16,
) -> anyhow::Result<Child> {
    let mut params = BootstrapParams::new(
        &service_name(i % spec.services.max(1)),
        &format!("v{}", 1 + (i / spec.services.max(1)) % spec.versions.max(1)),
        "127.0.0.1",
        server.xds_port,
    );
    params.namespace = spec.namespace.clone();
    params.node_id = Some(format!("envoy-{i:03}"));
    params.inbound_port = port;
    params.outbound_port = port + 1;
    params.inbound_address = Some(format!("127.0.0.1:{port}"));
    // Nothing listens there: a request authz lets through gets 503.
    params.app_port = 1;
    let mut bootstrap = render_value(&params)?;
    let admin = bootstrap
        .pointer_mut("/admin/address/socket_address/port_value")
        .context("the bootstrap has no admin port")?;
    *admin = serde_json::json!(port + 2);
    let config = dir.join(format!("envoy-{i:03}.json"));
    std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap)?)?;
    let log = std::fs::File::create(dir.join(format!("envoy-{i:03}.log")))?;
    let mut command = match spec.core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(&spec.envoy);
            c
        }
        None => Command::new(&spec.envoy),
    };
    command
        .arg("-c")
        .arg(&config)
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warning",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    command
        .spawn()
        .with_context(|| format!("starting {}", spec.envoy.display()))
}

/// Probes every sidecar until it denies `path` with the deny body of `marker`'s policy; the
/// time from `start` for each.
async fn wait_enforced(
    ports: &[u16],
    marker: &str,
    start: Instant,
    spec: &EnvoySpec,
) -> anyhow::Result<Vec<Duration>> {
    let path = policy::denied_path(marker);
    let mut probes = tokio::task::JoinSet::new();
    for &port in ports {
        let (path, marker, poll, timeout) = (
            path.to_string(),
            marker.to_string(),
            spec.poll,
            spec.timeout,
        );
        probes.spawn(async move {
            loop {
                if denied(port, &path, &marker).await {
                    return Ok(start.elapsed());
                }
                if start.elapsed() > timeout {
                    anyhow::bail!("sidecar on port {port} does not deny {path} after {timeout:?}");
                }
                tokio::time::sleep(poll).await;
            }
        });
    }
    let mut out = Vec::new();
    while let Some(result) = probes.join_next().await {
        out.push(result??);
    }
    Ok(out)
}

/// `GET path` on a fresh HTTP/1.1 connection is answered 403 with the body `marker`'s policy
/// sets, so neither a failing-closed filter nor another policy counts.
async fn denied(port: u16, path: &str, marker: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        read_response(&mut stream).await
    };
    match probe.await {
        Ok(response) => {
            response.starts_with(b"HTTP/1.1 403")
                && memchr::memmem::find(&response, policy::deny_body(marker).as_bytes()).is_some()
        }
        Err(_) => false,
    }
}

/// Reads one response up to the end of its body (by `content-length`). Not to the end of the
/// connection: Envoy waits up to its `delayed_close_timeout` (1 s) for the client to close first.
async fn read_response(stream: &mut tokio::net::TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..n]);
        let Some(head_end) = memchr::memmem::find(&response, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if response.len() >= head_end + 4 + length {
            return Ok(response);
        }
    }
}
