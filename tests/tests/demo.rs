//! `scripts/demo` end to end: the control plane as a host process, eight workloads (app +
//! Envoy sidecar with mesh mTLS) on the network `weft-demo`, the demo policies applied with
//! `weft apply`, traffic through the callers' sidecars. Checks the report the script prints.
//!
//! The demo uses fixed names (network `weft-demo`, containers `weft-demo-*`, `.weft/demo/`),
//! distinct from every other e2e test's, so it runs in parallel with them; but not at the same
//! time as a manual `scripts/demo` on the same machine (they would remove each other's mesh).
//! `scripts/demo down` runs at the end whatever happens (a drop guard).
#![cfg(test)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_e2e::{within_binomial_999, workspace_root};

/// A warm demo takes about a minute; this bounds a hung one.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

fn script() -> PathBuf {
    workspace_root().join("scripts").join("demo")
}

/// Runs `scripts/demo down` when dropped, also when the test panics.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let status = Command::new(script())
            .arg("down")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("scripts/demo down failed: {status:?}");
        }
    }
}

/// Builds the `weft` binary the demo runs (outside the demo's time bound: a cold build takes
/// minutes) and returns its path.
fn build_weft() -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "weft"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p weft: {status}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug").join("weft")
}

/// Runs `scripts/demo` (setup and filter build skipped: the e2e tier did them) with a
/// bounded wait; returns (success, stdout, stderr).
fn run_demo(weft: &std::path::Path) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(script())
        .env("WEFT_DEMO_SKIP_SETUP", "1")
        .env("WEFT_BIN", weft)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    println!(
        "scripts/demo: {status:?} after {} s\n{stdout}",
        started.elapsed().as_secs()
    );
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

/// The report line starting (after indentation) with `prefix`.
fn line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no report line starting with {prefix:?}:\n{report}"))
}

/// The numbers in `text`, in order (`20/20` gives 20 and 20).
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The number right after `word` in `text`.
fn after(text: &str, word: &str) -> u64 {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {text:?}"));
    numbers(&text[at + word.len()..])
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no number after {word:?} in {text:?}"))
}

#[test]
fn demo_shows_each_filter_at_work_through_the_callers_sidecars() {
    let weft = build_weft();
    let _down = Down;
    let (ok, report, stderr) = run_demo(&weft);
    assert!(
        ok,
        "scripts/demo failed\n--- stdout\n{report}\n--- stderr\n{stderr}"
    );

    // authz, inbound, on the caller's mTLS identity.
    let l = line(&report, "authz    exec-portal -> finance-reporting:");
    assert!(l.ends_with("20/20 allowed"), "{l}");
    let l = line(&report, "authz    shadow-dashboard -> finance-reporting:");
    assert!(
        l.ends_with("20/20 denied 403 by policy finance-exec-only"),
        "{l}"
    );
    let l = line(&report, "authz    exec-portal -> shipping:");
    assert!(l.ends_with("20/20 allowed"), "{l}");
    let l = line(&report, "authz    shadow-dashboard -> shipping:");
    assert!(
        l.ends_with("20/20 denied 403 by policy shipping-no-shadow-dashboard"),
        "{l}"
    );

    // canary: 75/25 within the binomial 99.9% interval; the beta header always gets v2.
    let l = line(&report, "canary   reviews:");
    let (v1, v2) = (after(l, " v1 "), after(l, " v2 "));
    assert_eq!(v1 + v2, 200, "{l}");
    assert!(within_binomial_999(v1, 200, 0.75), "{l}");
    assert!(l.ends_with("beta header -> v2 20/20"), "{l}");

    // fault: some injected 503s, not all.
    let l = line(&report, "fault    ratings:");
    let injected = after(l, "503 injected ");
    assert!((1..100).contains(&injected), "{l}");

    // breaker: healthy first, then opened after the consecutive failures (3), the rest
    // failed fast without reaching payments.
    let l = line(&report, "breaker  payments:");
    assert!(l.contains("5/5 ok"), "{l}");
    let failures = after(l, "opened after ");
    let fast = after(l, "failures, ");
    assert_eq!(failures, 3, "{l}");
    assert_eq!(failures + fast, 20, "{l}");
    assert_eq!(after(l, "payments app reached "), failures, "{l}");

    // The identity is the certificate.
    let l = line(&report, "mtls     finance-reporting inbound:");
    assert!(
        l.contains("no client certificate: refused by TLS (alert: certificate required)"),
        "{l}"
    );
    assert!(
        l.ends_with("forged exec-portal certificate: refused by TLS (alert: unknown ca)"),
        "{l}"
    );

    // The edge gateway: HTTPS with its public certificate, JWT rules, then into the mesh.
    let l = line(&report, "gateway  https://reviews");
    assert!(l.contains("customer 200 (v"), "{l}");
    assert!(l.contains("no token 403;"), "{l}");
    assert!(l.contains("other role 403;"), "{l}");
    assert!(l.ends_with("bad signature 401"), "{l}");

    let l = line(&report, "apply -> enforced:");
    let ms = after(l, "enforced: ");
    assert!(ms < 30_000, "{l}");
    assert!(report.contains("weft status:"), "{report}");
}
