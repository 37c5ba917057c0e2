//! The real `weft serve` (REST + xDS) driving a real Envoy sidecar, through the real CLI:
//! `weft apply` waits for the sidecar's ACK, a bad policy is refused with field paths, and a
//! control plane killed with SIGKILL leaves the sidecar enforcing the last policy (0
//! mis-authorized requests while it is down); restarted on the same data, the sidecar
//! reconnects and runs the same acknowledged version.
//!
//! Why a host process rather than a container: it is the real binary and a real SIGKILL, the
//! test needs no image build, and Envoy reaches it on the test network's gateway IP exactly
//! as it reaches an in-process server.
#![cfg(test)]

mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weft_e2e::{
    http_client, poll_until, xds_support::network_gateway, EnvoyOptions, Pod, TestNet,
    UpstreamOptions,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams};
use xds_common::{status_of, until_statuses, INBOUND};

/// `weft serve` with xDS on `xds_port` (0: any), its CLI told both addresses.
fn start(bin: &Path, data: &Path, xds_port: u16) -> WeftServer {
    let mut server = WeftServer::start(
        bin,
        data,
        &[
            "--xds-listen",
            &format!("0.0.0.0:{xds_port}"),
            // A service outside the mesh, resolved by DNS (the test app's own name).
            "--static-service",
            "outside=finance:8080",
        ],
    );
    let xds = format!("http://127.0.0.1:{}", server.xds_port);
    server.cli_flags.extend(["--xds-server".to_string(), xds]);
    server
}

impl WeftServer {
    async fn sidecars(&self) -> serde_json::Value {
        http_client()
            .get(format!("http://127.0.0.1:{}/v1/sidecars", self.xds_port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn policy(dir: &Path, name: &str, allowed: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{name: finance}}
spec: {{port: 8080, versions: [v1]}}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: finance-readers}}
spec:
  target: {{service: finance}}
  action: ALLOW
  rules:
  - to: {{methods: [GET], paths: [\"/{allowed}/*\"]}}
"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_serve_apply_waits_for_acks_and_a_killed_control_plane_loses_nothing() {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let net = TestNet::new("xds-restart");
    let gateway = network_gateway(&net).unwrap();
    let mut server = start(&bin, data.path(), 0);

    let (code, out, err) = server.cli(
        &bin,
        &[
            "apply",
            "-f",
            policy(files.path(), "a", "a").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    let params = BootstrapParams::new("finance", "v1", &gateway, server.xds_port);
    let envoy = Pod::start(
        &net,
        EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]),
        UpstreamOptions::new("finance", "v1"),
    )
    .await
    .unwrap();
    let url = |path: &str| format!("{}{path}", envoy.url(INBOUND));
    until_statuses(
        "policy A",
        &[(url("/a/1"), 200), (url("/b/1"), 403)],
        Duration::from_secs(30),
    )
    .await;

    // The static entry reaches the sidecar's CDS (after the mesh warm-up).
    poll_until(
        "static cluster `outside` in CDS",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            let clusters = envoy.admin_get("/clusters").await?;
            Ok(clusters
                .lines()
                .any(|l| l.starts_with("outside::"))
                .then_some(()))
        },
    )
    .await
    .unwrap();

    // apply B: the CLI returns once the sidecar acknowledged it.
    let started = Instant::now();
    let (code, out, err) = server.cli(
        &bin,
        &[
            "apply",
            "-f",
            policy(files.path(), "b", "b").to_str().unwrap(),
        ],
    );
    let cli_ms = started.elapsed().as_millis();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("1 of 1 sidecar(s) acknowledged"), "{err}");
    assert_eq!(
        status_of(&url("/b/1")).await,
        200,
        "enforced when apply returned"
    );
    assert_eq!(status_of(&url("/a/1")).await, 403);
    println!(
        "weft apply (store + compile + push + ACK wait) returned after {cli_ms} ms; progress: {:?}",
        err.trim()
    );
    let version = server.sidecars().await["revision"].as_u64().unwrap();

    // A bad policy: refused with field paths, B still enforced.
    let bad = files.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(policy(files.path(), "c", "c"))
            .unwrap()
            .replace("methods:", "methodz:"),
    )
    .unwrap();
    let (code, out, err) = server.cli(&bin, &["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("methodz"), "{err}");
    println!("bad policy refused:\n{}", err.trim());
    assert_eq!(status_of(&url("/b/1")).await, 200);
    assert_eq!(status_of(&url("/c/1")).await, 403);

    // weft status shows the sidecar and what it acknowledged.
    let (code, out, err) = server.cli(&bin, &["status"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("finance-v1") && out.contains(&format!("\t{version}\t")),
        "{out}"
    );
    println!("weft status:\n{out}");

    // Kill -9: the sidecar keeps enforcing B, with no mis-authorized request meanwhile.
    let xds_port = server.xds_port;
    server.kill();
    let mut wrong = 0;
    let mut sent = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        for (path, want) in [("/b/1", 200), ("/a/1", 403), ("/c/1", 403)] {
            sent += 1;
            if status_of(&url(path)).await != want {
                wrong += 1;
            }
        }
    }
    println!("control plane down: {sent} requests, {wrong} mis-authorized");
    assert_eq!(wrong, 0);

    // Restart on the same data and port: the sidecar reconnects and runs the same version.
    let restarted = Instant::now();
    let server = start(&bin, data.path(), xds_port);
    let reconnected = poll_until(
        "sidecar back and synced",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let body = server.sidecars().await;
            let synced = body["sidecars"].as_array().is_some_and(|list| {
                list.iter().any(|s| {
                    s["connected"] == true && s["synced_revision"].as_u64() == Some(version)
                })
            });
            Ok(synced.then_some(()))
        },
    )
    .await;
    if let Err(error) = reconnected {
        panic!("{error}\n{}", envoy.logs().await);
    }
    println!(
        "restarted: sidecar reconnected and acknowledged version {version} after {} ms",
        restarted.elapsed().as_millis()
    );
    assert_eq!(
        server.sidecars().await["revision"].as_u64(),
        Some(version),
        "no version lost"
    );
    assert_eq!(status_of(&url("/b/1")).await, 200);
    assert_eq!(status_of(&url("/a/1")).await, 403);
    drop(server);
}
