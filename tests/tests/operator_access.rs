// Over 400 lines: one end-to-end scenario (one mesh, one server) walking every access rule in order; splitting it would start the mesh again per part.
//! Who may change the mesh, end to end: the real `weft serve --ca` with its REST API over TLS
//! (a certificate from the mesh CA, verified by the CLI and this test against the bundle),
//! two real Envoy sidecars in namespace `finance` (teller calls ledger through its outbound
//! listener, mesh mTLS), and the real CLI under several operators:
//!
//! - no credential (or a bad one, or only a cookie) is 401 on every route of
//!   `weft_api::ROUTES` but `/healthz`;
//! - a viewer's apply is 403 and the sidecar's behaviour does not change;
//! - a `finance` editor's apply is enforced by the sidecar; its finance + shop apply is
//!   refused whole (403 naming the shop document), nothing applied;
//! - a security-admin mints join tokens (the sidecars' own), an editor cannot;
//! - a revoked token is refused on the very next request;
//! - an operator client certificate (operator CA) works for the API instead of a token and
//!   is refused by a sidecar's mTLS inbound (never a workload identity); a certificate
//!   claiming an operator's SPIFFE id from another CA fails the API's handshake;
//! - a `text/plain` POST is 415, a foreign `Host` 421, no CORS header is ever sent;
//! - `/metrics` answers without a credential only on `--metrics-listen`;
//! - the audit log lists every one of these attempts with its principal and outcome, and
//!   history's author is the authenticated operator.
#![cfg(test)]

mod pki_common;
mod weft_serve;
mod xds_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use weft_e2e::{
    api_client, http_client, poll_until, xds_support::network_gateway, EnvoyOptions, Pod, TestNet,
    UpstreamOptions, ADMIN_SOCKET,
};
use weft_serve::{weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams, XdsUpstreamTls};
use xds_common::INBOUND;

const SERVICES: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ledger, namespace: finance}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: teller, namespace: finance}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {port: 9080, versions: [v1]}
";

