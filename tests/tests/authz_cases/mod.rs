//! The authz decisions in real Envoy, run by every runtime that hosts the filter: the wasm
//! module (`authz.rs`) and the native dynamic module (`native_suite.rs`). Each case takes the
//! [`Runtime`]; the assertions are the same.

use super::pki_common::{self, hs256_jwt, now, TestCa};
use serde_json::{json, Value};
use weft_e2e::{
    http_client, reqwest, DownstreamTls, Envoy, EnvoyConfig, EnvoyOptions, Runtime, TestNet,
    Upstream, WasmFilter,
};

pub const JWT_SECRET: &str = "weft-e2e-shared-secret-of-32-bytes-or-more";
pub const ISSUER: &str = "https://issuer.weft.test";

pub fn hs256_token(claims: Value) -> String {
    hs256_jwt(JWT_SECRET, &claims)
}

/// One configuration exercising every condition kind; each path family belongs to one policy.
fn rules_config() -> Value {
    json!({
        "trust_domain": "weft.test",
        "jwt": [{
            "name": "corp",
            "issuer": ISSUER,
            "audiences": ["finance"],
            "keys": {"hs256_secrets": [JWT_SECRET]}
        }],
        "claim_headers": [{"claim": "role", "header": "x-weft-claim-role"}],
        "policies": [
            {"name": "block-admin", "action": "DENY",
             "rules": [{"paths": ["/admin/*"]}, {"paths": ["/reports/*"], "methods": ["DELETE"]}],
             "deny_response": {"status": 451, "body": "admin is closed\n", "headers": {"x-weft-policy": "block-admin"}}},
            {"name": "reports-readers", "action": "ALLOW",
             "rules": [{"methods": ["GET", "DELETE"], "paths": ["/reports/{*}", "/admin/*"]}],
             "deny_response": {"status": 403, "body": "not a report reader\n"}},
            {"name": "writers", "action": "ALLOW",
             "rules": [{"methods": ["POST"], "paths": ["/reports/*"],
                        "headers": [{"name": "x-role", "values": ["writer"]}]}]},
            {"name": "lan-only", "action": "ALLOW",
             "rules": [{"paths": ["/lan/*"], "ip_blocks": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}]},
            {"name": "far-away", "action": "ALLOW",
             "rules": [{"paths": ["/far/*"], "ip_blocks": ["203.0.113.0/24"]}]},
            {"name": "finance-admins", "action": "ALLOW",
             "rules": [{"paths": ["/claims/*"], "claims": [{"name": "role", "values": ["admin"]}]}]},
            {"name": "tighten-later", "action": "DENY", "dry_run": true,
             "rules": [{"headers": [{"name": "x-legacy-client"}]}]},
            {"name": "audit-exports", "action": "AUDIT",
             "rules": [{"paths": ["/reports/export"]}]}
        ]
    })
}

async fn start_rules_envoy(net: &TestNet, runtime: Runtime) -> (Upstream, Envoy) {
    let upstream = Upstream::start(net, "finance-reporting", "v1")
        .await
        .unwrap();
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("authz", rules_config()).runtime(runtime))
        .to_yaml();
    runtime.artifact("authz").unwrap();
    let envoy = Envoy::start(net, EnvoyOptions::new(bootstrap))
        .await
        .unwrap();
    (upstream, envoy)
}

