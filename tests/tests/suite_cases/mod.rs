//! The suite's decisions in real Envoy, for every runtime that hosts it: `suite.wasm`
//! (`suite.rs`) and the native dynamic module `libweft_suite.so` (`native_suite.rs`).
//!
//! weft suite (authz, canary, fault and breaker in one module) in real Envoy, in front of
//! `reviews` v1 and v2: it decides like the four chained filters — authz denies by path and
//! header before anything else runs, canary routes by rule, sticky key and split through
//! `x-weft-cluster`, fault aborts, and a delayed request still goes through the breaker when
//! the tick lets it go, so the breaker counts it, opens, and then fails fast, delayed or not.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_e2e::{
    binomial_interval_999, http_client, poll_until, within_binomial_999, Envoy, EnvoyConfig,
    EnvoyOptions, Runtime, TestNet, Upstream, UpstreamOptions, WasmFilter,
};
use weft_filter_core::canary::bucket;

const CLUSTER_HEADER: &str = "x-weft-cluster";
const SALT: &str = "suite-2026";
const DELAY_MS: u64 = 400;

/// One suite configuration, each section what the filter takes on its own.
fn suite_config() -> Value {
    json!({
        "authz": {"policies": [
            {"name": "block-admin", "action": "DENY", "rules": [{"paths": ["/admin/*"]}]},
            {"name": "no-bots", "action": "DENY", "rules": [{"headers": [{"name": "x-bot"}]}]},
            {"name": "readers", "action": "ALLOW",
             "rules": [{"methods": ["GET"], "paths": ["/reviews/*"]}]}
        ]},
        "canary": {"cluster_header": CLUSTER_HEADER, "services": [{
            "host": "reviews", "stable": "v1",
            "versions": {"v1": {"cluster": "reviews-v1"}, "v2": {"cluster": "reviews-v2"}},
            "rules": [
                {"header": {"name": "x-pin", "value": "v1"}, "version": "v1"},
                {"header": {"name": "x-beta", "value": "true"}, "version": "v2"}
            ],
            "split": [{"version": "v1", "weight": 5000}, {"version": "v2", "weight": 5000}],
            "sticky": {"key": {"header": "x-user"}, "salt": SALT},
            "cohort": {"response_header": "x-weft-version"}
        }]},
        "fault": {"percent_cap": 100, "policies": [
            {"name": "teapot", "match": {"headers": [{"name": "x-fault-abort"}]},
             "abort": {"percent": 100, "http_status": 418}},
            {"name": "slow", "match": {"headers": [{"name": "x-fault-delay"}]},
             "delay": {"percent": 100, "fixed_ms": DELAY_MS}}
        ]},
        "breaker": {"cluster_header": CLUSTER_HEADER, "clusters": {"reviews-v1": {
            "consecutive_failures": 3, "failure_on": ["5xx"], "open_interval_ms": 60_000,
            "max_open_interval_ms": 60_000, "jitter_percent": 0
        }}}
    })
}

/// Listener 10000: the suite, then a route on `x-weft-cluster` when present, else `reviews-v1`.
fn bootstrap(config: Value, runtime: Runtime) -> String {
    let mut bootstrap = EnvoyConfig::sidecar_inbound("reviews-v1")
        .cluster("reviews-v1", "reviews-v1", 8080)
        .cluster("reviews-v2", "reviews-v2", 8080)
        .wasm_filter(WasmFilter::new("suite", config).runtime(runtime))
        .to_json();
    let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    hcm["route_config"]["virtual_hosts"][0]["routes"] = json!([
        {"match": {"prefix": "/", "headers": [{"name": CLUSTER_HEADER, "present_match": true}]},
         "route": {"cluster_header": CLUSTER_HEADER}},
        {"match": {"prefix": "/"}, "route": {"cluster": "reviews-v1"}}
    ]);
    serde_json::to_string_pretty(&bootstrap).unwrap()
}

/// Drop order is field order: Envoy, then the upstreams, then the network.
struct Rig {
    runtime: Runtime,
    envoy: Envoy,
    v1: Upstream,
    v2: Upstream,
    _net: TestNet,
}

