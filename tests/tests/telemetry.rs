// Over 400 lines: one demo-mesh scenario (graph, UI, suggestion, fail-open) sharing one slow setup.
//! Telemetry end to end, on the demo mesh (`scripts/demo`: the control plane as a host
//! process, eight workloads with Envoy sidecars and mesh mTLS, the demo policies applied):
//!
//! 1. known counts sent exec-portal -> finance-reporting (allowed) and shadow-dashboard ->
//!    shipping (denied) show up exactly in `GET /api/v1/graph`, the denied edge marked;
//! 2. headless Chromium renders `/ui` with both edges (the DOM is checked, a screenshot saved
//!    under `target/e2e-artifacts/`); the sidecars' tagged stats are in `/stats/prometheus`
//!    and the control plane's `/metrics` has the edges and its xDS metrics;
//! 3. `weft suggest authz --service shipping` applied in dry-run counts a caller never seen as
//!    would-be-denied; enforced, it lets every seen caller through and denies the unseen one;
//! 4. with the control plane gone, requests still succeed and the sidecar counts the batches
//!    it could not deliver in `weft.telemetry.dropped`.
//!
//! Uses the demo's fixed names (network `weft-demo`, `.weft/demo/`), like `demo.rs`: the two
//! test binaries run one after the other, not with a manual `scripts/demo`.
#![cfg(test)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_e2e::{
    api_client, artifacts_dir, chromium, http_client, label_boxes, overlapping, poll_until,
    workspace_root,
};

const NS: &str = "demo";
const EXEC: &str = "spiffe://cluster.local/ns/demo/sa/exec-portal";

/// The demo mesh, removed (`scripts/demo down`) when dropped, also on a panic.
struct DemoMesh {
    weft: PathBuf,
    api: String,
    xds: String,
    /// The API's trust bundle and the admin token (`WEFT_CA_FILE`, `WEFT_TOKEN_FILE`).
    ca_file: String,
    token_file: String,
    /// What `scripts/demo` printed (its report).
    report: String,
}

