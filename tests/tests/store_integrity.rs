//! (Over 400 lines: two scenarios against the same real server set-up, each one story.)
//! The policy log of the real `weft serve`, with a real Envoy sidecar enforcing what it holds:
//! compaction (automatic and `weft store compact`) keeps `weft history`, `weft history <v>`
//! and `weft rollback <v>` working for compacted versions, enforced in the sidecar; a log
//! damaged in the middle stops the server with a message naming the record, `weft store
//! verify` names it too, and `weft store repair --truncate-at N` drops it knowingly.
//! And secrets: every route of the real server is called and searched for the configured
//! HS256 secrets; the translated view shows the telemetry keys only as digests.
#![cfg(test)]

mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weft_e2e::{
    api_client, xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams};
use xds_common::{until_statuses, INBOUND};

const SECRET: &str = "store-integrity-hs256-secret-32-bytes";

/// finance, allowing GET /<allowed>/*, with a JWT provider holding `secret`.
fn policy(dir: &Path, allowed: &str, secret: &str) -> PathBuf {
    let path = dir.join(format!("{allowed}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{name: finance}}
spec: {{port: 8080, versions: [v1]}}
---
apiVersion: weft.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: finance-jwt}}
spec:
  target: {{service: finance}}
  jwtRules: [{{issuer: https://issuer.example, hs256Secrets: ['{secret}']}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: finance-readers}}
spec:
  target: {{service: finance}}
  rules:
  - to: {{methods: [GET], paths: [\"/{allowed}/*\"]}}
"
        ),
    )
    .unwrap();
    path
}

/// `weft serve` with xDS on `xds_port` (0: any; a restart reuses the sidecar's).
fn start(bin: &Path, data: &Path, xds_port: u16, extra: &[&str]) -> WeftServer {
    let listen = format!("0.0.0.0:{xds_port}");
    let mut args = vec!["--xds-listen", &listen, "--mesh-warmup-ms", "0"];
    args.extend_from_slice(extra);
    WeftServer::start(bin, data, &args)
}

/// Runs `weft` with `args`; (exit code, stdout, stderr).
fn weft(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(what: &str, (code, out, err): (i32, String, String)) -> String {
    assert_eq!(code, 0, "{what}: {out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_history_and_rollback_and_a_damaged_log_stops_the_server() {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let dd = data_dir.to_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let net = TestNet::new("store-integrity");
    let gateway = network_gateway(&net).unwrap();
    // Compacted on its own after every 3 records.
    let server = start(&bin, &data_dir, 0, &["--compact-after-records", "3"]);
    let xds_port = server.xds_port;
    for allowed in ["a", "b", "c", "d"] {
        let file = policy(files.path(), allowed, SECRET);
        ok(
            "apply",
            server.cli(&bin, &["apply", "-f", file.to_str().unwrap()]),
        );
    }
    let params = BootstrapParams::new("finance", "v1", &gateway, server.xds_port);
    let pod = Pod::start(
        &net,
        EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]),
        UpstreamOptions::new("finance", "v1"),
    )
    .await
    .unwrap();
    let url = |path: &str| format!("{}{path}", pod.url(INBOUND));
    let enforced = |allowed: &str, denied: &str| {
        [
            (url(&format!("/{allowed}/1")), 200),
            (url(&format!("/{denied}/1")), 403),
        ]
    };
    until_statuses(
        "version 4 (/d)",
        &enforced("d", "a"),
        Duration::from_secs(30),
    )
    .await;

    // Versions 1-3 are in a snapshot record now; history and rollback still reach them.
    let verify = ok("verify", weft(&bin, &["store", "verify", "--data-dir", dd]));
    assert!(
        verify.contains("snapshot  1-3") && verify.contains("record    4"),
        "{verify}"
    );
    let history = ok("history", server.cli(&bin, &["history"]));
    assert_eq!(
        history.lines().count(),
        5,
        "a header and 4 versions: {history}"
    );
    let v1 = ok("history 1", server.cli(&bin, &["history", "1"]));
    assert!(v1.contains("/a/*") && !v1.contains(SECRET), "{v1}");
    ok("rollback 1", server.cli(&bin, &["rollback", "1"]));
    until_statuses(
        "rollback to 1 (/a)",
        &enforced("a", "d"),
        Duration::from_secs(30),
    )
    .await;

    // Offline compaction while the server is down; restarted, everything is still there.
    let mut server = server;
    server.kill();
    let compact = ok(
        "compact",
        weft(&bin, &["store", "compact", "--data-dir", dd]),
    );
    assert!(compact.contains("compacted 5 version(s)"), "{compact}");
    let server = start(
        &bin,
        &data_dir,
        xds_port,
        &["--compact-after-records", "1000"],
    );
    let history = ok("history", server.cli(&bin, &["history"]));
    assert_eq!(history.lines().count(), 6, "{history}");
    ok("rollback 2", server.cli(&bin, &["rollback", "2"]));
    until_statuses(
        "rollback to 2 (/b)",
        &enforced("b", "a"),
        Duration::from_secs(30),
    )
    .await;
    // Two records after the snapshot: versions 7 (/c) and 8 (/d).
    for allowed in ["c", "d"] {
        let file = policy(files.path(), allowed, SECRET);
        ok(
            "apply",
            server.cli(&bin, &["apply", "-f", file.to_str().unwrap()]),
        );
    }
    until_statuses(
        "version 8 (/d)",
        &enforced("d", "b"),
        Duration::from_secs(30),
    )
    .await;
    let mut server = server;
    server.kill();

    // Damage in the middle: a flipped byte in version 7's record; version 8 is intact.
    let report: Value = serde_json::from_str(&ok(
        "verify",
        weft(&bin, &["store", "verify", "--data-dir", dd, "-o", "json"]),
    ))
    .unwrap();
    let v7 = report["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["lastVersion"] == 7)
        .unwrap();
    let offset = v7["offset"].as_u64().unwrap();
    let log = data_dir.join("policy.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[offset as usize + 36 + 20] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();

    let (code, out, err) = weft(
        &bin,
        &["serve", "--data-dir", dd, "--listen", "127.0.0.1:0"],
    );
    assert_ne!(code, 0, "the server started on a damaged log: {out}\n{err}");
    // Frames: the snapshot (1-5), then versions 6, 7 and 8.
    let named = format!("record #2 (version 7) at byte {offset}: checksum mismatch");
    assert!(err.contains(&named), "{err}");
    assert!(
        err.contains(&format!("weft store repair --truncate-at {offset}")),
        "{err}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was dropped");
    println!("weft serve on a damaged log:\n{}", err.trim());

    let (code, out, _) = weft(&bin, &["store", "verify", "--data-dir", dd]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BAD record #2 (version 7) at byte {offset}")),
        "{out}"
    );
    let at = offset.to_string();
    let repair = ["store", "repair", "--data-dir", dd, "--truncate-at", &at];
    let plan: Value = serde_json::from_str(&ok(
        "repair --dry-run",
        weft(&bin, &[&repair[..], &["--dry-run", "-o", "json"]].concat()),
    ))
    .unwrap();
    assert_eq!(plan["lastKeptVersion"], 6, "{plan}");
    let lost: Vec<u64> = plan["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["lastVersion"].as_u64().unwrap())
        .collect();
    assert_eq!(lost, [8], "{plan}");
    let (code, _, _) = weft(
        &bin,
        &["store", "repair", "--data-dir", dd, "--truncate-at", "1"],
    );
    assert_eq!(code, 2, "not a record boundary");
    let done = ok("repair", weft(&bin, &repair));
    println!("weft store repair:\n{done}");

    // Restarted: version 6 (rollback to 2, /b) is served again and enforced.
    let server = start(&bin, &data_dir, xds_port, &[]);
    let status: Value = api_client(None, &server.token)
        .get(format!("{}/api/v1/status", server.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["policyVersion"], 6, "{status}");
    until_statuses(
        "version 6 again (/b)",
        &enforced("b", "d"),
        Duration::from_secs(30),
    )
    .await;
    drop(pod);
    drop(server);
}

/// The path of `route` with real parameters.
fn fill(route: &str, version: &str) -> String {
    route
        .replace("{kind}", "RequestAuthentication")
        .replace("{namespace}", "default")
        .replace("{name}", "finance-jwt")
        .replace("{service}", "finance")
        .replace("{id}", "nope")
        .replace("{version}", version)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_of_the_real_server_answers_with_a_secret() {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // A directory weft creates itself (the temporary directory is 0700 already).
    let data_dir = data.path().join("data");
    let server = start(&bin, &data_dir, 0, &["--ca", "--xds-tls-name", "127.0.0.1"]);
    let other = "another-hs256-secret-of-32-bytes-long";
    let only_sent = "a-secret-only-ever-sent-in-requests!";
    for (allowed, secret) in [("a", SECRET), ("b", other)] {
        let file = policy(files.path(), allowed, secret);
        ok(
            "apply",
            server.cli(&bin, &["apply", "-f", file.to_str().unwrap()]),
        );
    }
    let request_body = std::fs::read_to_string(policy(files.path(), "c", only_sent)).unwrap();
    // The admin operator: every route answers (a 401 would hide nothing and prove nothing).
    let client = api_client(
        server
            .ca_file
            .as_ref()
            .map(|f| std::fs::read(f).unwrap())
            .as_deref(),
        &server.token,
    );
    let mut seen = Vec::new();
    for (method, route) in weft_api::ROUTES {
        for version in ["1", "2", "v1"] {
            let path = fill(route, version);
            let url = format!("{}{path}", server.api);
            let response = match *method {
                "get" => client.get(&url).send().await,
                "delete" => client.delete(format!("{url}?dryRun=true")).send().await,
                _ if path.contains("/tokens") => client.post(&url).body("{}").send().await,
                _ => {
                    client
                        .post(format!("{url}?dryRun=true"))
                        .header("content-type", "application/yaml")
                        .body(request_body.clone())
                        .send()
                        .await
                }
            }
            .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            for secret in [SECRET, other, only_sent] {
                assert!(
                    !text.contains(secret),
                    "{method} {path} ({status}) shows a secret: {text}"
                );
            }
            seen.push((path, status, text));
        }
    }
    // Not vacuous: the documents, and each group's translated filters, hold the digests.
    let body = |p: &str| {
        seen.iter()
            .find(|(path, ..)| path == p)
            .map(|(_, s, t)| (*s, t.clone()))
            .unwrap()
    };
    let (status, doc) = body("/api/v1/policies/RequestAuthentication/default/finance-jwt");
    assert_eq!(status, 200, "{doc}");
    assert!(doc.contains(&weft_policy::secret::redact(other)), "{doc}");
    let (status, view) = body("/api/v1/xds/sidecars/default/finance/v1/resources");
    assert_eq!(status, 200, "{view}");
    let view: Value = serde_json::from_str(&view).unwrap();
    let mut telemetry_keys = 0;
    for filter in view["filters"].as_array().unwrap() {
        let config: Value =
            serde_json::from_str(filter["configuration"].as_str().unwrap()).unwrap();
        for key in [&config["key"], &config["telemetry"]["key"]] {
            if let Some(key) = key.as_str() {
                assert!(weft_policy::secret::is_redacted(key), "{config}");
                telemetry_keys += 1;
            }
        }
    }
    assert!(telemetry_keys > 0, "{view}");

    // Alias bombs sent to the real server: refused with the budget's message (time printed).
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let quadratic = format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["x"; 60_000].join(","),
        vec!["*a"; 150_000].join(",")
    );
    let bombs = [
        (
            "billion laughs",
            laughs,
            "the input expands to more than 100000 nodes",
        ),
        (
            "quadratic aliases",
            quadratic,
            "150000 YAML aliases (`*name`), more than the limit of 1000",
        ),
    ];
    for (name, bomb, reason) in bombs {
        let started = std::time::Instant::now();
        let response = client
            .post(format!("{}/api/v1/validate", server.api))
            .header("content-type", "application/yaml")
            .body(bomb)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        println!("{name}: {status} after {:?}", started.elapsed());
        assert_eq!(status, 422, "{text}");
        assert!(text.contains(reason), "{text}");
    }

    // The data directory the real server wrote (store, CA, tokens): 0700 directories and
    // 0600 files, every one of them.
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![data_dir.clone()];
    let mut files_seen = Vec::new();
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                files_seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files_seen.sort();
    println!("data directory files (all 0600): {files_seen:?}");
    assert!(
        ["policy.log", "LOCK", "root-1.key.pem"]
            .iter()
            .all(|f| files_seen.iter().any(|s| s == f)),
        "{files_seen:?}"
    );
    assert!(
        view.to_string()
            .contains(&weft_policy::secret::redact(other)),
        "{view}"
    );
}