impl Rig {
    async fn start(runtime: Runtime) -> Self {
        runtime.artifact("suite").unwrap();
        let net = TestNet::new("suite");
        let (v1, v2) = tokio::join!(
            Upstream::start_with(
                &net,
                UpstreamOptions::new("reviews", "v1").alias("reviews-v1")
            ),
            Upstream::start_with(
                &net,
                UpstreamOptions::new("reviews", "v2").alias("reviews-v2")
            ),
        );
        let options = EnvoyOptions::new(bootstrap(suite_config(), runtime)).concurrency(2);
        let envoy = Envoy::start(&net, options).await.unwrap();
        Self {
            runtime,
            envoy,
            v1: v1.unwrap(),
            v2: v2.unwrap(),
            _net: net,
        }
    }

    async fn stat(&self, name: &str) -> u64 {
        let name = format!("{}weft.{name}", self.runtime.stat_prefix());
        self.envoy.stat(&name).await.unwrap().unwrap_or(0)
    }

    async fn reached(&self) -> (u64, u64) {
        let (v1, v2) = tokio::join!(self.v1.stats(), self.v2.stats());
        (v1.unwrap().requests, v2.unwrap().requests)
    }

    /// Waits until every admitted request gave its breaker slot back (`on_log` ran).
    async fn settle(&self) {
        poll_until(
            "the breaker's in-flight count back at 0",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async {
                let name = format!(
                    "{}weft.breaker.reviews-v1.in_flight",
                    self.runtime.stat_prefix()
                );
                Ok((self.envoy.stat(&name).await?.unwrap_or(0) == 0).then_some(()))
            },
        )
        .await
        .unwrap();
    }