/// `<runtime prefix>weft.authz.<name>`, 0 until Envoy first counts it.
fn authz_stat(stats: &std::collections::HashMap<String, u64>, runtime: Runtime, name: &str) -> u64 {
    stats
        .get(&format!("{}weft.authz.{name}", runtime.stat_prefix()))
        .copied()
        .unwrap_or(0)
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn send(envoy: &Envoy, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http_client().request(
        method.parse().unwrap(),
        format!("{}{path}", envoy.url(10_000)),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply {
        status,
        headers,
        body: response.text().await.unwrap(),
    }
}

pub async fn allow_and_deny_by_path_method_header_cidr_with_configured_replies(runtime: Runtime) {
    let net = TestNet::new("authz-rules");
    let (upstream, envoy) = start_rules_envoy(&net, runtime).await;

    // Path + method ALLOW.
    let ok = send(&envoy, "GET", "/reports/q3", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("finance-reporting"));
    // `{*}` is one segment: a deeper path matches no ALLOW policy -> default deny, answered
    // with the deny response of the first enforced ALLOW policy.
    let deep = send(&envoy, "GET", "/reports/q3/raw", &[]).await;
    assert_eq!(deep.status, 403);
    assert_eq!(deep.body, "not a report reader\n");
    // Method: POST needs the writer header.
    assert_eq!(send(&envoy, "POST", "/reports/q3", &[]).await.status, 403);
    assert_eq!(
        send(&envoy, "POST", "/reports/q3", &[("x-role", "writer")])
            .await
            .status,
        200
    );
    assert_eq!(
        send(&envoy, "POST", "/reports/q3", &[("x-role", "reader")])
            .await
            .status,
        403
    );
    // CIDR: the Docker bridge address we come from is private; the TEST-NET-3 block is not ours.
    assert_eq!(send(&envoy, "GET", "/lan/status", &[]).await.status, 200);
    assert_eq!(send(&envoy, "GET", "/far/status", &[]).await.status, 403);

    // DENY beats ALLOW, with the DENY's own status, body and headers.
    let admin = send(&envoy, "GET", "/admin/users", &[]).await;
    assert_eq!(admin.status, 451);
    assert_eq!(admin.body, "admin is closed\n");
    assert_eq!(admin.headers["x-weft-policy"], "block-admin");
    let delete = send(&envoy, "DELETE", "/reports/q3", &[]).await;
    assert_eq!(
        delete.status, 451,
        "DELETE matches an ALLOW and a DENY; DENY wins"
    );

    // No rule internals leak in a default deny.
    let denied = send(&envoy, "PUT", "/nowhere", &[]).await;
    assert_eq!(denied.status, 403);
    assert!(!denied.body.contains("/reports"), "{}", denied.body);

    // Denied requests never reached the upstream: 3 allowed above.
    assert_eq!(upstream.stats().await.unwrap().requests, 3);

    let stats = envoy.stats().await.unwrap();
    let stat = |name: &str| authz_stat(&stats, runtime, name);
    assert_eq!(stat("allowed"), 3, "{stats:?}");
    assert_eq!(stat("denied"), 7);
    assert_eq!(stat("policy.block-admin.denied"), 2);
    assert_eq!(stat("policy.default-deny.denied"), 5);
    assert_eq!(stat("policy.writers.allowed"), 1);
}

pub async fn jwt_claims_decide_and_bad_tokens_get_401(runtime: Runtime) {
    let net = TestNet::new("authz-jwt");
    let (_upstream, envoy) = start_rules_envoy(&net, runtime).await;
    let t = now();
    let admin = hs256_token(
        json!({"iss": ISSUER, "aud": "finance", "sub": "ada", "role": "admin", "exp": t + 600}),
    );
    let user = hs256_token(
        json!({"iss": ISSUER, "aud": "finance", "sub": "bob", "role": "user", "exp": t + 600}),
    );
    let expired =
        hs256_token(json!({"iss": ISSUER, "aud": "finance", "role": "admin", "exp": t - 3600}));
    let wrong_aud =
        hs256_token(json!({"iss": ISSUER, "aud": "shipping", "role": "admin", "exp": t + 600}));
    let mut forged = admin.clone();
    forged.pop();
    forged.push(if admin.ends_with('A') { 'B' } else { 'A' });

    let bearer = |token: &str| format!("Bearer {token}");
    assert_eq!(
        send(
            &envoy,
            "GET",
            "/claims/ledger",
            &[("authorization", &bearer(&admin))]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            &envoy,
            "GET",
            "/claims/ledger",
            &[("authorization", &bearer(&user))]
        )
        .await
        .status,
        403
    );
    // No token: the provider is not `required`, so claims just do not match -> 403, not 401.
    assert_eq!(send(&envoy, "GET", "/claims/ledger", &[]).await.status, 403);
    for bad in [&expired, &wrong_aud, &forged, &"not-a-jwt".to_string()] {
        let reply = send(
            &envoy,
            "GET",
            "/claims/ledger",
            &[("authorization", &bearer(bad))],
        )
        .await;
        assert_eq!(reply.status, 401, "token {bad}: {}", reply.body);
        assert!(reply.headers.contains_key("www-authenticate"));
    }
}

pub async fn dry_run_counts_without_denying_and_audit_never_changes_the_outcome(runtime: Runtime) {
    let net = TestNet::new("authz-dry");
    let (upstream, envoy) = start_rules_envoy(&net, runtime).await;
    for _ in 0..3 {
        let reply = send(&envoy, "GET", "/reports/q1", &[("x-legacy-client", "1")]).await;
        assert_eq!(reply.status, 200, "dry-run must not deny");
    }
    assert_eq!(
        send(&envoy, "GET", "/reports/export", &[]).await.status,
        200
    );
    assert_eq!(upstream.stats().await.unwrap().requests, 4);
    let stats = envoy.stats().await.unwrap();
    let stat = |name: &str| authz_stat(&stats, runtime, name);
    assert_eq!(stat("dry_run_denied"), 3, "{stats:?}");
    assert_eq!(stat("policy.tighten-later.dry_run_denied"), 3);
    assert_eq!(stat("policy.audit-exports.audited"), 1);
    assert_eq!(stat("denied"), 0);
}

pub async fn bad_configuration_is_refused_and_the_log_names_the_field(runtime: Runtime) {
    let net = TestNet::new("authz-bad");
    let cases = [
        (
            json!({"policies": [{"name": "p", "action": "ALLOW", "rules": [{"ip_blocks": ["10.0.0.300/8"]}]}]}),
            "policies[0].rules[0].ip_blocks[0]",
        ),
        (
            json!({"policies": [{"name": "p", "action": "ALLOW", "rules": [{"pathz": ["/"]}]}]}),
            "pathz",
        ),
    ];
    for (config, field) in cases {
        let bootstrap = EnvoyConfig::sidecar_inbound("nowhere")
            .wasm_filter(WasmFilter::new("authz", config).runtime(runtime))
            .to_yaml();
        let logs = Envoy::start_expect_failure(&net, EnvoyOptions::new(bootstrap))
            .await
            .unwrap();
        let tag = format!("{}: invalid configuration", runtime.log_name("authz"));
        let line = logs
            .lines()
            .find(|l| l.contains(&tag))
            .unwrap_or_else(|| panic!("no `{tag}` line in Envoy's log:\n{logs}"));
        assert!(line.contains(field), "line does not name {field}: {line}");
    }
}

/// A CA and leaf certificates made for this test run.
struct Pki {
    ca_pem: String,
    server: (String, String),
    clients: Vec<(String, String)>,
}

fn make_pki(client_ids: &[&str]) -> Pki {
    use rcgen::SanType;
    let ca = TestCa::new("weft e2e CA");
    let server = ca.leaf(vec![
        pki_common::dns("localhost"),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        pki_common::uri("spiffe://weft.test/ns/finance/sa/finance-reporting"),
    ]);
    let clients = client_ids
        .iter()
        .map(|id| ca.leaf(vec![pki_common::uri(id)]))
        .collect();
    Pki {
        ca_pem: ca.pem,
        server,
        clients,
    }
}

/// A client trusting the test CA, presenting client certificate `client` if given.
fn tls_client(pki: &Pki, client: Option<usize>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    if let Some((cert, key)) = client.map(|i| &pki.clients[i]) {
        builder = builder
            .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

pub async fn only_exec_portal_may_call_finance_reporting_over_mtls(runtime: Runtime) {
    let exec = "spiffe://weft.test/ns/corp/sa/exec-portal";
    let shadow = "spiffe://weft.test/ns/corp/sa/shadow-dashboard";
    let pki = make_pki(&[exec, shadow]);
    let net = TestNet::new("authz-mtls");
    let upstream = Upstream::start(&net, "finance-reporting", "v1")
        .await
        .unwrap();
    let config = json!({
        "trust_domain": "weft.test",
        "policies": [{"name": "exec-only", "action": "ALLOW",
                      "rules": [{"principals": [exec]}],
                      "deny_response": {"status": 403, "body": "finance-reporting is for the executive portal\n"}}]
    });
    let bootstrap = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("authz", config).runtime(runtime))
        .downstream_tls(DownstreamTls::mtls(
            "/etc/weft/tls/server.pem",
            "/etc/weft/tls/server.key",
            "/etc/weft/tls/ca.pem",
        ))
        .to_yaml();
    let options = EnvoyOptions::new(bootstrap)
        .extra_file("/etc/weft/tls/server.pem", pki.server.0.clone())
        .extra_file("/etc/weft/tls/server.key", pki.server.1.clone())
        .extra_file("/etc/weft/tls/ca.pem", pki.ca_pem.clone());
    let envoy = Envoy::start(&net, options).await.unwrap();
    let url = envoy
        .url(10_000)
        .replace("http://", "https://")
        .replace("127.0.0.1", "localhost");

    let allowed = tls_client(&pki, Some(0))
        .get(format!("{url}/quarterly"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let denied = tls_client(&pki, Some(1))
        .get(format!("{url}/quarterly"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.text().await.unwrap(),
        "finance-reporting is for the executive portal\n"
    );
    // Without a client certificate the TLS handshake itself is refused.
    let anonymous = tls_client(&pki, None);
    assert!(anonymous
        .get(format!("{url}/quarterly"))
        .send()
        .await
        .is_err());
    assert_eq!(upstream.stats().await.unwrap().requests, 1);
}
