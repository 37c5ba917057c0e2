//! What Envoy does before any weft filter runs, tried as a hostile caller would, at listeners
//! made by `weft bootstrap` (sidecar inbound and outbound, the edge gateway) and served by the
//! weft xDS server:
//! - every path variant is normalized (or refused with 400) before authz and the app see it:
//!   the app receives exactly the normalized path, and a DENY on `/admin` stops every variant
//!   Envoy turns into `/admin...`;
//! - `X-Forwarded-For` does not move `source.address`: `ipBlocks` sees the TCP peer at a
//!   sidecar and at a gateway with 0 trusted hops; with `--gateway-trusted-hops 1` it sees the
//!   address the trusted proxy appended;
//! - `Host: local_app`, `Host: weft_xds`, a version cluster's name, or a caller's own
//!   `x-weft-cluster` reach nothing but the declared services.
#![cfg(test)]

mod pki_common;
mod xds_common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use weft_e2e::{
    poll_until, raw_request_to, reqwest, xds_support::network_gateway, Envoy, EnvoyOptions, Pod,
    TestNet,
};
use weft_xds::gateway::{render_gateway, GatewayParams};
use weft_xds::{FilterSpec, SidecarGroup};
use xds_common::{reviews_services, ControlPlane, INBOUND, OUTBOUND};

const V2_CLUSTER: &str = "outbound|9080|v2|reviews.default";
const EDGE_DIR: &str = "/etc/weft/edge";
const EDGE_PORT: u16 = 8443;
/// authz's answer when the source address is outside the ALLOW policy's `ipBlocks` (not the
/// fail-closed default's `RBAC: access denied`, so a 403 here is the address decision).
const NOT_ALLOWED: &str = "outside the allowed addresses\n";

/// `(request target as sent, what the app receives)`: Envoy 1.40 with `normalize_path`,
/// `merge_slashes` and `UNESCAPE_AND_FORWARD` (the query is not part of the app's path).
const NORMALIZED: &[(&str, &str)] = &[
    ("//admin", "/admin"),
    ("/./admin", "/admin"),
    ("/x/../admin", "/admin"),
    ("/%61dmin", "/admin"),
    ("/ad%6din", "/admin"),
    ("/admin%2fsecret", "/admin/secret"),
    ("/admin%2Fsecret", "/admin/secret"),
    ("/admin%5csecret", "/admin/secret"),
    ("/admin\\secret", "/admin/secret"),
    ("/%2e%2e/admin", "/admin"),
    ("/.%2e/admin", "/admin"),
    ("/%2e/admin", "/admin"),
    ("/admin/.", "/admin/"),
    ("/admin/%2e", "/admin/"),
    ("http://x/admin", "/admin"),
    ("/admin?x=1", "/admin"),
    ("/x/%2e%2e/admin", "/admin"),
    ("/x/.%2E/admin", "/admin"),
    ("/x/%2E%2E/admin", "/admin"),
    ("/%2F%2Fadmin", "/admin"),
    ("/admin/..%2f..%2fadmin", "/admin"),
    ("/../admin", "/admin"),
    ("/a/b/../../admin", "/admin"),
    ("/admin//x", "/admin/x"),
    ("/x/..%5cadmin", "/admin"),
    ("/x\\..\\admin", "/admin"),
    ("/a;b/../admin", "/admin"),
];

/// Refused by Envoy's codec or path normalization: 400, the app never sees them.
const REFUSED: &[&str] = &[
    "/admin%00",
    "/admin#frag",
    "admin",
    "%c0%ae%c0%ae/admin",
    "*",
];

/// Left as they are by Envoy (case, `;` parameters, double encoding, encoded space/`#`/`?`,
/// overlong UTF-8): what they mean is authz's business, not the listener's. (authz refuses
/// `;` path parameters with 400 by default: v1's authz strips them instead, so the app's view
/// of `/admin;x` shows what the listener passed on; v2 keeps the default, see [`PATH_PARAMETER`].)
const UNCHANGED: &[&str] = &[
    "/ADMIN",
    "/admin;x",
    "/%2561dmin",
    "/admin%20",
    "/admin%23x",
    "/admin%3fx",
    "/%c0%ae%c0%ae/admin",
];

