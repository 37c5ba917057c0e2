//! A sidecar started while the control plane is down serves at once with its safe defaults
//! (inbound authz denies everything: 403, not Envoy's 500 NFCF) and converges on the policy
//! as soon as the control plane comes up.
#![cfg(test)]

mod xds_common;

use std::time::{Duration, Instant};

use serde_json::json;
use weft_e2e::{xds_support::network_gateway, EnvoyOptions, Pod, TestNet, UpstreamOptions};
use weft_xds::{bootstrap, XdsState};
use xds_common::{status_of, until_statuses, ControlPlane, INBOUND};

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_starts_safe_without_control_plane_and_converges_when_it_comes() {
    let net = TestNet::new("xds-startup");
    let gateway = network_gateway(&net).unwrap();
    // A port nobody listens on yet (bound, then released).
    let port = {
        let probe = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let params = bootstrap::BootstrapParams::new("finance", "v1", &gateway, port);
    let started = Instant::now();
    let envoy = Pod::start(
        &net,
        EnvoyOptions::new(bootstrap::render(&params).unwrap()).ports([INBOUND]),
        UpstreamOptions::new("finance", "v1"),
    )
    .await
    .unwrap();
    let url = |path: &str| format!("{}{path}", envoy.url(INBOUND));
    let first = until_statuses(
        "safe default (deny) served",
        &[(url("/a/1"), 403)],
        Duration::from_secs(20),
    )
    .await;
    println!(
        "control plane down: Envoy ready and denying after {} ms",
        (started.elapsed()).as_millis()
    );
    let _ = first;
    for path in ["/a/1", "/b/1", "/"] {
        assert_eq!(status_of(&url(path)).await, 403, "{path}: fail closed");
    }

    let state = XdsState::new(ControlPlane::settings(), ControlPlane::modules());
    let cp = ControlPlane::serve(state, port).await;
    let up = Instant::now();
    cp.apply_authz(
        1,
        ("finance", "v1"),
        &json!({"policies": [{"name": "a", "action": "ALLOW", "rules": [{"paths": ["/a/*"]}]}]}),
    );
    until_statuses(
        "policy enforced after the control plane came up",
        &[(url("/a/1"), 200), (url("/b/1"), 403)],
        Duration::from_secs(20),
    )
    .await;
    println!(
        "control plane up: policy enforced {} ms later (reconnect back-off <= 0.5 s + module fetch)",
        up.elapsed().as_millis()
    );
    cp.stop().await;
}