    async fn get(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Seen {
        let url = format!("{}{path}", self.envoy.url(10_000));
        let mut request = http_client()
            .request(method.parse().unwrap(), url)
            .header("host", "reviews");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (breaker, cohort) = (header("x-weft-breaker"), header("x-weft-version"));
        let body = response.text().await.unwrap();
        let echoed = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
        let version = echoed["version"].as_str().unwrap_or_default().to_string();
        let upstream_cluster_header = echoed["headers"][CLUSTER_HEADER]
            .as_str()
            .map(str::to_string);
        Seen {
            status,
            version,
            upstream_cluster_header,
            breaker,
            cohort,
            body,
            elapsed: started.elapsed(),
        }
    }
}

/// What one request saw.
#[derive(Debug)]
struct Seen {
    status: u16,
    /// `version` the answering upstream reported ("" for a local reply).
    version: String,
    /// The cluster header as the upstream received it.
    upstream_cluster_header: Option<String>,
    /// The breaker's `x-weft-breaker` reply header.
    breaker: Option<String>,
    /// The canary's cohort response header `x-weft-version`.
    cohort: Option<String>,
    body: String,
    elapsed: Duration,
}

pub async fn the_suite_decides_like_the_four_chained_filters(runtime: Runtime) {
    let rig = Rig::start(runtime).await;

    // authz runs first: a denied request never reaches fault (no teapot) or an upstream.
    let admin = rig.get("GET", "/admin/x", &[("x-fault-abort", "1")]).await;
    assert_eq!(admin.status, 403, "{admin:?}");
    assert!(admin.body.contains("block-admin"), "{admin:?}");
    let bot = rig.get("GET", "/reviews/1", &[("x-bot", "1")]).await;
    assert_eq!(bot.status, 403, "{bot:?}");
    assert!(bot.body.contains("no-bots"), "{bot:?}");
    assert_eq!(rig.get("POST", "/reviews/1", &[]).await.status, 403);
    assert_eq!(rig.reached().await, (0, 0));
    assert_eq!(rig.stat("authz.denied").await, 3);
    assert_eq!(rig.stat("authz.policy.block-admin.denied").await, 1);
    assert_eq!(rig.stat("fault.aborts_injected").await, 0);

    // canary: rules, sticky keys (the bucket decides) and the 50/50 split.
    for _ in 0..10 {
        let beta = rig.get("GET", "/reviews/1", &[("x-beta", "true")]).await;
        assert_eq!(
            (beta.status, beta.version.as_str()),
            (200, "v2"),
            "{beta:?}"
        );
        assert_eq!(beta.cohort.as_deref(), Some("v2"));
        let pinned = rig.get("GET", "/reviews/1", &[("x-pin", "v1")]).await;
        assert_eq!((pinned.status, pinned.version.as_str()), (200, "v1"));
        // v2 is written for the route to read; v1 is where Envoy's route already went (the
        // fallback), so nothing is written and the routes are not matched again.
        assert_eq!(beta.upstream_cluster_header.as_deref(), Some("reviews-v2"));
        assert_eq!(pinned.upstream_cluster_header, None, "{pinned:?}");
    }
    // A caller's own cluster header never stays: overwritten even when the pick is v1.
    for forged in ["reviews-v2", "reviews-v1", "nonsense"] {
        let s = rig
            .get(
                "GET",
                "/reviews/1",
                &[("x-pin", "v1"), (CLUSTER_HEADER, forged)],
            )
            .await;
        assert_eq!(
            (s.status, s.version.as_str()),
            (200, "v1"),
            "{forged}: {s:?}"
        );
        assert_eq!(
            s.upstream_cluster_header.as_deref(),
            Some("reviews-v1"),
            "{forged}"
        );
    }
    for user in ["alice", "bob", "carol", "dave"] {
        let expected = if bucket(SALT, user) < 5000 {
            "v1"
        } else {
            "v2"
        };
        for _ in 0..10 {
            let s = rig.get("GET", "/reviews/1", &[("x-user", user)]).await;
            assert_eq!(s.version, expected, "user {user}");
        }
    }
    let n = 200;
    let mut v2 = 0;
    for _ in 0..n {
        let s = rig.get("GET", "/reviews/1", &[]).await;
        assert_eq!(s.status, 200, "{s:?}");
        v2 += u64::from(s.version == "v2");
    }
    assert!(
        within_binomial_999(v2, n, 0.5),
        "{v2} of {n} on v2, expected {:?}",
        binomial_interval_999(n, 0.5)
    );
    assert!(rig.stat("canary.reviews.v2.requests").await >= 10 + v2);
    assert_eq!(rig.stat("authz.allowed").await, 20 + 3 + 40 + n);

    // fault abort: answered before the breaker or an upstream sees it.
    let before = rig.reached().await;
    let abort = rig
        .get(
            "GET",
            "/reviews/1",
            &[("x-fault-abort", "1"), ("x-pin", "v1")],
        )
        .await;
    assert_eq!(abort.status, 418, "{abort:?}");
    // The canary stage ran before fault, so its cohort header is on the reply, as in the chain.
    assert_eq!(abort.cohort.as_deref(), Some("v1"), "{abort:?}");
    assert_eq!(rig.reached().await, before);
    assert_eq!(rig.stat("fault.policy.teapot.aborts_injected").await, 1);

    // Delayed requests go through the breaker when the tick releases them: three upstream
    // failures after the delay open it.
    rig.v1.set_mode(503, 0).await.unwrap();
    let delayed = [("x-fault-delay", "1"), ("x-pin", "v1")];
    for i in 0..3 {
        let s = rig.get("GET", "/reviews/1", &delayed).await;
        assert_eq!(
            (s.status, s.breaker.as_deref()),
            (503, None),
            "failure {i}: {s:?}"
        );
        assert!(s.elapsed >= Duration::from_millis(DELAY_MS), "{s:?}");
        rig.settle().await;
    }
    assert_eq!(rig.stat("fault.policy.slow.delays_injected").await, 3);
    assert_eq!(rig.stat("breaker.reviews-v1.opens").await, 1);
    assert_eq!(rig.reached().await.0, before.0 + 3);

    // Open: fail fast, at once and after a delay alike; v2 is not guarded and still serves.
    let fast = rig.get("GET", "/reviews/1", &[("x-pin", "v1")]).await;
    assert_eq!((fast.status, fast.breaker.as_deref()), (503, Some("open")));
    // `fast` carried no cluster header (v1 is the route's fallback): the breaker found v1
    // through the route Envoy chose. A caller's header naming a cluster the breaker does
    // not guard does not get past it either: the canary overwrote it.
    let forged = rig
        .get(
            "GET",
            "/reviews/1",
            &[("x-pin", "v1"), (CLUSTER_HEADER, "nonsense")],
        )
        .await;
    assert_eq!(
        (forged.status, forged.breaker.as_deref()),
        (503, Some("open"))
    );
    let late = rig.get("GET", "/reviews/1", &delayed).await;
    assert_eq!((late.status, late.breaker.as_deref()), (503, Some("open")));
    assert!(late.elapsed >= Duration::from_millis(DELAY_MS), "{late:?}");
    assert_eq!(rig.reached().await.0, before.0 + 3, "v1 reached while open");
    assert_eq!(rig.stat("breaker.reviews-v1.rejected.open").await, 3);
    let beta = rig.get("GET", "/reviews/1", &[("x-beta", "true")]).await;
    assert_eq!((beta.status, beta.version.as_str()), (200, "v2"));
    assert_eq!(rig.stat("fault.delays_pending").await, 0);
}

pub async fn a_bad_section_is_refused_naming_the_section_and_field(runtime: Runtime) {
    runtime.artifact("suite").unwrap();
    let net = TestNet::new("suite-refused");
    let mut config = suite_config();
    config["canary"]["services"][0]["split"][1]["weight"] = json!("half");
    let logs = Envoy::start_expect_failure(&net, EnvoyOptions::new(bootstrap(config, runtime)))
        .await
        .unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("weft-suite: invalid configuration"))
        .unwrap_or_else(|| panic!("no refusal line:\n{logs}"));
    assert!(
        line.contains("field `canary.services[0].split[1].weight`"),
        "{line}"
    );
}