/// authz's answer (the default `pathParameters: reject`) to a path with `;`.
const PATH_PARAMETER: &str = "bad request: `;` path parameters are not accepted\n";

/// authz for reviews: DENY `/admin` and `/admin/*` when `x-probe: deny` (so the same variant
/// is first echoed, then denied); ALLOW only callers inside `allow_cidr`. `path_parameters`:
/// authz's `;` handling (`None`: the default, reject).
fn reviews_authz(allow_cidr: &str, path_parameters: Option<&str>) -> Value {
    let mut config = json!({
        "trust_domain": "cluster.local",
        "policies": [
            {"name": "no-admin", "action": "DENY", "rules": [{
                "paths": ["/admin", "/admin/*"],
                "headers": [{"name": "x-probe", "values": ["deny"]}]}]},
            {"name": "by-address", "action": "ALLOW", "rules": [{"ip_blocks": [allow_cidr]}],
             "deny_response": {"status": 403, "body": NOT_ALLOWED}},
        ]
    });
    if let Some(mode) = path_parameters {
        config["path_parameters"] = json!(mode);
    }
    config
}

/// The gateway admits only callers from 6.6.6.0/24 (which no test client is).
fn gateway_authz() -> Value {
    json!({
        "trust_domain": "cluster.local",
        "policies": [{"name": "by-address", "action": "ALLOW",
            "rules": [{"ip_blocks": ["6.6.6.0/24"]}],
            "deny_response": {"status": 403, "body": NOT_ALLOWED}}]
    })
}

/// The test network as a /16 (docker networks here are /16: the sidecars and the host side).
fn network_cidr(gateway_ip: &str) -> String {
    let octets: Vec<&str> = gateway_ip.split('.').collect();
    format!("{}.{}.0.0/16", octets[0], octets[1])
}

/// Fields drop in order: the containers before the network they are on.
struct Mesh {
    cp: ControlPlane,
    host: String,
    /// reviews v1: the app in a pod with its sidecar (`m.v1.url(INBOUND)`, `m.v1.app()`).
    v1: Pod,
    v2: Option<Pod>,
    net: TestNet,
}

/// reviews v1 (ALLOW the test network) and, with `with_v2`, reviews v2 (ALLOW only
/// 6.6.6.0/24), each a pod (the app behind a sidecar from `weft bootstrap`); `gateway`
/// filters too.
async fn mesh(label: &str, with_v2: bool) -> Mesh {
    let net = TestNet::new(label);
    let host = network_gateway(&net).unwrap();
    let cp = ControlPlane::start(0).await;
    let filters = BTreeMap::from([
        (
            SidecarGroup::new("default", "reviews", "v1"),
            vec![FilterSpec::new(
                "authz",
                reviews_authz(&network_cidr(&host), Some("strip")).to_string(),
            )],
        ),
        (
            SidecarGroup::new("default", "reviews", "v2"),
            vec![FilterSpec::new(
                "authz",
                reviews_authz("6.6.6.0/24", None).to_string(),
            )],
        ),
        (
            SidecarGroup::new("default", "gateway", "v1"),
            vec![FilterSpec::new("authz", gateway_authz().to_string())],
        ),
    ]);
    cp.state.set_config(1, filters, reviews_services()).unwrap();
    let v1 = cp.sidecar(&net, &host, "reviews", "v1").await;
    let v2 = if with_v2 {
        Some(cp.sidecar(&net, &host, "reviews", "v2").await)
    } else {
        None
    };
    Mesh {
        cp,
        host,
        v1,
        v2,
        net,
    }
}

