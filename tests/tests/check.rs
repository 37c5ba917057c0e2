//! `weft check` against real traffic: the real `weft serve --ca` with the demo's policy files
//! (envoy-configs/examples/demo/policies) plus a JWT rule, an IP rule and a dry-run policy,
//! five real Envoy sidecars in namespace `demo` joined with their own tokens (mesh mTLS), and
//! a table of calls (callers × paths × JWTs, each from its caller's own address) sent for real
//! through the callers' sidecars and checked with the real CLI (`weft check -o json`, which
//! asks `POST /api/v1/check`). For every call the test compares
//!
//! - the status (200 from the app when allowed) and the CLI's exit code (0 / 7);
//! - the deciding policy and rule: the target sidecar's access-log `weft` field for a denial
//!   (`authz: 403 by <policy>: <reason>`), its authz debug line for an allow
//!   (`weft-authz: allow (<reason>)`), against the policy and the filter's reason in the
//!   check's trace;
//! - dry-run outcomes: the real `payments-rehearsal.dry_run_denied` counter against the
//!   check's `dryRunDenied`.
//!
//! Then `weft check --matrix` and the offline `weft check -f` on the same files.
#![cfg(test)]

mod pki_common;
mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_e2e::{
    http_client, poll_until, workspace_root, xds_support::network_gateway, EnvoyOptions, Pod,
    TestNet, UpstreamOptions, ADMIN_SOCKET,
};
use weft_serve::{ca_mesh_args, weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams, XdsUpstreamTls};
use xds_common::{INBOUND, OUTBOUND};

/// The demo login service's HS256 secret (its gateway policy, 15-gateway.yaml).
const LOGIN_SECRET: &str = "weft-demo-login-secret-32-bytes-long!";

/// On top of the demo's documents (shared with weft-check's unit tests): a JWT rule and an
/// IP rule on shipping, a dry-run policy on payments. Its placeholder address becomes
/// exec-portal's once the pod runs.
const EXTRA: &str = include_str!("../../control/check/testdata/demo-extra.yaml");
const PLACEHOLDER_IP: &str = "192.0.2.1";

const PODS: [&str; 5] = [
    "exec-portal",
    "shadow-dashboard",
    "finance-reporting",
    "shipping",
    "payments",
];
const CALLERS: [&str; 3] = ["exec-portal", "shadow-dashboard", "payments"];
const TARGETS: [(&str, &str, &str); 5] = [
    ("finance-reporting", "GET", "/reports/q3"),
    ("shipping", "GET", "/orders/1"),
    ("shipping", "GET", "/admin/users"),
    ("shipping", "GET", "/internal/stock"),
    ("payments", "POST", "/pay/1"),
];

