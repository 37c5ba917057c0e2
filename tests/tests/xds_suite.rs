//! Suite mode over xDS in real Envoy sidecars (`weft serve --suite` + `weft bootstrap --suite`):
//! each sidecar has two ECDS entries, `weft.suite.inbound` (telemetry + authz) and
//! `weft.suite.outbound` (telemetry + canary + fault + breaker), both `suite.wasm` with VM id
//! `suite`. Checked: authz denies and allows on the inbound, the canary routes on the outbound,
//! the telemetry stages' signed batches reach the control plane's ingest (with authz's
//! outcome, passed in memory, and the requests authz answered locally), and each worker runs
//! one VM for both entries.
#![cfg(test)]

mod xds_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weft_compile::{suite_configs, SidecarFilters};
use weft_e2e::{
    http_client, poll_until, xds_support::network_gateway, EnvoyOptions, Pod, TestNet,
    UpstreamOptions,
};
use weft_filter_core::telemetry::{Direction, TelemetryConfig};
use weft_telemetry_plane::{GroupKeys, Telemetry};
use weft_xds::{bootstrap::BootstrapParams, suite_bootstrap, FilterSpec, SidecarGroup, XdsState};
use xds_common::{reviews_services as services, ControlPlane, INBOUND, OUTBOUND};

const V1: &str = "outbound|9080|v1|reviews.default";
const V2: &str = "outbound|9080|v2|reviews.default";

/// Every sidecar's filters: reviews denies `/admin/*` and allows only GET; productpage sends all of reviews to v2
/// (the route's fallback would be the stable v1, so a v2 answer is the canary's doing) and
/// answers `/teapot` itself with a fault abort (418), behind a dry-run fault on every call
/// to reviews that would abort and delay all of them (and injects nothing).
fn sidecar_filters() -> SidecarFilters {
    serde_json::from_value(json!({
        "authz": {"policies": [{"name": "no-admin", "action": "DENY",
            "rules": [{"paths": ["/admin/*"]}]},
            {"name": "readers", "action": "ALLOW", "rules": [{"methods": ["GET"]}]}]},
        "canary": {"services": [{
            "host": "reviews", "stable": "v1",
            "versions": {"v1": {"cluster": V1}, "v2": {"cluster": V2}},
            "split": [{"version": "v1", "weight": 0}, {"version": "v2", "weight": 10000}]}]},
        "fault": {"percent_cap": 100.0, "policies": [
            {"name": "rehearse", "dry_run": true, "match": {"hosts": ["reviews"]},
             "abort": {"percent": 100.0, "http_status": 503},
             "delay": {"percent": 100.0, "fixed_ms": 3000}},
            {"name": "teapot",
            "match": {"hosts": ["reviews"], "path_prefixes": ["/teapot"]},
            "abort": {"percent": 100.0, "http_status": 418}}]},
        "breaker": {},
    }))
    .unwrap()
}

/// A group's telemetry configuration with its own key, as `weft serve` makes it (reports
/// every 500 ms here, to keep the test short).
fn telemetry_config(
    telemetry: &Telemetry,
    (service, version): (&str, &str),
    direction: Direction,
) -> TelemetryConfig {
    TelemetryConfig {
        direction,
        namespace: "default".into(),
        service: service.into(),
        version: version.into(),
        key: telemetry.keys().key_hex("default", service, version),
        flush_interval_ms: 500,
        ..TelemetryConfig::default()
    }
}

/// The two suite entries per group, as `weft serve --suite` makes them: the same compiled
/// configuration, each group's telemetry with its own key.
fn suite_filters(telemetry: &Telemetry) -> BTreeMap<SidecarGroup, Vec<FilterSpec>> {
    let filters = sidecar_filters();
    [("reviews", "v1"), ("reviews", "v2"), ("productpage", "v1")]
        .into_iter()
        .map(|group| {
            let inbound = telemetry_config(telemetry, group, Direction::Inbound);
            let outbound = telemetry_config(telemetry, group, Direction::Outbound);
            let configs = suite_configs(&filters, Some((&inbound, &outbound))).unwrap();
            (
                SidecarGroup::new("default", group.0, group.1),
                vec![
                    FilterSpec::suite_inbound(configs.inbound),
                    FilterSpec::suite_outbound(configs.outbound),
                ],
            )
        })
        .collect()
}

