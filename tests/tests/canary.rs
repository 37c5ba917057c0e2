//! weft canary in real Envoy: an outbound sidecar in front of `reviews` v1 and v2 (and a shadow),
//! with the route reading the filter's `x-weft-cluster` header and falling back to v1.
#![cfg(test)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_e2e::{
    artifact, binomial_interval_999, http_client, poll_until, within_binomial_999, Envoy,
    EnvoyConfig, EnvoyOptions, TestNet, Upstream, UpstreamOptions, WasmFilter,
};
use weft_filter_core::canary::bucket;

const CLUSTER_HEADER: &str = "x-weft-cluster";
const STAT: &str = "wasmcustom.weft.canary";

/// The `reviews` service of the issue: 75/25, beta header and cookie to v2, sticky on
/// `x-user`, cohort headers; `mirror_bp` of requests copied to `reviews-shadow`.
fn reviews_config(mirror_bp: u32) -> Value {
    json!({
        "cluster_header": CLUSTER_HEADER,
        "services": [{
            "host": "reviews",
            "stable": "v1",
            "versions": {"v1": {"cluster": "reviews-v1"}, "v2": {"cluster": "reviews-v2"}},
            "rules": [
                {"header": {"name": "x-beta", "value": "true"}, "version": "v2"},
                {"cookie": {"name": "beta", "value": "1"}, "version": "v2"}
            ],
            "split": [{"version": "v1", "weight": 7500}, {"version": "v2", "weight": 2500}],
            "sticky": {"key": {"header": "x-user"}, "salt": "reviews-2026"},
            "cohort": {"request_header": "x-weft-cohort", "response_header": "x-weft-version"},
            "mirror": {"cluster": "reviews-shadow", "percent_bp": mirror_bp}
        }]
    })
}

/// Listener 10000: `filters`, then a route on `x-weft-cluster` when present, else the stable
/// cluster `reviews-v1`. Clusters reviews-v1, reviews-v2 and reviews-shadow.
fn bootstrap(filters: Vec<Value>) -> Value {
    let mut config = EnvoyConfig::sidecar_inbound("reviews-v1")
        .cluster("reviews-v1", "reviews-v1", 8080)
        .cluster("reviews-v2", "reviews-v2", 8080)
        .cluster("reviews-shadow", "reviews-shadow", 8080)
        .to_json();
    let hcm = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["routes"] = routes();
    let router = hcm["http_filters"][0].clone();
    let mut chain = filters;
    chain.push(router);
    hcm["http_filters"] = Value::Array(chain);
    // File-based ECDS (the live-update test) needs a node identity.
    config["node"] = json!({"id": "canary-test", "cluster": "canary-test"});
    config
}

fn routes() -> Value {
    json!([
        {"match": {"prefix": "/", "headers": [{"name": CLUSTER_HEADER, "present_match": true}]},
         "route": {"cluster_header": CLUSTER_HEADER}},
        {"match": {"prefix": "/"}, "route": {"cluster": "reviews-v1"}}
    ])
}

/// The canary filter as a plain `http_filters` entry.
fn canary_filter(config: Value, fail_open: bool) -> Value {
    let yaml = EnvoyConfig::sidecar_inbound("x")
        .wasm_filter(WasmFilter::new("canary", config).fail_open(fail_open))
        .to_json();
    yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]
        .clone()
}

struct Mesh {
    v1: Upstream,
    v2: Upstream,
    shadow: Upstream,
}

async fn start_upstreams(net: &TestNet) -> Mesh {
    let (v1, v2, shadow) = tokio::join!(
        Upstream::start_with(
            net,
            UpstreamOptions::new("reviews", "v1").alias("reviews-v1")
        ),
        Upstream::start_with(
            net,
            UpstreamOptions::new("reviews", "v2").alias("reviews-v2")
        ),
        Upstream::start_with(
            net,
            UpstreamOptions::new("reviews", "shadow").alias("reviews-shadow")
        ),
    );
    Mesh {
        v1: v1.unwrap(),
        v2: v2.unwrap(),
        shadow: shadow.unwrap(),
    }
}

