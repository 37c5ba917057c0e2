//! The real `weft` binary against a real server: output formats and exit codes.
#![cfg(test)]

mod support;

use serde_json::Value;
use support::*;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn cli_round_trip_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let s = server.base.as_str();
    let services = write(dir.path(), "services.yaml", SERVICES);
    let policy = write(dir.path(), "policy.yaml", &mk_policy("allow-api", "/api/*"));

    let out = ok(&weft(s, &["apply", "-f", &services], None));
    assert!(out.starts_with("created version 1"), "{out}");
    assert!(out.contains("shop/reviews/v1  added"), "{out}");

    // diff: per sidecar, nothing stored.
    let out = ok(&weft(s, &["diff", "-f", &policy], None));
    assert!(
        out.contains("added     AuthorizationPolicy/shop/allow-api"),
        "{out}"
    );
    assert!(out.contains("shop/reviews/v2  changed  authz"), "{out}");

    // apply from standard input, JSON output.
    let out: Value = serde_json::from_str(&ok(&weft(
        s,
        &["apply", "-f", "-", "-o", "json"],
        Some(&mk_policy("allow-api", "/api/*")),
    )))
    .unwrap();
    assert_eq!(out["version"], 2);

    let out = ok(&weft(s, &["get"], None));
    assert!(
        out.contains("AuthorizationPolicy  shop       allow-api  reviews"),
        "{out}"
    );
    let out = ok(&weft(
        s,
        &["get", "authorizationpolicy", "allow-api", "-n", "shop"],
        None,
    ));
    assert!(
        out.contains("kind: AuthorizationPolicy") && out.contains("/api/*"),
        "{out}"
    );
    let out: Value =
        serde_json::from_str(&ok(&weft(s, &["get", "Service", "-o", "json"], None))).unwrap();
    assert_eq!(out.as_array().unwrap().len(), 1);

    let out = ok(&weft(s, &["history"], None));
    assert!(out.starts_with("VERSION  TIME"), "{out}");
    assert!(out.contains("tester"), "{out}");
    let out = ok(&weft(s, &["history", "-o", "yaml"], None));
    assert!(
        out.contains("author: 'operator:admin (says: tester)'"),
        "{out}"
    );

    let out = ok(&weft(s, &["rollback", "1"], None));
    assert!(out.starts_with("created version 3"), "{out}");
    ok(&weft(s, &["apply", "-f", &policy], None));
    let out = ok(&weft(
        s,
        &["delete", "AuthorizationPolicy", "allow-api", "-n", "shop"],
        None,
    ));
    assert!(out.starts_with("created version 5"), "{out}");

    let out: Value = serde_json::from_str(&ok(&weft(s, &["status", "-o", "json"], None))).unwrap();
    assert_eq!(
        (out["policyVersion"].as_u64(), out["sidecars"].as_u64()),
        (Some(5), Some(2))
    );
    assert!(ok(&weft(s, &["status"], None)).contains("policyVersion: 5"));
    assert!(ok(&weft(s, &["validate", "-f", &policy], None)).starts_with("valid: 1 document"));
}

#[test]
fn exit_codes_mean_something() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let base = server.base.clone();
    let s = base.as_str();
    ok(&weft(s, &["apply", "-f", "-"], Some(SERVICES)));

    // 3: invalid documents, every error on stderr with its document and field path.
    let bad = format!(
        "{}---\n{}",
        mk_policy("a", "no-slash"),
        mk_policy("b", "/ok").replace("paths", "pathz")
    );
    let out = weft(s, &["apply", "-f", "-"], Some(&bad));
    assert_eq!(code(&out), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AuthorizationPolicy/shop/a (#1): spec.rules[0].to.paths[0]: invalid path"),
        "{err}"
    );
    assert!(
        err.contains("AuthorizationPolicy/shop/b (#2): spec.rules[0].to.pathz: unknown field"),
        "{err}"
    );
    assert_eq!(code(&weft(s, &["validate", "-f", "-"], Some(&bad))), 3);
    // 4: not found.
    assert_eq!(code(&weft(s, &["get", "Service", "nope"], None)), 4);
    assert_eq!(code(&weft(s, &["rollback", "99"], None)), 4);
    assert_eq!(code(&weft(s, &["delete", "Service", "nope"], None)), 4);
    // 5: conflict.
    assert_eq!(
        code(&weft(
            s,
            &["apply", "-f", "-", "--expect-version", "0"],
            Some(&mk_policy("c", "/c"))
        )),
        5
    );
    // 2: usage, and an unreadable file.
    assert_eq!(code(&weft(s, &["apply"], None)), 2);
    assert_eq!(code(&weft(s, &["frobnicate"], None)), 2);
    assert_eq!(
        code(&weft(s, &["apply", "-f", "/nonexistent/file.yaml"], None)),
        2
    );
    // 1: no server there.
    drop(server);
    assert_eq!(code(&weft(s, &["status"], None)), 1);
}

