// Over 400 lines: one real gateway + weft serve scenario (its slow setup shared): check
// against real traffic, detect mode, then the graph API and the page, in one test function.
//! Every WAF block explained, in real Envoy with the real `weft serve` (CA, join tokens,
//! mTLS over SDS, the WebApplicationFirewall compiled and pushed over ECDS): a gateway made
//! as `weft bootstrap --gateway` makes it, in front of one mesh service (reviews).
//!
//! 1. Attacks (SQL injection in the query, XSS in a JSON body) and benign calls go through
//!    the gateway over HTTPS; `weft check --to gateway` (the same method, path, headers and
//!    body) agrees with each real outcome: the status, and for a block the very line the
//!    gateway's access log wrote (rule ids, targets, score, threshold).
//! 2. With the policy switched to `mode: detect`, attacks reach reviews and `weft check`
//!    says `would-block`.
//! 3. `GET /api/v1/graph` counts the blocks and would-blocks exactly, by cause, on the edge
//!    `external -> gateway`; headless Chromium shows them in the page's label.
#![cfg(test)]

mod pki_common;
mod weft_serve;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pki_common::{dns, TestCa};
use serde_json::Value;
use weft_e2e::xds_support::network_gateway;
use weft_e2e::{artifacts_dir, chromium, poll_until, Envoy, EnvoyOptions, TestNet};
use weft_serve::{ca_mesh_args, weft_bin, WeftServer};
use weft_xds::bootstrap::{BootstrapParams, XdsUpstreamTls};
use weft_xds::gateway::{render_gateway, GatewayParams};

const NS: &str = "edge";
const EDGE_DIR: &str = "/etc/weft/edge";
const EDGE_PORT: u16 = 8443;
const UA: &str = "waf-e2e/1";

const SERVICES: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: gateway, namespace: edge}
spec: {port: 8443, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: edge}
spec: {port: 8080, versions: [v1]}
";

fn waf(mode: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1
kind: WebApplicationFirewall
metadata: {{name: shield, namespace: edge}}
spec:
  target: {{service: gateway}}
  mode: {mode}
"
    )
}