async fn start_envoy(net: &TestNet, bootstrap: &Value) -> Envoy {
    artifact("canary").unwrap();
    let yaml = serde_json::to_string_pretty(bootstrap).unwrap();
    Envoy::start(net, EnvoyOptions::new(yaml)).await.unwrap()
}

/// What one request saw.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    /// `version` the answering upstream reported ("" when it was not an upstream answer).
    version: String,
    /// The `x-weft-version` response header.
    version_header: Option<String>,
    /// Request headers as the upstream received them.
    upstream_headers: Value,
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Seen {
    let mut request = client.get(url).header("host", "reviews");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let version_header = response
        .headers()
        .get("x-weft-version")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Seen {
        status,
        version: body["version"].as_str().unwrap_or_default().to_string(),
        version_header,
        upstream_headers: body["headers"].clone(),
    }
}

/// `n` GETs, `parallel` at a time, each with `headers(i)`.
async fn send_many(
    url: &str,
    n: usize,
    parallel: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<Seen> {
    let client = http_client();
    let mut seen = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let mut batch = tokio::task::JoinSet::new();
        for i in next..(next + parallel).min(n) {
            let (client, url, h) = (client.clone(), url.to_string(), headers(i));
            batch.spawn(async move {
                let h: Vec<(&str, &str)> =
                    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                get(&client, &url, &h).await
            });
        }
        while let Some(result) = batch.join_next().await {
            seen.push(result.unwrap());
        }
        next += parallel;
    }
    seen
}

fn count(seen: &[Seen], version: &str) -> u64 {
    seen.iter().filter(|s| s.version == version).count() as u64
}

async fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("{STAT}.{name}"))
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn split_rules_sticky_cohort_and_fallback() {
    let net = TestNet::new("canary-split");
    let mesh = start_upstreams(&net).await;
    let envoy = start_envoy(
        &net,
        &bootstrap(vec![canary_filter(reviews_config(0), false)]),
    )
    .await;
    let url = format!("{}/reviews/1", envoy.url(10_000));

    // 75/25 by random draw: 2,000 requests without a sticky key.
    let n = 2_000;
    let seen = send_many(&url, n, 32, |_| Vec::new()).await;
    assert!(
        seen.iter().all(|s| s.status == 200),
        "{:?}",
        seen.iter().find(|s| s.status != 200)
    );
    let v2 = count(&seen, "v2");
    let (lo, hi) = binomial_interval_999(n as u64, 0.25);
    eprintln!("canary split: v2 got {v2} of {n} (expected 500, 99.9% interval {lo}..={hi})");
    assert!(
        within_binomial_999(v2, n as u64, 0.25),
        "v2 got {v2} of {n}, outside {lo}..={hi}"
    );
    assert_eq!(count(&seen, "v1") + v2, n as u64);
    // Cohort propagation: the next hop and the caller both learn the version.
    for s in &seen {
        assert_eq!(
            s.version_header.as_deref(),
            Some(s.version.as_str()),
            "{s:?}"
        );
        assert_eq!(
            s.upstream_headers["x-weft-cohort"],
            s.version.as_str(),
            "{s:?}"
        );
        // v1 is where Envoy's route already went (the fallback): the filter does not write
        // the header to make Envoy match the routes again to the same cluster.
        let written = (s.version == "v2").then(|| json!("reviews-v2"));
        assert_eq!(
            s.upstream_headers.get(CLUSTER_HEADER),
            written.as_ref(),
            "{s:?}"
        );
    }
    // Envoy stats agree with what the upstreams counted.
    assert_eq!(stat(&envoy, "reviews.v2.requests").await, v2);
    assert_eq!(stat(&envoy, "reviews.v1.requests").await, n as u64 - v2);
    assert_eq!(mesh.v2.stats().await.unwrap().requests, v2);

    // The beta channel always reaches v2, by header or cookie.
    let beta = send_many(&url, 200, 20, |i| {
        if i % 2 == 0 {
            vec![("x-beta".into(), "true".into())]
        } else {
            vec![("cookie".into(), "a=b; beta=1".into())]
        }
    })
    .await;
    assert_eq!(
        count(&beta, "v2"),
        200,
        "{:?}",
        beta.iter().find(|s| s.version != "v2")
    );

    // One sticky key: 200 requests in a row on the version its bucket predicts.
    for user in ["alice", "bob", "carol"] {
        let expected = if bucket("reviews-2026", user) < 7500 {
            "v1"
        } else {
            "v2"
        };
        let client = http_client();
        for _ in 0..200 {
            let s = get(&client, &url, &[("x-user", user)]).await;
            assert_eq!(
                s.version,
                expected,
                "user {user} (bucket {})",
                bucket("reviews-2026", user)
            );
        }
    }

    // An incoming cohort naming a version of this service is honoured; an unknown one is not.
    let chained = send_many(&url, 100, 20, |_| {
        vec![("x-weft-cohort".into(), "v2".into())]
    })
    .await;
    assert_eq!(count(&chained, "v2"), 100);
    let unknown = send_many(&url, 400, 40, |_| {
        vec![("x-weft-cohort".into(), "v9".into())]
    })
    .await;
    assert!(
        within_binomial_999(count(&unknown, "v2"), 400, 0.25),
        "{}",
        count(&unknown, "v2")
    );

    // A caller's own cluster header is overwritten, even when the pick is where the route
    // would go without it: the caller never picks, and never leaves its value behind.
    let client = http_client();
    let stable_user = ["alice", "bob", "carol", "dave", "erin"]
        .into_iter()
        .find(|u| bucket("reviews-2026", u) < 7500)
        .unwrap();
    for forged in ["reviews-v2", "reviews-v1", "nonsense"] {
        let s = get(
            &client,
            &url,
            &[("x-user", stable_user), (CLUSTER_HEADER, forged)],
        )
        .await;
        assert_eq!(
            (s.status, s.version.as_str()),
            (200, "v1"),
            "{forged}: {s:?}"
        );
        assert_eq!(
            s.upstream_headers[CLUSTER_HEADER], "reviews-v1",
            "{forged}: {s:?}"
        );
    }

    // Another host is not the filter's: the fallback route sends it to stable, and a cluster
    // header sent by the caller is dropped rather than obeyed.
    for _ in 0..20 {
        let response = client
            .get(&url)
            .header("host", "ratings")
            .header(CLUSTER_HEADER, "reviews-v2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["version"], "v1", "{body}");
    }
    assert_eq!(stat(&envoy, "unmatched").await, 20);
    assert_eq!(mesh.shadow.stats().await.unwrap().requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrored_copies_reach_the_shadow_without_delaying_the_caller() {
    let net = TestNet::new("canary-mirror");
    let mesh = start_upstreams(&net).await;
    let envoy = start_envoy(
        &net,
        &bootstrap(vec![canary_filter(reviews_config(10_000), false)]),
    )
    .await;
    let url = format!("{}/reviews/1", envoy.url(10_000));
    // A slow shadow: a caller waiting on the copy would take >= 800 ms.
    mesh.shadow.set_mode(0, 800).await.unwrap();

    let client = http_client();
    let n = 40u64;
    for i in 0..n {
        let started = Instant::now();
        let response = if i % 2 == 0 {
            client
                .get(&url)
                .header("host", "reviews")
                .send()
                .await
                .unwrap()
        } else {
            client
                .post(&url)
                .header("host", "reviews")
                .body(format!("order {i}"))
                .send()
                .await
                .unwrap()
        };
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert!(
            ["v1", "v2"].contains(&body["version"].as_str().unwrap()),
            "caller saw {body}"
        );
        assert!(
            elapsed < Duration::from_millis(600),
            "request {i} took {elapsed:?}: held for the mirror"
        );
    }
    let shadow_count = poll_until(
        "every copy at the shadow",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let stats = mesh.shadow.stats().await?;
            Ok((stats.requests >= n).then_some(stats.requests))
        },
    )
    .await
    .unwrap();
    assert_eq!(shadow_count, n);
    assert_eq!(stat(&envoy, "reviews.mirrored").await, n);
    assert_eq!(stat(&envoy, "reviews.mirror_failed").await, 0);
    let primary = mesh.v1.stats().await.unwrap().requests + mesh.v2.stats().await.unwrap().requests;
    assert_eq!(primary, n);
    // The copy says what it is: Envoy's shadow naming on the authority.
    let last = mesh.shadow.last_headers().await.unwrap();
    let host = last
        .get("host")
        .or_else(|| last.get(":authority"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(host, "reviews-shadow", "{last:?}");
}

/// Envoy 1.40 refuses to start on a plugin configuration the filter rejects, even with
/// FAIL_OPEN (the base VM fails in `on_configure` and the filter factory throws), so a bad
/// config can never silently turn into a skipped filter at startup; over ECDS it is NACKed
/// (see `weights_and_rules_change_live`).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_config_stops_envoy_even_when_failing_open() {
    let net = TestNet::new("canary-refused");
    let mut bad = reviews_config(0);
    bad["services"][0]["split"][1]["weight"] = json!(2000);
    let yaml = serde_json::to_string_pretty(&bootstrap(vec![canary_filter(bad, true)])).unwrap();
    let logs = Envoy::start_expect_failure(&net, EnvoyOptions::new(yaml))
        .await
        .unwrap();
    assert!(
        logs.contains("field `services[0].split`: weights sum to 9500"),
        "{logs}"
    );
    assert!(
        logs.contains("Unable to create Wasm plugin weft.canary"),
        "{logs}"
    );
}

/// A VM that fails at request time (it traps), with FAIL_OPEN: after the one request it trapped
/// in, Envoy skips the filter and the fallback route serves stable, never 503 (NC or
/// otherwise). The same with FAIL_CLOSED answers 503 to everything, which is why the canary
/// runs failing open. And with no filter at all, stable again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_or_skipped_filter_falls_back_to_stable() {
    let net = TestNet::new("canary-fallback");
    let mesh = start_upstreams(&net).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trap.wasm"), trapping_module()).unwrap();

    for (fail_open, expected_status) in [(true, 200u16), (false, 503)] {
        let mut filter = canary_filter(json!({}), fail_open);
        filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] =
            json!("/etc/weft/filters/trap.wasm");
        let yaml = serde_json::to_string_pretty(&bootstrap(vec![filter])).unwrap();
        let options = EnvoyOptions {
            wasm_dir: Some(dir.path().to_path_buf()),
            ..EnvoyOptions::new(yaml)
        };
        let envoy = Envoy::start(&net, options).await.unwrap();
        let url = format!("{}/reviews/1", envoy.url(10_000));
        // The request the VM traps in is failed by Envoy (503 `wasm_fail_stream`) under
        // either policy; what the policy decides is every request after it.
        let first = get(&http_client(), &url, &[("x-beta", "true")]).await;
        assert_eq!(
            first.status, 503,
            "fail_open {fail_open}: the trapping request: {first:?}"
        );
        let seen = send_many(&url, 100, 10, |_| vec![("x-beta".into(), "true".into())]).await;
        let statuses: Vec<u16> = seen
            .iter()
            .map(|s| s.status)
            .filter(|s| *s != expected_status)
            .collect();
        assert!(
            statuses.is_empty(),
            "fail_open {fail_open}: expected only {expected_status}, got {statuses:?}"
        );
        if fail_open {
            assert_eq!(count(&seen, "v1"), 100, "the fallback route serves stable");
            let trapped = "proxy_on_request_headers failed: Uncaught RuntimeError: unreachable";
            let logs = envoy.logs_showing(&[trapped]).await;
            assert!(logs.contains(trapped), "{logs}");
        }
    }
    assert_eq!(mesh.v2.stats().await.unwrap().requests, 0);

    let envoy = start_envoy(&net, &bootstrap(Vec::new())).await;
    let seen = send_many(&format!("{}/x", envoy.url(10_000)), 50, 10, |_| Vec::new()).await;
    assert_eq!(count(&seen, "v1"), 50);
}

/// The smallest proxy-wasm (ABI 0.2.1) module that loads, configures, and traps
/// (`unreachable`) in `proxy_on_request_headers`: a stand-in for a filter VM that has failed.
fn trapping_module() -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    const I32: u8 = 0x7f;
    let types: &[(&[u8], &[u8])] = &[
        (&[], &[]),
        (&[I32, I32], &[]),
        (&[I32, I32], &[I32]),
        (&[I32, I32, I32], &[I32]),
        (&[I32], &[I32]),
    ];
    let mut type_sec = vec![types.len() as u8];
    for (params, results) in types {
        type_sec.push(0x60);
        type_sec.push(params.len() as u8);
        type_sec.extend_from_slice(params);
        type_sec.push(results.len() as u8);
        type_sec.extend_from_slice(results);
    }
    // (export name, type index, body without locals)
    let funcs: &[(&str, u8, &[u8])] = &[
        ("proxy_abi_version_0_2_1", 0, &[]),
        ("proxy_on_context_create", 1, &[]),
        ("proxy_on_vm_start", 2, &[0x41, 0x01]),
        ("proxy_on_configure", 2, &[0x41, 0x01]),
        ("proxy_on_request_headers", 3, &[0x00]),
        ("proxy_on_memory_allocate", 4, &[0x41, 0x00]),
    ];
    let mut func_sec = vec![funcs.len() as u8];
    func_sec.extend(funcs.iter().map(|(_, t, _)| *t));
    let mut export_sec = vec![funcs.len() as u8 + 1, 6];
    export_sec.extend_from_slice(b"memory");
    export_sec.extend_from_slice(&[0x02, 0x00]);
    let mut code_sec = vec![funcs.len() as u8];
    for (index, (name, _, body)) in funcs.iter().enumerate() {
        export_sec.push(name.len() as u8);
        export_sec.extend_from_slice(name.as_bytes());
        export_sec.extend_from_slice(&[0x00, index as u8]);
        code_sec.push(body.len() as u8 + 2);
        code_sec.push(0x00);
        code_sec.extend_from_slice(body);
        code_sec.push(0x0b);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &type_sec, &mut module);
    section(3, &func_sec, &mut module);
    section(5, &[0x01, 0x00, 0x01], &mut module);
    section(7, &export_sec, &mut module);
    section(10, &code_sec, &mut module);
    module
}