/// The stages' marks reach Envoy's filter state only for a reader outside the module (D108):
/// one Envoy per setting, the route echoing the breaker's mark and authz's outcome as
/// response headers (`%FILTER_STATE(wasm.…:PLAIN)%`, as an access log or a later filter reads
/// them). An admitted request to the guarded cluster is marked `closed`; a denied one
/// `denied`. With `"publish_marks": false` neither appears, and the access log's decision
/// (`weft_decision`) still does.
pub async fn marks_reach_envoy_only_for_a_reader_outside_the_module(runtime: Runtime) {
    runtime.artifact("suite").unwrap();
    let net = TestNet::new("suite-marks");
    // Every request below reaches reviews-v1 (pinned) or is denied before any upstream.
    let _v1 = Upstream::start_with(
        &net,
        UpstreamOptions::new("reviews", "v1").alias("reviews-v1"),
    )
    .await
    .unwrap();
    let echo = |name: &str, key: &str| json!({"header": {"key": name, "value": format!("%FILTER_STATE(wasm.{key}:PLAIN)%")}});
    for (flag, published) in [(None, true), (Some(true), true), (Some(false), false)] {
        let mut config = suite_config();
        if let Some(flag) = flag {
            config["publish_marks"] = json!(flag);
        }
        let mut bootstrap: Value = serde_json::from_str(&bootstrap(config, runtime)).unwrap();
        let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        // An upstream's answer gets the route's headers; a local reply, the mapper's.
        let echoes = json!([
            echo("x-mark-breaker", "weft_breaker"),
            echo("x-mark-authz", "weft_authz"),
            echo("x-decision", "weft_decision")
        ]);
        hcm["route_config"]["virtual_hosts"][0]["response_headers_to_add"] = echoes.clone();
        hcm["local_reply_config"] = json!({"mappers": [{
            "filter": {"status_code_filter": {"comparison": {
                "op": "GE", "value": {"default_value": 400, "runtime_key": "weft_test.status"}}}},
            "headers_to_add": echoes
        }]});
        let envoy = Envoy::start(&net, EnvoyOptions::new(bootstrap.to_string()))
            .await
            .unwrap();
        let client = http_client();
        let get = |path: &'static str| {
            client
                .get(format!("{}{path}", envoy.url(10_000)))
                .header("host", "reviews")
                .header("x-pin", "v1")
                .send()
        };
        let header = |response: &reqwest::Response, name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .filter(|v| !v.is_empty() && v != "-")
        };
        let admitted = get("/reviews/1").await.unwrap();
        assert_eq!(admitted.status(), 200, "flag {flag:?}");
        let expected = published.then(|| "closed".to_string());
        assert_eq!(
            header(&admitted, "x-mark-breaker"),
            expected,
            "flag {flag:?}"
        );
        let denied = get("/admin/x").await.unwrap();
        assert_eq!(denied.status(), 403, "flag {flag:?}");
        let expected = published.then(|| "deny".to_string());
        assert_eq!(header(&denied, "x-mark-authz"), expected, "flag {flag:?}");
        let decision = header(&denied, "x-decision").unwrap_or_default();
        assert!(
            decision.starts_with("authz: 403"),
            "flag {flag:?}: {decision}"
        );
    }
}