#[test]
fn offline_validation_and_completions_need_no_server() {
    let nowhere = "http://127.0.0.1:9";
    let out = weft(
        nowhere,
        &["validate", "--offline", "-f", "-"],
        Some(&format!("{SERVICES}---\n{}", mk_policy("p", "/x"))),
    );
    assert!(ok(&out).contains("valid: 2 document(s) (offline)"));
    // A reference to a service the file does not declare is not judged offline ...
    assert_eq!(
        code(&weft(
            nowhere,
            &["validate", "--offline", "-f", "-"],
            Some(&mk_policy("p", "/x"))
        )),
        0
    );
    // ... but an unknown version of one it does declare is.
    let split = "apiVersion: weft.dev/v1alpha1\nkind: TrafficSplit\nmetadata: {name: s, namespace: shop}\nspec:\n  target: {service: reviews}\n  split: [{version: v1, weight: 50}, {version: v7, weight: 50}]\n";
    let out = weft(
        nowhere,
        &["validate", "--offline", "-f", "-"],
        Some(&format!("{SERVICES}---\n{split}")),
    );
    assert_eq!(code(&out), 3);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("spec.split[1].version: unknown service version \"v7\""));
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&weft(nowhere, &["completions", shell], None));
        assert!(out.contains("weft") && out.contains("rollback"), "{shell}");
    }
    assert!(ok(&weft(nowhere, &["--help"], None)).contains("Exit codes"));
}

/// `weft token` and `weft ca` read the server's typed bodies (weft-api types).
#[test]
fn tokens_and_the_ca_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--ca"]);
    let s = server.base.as_str();

    let token = ok(&weft(
        s,
        &["token", "create", "--service", "reviews", "-n", "shop"],
        None,
    ));
    assert_eq!(token.lines().count(), 1, "{token}");
    assert!(token.trim().len() > 20, "{token}");
    let created: Value = serde_json::from_str(&ok(&weft(
        s,
        &["token", "create", "--service", "ratings", "-o", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(
        created["spiffeId"],
        "spiffe://cluster.local/ns/default/sa/ratings"
    );
    let id = created["record"]["id"].as_str().unwrap().to_string();

    let list = ok(&weft(s, &["token", "list"], None));
    assert!(list.starts_with("ID"), "{list}");
    assert!(
        list.contains("shop/reviews") && list.contains("active"),
        "{list}"
    );
    assert_eq!(
        ok(&weft(s, &["token", "revoke", &id], None)),
        format!("revoked {id}\n")
    );
    let list = ok(&weft(s, &["token", "list"], None));
    let revoked = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        revoked.contains("default/ratings") && revoked.ends_with("revoked"),
        "{list}"
    );

    let ca = ok(&weft(s, &["ca", "show"], None));
    assert!(ca.starts_with("trust domain: cluster.local\n"), "{ca}");
    assert!(
        ca.contains("signing root: 1\n") && ca.contains("root 1: serial "),
        "{ca}"
    );
    let bundle = ok(&weft(s, &["ca", "show", "--bundle"], None));
    assert!(
        bundle.starts_with("-----BEGIN CERTIFICATE-----"),
        "{bundle}"
    );
    let rotated = ok(&weft(s, &["ca", "rotate"], None));
    assert!(rotated.starts_with("new root 2 (serial "), "{rotated}");
}

#[test]
fn contexts_hold_the_server_and_credential_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let token_file = dir.path().join("data/admin.token");
    let config = dir.path().join("config.yaml");
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("WEFT_CONFIG", &config)
            .env_remove("WEFT_SERVER")
            .env_remove("WEFT_TOKEN")
            .env_remove("WEFT_TOKEN_FILE")
            .env_remove("WEFT_CA_FILE")
            .output()
            .unwrap()
    };
    // No context: the default https server needs a CA bundle.
    assert_eq!(code(&run(&["status"])), 2);
    let out = run(&[
        "config",
        "set-context",
        "dev",
        "--server",
        &server.base,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    ok(&out);
    ok(&run(&[
        "config",
        "set-context",
        "other",
        "--server",
        "http://127.0.0.1:9",
    ]));
    assert_eq!(ok(&run(&["config", "current-context"])), "dev\n");
    assert!(ok(&run(&["status"])).contains("policyVersion: 0"));
    let listed = ok(&run(&["config", "get-contexts"]));
    let current: Vec<&str> = listed.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{listed}");
    assert!(
        current[0].contains("dev") && current[0].contains(&server.base),
        "{listed}"
    );
    // A flag overrides the context; another context is used once current.
    assert_eq!(code(&run(&["status", "--server", "http://127.0.0.1:9"])), 1);
    ok(&run(&["config", "use-context", "other"]));
    assert_eq!(code(&run(&["status"])), 1);
    assert_eq!(code(&run(&["config", "use-context", "nope"])), 4);
    // The token file alone, without the context's: 401 is exit 6.
    ok(&run(&["config", "use-context", "dev"]));
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, "weft_op_00").unwrap();
    assert_eq!(
        code(&run(&["status", "--token-file", bad.to_str().unwrap()])),
        6
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn plain_http_only_on_loopback_and_tls_needs_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, std::time::Duration::from_secs(20));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status.code(), err)
    };
    let (code, err) = serve(&["--insecure-listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("plain HTTP is only served on a loopback address"),
        "{err}"
    );
    let (code, err) = serve(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("start with --ca, or use --insecure-listen"),
        "{err}"
    );
}