/// The filter configuration delivered by ECDS from a watched file: weights and rules change
/// while Envoy runs, and a bad update is refused while the last good one keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn weights_and_rules_change_live() {
    let net = TestNet::new("canary-live");
    let _mesh = start_upstreams(&net).await;
    // The filters directory the container sees: canary.wasm plus the ECDS file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(artifact("canary").unwrap(), dir.path().join("canary.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("ecds")).unwrap();
    let mut config = reviews_config(0);
    config["services"][0]["split"] =
        json!([{"version": "v1", "weight": 10000}, {"version": "v2", "weight": 0}]);
    write_ecds(dir.path(), &config);

    let ecds_filter = json!({
        "name": "weft.canary",
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": "/etc/weft/filters/ecds/canary.json",
                    "watched_directory": {"path": "/etc/weft/filters/ecds"}
                },
                "resource_api_version": "V3"
            },
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
        }
    });
    let yaml = serde_json::to_string_pretty(&bootstrap(vec![ecds_filter])).unwrap();
    let options = EnvoyOptions {
        wasm_dir: Some(dir.path().to_path_buf()),
        ..EnvoyOptions::new(yaml)
    };
    let envoy = Envoy::start(&net, options).await.unwrap();
    let url = format!("{}/reviews/1", envoy.url(10_000));

    let seen = send_many(&url, 50, 10, |_| Vec::new()).await;
    assert_eq!(count(&seen, "v1"), 50);

    // All traffic to v2, and the beta rule now sends to v1.
    config["services"][0]["split"] =
        json!([{"version": "v1", "weight": 0}, {"version": "v2", "weight": 10000}]);
    config["services"][0]["rules"][0]["version"] = json!("v1");
    write_ecds(dir.path(), &config);
    wait_for_version(&url, &[], "v2").await;
    let seen = send_many(&url, 50, 10, |_| Vec::new()).await;
    assert_eq!(count(&seen, "v2"), 50);
    let beta = send_many(&url, 20, 10, |_| vec![("x-beta".into(), "true".into())]).await;
    assert_eq!(count(&beta, "v1"), 20);

    // A bad update (weights summing to 9000) is refused, naming the field; v2 keeps serving.
    let mut bad = config.clone();
    bad["services"][0]["split"][1]["weight"] = json!(9000);
    write_ecds(dir.path(), &bad);
    poll_until(
        "Envoy to refuse the update",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            Ok(envoy
                .logs()
                .await
                .contains("services[0].split")
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let seen = send_many(&url, 50, 10, |_| Vec::new()).await;
    assert_eq!(
        count(&seen, "v2"),
        50,
        "the last good configuration keeps serving"
    );
}

fn write_ecds(dir: &Path, config: &Value) {
    let wasm = canary_filter(config.clone(), false);
    let resource = json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "weft.canary",
            "typed_config": wasm["typed_config"],
        }]
    });
    // Write then rename: Envoy watches the directory for the move.
    let tmp = dir.join("ecds").join("canary.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&resource).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("ecds").join("canary.json")).unwrap();
}

