//! Issue 15, identity: the real `weft serve --ca` (host process) and real Envoy sidecars, tried
//! as a hostile caller would.
//!
//! - nobody gets a join token for the control plane's own namespace (`weft-system`): 400,
//!   and `weft token list` shows none;
//! - a `ttlSeconds` that used to overflow the stream timer (and abort the server on the next
//!   sidecar connect) is refused with 400, and sidecars connect afterwards;
//! - a sidecar holding productpage's token and sending reviews' node id does not displace
//!   reviews' endpoint: productpage keeps reaching reviews;
//! - an oversized node id is refused (counted as `bad_node`), the server keeps serving;
//! - streams beyond the per-identity limit are refused (`too_many_streams`);
//! - the TLS xDS port serves no inventory (`/v1/sidecars` is 404), the REST API and
//!   `weft status` still show the sidecars.
#![cfg(test)]

mod weft_serve;
mod xds_common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_e2e::{
    http_client, poll_until, xds_support::network_gateway, EnvoyOptions, Pod, TestNet,
    UpstreamOptions, ADMIN_SOCKET,
};
use weft_serve::{ca_mesh_args, weft_bin, WeftServer};
use weft_xds::bootstrap::{self, BootstrapParams, XdsUpstreamTls};
use xds_common::INBOUND;

/// Streams one identity may hold open (productpage's sidecar and the impostor).
const STREAMS_PER_IDENTITY: usize = 2;

/// `weft serve --ca` with xDS over TLS on any port (named `gateway` and 127.0.0.1) and
/// [`STREAMS_PER_IDENTITY`].
fn start(bin: &Path, data: &Path, gateway: &str) -> WeftServer {
    let mut args = ca_mesh_args(gateway);
    args.extend([
        "--xds-max-streams-per-identity".to_string(),
        STREAMS_PER_IDENTITY.to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    WeftServer::start(bin, data, &args)
}

impl WeftServer {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.api);
        let request = match method {
            "POST" => http_client()
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or("").to_string()),
            _ => http_client().get(url),
        }
        .header("authorization", self.authorization());
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self, service: &str) -> String {
        let body = format!(r#"{{"service": "{service}", "ttlSeconds": 3600}}"#);
        let (status, out) = self.call("POST", "/api/v1/tokens", Some(&body)).await;
        assert_eq!(status, 201, "{out}");
        out["token"].as_str().unwrap().to_string()
    }

    async fn sidecars(&self) -> Value {
        self.call("GET", "/api/v1/xds/sidecars", None).await.1
    }

    async fn refused(&self, reason: &str) -> u64 {
        self.sidecars().await["refused"]["by_reason"][reason]
            .as_u64()
            .unwrap_or(0)
    }
}

const POLICY: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: productpage}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reviews-from-productpage}
spec:
  target: {service: reviews}
  action: ALLOW
  rules:
  - from: {principals: [\"spiffe://cluster.local/ns/default/sa/productpage\"]}
";

struct Sidecars<'a> {
    net: &'a TestNet,
    gateway: String,
    xds_port: u16,
    bundle: String,
}

impl Sidecars<'_> {
    /// A pod of `service` v1 whose sidecar has node id `node_id` (its container hostname is
    /// `hostname`) and presents `token`, over TLS to the control plane.
    async fn start(&self, service: &str, node_id: &str, hostname: &str, token: &str) -> Pod {
        let mut params = BootstrapParams::new(service, "v1", &self.gateway, self.xds_port);
        params.admin_socket = Some(ADMIN_SOCKET.into());
        params.node_id = Some(node_id.into());
        params.sds = true;
        params.token = Some(token.into());
        params.xds_tls =
            Some(XdsUpstreamTls::new(&self.bundle, "cluster.local", &self.gateway).unwrap());
        let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
        options.hostname = hostname.into();
        Pod::start(self.net, options, UpstreamOptions::new(service, "v1"))
            .await
            .unwrap()
    }
}

/// `GET /reviews/1` with `Host: reviews` through `caller`'s outbound listener (from inside
/// its pod, as its app would call).
async fn call_reviews(caller: &Pod) -> u16 {
    xds_common::call_outbound(caller, "reviews", "/reviews/1").await
}

async fn wait_reviews_ok(caller: &Pod, what: &str) {
    let result = poll_until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { Ok((call_reviews(caller).await == 200).then_some(())) },
    )
    .await;
    if let Err(error) = result {
        panic!("{error}\n{}", caller.logs().await);
    }
}