/// The demo's policy files and the extra documents, as one file.
fn policies(exec_ip: &str) -> String {
    let dir = workspace_root().join("envoy-configs/examples/demo/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let mut text: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    text.push(EXTRA.replace(PLACEHOLDER_IP, exec_ip));
    text.join("\n---\n")
}

fn token(role: &str) -> String {
    pki_common::hs256_jwt(
        LOGIN_SECRET,
        &json!({"iss": "https://login.demo.weft", "sub": format!("{role}-1"),
                "role": role, "exp": pki_common::now() + 900}),
    )
}

async fn api(server: &WeftServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}{path}", server.api);
    let request = match method {
        "POST" => http_client().post(url).json(&body.unwrap_or(Value::Null)),
        _ => http_client().get(url),
    };
    let response = request
        .header("authorization", server.authorization())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

/// Polls until every sidecar is connected and has the current revision (module downloads
/// are NACKed and retried while several plugins fetch the same module on a loaded machine).
async fn synced(server: &WeftServer, count: usize) {
    let synced = poll_until(
        "sidecars synced",
        Duration::from_secs(300),
        Duration::from_millis(500),
        || async {
            let body = api(server, "GET", "/api/v1/xds/sidecars", None).await;
            let revision = body["revision"].as_u64();
            let ok = body["sidecars"].as_array().is_some_and(|list| {
                list.len() == count
                    && list.iter().all(|s| {
                        s["connected"] == true && s["synced_revision"].as_u64() == revision
                    })
            });
            Ok(ok.then_some(()))
        },
    )
    .await;
    if let Err(e) = synced {
        let body = api(server, "GET", "/api/v1/xds/sidecars", None).await;
        panic!("{e}: {body:#}");
    }
}

async fn start_pod(
    net: &TestNet,
    server: &WeftServer,
    gateway: &str,
    bundle: &str,
    service: &str,
) -> Pod {
    let body = json!({"service": service, "namespace": "demo", "ttlSeconds": 3600});
    let created = api(server, "POST", "/api/v1/tokens", Some(body)).await;
    let mut params = BootstrapParams::new(service, "v1", gateway, server.xds_port);
    params.namespace = "demo".into();
    params.admin_socket = Some(ADMIN_SOCKET.into());
    params.sds = true;
    params.token = Some(created["token"].as_str().unwrap().to_string());
    params.xds_tls = Some(XdsUpstreamTls::new(bundle, "cluster.local", gateway).unwrap());
    let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap())
        .ports([INBOUND])
        .component_log_level("wasm:debug");
    options.hostname = format!("{service}-v1");
    Pod::start(net, options, UpstreamOptions::new(service, "v1"))
        .await
        .unwrap()
}

/// One row of the table.
#[derive(Clone, Debug)]
struct Row {
    from: &'static str,
    to: &'static str,
    method: &'static str,
    path: &'static str,
    jwt: Option<&'static str>,
    ip: String,
}

/// What one side says about a call: status, deciding policy, the filter's reason, and the
/// dry-run policies that would have denied it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    policy: Option<String>,
    reason: String,
    dry_run_denied: Vec<String>,
}

/// Inbound access-log lines' `weft` field (JSON lines with `direction: inbound`).
fn inbound_log(logs: &str) -> Vec<Option<String>> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|l| l["direction"] == "inbound")
        .map(|l| l["weft"].as_str().map(str::to_string))
        .collect()
}

/// The reasons of authz's debug lines `weft-authz: allow (<reason>)`.
fn allow_lines(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("weft-authz: allow (")?;
            Some(rest.trim_end().strip_suffix(')')?.to_string())
        })
        .collect()
}

