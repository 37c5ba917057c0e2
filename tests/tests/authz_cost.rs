//! A first per-request cost figure: the same Envoy image, router-only vs with weft authz, wrk
//! against each in turn (A B A B). Not a test of speed — nothing here asserts a timing; it
//! prints figures for the issue notes. Run: `cargo test -p weft-e2e --test authz_cost -- --ignored --nocapture`.
#![cfg(test)]

use serde_json::json;
use weft_e2e::{Envoy, EnvoyConfig, EnvoyOptions, TestNet, Upstream, WasmFilter};

/// Requests/second reported by a bounded wrk run (1 connection, 1 thread, `secs` seconds).
fn wrk_rps(url: &str, secs: u32) -> f64 {
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c1", &format!("-d{secs}s"), url])
        .output()
        .expect("wrk is installed by scripts/setup");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run by hand"]
async fn router_only_vs_authz_per_request_cost() {
    let net = TestNet::new("authz-cost");
    let upstream = Upstream::start(&net, "finance-reporting", "v1")
        .await
        .unwrap();
    let config = json!({
        "trust_domain": "weft.test",
        "policies": [
            {"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]},
            {"name": "readers", "action": "ALLOW", "rules": [{"methods": ["GET"], "paths": ["/reports/*"]}]}
        ]
    });
    let plain = EnvoyConfig::sidecar_inbound(upstream.alias()).to_yaml();
    let with_authz = EnvoyConfig::sidecar_inbound(upstream.alias())
        .wasm_filter(WasmFilter::new("authz", config))
        .to_yaml();
    let a = Envoy::start(&net, EnvoyOptions::new(plain)).await.unwrap();
    let b = Envoy::start(
        &net,
        EnvoyOptions {
            hostname: "envoy-authz".into(),
            ..EnvoyOptions::new(with_authz)
        },
    )
    .await
    .unwrap();
    let (ua, ub) = (
        format!("{}/reports/q3", a.url(10_000)),
        format!("{}/reports/q3", b.url(10_000)),
    );
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ra.push(wrk_rps(&ua, 4));
        rb.push(wrk_rps(&ub, 4));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ma, mb) = (median(&mut ra), median(&mut rb));
    println!(
        "router-only: {ma:.0} req/s ({:.1} us/request end to end)",
        1e6 / ma
    );
    println!(
        "with authz : {mb:.0} req/s ({:.1} us/request end to end)",
        1e6 / mb
    );
    println!(
        "authz adds {:.1} us/request; throughput ratio {:.3}",
        1e6 / mb - 1e6 / ma,
        mb / ma
    );
}