/// productpage's outbound reports, over every edge: (requests, 4xx).
fn outbound_total(graph: &weft_telemetry_plane::Graph) -> (u64, u64) {
    graph
        .edges
        .iter()
        .filter(|e| e.source == "productpage" && e.reported_by == ["outbound"])
        .fold((0, 0), |(requests, errors), e| {
            (
                requests + e.requests,
                errors + e.status.get("4xx").copied().unwrap_or(0),
            )
        })
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// The same filters as today's default mode (five separate modules) for `details`: a
/// comparison sidecar (how many VMs they take), and a check of the standalone
/// `telemetry.wasm`, which learns authz's outcome from the stream property.
fn separate_filters(telemetry: &Telemetry) -> (SidecarGroup, Vec<FilterSpec>) {
    let filters = sidecar_filters();
    let telemetry = |direction: Direction| FilterSpec {
        name: format!("weft.telemetry.{}", direction.as_str()),
        module: "telemetry".into(),
        configuration: to_json(&telemetry_config(telemetry, ("details", "v1"), direction)),
        failure: weft_xds::FailureMode::FailOpen,
    };
    (
        SidecarGroup::new("default", "details", "v1"),
        vec![
            telemetry(Direction::Inbound),
            telemetry(Direction::Outbound),
            FilterSpec::new("authz", to_json(&filters.authz)),
            FilterSpec::new("canary", to_json(&filters.canary)),
            FilterSpec::new("fault", to_json(&filters.fault)),
            FilterSpec::new("breaker", to_json(&filters.breaker)),
        ],
    )
}

async fn suite_sidecar(
    net: &TestNet,
    gateway: &str,
    port: u16,
    (service, version): (&str, &str),
    concurrency: u32,
) -> Pod {
    let params = BootstrapParams::new(service, version, gateway, port);
    let yaml = suite_bootstrap::render_suite(&params).unwrap();
    let mut options = EnvoyOptions::new(yaml)
        .ports([INBOUND])
        .concurrency(concurrency);
    options.hostname = format!("{service}-{version}-sidecar");
    Pod::start(net, options, UpstreamOptions::new(service, version))
        .await
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    send(reqwest::Method::GET, url).await
}

async fn post(url: &str) -> (u16, String) {
    send(reqwest::Method::POST, url).await
}

async fn send(method: reqwest::Method, url: &str) -> (u16, String) {
    let response = http_client()
        .request(method, url)
        .header("host", "reviews")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn suite_mode_enforces_authz_routes_canaries_reports_telemetry_in_one_vm() {
    let net = TestNet::new("xds-suite");
    let gateway = network_gateway(&net).unwrap();

    // The in-process xDS server, with the telemetry ingest `weft serve` mounts on it.
    let telemetry = Telemetry::new(GroupKeys::random().unwrap());
    let state = XdsState::new(ControlPlane::settings(), ControlPlane::modules());
    assert!(state.module("suite").is_some(), "dist/filters/suite.wasm");
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ingest = weft_telemetry_plane::ingest_router(Arc::clone(&telemetry));
    let serving = Arc::clone(&state);
    let server = tokio::spawn(async move {
        weft_xds::serve_with_tls(listener, serving, ingest, None, std::future::pending())
            .await
            .unwrap();
    });
    let mut filters = suite_filters(&telemetry);
    filters.extend([separate_filters(&telemetry)]);
    state.set_config(1, filters, services()).unwrap();

    // The caller has two workers: one VM each for both suite entries, if they share.
    let mut sidecars = Vec::new();
    for (group, workers) in [
        (("reviews", "v1"), 1),
        (("reviews", "v2"), 1),
        (("productpage", "v1"), 2),
    ] {
        sidecars.push(suite_sidecar(&net, &gateway, port, group, workers).await);
    }
    let (v1, caller) = (&sidecars[0], &sidecars[2]);
    // For comparison, a sidecar of today's default mode (five separate modules), two workers.
    let params = BootstrapParams::new("details", "v1", &gateway, port);
    let mut options = EnvoyOptions::new(weft_xds::bootstrap::render(&params).unwrap())
        .ports([INBOUND])
        .concurrency(2);
    options.hostname = "details-v1-sidecar".into();
    let separate = Pod::start(&net, options, UpstreamOptions::new("details", "v1"))
        .await
        .unwrap();
    let synced = state.wait_synced(1, Some(4), Duration::from_secs(30)).await;
    if !synced.iter().all(|s| s.synced_revision == Some(1)) {
        panic!("{synced:?}\n{}", caller.logs().await);
    }
    // Each sidecar acknowledged exactly the two suite entries.
    let names: Vec<String> = suite_filters(&telemetry)
        .into_values()
        .next()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, [weft_xds::SUITE_INBOUND, weft_xds::SUITE_OUTBOUND]);

    // Inbound authz (directly at reviews v1's inbound listener): deny by policy, allow else.
    let (status, _) = get(&format!("{}/admin/users", v1.url(INBOUND))).await;
    assert_eq!(status, 403, "{}", v1.logs().await);
    let (status, body) = get(&format!("{}/reviews/1", v1.url(INBOUND))).await;
    assert_eq!(status, 200, "{body}");

    // The same at the default-mode sidecar (standalone authz.wasm and telemetry.wasm).
    let (status, _) = get(&format!("{}/admin/users", separate.url(INBOUND))).await;
    assert_eq!(status, 403, "{}", separate.logs().await);
    let (status, _) = get(&format!("{}/reviews/1", separate.url(INBOUND))).await;
    assert_eq!(status, 200);

    // Outbound canary: every call from productpage reaches v2 (EDS may need a moment).
    let mut seen = BTreeMap::new();
    poll_until(
        "reviews v2 reachable",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let (status, body) = get(&format!("{}/reviews/1", caller.local_url(OUTBOUND))).await;
            Ok((status == 200 && body.contains("\"v2\"")).then_some(()))
        },
    )
    .await
    .unwrap();
    for _ in 0..20 {
        let (status, body) = get(&format!("{}/reviews/1", caller.local_url(OUTBOUND))).await;
        let version: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let key = format!("{status} {}", version["version"].as_str().unwrap_or("?"));
        *seen.entry(key).or_insert(0) += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("200 v2".to_string(), 20)]),
        "{seen:?}"
    );
    // Through the mesh: v2's inbound suite denies it (the caller's outbound records a 403).
    for _ in 0..3 {
        let (status, _) = get(&format!("{}/admin/x", caller.local_url(OUTBOUND))).await;
        assert_eq!(status, 403);
    }

    // A fault abort: answered by the caller's outbound suite, never sent.
    for _ in 0..2 {
        let (status, _) = get(&format!("{}/teapot", caller.local_url(OUTBOUND))).await;
        assert_eq!(status, 418);
    }

    // Telemetry: the callee's inbound report has the denials (authz's outcome from memory,
    // for requests authz answered itself); the caller's outbound report has the v2 calls.
    let graph = poll_until(
        "telemetry batches",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let graph = telemetry.graph(3600);
            let edge = |version: &str, reporter: &str| {
                graph
                    .edges
                    .iter()
                    .find(|e| {
                        e.destination == "reviews"
                            && e.version == version
                            && e.reported_by.contains(&reporter)
                    })
                    .cloned()
            };
            let v2_in = edge("v2", "inbound");
            let ready = v2_in
                .as_ref()
                .is_some_and(|e| e.denied >= 3 && e.requests >= 23)
                && v2_in.map(|e| e.requests + 2) == Some(outbound_total(&graph).0)
                && edge("v1", "inbound").is_some_and(|e| e.requests >= 2)
                && graph
                    .edges
                    .iter()
                    .any(|e| e.destination == "details" && e.requests >= 2);
            Ok(ready.then_some(graph))
        },
    )
    .await;
    let graph = match graph {
        Ok(graph) => graph,
        Err(error) => panic!(
            "{error}\n{:#?}\n{}",
            telemetry.graph(3600),
            caller.logs().await
        ),
    };
    for edge in &graph.edges {
        println!("edge: {edge:?}");
    }
    println!("ingest: {:?}", graph.ingest);
    assert!(
        graph.ingest.batches > 0 && graph.ingest.rejected == 0,
        "{:?}",
        graph.ingest
    );
    let find = |version: &str, reporter: &str| {
        graph
            .edges
            .iter()
            .find(|e| e.version == version && e.reported_by == [reporter])
            .unwrap()
    };
    // Without mesh mTLS the callee sees no principal: the caller is "external" inbound (D92).
    let v1_in = find("v1", "inbound");
    assert_eq!(
        (v1_in.source.as_str(), v1_in.requests, v1_in.denied),
        ("external", 2, 1)
    );
    let v2_in = find("v2", "inbound");
    assert_eq!((v2_in.denied, v2_in.status.get("4xx")), (3, Some(&3)));
    let details = graph
        .edges
        .iter()
        .find(|e| e.destination == "details")
        .unwrap();
    assert_eq!(
        (details.requests, details.denied),
        (2, 1),
        "standalone telemetry.wasm"
    );
    // The caller saw every call the callee saw, plus the two it aborted itself; the callee's
    // denials are 4xx on its side too.
    let (requests, client_errors) = outbound_total(&graph);
    assert_eq!(requests, v2_in.requests + 2);
    assert_eq!(client_errors, 3 + 2);

    // One VM per worker for both entries: Envoy's wasm runtime gauges.
    let stats = caller.stats().await.unwrap();
    let wasm: BTreeMap<&String, &u64> = stats
        .iter()
        .filter(|(name, _)| name.starts_with("wasm."))
        .collect();
    println!("caller (2 workers) wasm stats: {wasm:?}");
    let active = stats["wasm.envoy.wasm.runtime.v8.active"];
    let v1_active = v1.stat("wasm.envoy.wasm.runtime.v8.active").await.unwrap();
    println!("active VMs: caller (2 workers) {active}, reviews-v1 (1 worker) {v1_active:?}");
    // Measured: 2 VMs on the main thread (the base VM and its thread-local instance) plus
    // ONE per worker for both entries: 3 with one worker, 4 with two. Were the two entries
    // in separate VMs, each worker would add 2 (and the main thread 4).
    assert_eq!(v1_active, Some(3), "reviews-v1, one worker");
    assert_eq!(active, 4, "productpage, two workers: {wasm:?}");
    let separate_active = separate
        .stat("wasm.envoy.wasm.runtime.v8.active")
        .await
        .unwrap();
    println!("active VMs: default mode, five modules, two workers: {separate_active:?}");
    // Five VM ids (the two telemetry entries share `telemetry`), 4 VMs each as above.
    assert_eq!(separate_active, Some(5 * 4));

    // The access logs name the policy and rule of every local reply, nothing otherwise.
    let (status, _) = post(&format!("{}/reviews/1", v1.url(INBOUND))).await;
    assert_eq!(status, 403, "default deny");
    let deny = r#"authz: 403 by no-admin: DENY policy "no-admin" rule 0 matched"#;
    let default_deny =
        "authz: 403 by default-deny: no ALLOW policy matched; ALLOW policies present: readers";
    let logged = poll_until(
        "access log lines",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let v1_log = access_log(&v1.logs().await, "inbound");
            let v2_log = access_log(&sidecars[1].logs().await, "inbound");
            let separate_log = access_log(&separate.logs().await, "inbound");
            let caller_log = access_log(&caller.logs().await, "outbound");
            let ready = v1_log.len() >= 3 && v2_log.len() >= 23 && caller_log.len() >= 25;
            Ok(ready.then_some((v1_log, v2_log, separate_log, caller_log)))
        },
    )
    .await;
    let (v1_log, v2_log, separate_log, caller_log) = logged.unwrap();
    let v1_want: Vec<(String, String, u16, Option<String>)> = vec![
        ("GET".into(), "/admin/users".into(), 403, Some(deny.into())),
        ("GET".into(), "/reviews/1".into(), 200, None),
        (
            "POST".into(),
            "/reviews/1".into(),
            403,
            Some(default_deny.into()),
        ),
    ];
    assert_eq!(v1_log, v1_want, "suite module");
    assert_eq!(separate_log, v1_want[..2], "standalone authz.wasm");
    let teapot = "fault: 418 injected by policy teapot".to_string();
    let aborted: Vec<_> = caller_log.iter().filter(|l| l.1 == "/teapot").collect();
    assert_eq!(aborted.len(), 2);
    assert!(aborted
        .iter()
        .all(|l| (l.2, l.3.as_ref()) == (418, Some(&teapot))));
    // The callee's denials are its own: the caller's outbound log has them without a reason.
    let denied_there: Vec<_> = caller_log.iter().filter(|l| l.1 == "/admin/x").collect();
    assert_eq!(denied_there.len(), 3);
    assert!(denied_there.iter().all(|l| (l.2, &l.3) == (403, &None)));
    // The dry-run fault counted every call to reviews (the teapot ones too: it stands in
    // front of no enforced policy), injected nothing; the teapot policy injected its two.
    let fault_stats = poll_until(
        "dry-run counts",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let logged = access_log(&caller.logs().await, "outbound").len() as u64;
            let stats = caller.stats().await?;
            let stat = |name: &str| stats.get(&format!("wasmcustom.weft.fault.{name}")).copied();
            let counts = [
                "policy.rehearse.would_abort",
                "policy.rehearse.would_delay",
                "would_abort",
                "aborts_injected",
                "delays_injected",
                "policy.teapot.aborts_injected",
            ]
            .map(stat);
            Ok((counts[0] == Some(logged)).then_some((logged, counts)))
        },
    )
    .await;
    let (logged, counts) = fault_stats.unwrap();
    assert_eq!(
        counts,
        [logged, logged, logged, 2, 0, 2].map(Some),
        "would_abort, would_delay, total would_abort, aborts, delays, teapot aborts"
    );
    let denied_here: Vec<_> = v2_log.iter().filter(|l| l.1 == "/admin/x").collect();
    assert_eq!(denied_here.len(), 3);
    let deny_x = Some(deny.to_string());
    assert!(denied_here.iter().all(|l| (l.2, &l.3) == (403, &deny_x)));
    assert!(v2_log
        .iter()
        .filter(|l| l.1 != "/admin/x")
        .all(|l| l.3.is_none()));
    assert!(caller_log
        .iter()
        .filter(|l| l.1 == "/reviews/1")
        .all(|l| l.3.is_none()));

    server.abort();
    let _ = server.await;
}

/// The sidecar's JSON access-log lines of one direction: (method, path, status, `weft`).
fn access_log(logs: &str, direction: &str) -> Vec<(String, String, u16, Option<String>)> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|l| l["direction"] == direction)
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            // A typed number, or a string where Envoy prints one.
            let status = l["status"]
                .as_u64()
                .or_else(|| l["status"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_default() as u16;
            (
                text("method"),
                text("path"),
                status,
                l["weft"].as_str().map(str::to_string),
            )
        })
        .collect()
}