impl DemoMesh {
    fn start() -> Self {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--quiet", "-p", "weft"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(built.success(), "cargo build -p weft: {built}");
        let weft = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("debug/weft");
        let output = Command::new(root.join("scripts/demo"))
            .env("WEFT_DEMO_SKIP_SETUP", "1")
            .env("WEFT_BIN", &weft)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut mesh = Self {
            weft,
            api: String::new(),
            xds: String::new(),
            ca_file: String::new(),
            token_file: String::new(),
            report: String::from_utf8_lossy(&output.stdout).into_owned(),
        };
        assert!(
            output.status.success(),
            "scripts/demo failed\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let env = std::fs::read_to_string(root.join(".weft/demo/env")).unwrap();
        for word in env.split_whitespace() {
            if let Some(url) = word.strip_prefix("WEFT_SERVER=") {
                mesh.api = url.to_string();
            } else if let Some(url) = word.strip_prefix("WEFT_XDS_SERVER=") {
                mesh.xds = url.to_string();
            } else if let Some(path) = word.strip_prefix("WEFT_CA_FILE=") {
                mesh.ca_file = path.to_string();
            } else if let Some(path) = word.strip_prefix("WEFT_TOKEN_FILE=") {
                mesh.token_file = path.to_string();
            }
        }
        assert!(!mesh.api.is_empty() && !mesh.xds.is_empty(), "{env}");
        mesh
    }

    /// `weft <args>` against the demo's control plane, with `stdin`; its stdout.
    fn weft(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(&self.weft)
            .args(args)
            .env("WEFT_SERVER", &self.api)
            .env("WEFT_CA_FILE", &self.ca_file)
            .env("WEFT_TOKEN_FILE", &self.token_file)
            .env("WEFT_XDS_SERVER", &self.xds)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "weft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The admin token.
    fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// A GET on the API (TLS verified with the demo's bundle, the admin token).
    async fn api_text(&self, path: &str) -> String {
        let pem = std::fs::read(&self.ca_file).unwrap();
        let response = api_client(Some(&pem), &self.token())
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    async fn graph(&self) -> Value {
        serde_json::from_str(&self.api_text("/api/v1/graph?window=1h").await).unwrap()
    }

    /// Stops the demo's control plane (the process this test's `scripts/demo` started).
    fn stop_control_plane(&self) {
        let pid = std::fs::read_to_string(workspace_root().join(".weft/demo/weft.pid")).unwrap();
        let status = Command::new("kill").arg(pid.trim()).status().unwrap();
        assert!(status.success(), "kill {pid}");
    }
}

impl Drop for DemoMesh {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/demo"))
            .arg("down")
            .stdout(Stdio::null())
            .status();
    }
}

/// Host port of a demo sidecar's container port.
fn port(workload: &str, container_port: u16) -> u16 {
    let out = Command::new("docker")
        .args([
            "port",
            &format!("weft-demo-{workload}-sidecar"),
            &format!("{container_port}/tcp"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port {container_port} for {workload}: {text}"))
}

/// `n` calls from `caller`'s app through its sidecar's outbound listener (on the pod's
/// loopback: sent by the app's test-only forwarder, port 9000) to `host`; the statuses seen.
async fn send(caller: &str, host: &str, path: &str, n: usize) -> Vec<u16> {
    let url = format!(
        "http://127.0.0.1:{}/_forward/127.0.0.1:15001{path}",
        port(caller, 9000)
    );
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let response = http_client()
            .get(&url)
            .header("host", host)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

async fn wait_status(caller: &str, host: &str, path: &str, want: u16) {
    poll_until(
        &format!("{caller} -> {host}{path} answers {want}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { Ok((send(caller, host, path, 1).await == [want]).then_some(())) },
    )
    .await
    .unwrap();
}

/// The edge `source -> destination@version` of a graph (a JSON null when absent).
fn edge<'a>(graph: &'a Value, source: &str, destination: &str) -> &'a Value {
    graph["edges"]
        .as_array()
        .and_then(|edges| {
            edges.iter().find(|e| {
                e["source"] == source && e["destination"] == destination && e["version"] == "v1"
            })
        })
        .unwrap_or(&Value::Null)
}

fn total(graph: &Value, source: &str, destination: &str) -> (u64, u64) {
    let e = edge(graph, source, destination);
    (
        e["total_requests"].as_u64().unwrap_or(0),
        e["denied"].as_u64().unwrap_or(0),
    )
}

/// Waits until the two edges' totals stop moving (the demo's last batches are in); returns
/// them.
async fn settled(mesh: &DemoMesh) -> ((u64, u64), (u64, u64)) {
    let mut last = None;
    let start = Instant::now();
    loop {
        let g = mesh.graph().await;
        let now = (
            total(&g, "exec-portal", "finance-reporting"),
            total(&g, "shadow-dashboard", "shipping"),
        );
        if last == Some(now) {
            return now;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never settled");
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

/// `GET path` on the admin interface of `workload`'s sidecar: its unix socket, which the demo
/// mounts from `.weft/demo/admin/<workload>/`.
async fn sidecar_admin(workload: &str, path: &str) -> String {
    let socket = workspace_root()
        .join(".weft/demo/admin")
        .join(workload)
        .join("admin.sock");
    let (status, body) = weft_e2e::unix_get(&socket, path).await.unwrap();
    assert_eq!(status, 200, "{workload} admin {path}: {body}");
    body
}

/// The value of the first admin stat of `workload`'s sidecar named `name`.
async fn sidecar_stat(workload: &str, name: &str) -> u64 {
    sidecar_admin(workload, &format!("/stats?filter=%5E{name}%24"))
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_counts_edges_suggests_least_privilege_and_telemetry_fails_open() {
    let mesh = tokio::task::spawn_blocking(DemoMesh::start).await.unwrap();

    // 1. Known counts, exactly.
    let ((exec_before, _), (shadow_before, shadow_denied_before)) = settled(&mesh).await;
    let (allowed, denied) = (37, 13);
    let statuses = send(
        "exec-portal-v1",
        "finance-reporting",
        "/reports/q3",
        allowed,
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let statuses = send("shadow-dashboard-v1", "shipping", "/orders/1", denied).await;
    assert!(statuses.iter().all(|s| *s == 403), "{statuses:?}");
    let want = (
        (exec_before + allowed as u64),
        (
            shadow_before + denied as u64,
            shadow_denied_before + denied as u64,
        ),
    );
    poll_until(
        "the graph shows the requests sent",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let g = mesh.graph().await;
            let got = (
                total(&g, "exec-portal", "finance-reporting").0,
                total(&g, "shadow-dashboard", "shipping"),
            );
            Ok((got == want).then_some(()))
        },
    )
    .await
    .unwrap();
    let (exec_after, shadow_after) = settled(&mesh).await;
    assert_eq!((exec_after.0, shadow_after), want, "nothing counted twice");
    let g = mesh.graph().await;
    let exec = edge(&g, "exec-portal", "finance-reporting");
    assert_eq!(exec["principals"], serde_json::json!([EXEC]), "{exec}");
    assert_eq!(
        exec["reported_by"],
        serde_json::json!(["inbound", "outbound"])
    );
    assert!(exec["p99_ms"].as_u64().is_some(), "{exec}");
    let shadow = edge(&g, "shadow-dashboard", "shipping");
    assert!(
        shadow["denied"].as_u64().unwrap() >= denied as u64,
        "{shadow}"
    );
    println!("graph edges: exec-portal -> finance-reporting {exec}\nshadow-dashboard -> shipping {shadow}");
    let split = g["splits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "exec-portal" && s["destination"] == "reviews")
        .unwrap();
    println!("observed canary split exec-portal -> reviews: {split}");

    // 2. The page, the sidecars' Prometheus stats, the control plane's /metrics.
    let screenshot = artifacts_dir().unwrap().join("telemetry-graph.png");
    // The login page takes the token from the fragment (never sent to the server); Chromium
    // has no way to be given the demo's CA, so it skips certificate checks here only.
    let ui = format!("{}/ui#token={}", mesh.api, mesh.token());
    let dom = tokio::task::spawn_blocking(move || chromium(&ui, &screenshot).unwrap())
        .await
        .unwrap();
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page did not load the graph:\n{dom}"
    );
    for needle in [
        "data-edge=\"exec-portal-&gt;finance-reporting@v1\"",
        "data-edge=\"shadow-dashboard-&gt;shipping@v1\" class=\"edge denied\"",
    ] {
        let plain = needle.replace("&gt;", ">");
        assert!(
            dom.contains(needle) || dom.contains(&plain),
            "{needle} not rendered:\n{dom}"
        );
    }
    assert!(dom.contains("DENIED"), "{dom}");
    // Every service box and edge label of the demo mesh as the browser drew it: none overlaps
    // another, no text leaves its box.
    let boxes = label_boxes(&dom);
    assert!(boxes.len() >= 10, "{boxes:?}");
    assert_eq!(
        overlapping(&boxes),
        Vec::<(String, String)>::new(),
        "{boxes:?}"
    );
    println!(
        "{} boxes on the demo's graph page, none overlapping",
        boxes.len()
    );
    // The demo's ratings fault: its injected aborts (answered by reviews' own sidecar, never
    // seen by ratings) are on the edge, with their cause.
    let injected: u64 = mesh
        .report
        .lines()
        .find_map(|l| l.trim().strip_prefix("fault    ratings: 503 injected "))
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fault line in the demo's report:\n{}", mesh.report));
    let ratings = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "reviews" && e["destination"] == "ratings")
        .unwrap();
    println!("reviews -> ratings (demo: {injected} injected): {ratings}");
    let (requests, aborted) = (
        ratings["requests"].as_u64().unwrap(),
        ratings["aborted"].as_u64().unwrap(),
    );
    assert!(aborted >= injected && injected > 0, "{ratings}");
    assert_eq!(ratings["local_replies"]["aborted"], aborted);
    assert_eq!(
        requests,
        aborted + ratings["status"]["2xx"].as_u64().unwrap(),
        "{ratings}"
    );
    assert!(ratings["errors"].as_u64().unwrap() >= aborted);
    println!(
        "screenshot: {}",
        artifacts_dir()
            .unwrap()
            .join("telemetry-graph.png")
            .display()
    );
    let prometheus = sidecar_admin("finance-reporting-v1", "/stats/prometheus").await;
    let tagged = prometheus
        .lines()
        .find(|l| {
            l.contains("weft_telemetry_requests{")
                && l.contains("weft_source=\"exec-portal\"")
                && l.contains("weft_reporter=\"inbound\"")
        })
        .unwrap_or_else(|| panic!("no tagged telemetry stat:\n{prometheus}"));
    println!("sidecar stat: {tagged}");
    let metrics = mesh.api_text("/metrics").await;
    for needle in [
        // Eight workloads and the edge gateway.
        "weft_xds_connected_sidecars 9",
        "weft_edge_requests_total{reporter=\"inbound\",source=\"exec-portal\",destination=\"finance-reporting\",version=\"v1\"}",
        "weft_xds_push_ack_seconds_bucket{le=\"+Inf\"}",
        "weft_xds_nacks_total",
    ] {
        assert!(metrics.contains(needle), "{needle} not in /metrics:\n{metrics}");
    }

    // 3. Least privilege for shipping: exec-portal called it; shadow-dashboard was denied
    // (left out); reviews never called it.
    let yaml = mesh.weft(
        &[
            "suggest",
            "authz",
            "--service",
            "shipping",
            "-n",
            NS,
            "--window",
            "1h",
            "--dry-run",
        ],
        "",
    );
    println!("suggested:\n{yaml}");
    assert!(yaml.contains(&format!("- {EXEC}")), "{yaml}");
    assert!(
        yaml.contains("left out: spiffe://cluster.local/ns/demo/sa/shadow-dashboard"),
        "{yaml}"
    );
    assert!(yaml.contains("dryRun: true"), "{yaml}");
    assert!(!yaml.contains("sa/reviews"), "{yaml}");
    wait_status("reviews-v1", "shipping", "/orders/1", 200).await;
    let dry_before = edge(&mesh.graph().await, "reviews", "shipping")["dry_run_denied"]
        .as_u64()
        .unwrap_or(0);
    mesh.weft(&["apply", "-f", "-", "--ack-timeout", "60"], &yaml);
    // Dry run: the unseen caller still gets through, and is counted as would-be-denied.
    assert_eq!(
        send("reviews-v1", "shipping", "/orders/1", 5).await,
        [200; 5]
    );
    poll_until(
        "reviews -> shipping counted as dry-run denied",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let g = mesh.graph().await;
            let n = edge(&g, "reviews", "shipping")["dry_run_denied"]
                .as_u64()
                .unwrap_or(0);
            Ok((n >= dry_before + 5).then_some(()))
        },
    )
    .await
    .unwrap();
    // Enforced: every seen caller passes on the paths it used, the unseen one is denied.
    // exec-portal called shipping's /orders/1 only at policy version 1, before any policy
    // (the demo's readiness check): counted all the same, so allowed (a sidecar reports what
    // it counted when a new configuration retires its filter, D91). /reports/q3 came from
    // the demo's report, after the policies.
    mesh.weft(
        &["apply", "-f", "-", "--ack-timeout", "60"],
        &yaml.replace("dryRun: true", "dryRun: false"),
    );
    wait_status("reviews-v1", "shipping", "/orders/1", 403).await;
    for path in ["/orders/1", "/reports/q3"] {
        assert!(yaml.contains(&format!("- {path}")), "{path}: {yaml}");
        assert_eq!(
            send("exec-portal-v1", "shipping", path, 5).await,
            [200; 5],
            "{path}"
        );
    }
    assert_eq!(
        send("shadow-dashboard-v1", "shipping", "/orders/1", 2).await,
        [403; 2]
    );

    // 4. Control plane down: requests succeed, batches are dropped and counted.
    let dropped = "wasmcustom.weft.telemetry.dropped";
    let before = sidecar_stat("exec-portal-v1", dropped).await;
    mesh.stop_control_plane();
    let statuses = send("exec-portal-v1", "finance-reporting", "/reports/q3", 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    poll_until(
        "exec-portal's sidecar counts the undeliverable requests",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let now = sidecar_stat("exec-portal-v1", dropped).await;
            Ok((now >= before + 20).then_some(now))
        },
    )
    .await
    .unwrap();
    let statuses = send("exec-portal-v1", "finance-reporting", "/reports/q3", 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    println!(
        "control plane down: 40/40 requests answered 200; {dropped} {} -> {}",
        before,
        sidecar_stat("exec-portal-v1", dropped).await
    );
}