/// One HTTP/1.1 request written byte for byte (no client-side path clean-up), on its own
/// connection. `url` is `http://<address>[<prefix>]`: the request target is `<prefix><target>`
/// (a prefix for the pod's forwarder, [`Pod::local_url`]). Returns the status (0: no answer)
/// and the body.
async fn raw(url: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let rest = url.trim_start_matches("http://");
    let (address, prefix) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut request = format!("GET {prefix}{target} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    let reply = raw_request_to(address, request.as_bytes()).await;
    (reply.status, reply.body)
}

/// The path and headers the app echoed.
fn echoed(body: &str) -> (String, Value) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    (
        v["path"].as_str().unwrap_or("").to_string(),
        v["headers"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_sidecar_normalizes_paths_ignores_spoofed_xff_and_routes_only_declared_hosts() {
    let m = mesh("hostile-sidecar", true).await;
    // The path variants are written byte for byte to the inbound listener (mapped to the host):
    // not through the pod's forwarder, whose HTTP stack would parse (and refuse or re-encode)
    // some of them before Envoy saw them.
    let inbound = m.v1.url(INBOUND);
    let host = [("host", "reviews")];
    // Ready: authz configured (the fail-closed default answers 403 to everything).
    poll_until(
        "reviews v1 answers through its sidecar",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { Ok((raw(&inbound, "/ready", &host).await.0 == 200).then_some(())) },
    )
    .await
    .unwrap();

    // 1. Paths: what the app receives, and the DENY on /admin stops every variant.
    for (sent, expected) in NORMALIZED {
        let (status, body) = raw(&inbound, sent, &host).await;
        assert_eq!(
            (status, echoed(&body).0.as_str()),
            (200, *expected),
            "{sent:?}"
        );
    }
    m.v1.app().reset().await.unwrap();
    let deny = [("host", "reviews"), ("x-probe", "deny")];
    for (sent, expected) in NORMALIZED {
        if *expected == "/admin" || expected.starts_with("/admin/") {
            assert_eq!(raw(&inbound, sent, &deny).await.0, 403, "{sent:?}");
        }
    }
    for sent in REFUSED {
        assert_eq!(raw(&inbound, sent, &host).await.0, 400, "{sent:?}");
    }
    assert_eq!(
        m.v1.app().stats().await.unwrap().requests,
        0,
        "no denied or refused variant reached the app"
    );
    for sent in UNCHANGED {
        let (status, body) = raw(&inbound, sent, &host).await;
        let path = sent.split('?').next().unwrap_or(sent);
        assert_eq!((status, echoed(&body).0.as_str()), (200, path), "{sent:?}");
    }
    // v1 strips `;` parameters before matching: `/admin;x` is `/admin` to the DENY.
    assert_eq!(raw(&inbound, "/admin;x", &deny).await.0, 403);
    // A header name with `_` (x_user vs x-user for CGI-style apps) is refused.
    assert_eq!(
        raw(&inbound, "/", &[("host", "reviews"), ("x_user", "mallory")])
            .await
            .0,
        400
    );

    // 2. Source address: the TCP peer, X-Forwarded-For is appended to and never believed.
    let spoof = [("host", "reviews"), ("x-forwarded-for", "6.6.6.6")];
    let (status, body) = raw(&inbound, "/whoami", &spoof).await;
    assert_eq!(status, 200, "v1 allows the test network: {body}");
    let forwarded = echoed(&body).1["x-forwarded-for"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let peer = forwarded
        .rsplit(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert_eq!(
        forwarded,
        format!("6.6.6.6,{peer}"),
        "Envoy appends the real peer"
    );
    assert_ne!(peer, "6.6.6.6");
    let v2_inbound = m.v2.as_ref().unwrap().url(INBOUND);
    // v2 admits only 6.6.6.0/24: a spoofed X-Forwarded-For does not get in.
    poll_until(
        "reviews v2 configured",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let answer = raw(&v2_inbound, "/", &host).await;
            Ok((answer == (403, NOT_ALLOWED.to_string())).then_some(()))
        },
    )
    .await
    .unwrap();
    for xff in ["6.6.6.6", "1.2.3.4, 6.6.6.6", "6.6.6.6, 6.6.6.7"] {
        let spoofed = [("host", "reviews"), ("x-forwarded-for", xff)];
        let answer = raw(&v2_inbound, "/", &spoofed).await;
        assert_eq!(answer, (403, NOT_ALLOWED.to_string()), "{xff}");
    }
    // v2's authz has the default `pathParameters: reject`: the `;` the listener let through
    // is refused before any policy (the address check included) is looked at.
    assert_eq!(
        raw(&v2_inbound, "/admin;x", &host).await,
        (400, PATH_PARAMETER.to_string())
    );

    // 3. Routes: only declared services by their declared host.
    host_probes(&m).await;
    m.cp.stop().await;
}

/// The sidecar's outbound listener reaches `reviews` (stable v1), and nothing by an internal
/// name; the inbound listener reaches only its own app whatever the Host.
/// The outbound listener binds the pod's loopback: requests go through the pod's forwarder
/// (`pod.local_url(OUTBOUND)`), sent from inside the pod as the app would (paths here are `/`,
/// nothing for the forwarder to normalize; the Host and other headers are passed on).
async fn host_probes(m: &Mesh) {
    let outbound = m.v1.local_url(OUTBOUND);
    poll_until(
        "the outbound routes reach reviews",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { Ok((raw(&outbound, "/", &[("host", "reviews")]).await.0 == 200).then_some(())) },
    )
    .await
    .unwrap();
    let (status, body) = raw(&outbound, "/", &[("host", "reviews:9080")]).await;
    assert_eq!((status, version_of(&body)), (200, "v1".into()), "host:port");
    m.v1.app().reset().await.unwrap();
    for internal in [
        "local_app",
        "weft_xds",
        V2_CLUSTER,
        // The pod's name on the test network (the app has none of its own any more).
        "reviews-v1-sidecar",
        "reviews-v1-app",
        "example.com",
    ] {
        let (status, body) = raw(&outbound, "/", &[("host", internal)]).await;
        assert_eq!(
            (status, body.as_str()),
            not_routed(internal),
            "Host: {internal}"
        );
    }
    assert_eq!(m.v1.app().stats().await.unwrap().requests, 0);
    // A caller's own x-weft-cluster is gone before any filter or route sees it: v2 (which
    // would answer 403 to this caller) is never reached, nor an internal cluster.
    for pick in [V2_CLUSTER, "weft_xds", "local_app"] {
        for _ in 0..5 {
            let headers = [("host", "reviews"), ("x-weft-cluster", pick)];
            let (status, body) = raw(&outbound, "/", &headers).await;
            assert_eq!((status, version_of(&body)), (200, "v1".into()), "{pick}");
            assert!(echoed(&body).1.get("x-weft-cluster").is_none(), "{body}");
        }
    }
    // Inbound: whatever the Host, the sidecar's own app answers (never the control plane);
    // a version cluster's name is not a valid authority at all.
    for h in ["weft_xds", "local_app", "payments"] {
        let (status, body) = raw(&m.v1.url(INBOUND), "/", &[("host", h)]).await;
        assert_eq!((status, version_of(&body)), (200, "v1".into()), "Host: {h}");
    }
    let (status, _) = raw(&m.v1.url(INBOUND), "/", &[("host", V2_CLUSTER)]).await;
    assert_eq!(status, 400, "Host: {V2_CLUSTER}");
}

/// What a Host no declared service has gets: 404 from the catch-all route; a version
/// cluster's name (`outbound|...`) is not even a valid authority (`|`): Envoy's codec
/// answers 400 before any route.
fn not_routed(host: &str) -> (u16, &'static str) {
    if host.contains('|') {
        (400, "Bad Request")
    } else {
        (404, "weft: no declared service has this Host\n")
    }
}

fn version_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["version"].as_str().unwrap_or("").to_string()
}

/// A gateway from `weft bootstrap --gateway [--gateway-trusted-hops N]`.
async fn gateway(m: &Mesh, hops: u32, name: &str) -> (Envoy, u16) {
    let edge = pki_common::TestCa::new("weft e2e public CA");
    let leaf = edge.leaf(vec![pki_common::dns("reviews")]);
    let mut params = m.cp.bootstrap(&m.host, "gateway", "v1");
    params.node_id = Some(name.into());
    let yaml = render_gateway(
        &params,
        &GatewayParams {
            port: EDGE_PORT,
            tls_dir: EDGE_DIR.into(),
            trusted_hops: hops,
        },
    )
    .unwrap();
    let mut options = EnvoyOptions::new(yaml)
        .ports([EDGE_PORT])
        .extra_file(&format!("{EDGE_DIR}/cert.pem"), leaf.0)
        .extra_file(&format!("{EDGE_DIR}/key.pem"), leaf.1);
    options.hostname = name.into();
    let envoy = Envoy::start(&m.net, options).await.unwrap();
    let port = envoy.host_port(EDGE_PORT).unwrap();
    (envoy, port)
}

/// GET `https://reviews:<port><path>` (HTTP/1.1, certificate not checked: the edge's
/// certificate is not the point here) with `host` and `x-forwarded-for`.
async fn edge_get(port: u16, path: &str, host: &str, xff: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
    edge_request(port, path, host, &headers).await
}

async fn edge_get_with(port: u16, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    edge_request(port, "/", host, headers).await
}

async fn edge_request(
    port: u16,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .resolve(
            "reviews",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut request = client
        .get(format!("https://reviews:{port}{path}"))
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_believes_xff_only_from_trusted_hops_and_routes_only_declared_services() {
    let m = mesh("hostile-gateway", false).await;
    let (_g0, zero) = gateway(&m, 0, "gateway-hops-0").await;
    let (_g1, one) = gateway(&m, 1, "gateway-hops-1").await;
    let spoof = Some("6.6.6.6");
    // hops 1: the address the (trusted) proxy in front appended is the client: admitted.
    poll_until(
        "the hops-1 gateway routes into the mesh",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { Ok((edge_get(one, "/", "reviews", spoof).await.0 == 200).then_some(())) },
    )
    .await
    .unwrap();
    poll_until(
        "the hops-0 gateway is configured",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let answer = edge_get(zero, "/", "reviews", None).await;
            Ok((answer == (403, NOT_ALLOWED.to_string())).then_some(()))
        },
    )
    .await
    .unwrap();
    // hops 0: X-Forwarded-For is not believed, whatever it says.
    for xff in ["6.6.6.6", "1.2.3.4, 6.6.6.6", "6.6.6.6, 6.6.6.7"] {
        assert_eq!(
            edge_get(zero, "/", "reviews", Some(xff)).await,
            (403, NOT_ALLOWED.to_string()),
            "{xff}"
        );
    }
    assert_eq!(
        edge_get(one, "/", "reviews", None).await,
        (403, NOT_ALLOWED.to_string()),
        "no XFF: the TCP peer"
    );
    // The app behind sees the normalized path through the gateway too.
    for (sent, expected) in [
        ("//admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/admin%2fx", "/admin/x"),
    ] {
        let (status, body) = edge_get(one, sent, "reviews", spoof).await;
        assert_eq!(
            (status, echoed(&body).0.as_str()),
            (200, expected),
            "{sent}"
        );
    }
    // Only declared mesh services: internal clusters and version clusters are 404 even for
    // an admitted client, and the client's x-weft-cluster is dropped.
    m.v1.app().reset().await.unwrap();
    for internal in [
        "local_app",
        "weft_xds",
        V2_CLUSTER,
        "outbound|9080|v1|reviews.default",
    ] {
        let (status, body) = edge_get(one, "/", internal, spoof).await;
        assert_eq!(
            (status, body.as_str()),
            not_routed(internal),
            "Host: {internal}"
        );
    }
    assert_eq!(m.v1.app().stats().await.unwrap().requests, 0);
    // A client's x-weft-cluster naming v2 (which has no sidecar here: the route would answer
    // 503 if it followed the header) is dropped: the stable version answers.
    let (status, body) = edge_get_with(
        one,
        "reviews",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-weft-cluster", V2_CLUSTER),
        ],
    )
    .await;
    assert_eq!((status, version_of(&body)), (200, "v1".into()), "{body}");
    m.cp.stop().await;
}