async fn wait_for_version(url: &str, headers: &[(&str, &str)], version: &str) {
    let client = http_client();
    poll_until(
        &format!("requests to land on {version}"),
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let client = client.clone();
            async move { Ok((get(&client, url, headers).await.version == version).then_some(())) }
        },
    )
    .await
    .unwrap();
}

/// Per-request cost of the filter: `wrk` (1 connection, 3 s, 3 interleaved rounds, best
/// round kept) against one Envoy with three listeners whose routes answer `direct_response`
/// (so upstream and network noise stay out): 10000 the canary filter deciding by sticky key
/// (writes cluster and cohort headers, re-running route selection, and a response header),
/// 10001 the canary filter with no service configured (the wasm crossing alone), 10002 router
/// only. wrk talks to the container's address directly when the host can reach it. Prints
/// figures; asserts nothing about time. Run:
/// `cargo test -p weft-e2e --test canary -- --ignored --nocapture wrk`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "timing figures for the report; needs wrk on the host"]
async fn wrk_per_request_cost() {
    let net = TestNet::new("canary-wrk");
    let _mesh = start_upstreams(&net).await;
    let mut config = bootstrap(vec![canary_filter(reviews_config(0), false)]);
    let hcm = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    for route in hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_array_mut()
        .unwrap()
    {
        route.as_object_mut().unwrap().remove("route");
        route["direct_response"] = json!({"status": 200, "body": {"inline_string": "ok"}});
    }
    let base = config["static_resources"]["listeners"][0].clone();
    for (port, filters) in [
        (10_001, vec![canary_filter(json!({}), false)]),
        (10_002, Vec::new()),
    ] {
        let mut listener = base.clone();
        listener["name"] = json!(format!("l{port}"));
        listener["address"]["socket_address"]["port_value"] = json!(port);
        let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
        let mut chain = filters;
        chain.push(
            hcm["http_filters"]
                .as_array()
                .unwrap()
                .last()
                .cloned()
                .unwrap(),
        );
        hcm["http_filters"] = Value::Array(chain);
        config["static_resources"]["listeners"]
            .as_array_mut()
            .unwrap()
            .push(listener);
    }
    let yaml = serde_json::to_string_pretty(&config).unwrap();
    let envoy = Envoy::start(
        &net,
        EnvoyOptions::new(yaml).ports([10_000, 10_001, 10_002]),
    )
    .await
    .unwrap();

    let address = container_address(envoy.id());
    let cases = [
        ("canary deciding", 10_000),
        ("canary, no service", 10_001),
        ("router only", 10_002),
    ];
    let mut figures = Vec::new();
    for round in 0..3 {
        for (label, port) in cases {
            let url = match &address {
                Some(ip) => format!("http://{ip}:{port}/reviews/1"),
                None => format!("{}/reviews/1", envoy.url(port)),
            };
            let output = std::process::Command::new("wrk")
                .args([
                    "-t1",
                    "-c1",
                    "-d3s",
                    "-H",
                    "Host: reviews",
                    "-H",
                    "x-user: alice",
                    &url,
                ])
                .output()
                .expect("wrk on the host");
            let text = String::from_utf8_lossy(&output.stdout);
            let rps: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
            eprintln!(
                "round {round} {label}: {rps:.0} req/s, {:.1} us/request",
                1e6 / rps
            );
            figures.push((label, 1e6 / rps));
        }
    }
    let best = |label: &str| {
        figures
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, us)| *us)
            .fold(f64::INFINITY, f64::min)
    };
    let router = best("router only");
    eprintln!(
        "wrk to {}",
        address.as_deref().unwrap_or("the mapped ports")
    );
    for (label, _) in cases {
        eprintln!(
            "{label}: {:.1} us/request, {:+.1} us over router only",
            best(label),
            best(label) - router
        );
    }
}