/// The registrations `(node id, service, inbound address, connected)` the REST view shows.
async fn registrations(server: &WeftServer) -> Vec<(String, String, String, bool)> {
    server.sidecars().await["sidecars"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["node_id"].as_str().unwrap_or("").to_string(),
                s["service"].as_str().unwrap_or("").to_string(),
                s["inbound_address"].as_str().unwrap_or("").to_string(),
                s["connected"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_token_holder_cannot_take_the_control_planes_identity_or_another_sidecars_place()
{
    let started = Instant::now();
    let stage = |what: &str| println!("[{:5.1} s] {what}", started.elapsed().as_secs_f64());
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let net = TestNet::new("hostile-identity");
    let gateway = network_gateway(&net).unwrap();
    let mut server = start(&bin, data.path(), &gateway);

    // 1. The control plane's namespace and a timer-overflowing lifetime: 400, no token.
    let attempts = [
        (
            r#"{"service": "weft-control", "namespace": "weft-system"}"#,
            "namespace",
        ),
        (
            r#"{"service": "reviews", "ttlSeconds": 10000000000000000000}"#,
            "ttlSeconds",
        ),
    ];
    for (body, field) in attempts {
        let (status, out) = server.call("POST", "/api/v1/tokens", Some(body)).await;
        assert_eq!(status, 400, "{body}: {out}");
        assert!(out["error"].as_str().unwrap().contains(field), "{out}");
    }
    let (code, out, err) = server.cli(&bin, &["token", "list", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("weft-system"), "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["tokens"],
        serde_json::json!([])
    );
    assert!(server.alive(), "weft serve died");

    stage("tokens refused");
    // 2. A mesh: reviews and productpage, each with its own token (connecting after the
    // refused lifetime: before issue 15 the server aborted at this point).
    let policy = files.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    server.apply_file(&bin, &policy);
    let (_, ca) = server.call("GET", "/api/v1/ca", None).await;
    let sidecars = Sidecars {
        net: &net,
        gateway: gateway.clone(),
        xds_port: server.xds_port,
        bundle: ca["trustBundle"].as_str().unwrap().to_string(),
    };
    let (reviews_token, productpage_token) = (
        server.token("reviews").await,
        server.token("productpage").await,
    );
    let (reviews, productpage) = tokio::join!(
        sidecars.start("reviews", "reviews-v1", "reviews-v1", &reviews_token),
        sidecars.start(
            "productpage",
            "productpage-v1",
            "productpage-v1",
            &productpage_token
        ),
    );
    wait_reviews_ok(&productpage, "productpage -> reviews").await;
    let before = registrations(&server).await;
    let reviews_row = before
        .iter()
        .find(|r| r.0 == "reviews-v1" && r.1 == "reviews")
        .cloned()
        .unwrap();

    stage("mesh up");
    // 3. The impostor: productpage's token, reviews' node id. Before issue 15 its
    // registration replaced reviews-v1's (same node id): reviews' endpoint left EDS.
    let impostor = sidecars
        .start("productpage", "reviews-v1", "impostor", &productpage_token)
        .await;
    poll_until(
        "the impostor registered under its own identity",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            Ok(registrations(&server)
                .await
                .iter()
                .any(|r| r.0 == "reviews-v1" && r.1 == "productpage" && r.3)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // Past the endpoint debounce, every call still reaches reviews.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..30 {
        *statuses
            .entry(call_reviews(&productpage).await)
            .or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&200), Some(&30), "{statuses:?}");
    let after = registrations(&server).await;
    assert!(
        after.contains(&reviews_row),
        "{after:?} lacks {reviews_row:?}"
    );
    println!("registrations with the impostor: {after:?}");

    stage("impostor checked");
    // 4. Too many streams for one identity: productpage holds two (its sidecar, the
    // impostor); a third is refused. 5. An oversized node id (300 bytes): refused, counted.
    // Started together: a refused Envoy is ready only after its 15 s initial fetch timeout.
    let long_id = format!("reviews-{}", "x".repeat(292));
    let (third, oversized) = tokio::join!(
        sidecars.start(
            "productpage",
            "productpage-v1-c",
            "productpage-v1-c",
            &productpage_token,
        ),
        sidecars.start("reviews", &long_id, "oversized", &reviews_token),
    );
    poll_until(
        "the third productpage stream and the oversized node id refused",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            Ok((server.refused("too_many_streams").await >= 1
                && server.refused("bad_node").await >= 1)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // What the refused Envoys were told (gRPC status messages, percent-encoded in their log).
    let too_many = "default/productpage%20already%20has%202%20open%20streams";
    let too_long = "node.id:%20300%20bytes%20(1%20to%20256%20allowed)";
    let third_log = third.logs_showing(&[too_many]).await;
    let oversized_log = oversized.logs_showing(&[too_long]).await;
    assert!(third_log.contains(too_many), "{third_log}");
    assert!(oversized_log.contains(too_long), "{oversized_log}");
    let ids: Vec<String> = registrations(&server)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(!ids.contains(&long_id) && !ids.contains(&"productpage-v1-c".to_string()));
    assert_eq!(call_reviews(&productpage).await, 200);

    stage("limits checked");
    // 6. No inventory on the TLS xDS port without credentials; the operator's views work.
    let tls_client = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(sidecars.bundle.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let inventory = tls_client
        .get(format!("https://127.0.0.1:{}/v1/sidecars", server.xds_port))
        .send()
        .await
        .unwrap();
    assert_eq!(inventory.status().as_u16(), 404);
    let text = inventory.text().await.unwrap();
    assert!(!text.contains("reviews-v1"), "{text}");
    let (code, out, err) = server.cli(&bin, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("reviews-v1") && out.contains("productpage-v1"),
        "{out}"
    );
    assert!(
        out.contains("too_many_streams") && out.contains("bad_node"),
        "{out}"
    );

    assert!(server.alive(), "weft serve died");
    println!(
        "hostile identity: every attempt refused, server alive, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop((reviews, productpage, impostor, third, oversized));
}
