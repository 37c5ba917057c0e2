//! The edge gateway (`weft bootstrap --gateway`) in real Envoy: HTTPS from outside with the
//! gateway's own certificate, JWT rules enforced by the authz filter on the gateway, and the
//! call into the mesh over mTLS, where the service's sidecar sees the gateway's SPIFFE id.
#![cfg(test)]

mod pki_common;
mod xds_common;

use std::collections::BTreeMap;
use std::time::Duration;

use pki_common::{dns, hs256_jwt, now, uri, TestCa};
use serde_json::{json, Value};
use weft_e2e::{
    poll_until, reqwest, xds_support::network_gateway, Envoy, EnvoyOptions, Pod, TestNet,
    UpstreamOptions,
};
use weft_xds::gateway::{render_gateway, GatewayParams};
use weft_xds::{bootstrap, FilterSpec, MeshService, MeshTls, SidecarGroup};
use xds_common::{ControlPlane, INBOUND};

const JWT_SECRET: &str = "weft-gateway-e2e-secret-of-32-bytes-at-least";
const ISSUER: &str = "https://login.weft.test";
const MESH_DIR: &str = "/etc/weft/tls";
const EDGE_DIR: &str = "/etc/weft/edge";
const EDGE_PORT: u16 = 8443;
const GATEWAY_ID: &str = "spiffe://cluster.local/ns/default/sa/gateway";

fn hs256(claims: Value) -> String {
    hs256_jwt(JWT_SECRET, &claims)
}

fn exp() -> u64 {
    now() + 600
}

fn spiffe(service: &str) -> rcgen::SanType {
    uri(&format!("spiffe://cluster.local/ns/default/sa/{service}"))
}

fn mesh_files(options: EnvoyOptions, ca: &str, leaf: &(String, String)) -> EnvoyOptions {
    options
        .extra_file(&format!("{MESH_DIR}/ca.pem"), ca.to_string())
        .extra_file(&format!("{MESH_DIR}/cert.pem"), leaf.0.clone())
        .extra_file(&format!("{MESH_DIR}/key.pem"), leaf.1.clone())
}