/// The container's address on its network, when the host can connect to it.
fn container_address(id: &str) -> Option<String> {
    let output = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            id,
        ])
        .output()
        .ok()?;
    let ip = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()?
        .to_string();
    let reachable = std::net::TcpStream::connect_timeout(
        &format!("{ip}:10002").parse().ok()?,
        Duration::from_millis(500),
    );
    reachable.is_ok().then_some(ip)
}

/// `dryRun` TrafficSplit: every pick is counted per version (`would_route`), and traffic
/// goes exactly where it would without the split: the stable fallback, no cohort, no mirror.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_split_counts_its_picks_and_changes_no_traffic() {
    let net = TestNet::new("canary-dry-run");
    let mesh = start_upstreams(&net).await;
    let mut config = reviews_config(10_000);
    config["services"][0]["dry_run"] = json!(true);
    let envoy = start_envoy(&net, &bootstrap(vec![canary_filter(config, false)])).await;
    let url = format!("{}/reviews/1", envoy.url(10_000));

    // 1,000 random draws, 100 beta-channel requests (the rule picks v2), 20 with a forged
    // cluster header: all of them answered by stable v1, untouched.
    let n = 1_000;
    let random = send_many(&url, n, 32, |_| Vec::new()).await;
    let beta = send_many(&url, 100, 20, |_| vec![("x-beta".into(), "true".into())]).await;
    let forged = send_many(&url, 20, 20, |_| {
        vec![(CLUSTER_HEADER.into(), "reviews-v2".into())]
    })
    .await;
    for s in random.iter().chain(&beta).chain(&forged) {
        assert_eq!((s.status, s.version.as_str()), (200, "v1"), "{s:?}");
        assert_eq!(s.version_header, None, "{s:?}");
        assert!(s.upstream_headers["x-weft-cohort"].is_null(), "{s:?}");
        assert!(s.upstream_headers[CLUSTER_HEADER].is_null(), "{s:?}");
    }
    let (v1, v2) = (
        stat(&envoy, "reviews.v1.would_route").await,
        stat(&envoy, "reviews.v2.would_route").await,
    );
    let total = n as u64 + 100 + 20;
    assert_eq!(v1 + v2, total);
    // The 100 beta requests are v2 picks; the other 1,020 are 75/25 draws.
    let drawn_v2 = v2.checked_sub(100).unwrap();
    let (lo, hi) = binomial_interval_999(total - 100, 0.25);
    eprintln!(
        "dry-run split: would route {drawn_v2} of {} draws to v2 ({lo}..={hi})",
        total - 100
    );
    assert!(
        within_binomial_999(drawn_v2, total - 100, 0.25),
        "{drawn_v2}"
    );
    assert_eq!(stat(&envoy, "reviews.v1.requests").await, 0);
    assert_eq!(stat(&envoy, "reviews.v2.requests").await, 0);
    assert_eq!(mesh.v2.stats().await.unwrap().requests, 0);
    assert_eq!(mesh.shadow.stats().await.unwrap().requests, 0);
}