async fn dry_run_count(pod: &Pod) -> u64 {
    pod.stat("wasmcustom.weft.authz.policy.payments-rehearsal.dry_run_denied")
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Sends `row` through its caller's outbound listener and reads what the target decided.
async fn real(row: &Row, caller: &Pod, target: &Pod, jwt: Option<&str>) -> Outcome {
    let before_log = inbound_log(&target.logs().await).len();
    let before_allow = allow_lines(&target.logs().await).len();
    let before_dry = dry_run_count(target).await;
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut request = http_client()
        .request(
            method,
            format!("{}{}", caller.local_url(OUTBOUND), row.path),
        )
        .header("host", row.to)
        .timeout(Duration::from_secs(5));
    if let Some(token) = jwt {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let status = request.send().await.unwrap().status().as_u16();
    let (weft, allow) = poll_until(
        "the target's log line",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let logs = target.logs().await;
            let lines = inbound_log(&logs);
            let allows = allow_lines(&logs);
            let line = lines.get(before_log).cloned();
            let allow = allows.get(before_allow).cloned();
            Ok(match (line, allow) {
                (Some(Some(weft)), _) => Some((Some(weft), None)),
                (Some(None), Some(allow)) => Some((None, Some(allow))),
                _ => None,
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{row:?}: {e}"));
    let dry = dry_run_count(target).await - before_dry;
    let (policy, reason) = match (weft, allow) {
        // `authz: 403 by <policy>: <reason>`
        (Some(weft), _) => {
            let rest = weft.strip_prefix("authz: ").unwrap_or(&weft);
            let (_, rest) = rest.split_once(" by ").unwrap();
            let (policy, reason) = rest.split_once(": ").unwrap();
            (Some(policy.to_string()), reason.to_string())
        }
        (None, Some(allow)) => (None, allow),
        (None, None) => unreachable!(),
    };
    Outcome {
        status,
        policy,
        reason,
        dry_run_denied: if dry > 0 {
            vec!["payments-rehearsal".into()]
        } else {
            Vec::new()
        },
    }
}

/// `weft check -o json` for `row`; the exit code and the outcome it reports.
fn checked(
    bin: &Path,
    server: &WeftServer,
    row: &Row,
    jwt_file: Option<&Path>,
) -> (i32, Outcome, Value) {
    let mut args = vec![
        "check", "--from", row.from, "--to", row.to, "--ip", &row.ip, "-o", "json",
    ];
    let jwt = jwt_file.map(|p| p.display().to_string());
    if let Some(jwt) = &jwt {
        args.extend(["--jwt", jwt]);
    }
    args.extend([row.method, row.path]);
    let (code, out, err) = server.cli(bin, &args);
    let trace: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let authz = &trace["authz"];
    let allowed = trace["allowed"] == true;
    let outcome = Outcome {
        status: trace["status"].as_u64().map_or(200, |s| s as u16),
        // The access log names the policy of a denial only (an allow's is in its reason).
        policy: (!allowed).then(|| authz["policy"].as_str().unwrap_or("").to_string()),
        reason: authz["reason"].as_str().unwrap_or("").to_string(),
        dry_run_denied: authz["dryRunDenied"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    (code, outcome, trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weft_check_agrees_with_real_envoy_on_every_call_of_the_table() {
    let started = Instant::now();
    let stage = |what: &str| println!("[{:5.1} s] {what}", started.elapsed().as_secs_f64());
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let net = TestNet::new("check");
    let gateway = network_gateway(&net).unwrap();
    let args = ca_mesh_args(&gateway);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = WeftServer::start(&bin, data.path(), &args);
    let policy_file = files.path().join("policies.yaml");
    let apply = |text: &str| {
        std::fs::write(&policy_file, text).unwrap();
        server.apply_file(&bin, &policy_file);
    };
    // exec-portal's address is not known yet: a documentation address until the pods run.
    apply(&policies(PLACEHOLDER_IP));
    let ca = api(&server, "GET", "/api/v1/ca", None).await;
    let bundle = ca["trustBundle"].as_str().unwrap().to_string();
    let mut pods = Vec::new();
    for service in PODS {
        pods.push((
            service,
            start_pod(&net, &server, &gateway, &bundle, service).await,
        ));
    }
    let pod = |name: &str| &pods.iter().find(|(n, _)| *n == name).unwrap().1;
    let exec_ip = pod("exec-portal").ip().await.unwrap();
    apply(&policies(&exec_ip));
    synced(&server, PODS.len()).await;
    stage("mesh up, policies applied");

    let jwts = [("customer", token("customer")), ("admin", token("admin"))];
    let jwt_files: Vec<(String, PathBuf)> = jwts
        .iter()
        .map(|(role, t)| {
            let path = files.path().join(format!("{role}.jwt"));
            std::fs::write(&path, t).unwrap();
            (role.to_string(), path)
        })
        .collect();
    let mut rows = Vec::new();
    for from in CALLERS {
        let ip = pod(from).ip().await.unwrap();
        for (to, method, path) in TARGETS {
            for jwt in [None, Some("customer"), Some("admin")] {
                rows.push(Row {
                    from,
                    to,
                    method,
                    path,
                    jwt,
                    ip: ip.clone(),
                });
            }
        }
    }
    assert!(rows.len() >= 30);

    let mut agree = 0;
    let mut disagreements = Vec::new();
    let mut allowed = 0;
    println!(
        "{:<17} {:<18} {:<22} {:<9} {:>6} {:>6}  policy / reason",
        "from", "to", "call", "jwt", "real", "check"
    );
    for row in &rows {
        let jwt = row
            .jwt
            .and_then(|role| jwts.iter().find(|(r, _)| *r == role))
            .map(|(_, t)| t.as_str());
        let jwt_file = row
            .jwt
            .and_then(|role| jwt_files.iter().find(|(r, _)| r == role))
            .map(|(_, p)| p.as_path());
        let real = real(row, pod(row.from), pod(row.to), jwt).await;
        let (code, check, trace) = checked(&bin, &server, row, jwt_file);
        let expected_code = if check.status == 200 { 0 } else { 7 };
        println!(
            "{:<17} {:<18} {:<22} {:<9} {:>6} {:>6}  {} / {}",
            row.from,
            row.to,
            format!("{} {}", row.method, row.path),
            row.jwt.unwrap_or("-"),
            real.status,
            check.status,
            check.policy.as_deref().unwrap_or("-"),
            check.reason
        );
        if real == check && code == expected_code {
            agree += 1;
        } else {
            disagreements.push(format!(
                "{row:?}\n  real:  {real:?}\n  check: {check:?} (exit {code})\n  trace: {trace}"
            ));
        }
        if real.status == 200 {
            allowed += 1;
        }
    }
    stage(&format!(
        "table: {} calls, {agree} agree, {allowed} allowed, {} denied",
        rows.len(),
        rows.len() - allowed
    ));
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // The table is not one-sided: both outcomes, and several deciding policies.
    assert!(allowed >= 10 && rows.len() - allowed >= 10, "{allowed}");

    // A dry-run policy shows in the check's output (and the real counter moved, above).
    let shadow = rows
        .iter()
        .find(|r| r.from == "shadow-dashboard" && r.to == "payments")
        .unwrap();
    let (code, outcome, trace) = checked(&bin, &server, shadow, None);
    assert_eq!(code, 0);
    assert_eq!(
        outcome.dry_run_denied,
        vec!["payments-rehearsal".to_string()]
    );
    let (code, text, _) = server.cli(
        &bin,
        &[
            "check",
            "--from",
            "shadow-dashboard",
            "--to",
            "payments",
            "POST",
            "/pay/1",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("dry run would deny: payments-rehearsal"),
        "{text}"
    );
    assert!(
        text.contains("breaker  payments guarded (opens after 3 consecutive failures"),
        "{text}"
    );
    assert_eq!(trace["canary"]["applies"], false);

    // The matrix: who can call whom on GET /.
    let (code, out, err) = server.cli(&bin, &["check", "--matrix", "-o", "json", "GET", "/"]);
    assert_eq!(code, 0, "{err}");
    let matrix: Value = serde_json::from_str(&out).unwrap();
    let cell = |from: &str, to: &str| {
        matrix["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .map(|c| (c["allowed"].as_bool().unwrap(), c["policy"].clone()))
            .unwrap()
    };
    assert_eq!(
        cell("demo/exec-portal", "demo/finance-reporting"),
        (true, json!("finance-exec-only"))
    );
    assert_eq!(
        cell("demo/shipping", "demo/finance-reporting"),
        (false, json!("default-deny"))
    );
    assert_eq!(
        cell("demo/shadow-dashboard", "demo/shipping"),
        (false, json!("shipping-no-shadow-dashboard"))
    );
    let (_, table, _) = server.cli(&bin, &["check", "--matrix"]);
    println!("{table}");

    // Offline on the same files: the same decision, with no server involved.
    let row = rows
        .iter()
        .find(|r| r.from == "payments" && r.to == "shipping" && r.path == "/internal/stock")
        .unwrap();
    let (_, online, _) = checked(&bin, &server, row, None);
    let offline = std::process::Command::new(&bin)
        .args(["check", "-f", policy_file.to_str().unwrap(), "-o", "json"])
        .args(["--from", row.from, "--to", row.to, "--ip", &row.ip])
        .args([row.method, row.path])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(7));
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(offline["authz"]["policy"], "shipping-internal");
    assert_eq!(offline["authz"]["reason"], online.reason);
    stage("matrix and offline checked");
}
