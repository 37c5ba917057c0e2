//! The trusted build chain of the filter modules, with the real `weft serve`, the real CLI
//! and a real Envoy sidecar (issue 22):
//!
//! - `weft serve --module-signers` refuses at start a module whose bytes were changed (and
//!   `SHA256SUMS` rewritten to match), an unsigned one, one signed by an untrusted key, and
//!   a server without a trust list; a correctly signed set serves and a sidecar runs it;
//! - on SIGHUP the same checks hold: a tampered set is refused and the previous modules keep
//!   being served; a correctly signed new module is served and the sidecar moves to it;
//! - `weft status` shows the module hash the sidecar runs (as its Envoy's config dump does);
//! - `weft module audit` with an advisory naming a crate version the modules contain
//!   reports them, their fixed version and the sidecar running them (exit 8); with the
//!   fixed version: nothing (exit 0).
#![cfg(test)]

mod weft_serve;
mod xds_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use weft_e2e::{
    filters_dir, http_client, poll_until, workspace_root, xds_support::network_gateway, Pod,
    TestNet,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::BootstrapParams;
use xds_common::{pod_from, until_statuses, INBOUND};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A copy of the built modules with their SBOMs and `SHA256SUMS`, without signatures.
fn copy_modules(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(filters_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".wasm") || name.ends_with(".cdx.json") || name == "SHA256SUMS" {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
    assert!(
        to.join("authz.wasm").is_file() && to.join("authz.cdx.json").is_file(),
        "run scripts/build-filters first"
    );
}

/// What someone who can write the modules directory can do: change a module's bytes (a
/// custom section appended: still a valid module) and rewrite `SHA256SUMS` to match.
fn tamper(dir: &Path, module: &str) {
    let path = dir.join(format!("{module}.wasm"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'e', b'v', b'i', b'l']);
    std::fs::write(&path, &bytes).unwrap();
    let sums: String = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|line| {
            let (_, file) = line.split_once("  ").unwrap();
            let hash = sha256_hex(&std::fs::read(dir.join(file)).unwrap());
            format!("{hash}  {file}\n")
        })
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

/// The CLI (no server flags); returns (exit code, stdout, stderr).
fn weft(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(bin).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `weft serve --xds-listen` on `modules` that must refuse to start: its stderr.
fn serve_refused(bin: &Path, modules: &Path, signers: Option<&Path>) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin);
    command
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .args([
            "--insecure-listen",
            "127.0.0.1:0",
            "--xds-listen",
            "127.0.0.1:0",
        ])
        .arg("--modules-dir")
        .arg(modules);
    if let Some(signers) = signers {
        command.arg("--module-signers").arg(signers);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(!status.success(), "weft serve started: {stdout}");
            assert!(!stdout.contains("xds listening"), "{stdout}");
            return String::from_utf8_lossy(&output.stderr).into_owned();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weft serve kept running on {}", modules.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const POLICY: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: finance}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: finance-readers}
spec:
  target: {service: finance}
  action: ALLOW
  rules:
  - to: {methods: [GET], paths: [\"/a/*\"]}
";

/// `GET /api/v1/xds/sidecars` with the admin token.
async fn sidecar_view(server: &WeftServer) -> Value {
    server.api_get("/api/v1/xds/sidecars").await
}

/// Waits until the one sidecar reports running `module` with `sha256`.
async fn until_sidecar_runs(server: &WeftServer, module: &str, sha256: &str) -> Value {
    poll_until(
        &format!("the sidecar to report {module} sha256 {sha256}"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let view = sidecar_view(server).await;
            let runs = view["sidecars"][0]["modules"][module].as_str() == Some(sha256);
            Ok(runs.then_some(view))
        },
    )
    .await
    .unwrap()
}

/// The wasm SHA-256s in the sidecar's own config dump (what its Envoy verified and runs).
async fn envoy_module_hashes(envoy: &Pod) -> String {
    envoy
        .admin_get("/config_dump?resource=ecds_filters")
        .await
        .unwrap()
}

/// SIGHUP to `weft serve`, then waits for the reload attempt `attempt` to be recorded.
async fn reload(server: &WeftServer, attempt: u64) -> Value {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    poll_until(
        &format!("module reload #{attempt}"),
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let view = sidecar_view(server).await;
            Ok((view["module_reload"]["attempts"].as_u64() == Some(attempt)).then_some(view))
        },
    )
    .await
    .unwrap()
}

fn served_sha(view: &Value, module: &str) -> String {
    view["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == module)
        .unwrap_or_else(|| panic!("{module} not served: {view}"))["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_modules_signed_by_a_trusted_key_are_served_and_audits_name_their_sidecars() {
    let bin = weft_bin();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("keys/release.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let key_arg = key.to_str().unwrap();

    // The release key: 0600, and never overwritten.
    let (code, out, err) = weft(&bin, &["module", "keygen", "--key", key_arg]);
    assert_eq!(code, 0, "{out}\n{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, _, err) = weft(&bin, &["module", "keygen", "--key", key_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");
    let trust = work.path().join("keys/release.pub");

    // A correctly signed set.
    let signed = work.path().join("signed");
    copy_modules(&signed);
    let (code, out, err) = weft(
        &bin,
        &["module", "sign", "--key", key_arg, signed.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let verify = |dir: &Path| {
        weft(
            &bin,
            &[
                "module",
                "verify",
                "--module-signers",
                trust.to_str().unwrap(),
                "--modules-dir",
                dir.to_str().unwrap(),
            ],
        )
    };
    let (code, out, err) = verify(&signed);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("authz") && out.contains("SIGNER"), "{out}");

    // Tampered: bytes changed, SHA256SUMS rewritten to match. The sums check passes; the
    // signature does not.
    let tampered = work.path().join("tampered");
    copy_modules(&tampered);
    for entry in std::fs::read_dir(&signed).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sig") {
            std::fs::copy(&path, tampered.join(path.file_name().unwrap())).unwrap();
        }
    }
    tamper(&tampered, "authz");
    let err = serve_refused(&bin, &tampered, Some(&trust));
    assert!(
        err.contains(
            "authz.wasm: signature authz.wasm.sig does not verify with any of the 1 trusted key(s)"
        ),
        "{err}"
    );
    println!("tampered module refused at start:\n{}", err.trim());
    let (code, _, err) = verify(&tampered);
    assert_eq!(code, 3, "{err}");

    // Unsigned.
    let unsigned = work.path().join("unsigned");
    copy_modules(&unsigned);
    for entry in std::fs::read_dir(&signed).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sig") && !path.ends_with("authz.wasm.sig") {
            std::fs::copy(&path, unsigned.join(path.file_name().unwrap())).unwrap();
        }
    }
    let err = serve_refused(&bin, &unsigned, Some(&trust));
    assert!(
        err.contains("authz.wasm: unsigned: no authz.wasm.sig"),
        "{err}"
    );
    println!("unsigned module refused at start:\n{}", err.trim());

    // Signed, but by a key the trust list does not hold (dist/ is signed by the dev key).
    let err = serve_refused(&bin, &filters_dir(), Some(&trust));
    assert!(err.contains("does not verify"), "{err}");
    // And no trust list at all: secure by default.
    let err = serve_refused(&bin, &signed, None);
    assert!(
        err.contains("--module-signers") && err.contains("--allow-unsigned-modules"),
        "{err}"
    );

    // The signed set serves, and a sidecar runs it.
    let net = TestNet::new("module-trust");
    let gateway = network_gateway(&net).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = WeftServer::start_with_modules(
        &bin,
        data.path(),
        &["--xds-listen", "0.0.0.0:0", "--mesh-warmup-ms", "0"],
        &signed,
        &trust,
    );
    let policy = work.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    server.apply_file(&bin, &policy);
    let params = BootstrapParams::new("finance", "v1", &gateway, server.xds_port);
    let envoy = pod_from(&net, &params).await;
    let url = |path: &str| format!("{}{path}", envoy.url(INBOUND));
    let enforced = [(url("/a/1"), 200), (url("/b/1"), 403)];
    until_statuses(
        "authz from the signed module",
        &enforced,
        Duration::from_secs(60),
    )
    .await;

    let authz_sha = sha256_hex(&std::fs::read(signed.join("authz.wasm")).unwrap());
    let view = until_sidecar_runs(&server, "authz", &authz_sha).await;
    assert!(envoy_module_hashes(&envoy).await.contains(&authz_sha));
    assert_eq!(served_sha(&view, "authz"), authz_sha);
    let (code, out, err) = server.cli(&bin, &["status"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("authz={}", &authz_sha[..12])),
        "{out}"
    );
    assert!(
        out.contains(&format!("module authz: sha256 {authz_sha} signer ")),
        "{out}"
    );
    println!("weft status:\n{out}");

    // The audit: the fixture advisory names p256 0.13.x (< 0.14.0), which every module holds.
    let fixtures = workspace_root().join("tests/fixtures/osv");
    let audit = |which: &str, format: &str| {
        let dir = fixtures.join(which);
        server.cli(
            &bin,
            &[
                "module",
                "audit",
                "--advisories",
                dir.to_str().unwrap(),
                "--modules-dir",
                signed.to_str().unwrap(),
                "-o",
                format,
            ],
        )
    };
    let (code, out, err) = audit("affected", "table");
    assert_eq!(code, 8, "{out}\n{err}");
    println!("weft module audit (affected):\n{out}");
    assert!(
        out.contains(&format!("AFFECTED authz (sha256 {authz_sha})")),
        "{out}"
    );
    assert!(
        out.contains("WEFT-TEST-0001") && out.contains("fixed in 0.14.0"),
        "{out}"
    );
    assert!(out.contains("default/finance/v1"), "{out}");
    let (code, out, _) = audit("affected", "json");
    assert_eq!(code, 8);
    let report: Value = serde_json::from_str(&out).unwrap();
    let affected = report["affected"].as_array().unwrap();
    let modules = std::fs::read_dir(&signed)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .count();
    assert_eq!(affected.len(), modules, "every module holds p256: {out}");
    for module in affected {
        let findings = module["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "only WEFT-TEST-0001 matches: {module}");
        assert_eq!(findings[0]["package"], "p256");
        let runs = view["sidecars"][0]["modules"]
            .as_object()
            .unwrap()
            .values()
            .any(|h| *h == module["sha256"]);
        let sidecars = module["sidecars"].as_array().unwrap();
        assert_eq!(
            sidecars.len(),
            usize::from(runs),
            "a module is reported with the sidecars that run it, and only those: {module}"
        );
    }
    let (code, out, err) = audit("fixed", "table");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no module affected (3 advisories"), "{out}");
    println!("weft module audit (fixed):\n{out}");

    // SIGHUP with a tampered module: refused, the previous set stays served and running.
    tamper(&signed, "authz");
    let view = reload(&server, 1).await;
    let error = view["module_reload"]["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("authz.wasm: signature authz.wasm.sig does not verify"),
        "{view}"
    );
    assert_eq!(served_sha(&view, "authz"), authz_sha);
    let served = http_client()
        .get(format!(
            "http://127.0.0.1:{}/wasm/authz.wasm",
            server.xds_port
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&served), authz_sha, "the old bytes are served");
    let (_, out, _) = server.cli(&bin, &["status"]);
    assert!(out.contains("module reload refused"), "{out}");
    until_statuses("authz still enforced", &enforced, Duration::from_secs(5)).await;

    // Signed with the trusted key, the new bytes are served on the next SIGHUP and the
    // sidecar moves to them.
    let (code, out, err) = weft(
        &bin,
        &[
            "module",
            "sign",
            "--key",
            key_arg,
            signed.join("authz.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let new_sha = sha256_hex(&std::fs::read(signed.join("authz.wasm")).unwrap());
    let view = reload(&server, 2).await;
    assert_eq!(view["module_reload"]["last_error"], Value::Null, "{view}");
    assert_eq!(served_sha(&view, "authz"), new_sha);
    until_sidecar_runs(&server, "authz", &new_sha).await;
    assert!(envoy_module_hashes(&envoy).await.contains(&new_sha));
    until_statuses(
        "authz from the re-signed module",
        &enforced,
        Duration::from_secs(30),
    )
    .await;
    println!("re-signed authz {new_sha} served on SIGHUP and run by the sidecar");
}