/// The ledger's policy: the teller may GET `/{paths}/*`.
fn ledger_policy(paths: &[&str]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"/{p}/*\"")).collect();
    format!(
        "apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: ledger-readers, namespace: finance}}
spec:
  target: {{service: ledger}}
  action: ALLOW
  rules:
  - from: {{principals: [\"spiffe://cluster.local/ns/finance/sa/teller\"]}}
    to: {{methods: [GET], paths: [{}]}}
",
        paths.join(", ")
    )
}

const SHOP_POLICY: &str = "apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: cart-closed, namespace: shop}
spec:
  target: {service: cart}
  action: ALLOW
  rules: []
";

/// A route template with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{kind}", "AuthorizationPolicy")
        .replace("{namespace}", "finance")
        .replace("{name}", "ledger-readers")
        .replace("{version}", "1")
        .replace("{id}", "x")
        .replace("{service}", "ledger")
}

struct Operator {
    token_file: PathBuf,
    token: String,
}

/// Runs the CLI against `server` as the operator holding `token_file`.
fn cli_as(
    bin: &Path,
    server: &WeftServer,
    token_file: &Path,
    args: &[&str],
) -> (i32, String, String) {
    let output = std::process::Command::new(bin)
        .args(args)
        .args(["--server", &server.api, "--token-file"])
        .arg(token_file)
        .arg("--ca-file")
        .arg(server.ca_file.as_ref().unwrap())
        .env_remove("WEFT_TOKEN")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn create_operator(bin: &Path, server: &WeftServer, dir: &Path, args: &[&str]) -> Operator {
    let mut all = vec!["operator", "create"];
    all.extend_from_slice(args);
    let (code, out, err) = server.cli(bin, &all);
    assert_eq!(code, 0, "weft {all:?}: {err}");
    let token = out.trim().to_string();
    assert!(
        token.starts_with("weft_op_") && token.len() == 8 + 64,
        "{out}"
    );
    let token_file = dir.join(format!("{}.token", args[1]));
    std::fs::write(&token_file, &token).unwrap();
    Operator { token_file, token }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `GET /{path}/1` with `Host: ledger` from the teller's app through its sidecar.
async fn call_ledger(teller: &Pod, path: &str) -> u16 {
    xds_common::call_outbound(teller, "ledger", &format!("/{path}/1")).await
}

async fn wait_ledger(teller: &Pod, path: &str, status: u16) {
    let what = format!("GET /{path}/1 through the teller's sidecar answers {status}");
    let result = poll_until(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { Ok((call_ledger(teller, path).await == status).then_some(())) },
    )
    .await;
    if let Err(error) = result {
        panic!("{error}\n{}", teller.logs().await);
    }
}

/// `GET path` on the API as the client's operator, as JSON.
async fn get_json(client: &reqwest::Client, server: &WeftServer, path: &str) -> Value {
    let response = client
        .get(format!("{}{path}", server.api))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn policy_version(admin: &reqwest::Client, server: &WeftServer) -> u64 {
    get_json(admin, server, "/api/v1/status").await["policyVersion"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_are_authenticated_authorized_by_role_and_namespace_and_audited() {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let net = TestNet::new("operator-access");
    let gateway = network_gateway(&net).unwrap();
    let server = WeftServer::start_tls(
        &bin,
        data.path(),
        &[
            "--xds-listen",
            "0.0.0.0:0",
            "--mesh-warmup-ms",
            "0",
            "--ca",
            "--xds-tls-name",
            &format!("{gateway},127.0.0.1"),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        server.api.starts_with("https://127.0.0.1:"),
        "{}",
        server.api
    );
    let bundle = std::fs::read(server.ca_file.as_ref().unwrap()).unwrap();
    let anonymous = api_client(Some(&bundle), "");
    let admin = api_client(Some(&bundle), &server.token);

    // 1. No credential, a made-up one, a cookie: 401 on every route but /healthz.
    let made_up = api_client(Some(&bundle), &format!("weft_op_{}", "0".repeat(64)));
    for (method, path) in weft_api::ROUTES {
        let url = format!("{}{}", server.api, concrete(path));
        for (who, client) in [("none", &anonymous), ("made-up token", &made_up)] {
            let request = match *method {
                "get" => client.get(&url),
                "post" => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => client.delete(&url),
                other => panic!("method {other}"),
            };
            let request = request.header("cookie", format!("weft-token={}", server.token));
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if *path == "/healthz" {
                assert_eq!(status, 200, "{method} {path}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} with {who} (and a cookie)");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"weft\"",
                "{method} {path}"
            );
        }
    }
    // The API speaks TLS only: a plain-HTTP request gets no answer.
    let plain = http_client()
        .get(server.api.replace("https://", "http://") + "/api/v1/status")
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // /metrics without a credential: only on the separate listener.
    let metrics = http_client()
        .get(format!("{}/metrics", server.metrics.as_ref().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("weft_"));

    // 2. Operators, and the mesh: services and a policy (teller may GET /public/*).
    let viewer = create_operator(
        &bin,
        &server,
        files.path(),
        &["--name", "vera", "--role", "viewer"],
    );
    let editor = create_operator(
        &bin,
        &server,
        files.path(),
        &[
            "--name",
            "fin",
            "--role",
            "editor",
            "--namespace",
            "finance",
        ],
    );
    let security = create_operator(
        &bin,
        &server,
        files.path(),
        &["--name", "sec", "--role", "security-admin"],
    );
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &security.token_file,
        &["operator", "create", "--name", "mallory", "--role", "admin"],
    );
    assert_eq!(code, 6, "a security-admin may not mint an admin: {err}");
    assert!(err.contains("may not create a admin"), "{err}");
    let services = write(files.path(), "services.yaml", SERVICES);
    let public_only = write(files.path(), "public.yaml", &ledger_policy(&["public"]));
    for file in [&services, &public_only] {
        let (code, _, err) = server.cli(&bin, &["apply", "-f", file, "--ack-timeout", "0"]);
        assert_eq!(code, 0, "{err}");
    }

    // 3. Join tokens: the security-admin mints them (for the two sidecars), the editor not.
    let mut join = Vec::new();
    for service in ["ledger", "teller"] {
        let args = [
            "token",
            "create",
            "--service",
            service,
            "-n",
            "finance",
            "--ttl",
            "1h",
        ];
        let (code, out, err) = cli_as(&bin, &server, &security.token_file, &args);
        assert_eq!(code, 0, "{err}");
        join.push(out.trim().to_string());
    }
    let (code, out, err) = cli_as(
        &bin,
        &server,
        &editor.token_file,
        &["token", "create", "--service", "ledger", "-n", "finance"],
    );
    assert_eq!(
        (code, out.as_str()),
        (6, ""),
        "an editor minted a join token: {err}"
    );
    assert!(err.contains("operator:fin is a editor"), "{err}");

    let (_, ca, _) = server.cli(&bin, &["ca", "show", "--bundle"]);
    let start_pod = |service: &'static str, token: String| {
        let mut params = BootstrapParams::new(service, "v1", &gateway, server.xds_port);
        params.namespace = "finance".into();
        params.admin_socket = Some(ADMIN_SOCKET.into());
        params.sds = true;
        params.token = Some(token);
        params.xds_tls = Some(XdsUpstreamTls::new(&ca, "cluster.local", &gateway).unwrap());
        let options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
        Pod::start(&net, options, UpstreamOptions::new(service, "v1"))
    };
    let (ledger, teller) = tokio::join!(
        start_pod("ledger", join[0].clone()),
        start_pod("teller", join[1].clone())
    );
    let (ledger, teller) = (ledger.unwrap(), teller.unwrap());
    wait_ledger(&teller, "public", 200).await;
    wait_ledger(&teller, "secret", 403).await;
    let version = policy_version(&admin, &server).await;

    // 4. A viewer's apply: 403, nothing stored, the sidecar unchanged.
    let open_secret = write(
        files.path(),
        "secret.yaml",
        &ledger_policy(&["public", "secret"]),
    );
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &viewer.token_file,
        &["apply", "-f", &open_secret],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("operator:vera is a viewer"), "{err}");
    assert_eq!(policy_version(&admin, &server).await, version);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(call_ledger(&teller, "secret").await, 403);
    assert_eq!(call_ledger(&teller, "public").await, 200);

    // 5. The finance editor's apply is enforced by the sidecar.
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &editor.token_file,
        &[
            "apply",
            "-f",
            &open_secret,
            "--author",
            "Fin Ance",
            "--ack-timeout",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let editor_version = version + 1;
    assert_eq!(policy_version(&admin, &server).await, editor_version);
    wait_ledger(&teller, "secret", 200).await;
    let record = get_json(
        &admin,
        &server,
        &format!("/api/v1/history/{editor_version}"),
    )
    .await;
    assert_eq!(
        record["author"], "operator:fin (says: Fin Ance)",
        "{record}"
    );

    // 6. finance + shop in one apply: refused whole, naming the shop document.
    let mixed = write(
        files.path(),
        "mixed.yaml",
        &format!("{}---\n{SHOP_POLICY}", ledger_policy(&["public"])),
    );
    let (code, _, err) = cli_as(&bin, &server, &editor.token_file, &["apply", "-f", &mixed]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("document AuthorizationPolicy/shop/cart-closed")
            && err.contains("may not change namespace \"shop\""),
        "{err}"
    );
    // Deleting in shop is refused; rolling back to version 1 (services only: the rollback
    // removes the ledger's policy, a finance change) is allowed (dry run).
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &editor.token_file,
        &["delete", "Service", "cart", "-n", "shop"],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("Service/shop/cart"), "{err}");
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &editor.token_file,
        &["rollback", "1", "--dry-run"],
    );
    assert_eq!(code, 0, "rollback to 1 changes finance only: {err}");
    assert_eq!(policy_version(&admin, &server).await, editor_version);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(call_ledger(&teller, "secret").await, 200);

    // 7. Revocation is effective on the next request.
    let (code, _, err) = cli_as(&bin, &server, &editor.token_file, &["operator", "whoami"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = server.cli(&bin, &["operator", "revoke", "fin"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &editor.token_file,
        &["apply", "-f", &public_only],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("unknown, expired or revoked token"), "{err}");
    let (_, list, _) = server.cli(&bin, &["operator", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("fin ") && l.contains("revoked")),
        "{list}"
    );
    assert!(!list.contains(&editor.token), "{list}");

    // 8. Operator client certificates: from the operator CA, good for the API (no token),
    // revocable at once; refused by a sidecar's inbound mTLS (no sidecar trusts that CA);
    // a certificate claiming an operator's SPIFFE id from another CA fails the handshake.
    let cert_dir = files.path().join("ops");
    let (code, _, err) = server.cli(
        &bin,
        &[
            "operator",
            "create",
            "--name",
            "ops",
            "--role",
            "viewer",
            "--cert-out",
            cert_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("spiffe://cluster.local/ns/weft-system/operator/ops"),
        "{err}"
    );
    let (cert, key) = (cert_dir.join("cert.pem"), cert_dir.join("key.pem"));
    let cli_pair = |cert: &std::path::Path, key: &std::path::Path, args: &[&str]| {
        let output = std::process::Command::new(&bin)
            .args(args)
            .args(["--server", &server.api, "--client-cert"])
            .arg(cert)
            .arg("--client-key")
            .arg(key)
            .arg("--ca-file")
            .arg(server.ca_file.as_ref().unwrap())
            .env_remove("WEFT_TOKEN")
            .env_remove("WEFT_TOKEN_FILE")
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let cli_cert = |args: &[&str]| cli_pair(&cert, &key, args);
    let (code, out, err) = cli_cert(&["operator", "whoami"]);
    assert_eq!((code, out.as_str()), (0, "ops (viewer)\n"), "{err}");
    // Renewal: the operator asks with its current certificate for a fresh one; both
    // authenticate it until the old one expires, and the key is never printed.
    let renewed_dir = files.path().join("ops-renewed");
    let (code, out, err) = cli_cert(&[
        "operator",
        "renew-cert",
        "--cert-out",
        renewed_dir.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.contains("PRIVATE KEY") && !out.contains("keyPem"),
        "{out}"
    );
    let renewed = (renewed_dir.join("cert.pem"), renewed_dir.join("key.pem"));
    assert_ne!(
        std::fs::read_to_string(&renewed.0).unwrap(),
        std::fs::read_to_string(&cert).unwrap()
    );
    let (code, out, err) = cli_pair(&renewed.0, &renewed.1, &["operator", "whoami"]);
    assert_eq!((code, out.as_str()), (0, "ops (viewer)\n"), "{err}");
    // Into a directory that holds a key already: refused before anything is asked.
    let (code, _, err) = cli_cert(&[
        "operator",
        "renew-cert",
        "--cert-out",
        renewed_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    // An operator created without a certificate is not given one this way.
    let (code, _, err) = cli_as(
        &bin,
        &server,
        &viewer.token_file,
        &[
            "operator",
            "renew-cert",
            "--cert-out",
            files.path().join("vera-cert").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("without a client certificate"), "{err}");
    let (code, _, err) = cli_cert(&["apply", "-f", &open_secret]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("operator:ops is a viewer"), "{err}");
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    // The same direct call with the teller's mesh SVID (issued here from the mesh CA's files)
    // gets through: what refuses the operator certificate is its issuer.
    let direct_client = |identity_pem: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .identity(reqwest::Identity::from_pem(identity_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let mesh_ca =
        weft_ca::Ca::open(&data.path().join("ca"), weft_ca::CaSettings::default()).unwrap();
    let svid = mesh_ca.issue("finance", "teller").unwrap();
    let teller_pem = format!("{}{}", svid.cert_chain_pem, svid.key_pem);
    let inbound = ledger.sidecar().url(INBOUND).replace("http://", "https://");
    let as_teller = direct_client(&teller_pem)
        .get(format!("{inbound}/public/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_teller.status(), 200);
    let direct = direct_client(&pem)
        .get(format!("{inbound}/public/1"))
        .send()
        .await;
    assert!(
        direct.is_err(),
        "a sidecar accepted an operator certificate: {direct:?}"
    );
    let forged = {
        let id = "spiffe://cluster.local/ns/weft-system/operator/admin";
        let (cert, key) =
            pki_common::TestCa::new("not the operator CA").leaf(vec![pki_common::uri(id)]);
        format!("{cert}{key}")
    };
    let forger = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&bundle).unwrap())
        .identity(reqwest::Identity::from_pem(forged.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = forger
        .get(format!("{}/api/v1/whoami", server.api))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a forged operator certificate was accepted: {refused:?}"
    );
    let (code, _, err) = server.cli(&bin, &["operator", "revoke", "ops"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_cert(&["operator", "whoami"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("revoked"), "{err}");
    let (code, _, err) = cli_pair(&renewed.0, &renewed.1, &["operator", "whoami"]);
    assert_eq!(
        code, 6,
        "the renewed certificate is revoked with its operator: {err}"
    );

    // 9. Browser safety: text/plain and form bodies 415, a foreign Host 421, no CORS.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = admin
            .post(format!("{}/api/v1/apply", server.api))
            .header("content-type", content_type)
            .header("origin", "https://evil.example")
            .body(ledger_policy(&["public"]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{content_type}");
        assert!(response
            .headers()
            .get("access-control-allow-origin")
            .is_none());
    }
    let foreign = admin
        .get(format!("{}/api/v1/status", server.api))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421);
    let rebinding = admin
        .post(format!("{}/api/v1/apply", server.api))
        .header("host", "evil.example:7070")
        .header("content-type", "application/yaml")
        .body(ledger_policy(&["public"]))
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 421);
    assert_eq!(policy_version(&admin, &server).await, editor_version);
    let preflight = admin
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/apply", server.api),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert!(!preflight.status().is_success(), "{}", preflight.status());

    // 10. The audit log: every attempt above, with principal and outcome; security-admins and
    // admins read it, viewers do not.
    let (code, _, err) = cli_as(&bin, &server, &viewer.token_file, &["audit"]);
    assert_eq!(code, 6, "{err}");
    let (code, out, err) = cli_as(
        &bin,
        &server,
        &security.token_file,
        &["audit", "-o", "json", "--since", "1h"],
    );
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = serde_json::from_str::<Value>(&out).unwrap()["entries"]
        .as_array()
        .unwrap()
        .clone();
    let has = |principal: &str, route: &str, status: u16, outcome: &str| {
        entries.iter().any(|e| {
            e["principal"] == principal
                && e["route"] == route
                && e["status"] == status
                && e["outcome"] == outcome
                && e["source"].as_str().unwrap().starts_with("127.0.0.1:")
        })
    };
    for (principal, route, status, outcome) in [
        ("anonymous", "POST /api/v1/apply", 401, "refused"),
        (
            "anonymous",
            "DELETE /api/v1/policies/{kind}/{namespace}/{name}",
            401,
            "refused",
        ),
        ("anonymous", "POST /api/v1/ca/rotate", 401, "refused"),
        ("operator:admin", "POST /api/v1/operators", 201, "allowed"),
        ("operator:sec", "POST /api/v1/operators", 403, "refused"),
        ("operator:sec", "POST /api/v1/tokens", 201, "allowed"),
        ("operator:fin", "POST /api/v1/tokens", 403, "refused"),
        ("operator:vera", "POST /api/v1/apply", 403, "refused"),
        ("operator:ops", "POST /api/v1/apply", 403, "refused"),
        ("operator:fin", "POST /api/v1/apply", 200, "allowed"),
        ("operator:fin", "POST /api/v1/apply", 403, "refused"),
        (
            "operator:fin",
            "DELETE /api/v1/policies/{kind}/{namespace}/{name}",
            403,
            "refused",
        ),
        (
            "operator:admin",
            "DELETE /api/v1/operators/{name}",
            200,
            "allowed",
        ),
        ("operator:admin", "POST /api/v1/apply", 415, "refused"),
        ("anonymous", "POST /api/v1/apply", 421, "refused"),
    ] {
        assert!(
            has(principal, route, status, outcome),
            "no audit entry {principal} {route} {status} {outcome} in\n{out}"
        );
    }
    let versioned = entries.iter().any(|e| {
        e["principal"] == "operator:fin" && e["status"] == 200 && e["version"] == editor_version
    });
    assert!(
        versioned,
        "the editor's apply has no resulting version:\n{out}"
    );
    let mixed_refusal = entries
        .iter()
        .find(|e| {
            e["principal"] == "operator:fin"
                && e["status"] == 403
                && e["route"] == "POST /api/v1/apply"
        })
        .unwrap();
    assert!(
        mixed_refusal["reason"]
            .as_str()
            .unwrap()
            .contains("AuthorizationPolicy/shop/cart-closed"),
        "{mixed_refusal}"
    );
    // Revoked after the fact: the revoked token's attempt is anonymous, with the reason.
    assert!(entries.iter().any(|e| e["principal"] == "anonymous"
        && e["status"] == 401
        && e["reason"] == "unknown, expired or revoked token"));
    let (code, mine, err) = cli_as(
        &bin,
        &server,
        &security.token_file,
        &["audit", "--principal", "vera"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        mine.contains("operator:vera") && !mine.contains("operator:fin"),
        "{mine}"
    );
    // The file holds every write: the listed entries, and before each call that passed the
    // checks its `started` entry under the same id (D111).
    let audit_file = std::fs::read_to_string(data.path().join("audit.log")).unwrap();
    let lines: Vec<Value> = audit_file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (started, finished): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|e| e["outcome"] == "started");
    assert_eq!(finished.len(), entries.len(), "{audit_file}");
    assert!(!started.is_empty(), "{audit_file}");
    for s in &started {
        let outcome = finished.iter().find(|e| e["id"] == s["id"]);
        assert!(
            outcome.is_some_and(|e| e["principal"] == s["principal"] && e["route"] == s["route"]),
            "started entry without its outcome: {s}"
        );
    }
    assert!(entries.iter().all(|e| e["outcome"] != "started"), "{out}");
    println!("operator access: {} audited calls", entries.len());
}