/// `builder` finished as an outside client: trusts `ca` only and reaches the gateway's
/// `edge_port` on loopback by its public name, `finance-reporting`.
fn edge_client(builder: reqwest::ClientBuilder, ca: &str, edge_port: u16) -> reqwest::Client {
    builder
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve(
            "finance-reporting",
            std::net::SocketAddr::from(([127, 0, 0, 1], edge_port)),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_gateway_enforces_jwt_rules_and_calls_the_mesh_over_mtls() {
    let net = TestNet::new("gateway");
    let host = network_gateway(&net).unwrap();
    let cp = ControlPlane::start(0).await;
    cp.state
        .set_mesh_tls(Some(MeshTls::new(&format!("{MESH_DIR}/"))))
        .unwrap();
    // The gateway asks for a valid login token and the `finance` role on /reports; the
    // service itself admits only the gateway's SPIFFE id (it is not reachable any other way).
    let gateway_authz = json!({
        "trust_domain": "cluster.local",
        "jwt": [{"name": "login", "issuer": ISSUER, "audiences": ["weft-edge"],
                 "keys": {"hs256_secrets": [JWT_SECRET]}}],
        "policies": [{"name": "finance-role", "action": "ALLOW",
            "rules": [{"paths": ["/reports/*"], "claims": [{"name": "role", "values": ["finance"]}]}],
            "deny_response": {"status": 403, "body": "the finance role is required\n"}}]
    });
    let service_authz = json!({
        "trust_domain": "cluster.local",
        "policies": [{"name": "from-the-gateway", "action": "ALLOW",
            "rules": [{"principals": [GATEWAY_ID]}]}]
    });
    let filters = BTreeMap::from([
        (
            SidecarGroup::new("default", "gateway", "v1"),
            vec![FilterSpec::new("authz", gateway_authz.to_string())],
        ),
        (
            SidecarGroup::new("default", "finance-reporting", "v1"),
            vec![FilterSpec::new("authz", service_authz.to_string())],
        ),
    ]);
    let services = vec![MeshService {
        namespace: "default".into(),
        name: "finance-reporting".into(),
        port: 8080,
        host: "finance-reporting".into(),
        stable_version: "v1".into(),
        calls: None,
    }];
    cp.state.set_config(1, filters, services).unwrap();

    let mesh = TestCa::new("weft e2e mesh CA");
    let mesh_ca = mesh.pem.clone();
    let mesh_leaves = [
        mesh.leaf(vec![spiffe("finance-reporting")]),
        mesh.leaf(vec![spiffe("gateway")]),
    ];
    let edge = TestCa::new("weft e2e public CA");
    let edge_ca = edge.pem.clone();
    let edge_leaves = [edge.leaf(vec![dns("finance-reporting")])];

    // The service's sidecar: mTLS inbound, authz by SPIFFE id.
    // A pod: the app on the sidecar's loopback, the inbound listener the only way in.
    let mut params = cp.bootstrap(&host, "finance-reporting", "v1");
    params.mesh_tls_dir = Some(MESH_DIR.into());
    let mut options = EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]);
    options.hostname = "finance-reporting-v1-sidecar".into();
    let sidecar = Pod::start(
        &net,
        mesh_files(options, &mesh_ca, &mesh_leaves[0]),
        UpstreamOptions::new("finance-reporting", "v1"),
    )
    .await
    .unwrap();
    let app = sidecar.app();

    // The gateway: the edge certificate for the outside, the mesh certificate for the mesh.
    let params = cp.bootstrap(&host, "gateway", "v1");
    let yaml = render_gateway(
        &params,
        &GatewayParams {
            port: EDGE_PORT,
            tls_dir: EDGE_DIR.into(),
            trusted_hops: 0,
        },
    )
    .unwrap();
    let mut options = EnvoyOptions::new(yaml)
        .ports([EDGE_PORT])
        .extra_file(&format!("{EDGE_DIR}/cert.pem"), edge_leaves[0].0.clone())
        .extra_file(&format!("{EDGE_DIR}/key.pem"), edge_leaves[0].1.clone());
    options.hostname = "gateway".into();
    let gateway = Envoy::start(&net, mesh_files(options, &mesh_ca, &mesh_leaves[1]))
        .await
        .unwrap();

    // An outside client: trusts the public CA only, reaches the gateway by its public name.
    let edge_port: u16 = gateway
        .url(EDGE_PORT)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let client = edge_client(
        reqwest::Client::builder().timeout(Duration::from_secs(5)),
        &edge_ca,
        edge_port,
    );
    let url = format!("https://finance-reporting:{edge_port}/reports/q3");
    let finance =
        hs256(json!({"iss": ISSUER, "aud": "weft-edge", "role": "finance", "exp": exp()}));
    let intern = hs256(json!({"iss": ISSUER, "aud": "weft-edge", "role": "intern", "exp": exp()}));
    let forged = format!("{}x", &finance[..finance.len() - 1]);

    let get = |token: Option<String>| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut request = client.get(&url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.text().await.unwrap_or_default())
                }
                Err(_) => (0, String::new()),
            }
        }
    };
    // The mesh (the service's endpoint, its mTLS cluster) and the filter configurations
    // arrive over xDS: wait until the finance token gets through end to end.
    poll_until(
        "the gateway routes a finance token into the mesh",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let finance = finance.clone();
            async move { Ok((get(Some(finance)).await.0 == 200).then_some(())) }
        },
    )
    .await
    .unwrap();

    let (status, body) = get(Some(finance.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("finance-reporting"),
        "the app answered: {body}"
    );
    // The service's sidecar admits only the gateway's SPIFFE id, so the 200 above means the
    // mesh hop carried the gateway's mTLS identity; a request without any token or role is
    // stopped at the edge and never reaches the app.
    let reached = app.stats().await.unwrap().requests;
    let (status, body) = get(Some(intern)).await;
    assert_eq!(
        (status, body.as_str()),
        (403, "the finance role is required\n")
    );
    assert_eq!(get(Some(forged)).await.0, 401, "a bad signature");
    assert_eq!(get(None).await.0, 403, "no token: no finance role");
    assert_eq!(
        app.stats().await.unwrap().requests,
        reached,
        "denied requests stop at the gateway"
    );

    // The gateway routes to mesh services only: a Host naming the control plane's cluster,
    // the (absent) app's or a version cluster is answered 404 at the edge, and a client's
    // x-weft-cluster is dropped before any filter sees it. HTTP/1.1, so Host is the authority.
    let h1 = edge_client(
        reqwest::Client::builder()
            .http1_only()
            .timeout(Duration::from_secs(5)),
        &edge_ca,
        edge_port,
    );
    // (A version cluster's name, `outbound|...`, is not even a valid Host: Envoy's codec
    // answers 400 before routing; the route guard would answer 404.)
    let response = h1
        .get(&url)
        .bearer_auth(&finance)
        .header("host", "outbound|8080|v1|finance-reporting.default")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    for host in ["weft_xds", "local_app", "weft_xds:443"] {
        let response = h1
            .get(&url)
            .bearer_auth(&finance)
            .header("host", host)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (404, "weft: no declared service has this Host\n"),
            "Host: {host}"
        );
    }
    let reached = app.stats().await.unwrap().requests;
    let response = h1
        .get(&url)
        .bearer_auth(&finance)
        .header("x-weft-cluster", "weft_xds")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "x-weft-cluster is ignored");
    assert_eq!(app.stats().await.unwrap().requests, reached + 1);

    // Plain HTTP to the HTTPS port is refused.
    let plain = weft_e2e::http_client()
        .get(format!("http://127.0.0.1:{edge_port}/reports/q3"))
        .header("host", "finance-reporting")
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status().as_u16() == 400),
        "{plain:?}"
    );
    // A client that does not trust the edge certificate's CA does not get in either.
    let stranger = edge_client(reqwest::Client::builder(), &mesh_ca, edge_port);
    assert!(stranger.get(&url).send().await.is_err());

    // The mesh hop was mTLS: the service's sidecar counted TLS handshakes with a peer
    // certificate on its inbound listener, and the app saw exactly the admitted requests.
    let stats = sidecar.stats().await.unwrap();
    let handshakes = stats
        .iter()
        .filter(|(k, _)| k.starts_with("listener.") && k.ends_with(".ssl.handshake"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert!(
        handshakes >= 1,
        "no TLS handshake on the sidecar: {stats:?}"
    );
    let peer_certs = stats
        .iter()
        .filter(|(k, _)| k.ends_with(".ssl.no_certificate"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert_eq!(peer_certs, 0, "every mesh caller presented a certificate");
    cp.stop().await;
}