/// One request as sent by the outside client and as `weft check` is asked about it.
struct Probe {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const SQLI: Probe = Probe {
    method: "GET",
    path: "/reviews/1?q=1%27%20OR%20%271%27%3D%271",
    body: None,
};
const XSS_BODY: Probe = Probe {
    method: "POST",
    path: "/reviews/1",
    body: Some(r#"{"comment": "<script>alert(document.cookie)</script>"}"#),
};
const BENIGN: Probe = Probe {
    method: "GET",
    path: "/reviews/1?q=red+shoes&page=2",
    body: None,
};
const BENIGN_BODY: Probe = Probe {
    method: "POST",
    path: "/reviews/1",
    body: Some(r#"{"comment": "Fits well; I'd order the blue one again", "stars": 4}"#),
};

struct Edge {
    server: WeftServer,
    bin: std::path::PathBuf,
    gateway: Envoy,
    client: weft_e2e::reqwest::Client,
    port: u16,
    _reviews: weft_e2e::Pod,
    _net: TestNet,
    data: tempfile::TempDir,
}

impl Edge {
    async fn send(&self, p: &Probe) -> (u16, String) {
        let url = format!("https://reviews:{}{}", self.port, p.path);
        let request = match p.body {
            Some(body) => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
            None => self.client.get(&url),
        };
        match request.header("user-agent", UA).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// `weft check --to gateway` for `p`, as the client sent it; (exit code, JSON).
    fn check(&self, p: &Probe) -> (i32, Value) {
        let ua = format!("user-agent:{UA}");
        let mut args = vec!["check", "--to", "gateway", "-o", "json", "-H", &ua];
        if let Some(body) = p.body {
            args.extend(["-H", "content-type:application/json", "-d", body]);
        }
        args.extend([p.method, p.path]);
        let (code, out, err) = self.server.cli(&self.bin, &args);
        let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
        (code, json)
    }

    fn apply(&self, yaml: &str) {
        let file = self.data.path().join("apply.yaml");
        std::fs::write(&file, yaml).unwrap();
        let (code, _, err) = self.server.cli(
            &self.bin,
            // Enforcement is observed in traffic (a loaded machine can take longer to ACK).
            &["apply", "-f", file.to_str().unwrap(), "--ack-timeout", "0"],
        );
        assert_eq!(code, 0, "{err}");
    }

    async fn graph(&self) -> Value {
        self.server.api_json("/api/v1/graph?window=5m").await
    }
}

async fn start() -> Edge {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let net = TestNet::new("waf-explained");
    let host = network_gateway(&net).unwrap();
    let args = ca_mesh_args(&host);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = WeftServer::start_tls(&bin, data.path(), &args);
    // The documents first: each sidecar gets its filters in its first xDS response.
    let file = data.path().join("policies.yaml");
    std::fs::write(&file, format!("{SERVICES}---\n{}", waf("block"))).unwrap();
    let (code, _, err) = server.cli(
        &bin,
        &["apply", "-f", file.to_str().unwrap(), "--ack-timeout", "0"],
    );
    assert_eq!(code, 0, "{err}");
    Edge {
        _reviews: server
            .join_pod(&bin, &net, &host, (NS, "reviews", "v1"))
            .await,
        gateway: start_gateway(&server, &bin, &net, &host).await,
        client: weft_e2e::reqwest::Client::new(),
        port: 0,
        server,
        bin,
        _net: net,
        data,
    }
}

/// The gateway as `weft bootstrap --gateway` renders it: join token, SDS, xDS over TLS.
async fn start_gateway(
    server: &WeftServer,
    bin: &std::path::Path,
    net: &TestNet,
    host: &str,
) -> Envoy {
    let (code, token, err) = server.cli(
        bin,
        &[
            "token",
            "create",
            "--service",
            "gateway",
            "-n",
            NS,
            "--ttl",
            "1h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, bundle, err) = server.cli(bin, &["ca", "show", "--bundle"]);
    assert_eq!(code, 0, "{err}");
    let mut params = BootstrapParams::new("gateway", "v1", host, server.xds_port);
    params.namespace = NS.into();
    params.sds = true;
    params.token = Some(token.trim().to_string());
    params.xds_tls = Some(XdsUpstreamTls::new(&bundle, "cluster.local", host).unwrap());
    let yaml = render_gateway(
        &params,
        &GatewayParams {
            port: EDGE_PORT,
            tls_dir: EDGE_DIR.into(),
            trusted_hops: 0,
        },
    )
    .unwrap();
    let leaf = EDGE_CA.with(|ca| ca.leaf(vec![dns("reviews")]));
    let mut options = EnvoyOptions::new(yaml)
        .ports([EDGE_PORT])
        .extra_file(&format!("{EDGE_DIR}/cert.pem"), leaf.0)
        .extra_file(&format!("{EDGE_DIR}/key.pem"), leaf.1);
    options.hostname = "gateway".into();
    Envoy::start(net, options).await.unwrap()
}

thread_local! {
    static EDGE_CA: TestCa = TestCa::new("weft e2e public CA");
}

fn client(port: u16) -> weft_e2e::reqwest::Client {
    let pem = EDGE_CA.with(|ca| ca.pem.clone());
    weft_e2e::reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(weft_e2e::reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve(
            "reviews",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn n(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

/// The edge into the gateway from outside.
fn into_gateway(graph: &Value) -> Value {
    graph["edges"]
        .as_array()
        .and_then(|edges| {
            edges
                .iter()
                .find(|e| e["source"] == "external" && e["destination"] == "gateway")
                .cloned()
        })
        .unwrap_or(Value::Null)
}

/// A line of the gateway's log holding both halves of `line` (`... anomaly score N` and
/// `rules ...`): the access log is JSON, which may escape the `>=` between them.
async fn logged(gateway: &Envoy, line: &str) -> bool {
    let (head, rules) = line.split_once(" >= ").unwrap_or((line, ""));
    let rules = rules.split_once(": ").map_or("", |(_, r)| r);
    poll_until(
        "the access log explains the block",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let logs = gateway.logs().await;
            Ok(logs
                .lines()
                .any(|l| l.contains(head) && l.contains(rules))
                .then_some(()))
        },
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn waf_blocks_are_explained_by_check_and_counted_on_the_graph() {
    let mut edge = start().await;
    edge.port = edge
        .gateway
        .url(EDGE_PORT)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    edge.client = client(edge.port);
    // Every WAF refusal and detect-mode pass the client sees, to hold the graph to.
    let blocked = AtomicU64::new(0);
    let detected = AtomicU64::new(0);
    let refused = |body: &str| body.contains("web application firewall: anomaly_score");
    // The mesh, the gateway's authz and routes and the WAF arrive over xDS; before the WAF
    // is there an attack passes, uncounted.
    poll_until(
        "the gateway routes a clean call to reviews",
        // Modules fetched, and on a loaded machine refused and retried 11 s later (D83).
        Duration::from_secs(240),
        Duration::from_millis(100),
        || async { Ok((edge.send(&BENIGN).await.0 == 200).then_some(())) },
    )
    .await
    .unwrap();
    // The gateway's telemetry filter may load after the WAF (modules retried 11 s apart on
    // a loaded machine): count nothing until the gateway's own report is on the graph.
    poll_until(
        "the gateway reports its traffic",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            edge.send(&BENIGN).await;
            let g = edge.graph().await;
            let reported = g["edges"].as_array().is_some_and(|edges| {
                edges.iter().any(|e| {
                    e["source"] == "gateway"
                        && e["reported_by"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|x| x == "outbound"))
                })
            });
            Ok(reported.then_some(()))
        },
    )
    .await
    .unwrap();
    poll_until(
        "the gateway's WAF refuses an attack",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            let (status, body) = edge.send(&SQLI).await;
            Ok((status == 403 && refused(&body)).then_some(()))
        },
    )
    .await
    .unwrap();
    blocked.fetch_add(1, Ordering::Relaxed);

    // 1. Real outcomes and `weft check`'s, call by call.
    let table = [
        (&SQLI, 2, 403),
        (&XSS_BODY, 3, 403),
        (&BENIGN, 2, 200),
        (&BENIGN_BODY, 2, 200),
    ];
    for (probe, times, want) in table {
        for _ in 0..times {
            let (status, body) = edge.send(probe).await;
            assert_eq!(status, want, "{} {}: {body}", probe.method, probe.path);
            if want == 403 {
                assert!(refused(&body), "{body}");
                blocked.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (code, check) = edge.check(probe);
        let w = &check["waf"];
        println!(
            "weft check {} {}: exit {code}, {}",
            probe.method, probe.path, w["log"]
        );
        assert_eq!(w["sidecar"], "edge/gateway/v1");
        assert_eq!(
            (w["name"].as_str(), w["mode"].as_str()),
            (Some("edge/shield"), Some("block"))
        );
        if want == 403 {
            assert_eq!((code, w["outcome"].as_str()), (7, Some("blocked")), "{w}");
            assert_eq!((n(w, "status"), n(&check, "status")), (403, 403));
            assert_eq!(w["reason"], "anomaly_score");
            assert!(
                n(w, "score") >= n(w, "threshold") && n(w, "threshold") == 5,
                "{w}"
            );
            // The line the gateway's access log wrote for the real request: same rules,
            // targets and score.
            let line = w["log"].as_str().unwrap();
            assert!(
                logged(&edge.gateway, line).await,
                "{line} not in the gateway's log"
            );
        } else {
            assert_eq!(
                (code, w["outcome"].as_str(), n(w, "score")),
                (0, Some("pass"), 0),
                "{w}"
            );
            assert_eq!(check["allowed"], true);
        }
    }
    let ids = |check: &Value| -> Vec<(u64, String)> {
        check["waf"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (n(r, "rule"), r["target"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let sqli = ids(&edge.check(&SQLI).1);
    assert!(sqli.contains(&(942100, "q".into())), "{sqli:?}");
    let xss = edge.check(&XSS_BODY).1;
    assert_eq!(xss["waf"]["body"], "inspected", "{xss}");
    assert!(ids(&xss).contains(&(941100, "comment".into())), "{xss}");

    // 2. Detect mode: attacks go through; until the new configuration is there they are
    // still refused (and counted as such).
    edge.apply(&waf("detect"));
    poll_until(
        "an attack passes in detect mode",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            let (status, body) = edge.send(&SQLI).await;
            if status == 403 && refused(&body) {
                blocked.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status == 200).then_some(()))
        },
    )
    .await
    .unwrap();
    detected.fetch_add(1, Ordering::Relaxed);
    for probe in [&SQLI, &XSS_BODY, &XSS_BODY] {
        assert_eq!(edge.send(probe).await.0, 200, "{}", probe.path);
        detected.fetch_add(1, Ordering::Relaxed);
        let (code, check) = edge.check(probe);
        assert_eq!(
            (code, check["waf"]["outcome"].as_str()),
            (0, Some("would-block")),
            "{check}"
        );
        assert_eq!(check["waf"]["mode"], "detect");
    }
    assert_eq!(edge.send(&BENIGN).await.0, 200);

    // 3. The graph: the edge into the gateway, by cause, exactly.
    let (blocked, detected) = (blocked.into_inner(), detected.into_inner());
    println!("sent: {blocked} refused by the WAF, {detected} passed in detect mode");
    let edge_view = poll_until(
        "the graph counts every WAF verdict",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let e = into_gateway(&edge.graph().await);
            Ok(
                (n(&e, "waf_blocked") >= blocked && n(&e, "waf_would_block") >= detected)
                    .then_some(e),
            )
        },
    )
    .await;
    let Ok(edge_view) = edge_view else {
        panic!("{edge_view:?}; the graph: {}", edge.graph().await);
    };
    println!("external -> gateway: {edge_view}");
    assert_eq!(n(&edge_view, "waf_blocked"), blocked);
    assert_eq!(n(&edge_view, "waf_would_block"), detected);
    assert_eq!(n(&edge_view["local_replies"], "waf"), blocked);
    assert_eq!(n(&edge_view, "requests"), blocked + detected);
    assert_eq!(n(&edge_view["status"], "4xx"), blocked);
    assert_eq!(edge_view["version"], "v1");

    // The page shows the same counts in the label of that arrow.
    let shot = artifacts_dir().unwrap().join("waf-graph.png");
    let ui = format!("{}/ui#token={}", edge.server.api, edge.server.token);
    let dom = tokio::task::spawn_blocking(move || chromium(&ui, &shot).unwrap())
        .await
        .unwrap();
    assert!(dom.contains("data-loaded=\"true\""), "{dom}");
    for needle in [
        format!("waf blocked {blocked}"),
        format!("waf-block {detected}"),
        "external".to_string(),
    ] {
        assert!(dom.contains(&needle), "{needle} not on the page:\n{dom}");
    }
}
