//! The service graph shows everything that happened, in real Envoy with the real `weft serve`
//! (its CA, join tokens, mTLS over SDS, the policies compiled and pushed over xDS):
//!
//! 1. web -> reviews with a latency the test sets per request (the test service's
//!    `x-delay-ms`): 30 at 35 ms and 10 at 220 ms. The graph API's p50 is the 50 ms bucket
//!    (the bucket holding 35 ms; one bucket more is tolerated for a loaded machine) and its
//!    p99 the 300 ms bucket (holding 220 ms; or the next); rate = requests / window and error
//!    rate = errors / requests exactly.
//! 2. 11 calls to reviews' `/admin` denied by its authz (ALLOW only `/reviews/*`), 8 delayed
//!    60 ms by web's fault stage.
//! 3. ratings: 17 aborts injected by web's fault stage (they never reach ratings).
//! 4. payments: 6 a dry-run fault would have aborted (they pass); 3 failures open web's
//!    breaker; 9 more are failed fast; the breaker shows `open`.
//!
//! Each count is asserted exactly on its edge (by cause), then headless Chromium renders
//! `/ui`: the labels carry the same counts, and the bounding boxes of every service box and
//! label (and of their text) that the browser reports do not overlap. The screenshot is
//! saved under `target/e2e-artifacts/graph-causes.png`.
#![cfg(test)]

mod weft_serve;

use std::time::Duration;

use serde_json::Value;
use weft_e2e::{
    artifacts_dir, chromium, http_client, label_boxes, overlapping, poll_until,
    xds_support::network_gateway, Pod, TestNet,
};
use weft_serve::{weft_bin, WeftServer};

const OUTBOUND: u16 = 15001;
const NS: &str = "graph";

const POLICIES: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: graph}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: graph}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ratings, namespace: graph}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: payments, namespace: graph}
spec: {port: 8080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reviews-pages-only, namespace: graph}
spec:
  target: {service: reviews}
  action: ALLOW
  rules:
  - to: {paths: [/reviews/*]}
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: ratings-abort, namespace: graph}
spec:
  target: {service: ratings}
  match: {pathPrefixes: [/abort]}
  abort: {httpStatus: 503, percent: 100}
  percentCap: 100
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: reviews-slow, namespace: graph}
spec:
  target: {service: reviews}
  match: {pathPrefixes: [/reviews/slow]}
  delay: {fixedDelay: 60ms, percent: 100}
  percentCap: 100
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: payments-rehearsal, namespace: graph}
spec:
  target: {service: payments}
  match: {pathPrefixes: [/dry]}
  abort: {httpStatus: 500, percent: 100}
  percentCap: 100
  dryRun: true
---
apiVersion: weft.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: payments-breaker, namespace: graph}
spec:
  target: {service: payments}
  consecutiveFailures: 3
  failureOn: [5xx]
  openInterval: 5m
  jitterPercent: 0
";

/// The window the assertions read: long enough for the whole test, and the divisor of rate.
const WINDOW_SECS: f64 = 300.0;

struct Mesh {
    server: WeftServer,
    web: Pod,
    _callees: Vec<Pod>,
    _net: TestNet,
    _data: tempfile::TempDir,
}

impl Mesh {
    async fn graph(&self) -> Value {
        self.server.api_json("/api/v1/graph?window=5m").await
    }

    /// `n` GETs from web's app through its sidecar to `host` `path`, with `headers`; the
    /// statuses (0: no answer).
    async fn send(&self, host: &str, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
        let client = http_client();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut request = client
                .get(format!("{}{path}", self.web.local_url(OUTBOUND)))
                .header("host", host)
                .timeout(Duration::from_secs(10));
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            out.push(request.send().await.map_or(0, |r| r.status().as_u16()));
        }
        out
    }
}

async fn start() -> Mesh {
    let bin = weft_bin();
    let data = tempfile::tempdir().unwrap();
    let net = TestNet::new("graph");
    let gateway = network_gateway(&net).unwrap();
    let server = WeftServer::start_tls(
        &bin,
        data.path(),
        &[
            "--xds-listen",
            "0.0.0.0:0",
            "--mesh-warmup-ms",
            "0",
            "--ca",
            "--xds-tls-name",
            &format!("{gateway},127.0.0.1"),
        ],
    );
    let file = data.path().join("policies.yaml");
    std::fs::write(&file, POLICIES).unwrap();
    let (code, _, err) = server.cli(
        &bin,
        &["apply", "-f", file.to_str().unwrap(), "--ack-timeout", "0"],
    );
    assert_eq!(code, 0, "{err}");
    let mut started = Vec::new();
    for service in ["web", "reviews", "ratings", "payments"] {
        started.push(
            server
                .join_pod(&bin, &net, &gateway, (NS, service, "v1"))
                .await,
        );
    }
    let web = started.remove(0);
    Mesh {
        server,
        web,
        _callees: started,
        _net: net,
        _data: data,
    }
}

/// The edge `web -> destination@v1` (null when absent).
fn edge(graph: &Value, destination: &str) -> Value {
    graph["edges"]
        .as_array()
        .and_then(|edges| {
            edges
                .iter()
                .find(|e| e["source"] == "web" && e["destination"] == destination)
        })
        .cloned()
        .unwrap_or(Value::Null)
}

fn n(edge: &Value, field: &str) -> u64 {
    edge[field].as_u64().unwrap_or(0)
}

/// The counts of web's three edges that a test step changes.
fn snapshot(graph: &Value) -> Vec<u64> {
    let mut out = Vec::new();
    for d in ["reviews", "ratings", "payments"] {
        let e = edge(graph, d);
        for f in [
            "requests",
            "errors",
            "denied",
            "aborted",
            "breaker_open",
            "delayed",
            "would_abort",
        ] {
            out.push(n(&e, f));
        }
    }
    out
}

/// Polls the graph until it has stopped changing for two reads 2.5 s apart (every sidecar's
/// last batch is in): returns it.
async fn settled(mesh: &Mesh) -> Value {
    let mut last = snapshot(&mesh.graph().await);
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let graph = mesh.graph().await;
        let now = snapshot(&graph);
        if now == last {
            return graph;
        }
        last = now;
    }
    panic!("the graph never settled: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_graph_shows_latency_and_every_local_reply_by_cause() {
    let mesh = start().await;
    // Ready: every callee answers through the mesh, and its edge is reported by both
    // sidecars (readiness probes are counted on the edges like anything else; the
    // assertions below are on differences). An edge shows the callee's view once it has
    // one: a baseline taken from the caller's view alone (the callee's telemetry not
    // reporting yet on a loaded machine) would count the warm-up probes the callee never
    // saw, and the difference would come out short by them.
    let probe = [("x-delay-ms", "35")];
    for (host, path, want) in [
        ("reviews", "/reviews/probe", 200),
        ("ratings", "/ratings/probe", 200),
        ("payments", "/pay/probe", 200),
    ] {
        // A loaded machine may take a few NACK-and-retry rounds to fetch every module.
        let last = std::sync::Mutex::new(Vec::new());
        let ready = poll_until(
            &format!("web -> {host}{path} answers {want}"),
            Duration::from_secs(240),
            Duration::from_millis(500),
            || async {
                let got = mesh.send(host, path, &probe, 1).await;
                let answered = got == [want];
                *last.lock().unwrap() = got;
                if !answered {
                    return Ok(None);
                }
                let reported_by = edge(&mesh.graph().await, host)["reported_by"].clone();
                let both = ["inbound", "outbound"].iter().all(|side| {
                    reported_by
                        .as_array()
                        .is_some_and(|r| r.iter().any(|s| s == side))
                });
                Ok(both.then_some(()))
            },
        )
        .await;
        if let Err(error) = ready {
            let sidecars = mesh.server.cli(&weft_bin(), &["status"]);
            panic!("{error}: last {:?}\n{sidecars:?}", last.lock().unwrap());
        }
    }
    let before = settled(&mesh).await;

    // 1. Latency the test controls: 30 at 35 ms, 10 at 220 ms.
    let fast = mesh
        .send("reviews", "/reviews/1", &[("x-delay-ms", "35")], 30)
        .await;
    let slow = mesh
        .send("reviews", "/reviews/2", &[("x-delay-ms", "220")], 10)
        .await;
    assert!(
        fast.iter().chain(&slow).all(|s| *s == 200),
        "{fast:?} {slow:?}"
    );
    // 2. Denied by reviews' authz; delayed 60 ms by web's fault stage (their own latency is
    // the same 35 ms: the delay happens before the callee, whose measure p50/p99 are).
    let denied = mesh.send("reviews", "/admin/users", &[], 11).await;
    assert_eq!(denied, [403; 11]);
    let delayed = mesh
        .send("reviews", "/reviews/slow/1", &[("x-delay-ms", "35")], 8)
        .await;
    assert_eq!(delayed, [200; 8]);
    // 3. Aborts injected by web's fault stage: they never reach ratings.
    assert_eq!(mesh.send("ratings", "/abort/1", &[], 17).await, [503; 17]);
    // 4. A dry-run fault on payments would abort 6 (they pass); then three failures open
    // web's breaker for payments and nine are failed fast.
    assert_eq!(mesh.send("payments", "/dry/1", &[], 6).await, [200; 6]);
    let failing = mesh
        .send("payments", "/pay/1", &[("x-fail", "500")], 3)
        .await;
    assert_eq!(failing, [500; 3]);
    assert_eq!(mesh.send("payments", "/pay/2", &[], 9).await, [503; 9]);

    let after = settled(&mesh).await;
    let delta = |d: &str, f: &str| n(&edge(&after, d), f) - n(&edge(&before, d), f);
    let reviews = edge(&after, "reviews");
    let ratings = edge(&after, "ratings");
    let payments = edge(&after, "payments");
    println!("web -> reviews {reviews}\nweb -> ratings {ratings}\nweb -> payments {payments}");

    // Counts per cause, exactly.
    assert_eq!(delta("reviews", "requests"), 30 + 10 + 11 + 8);
    assert_eq!(delta("reviews", "denied"), 11);
    assert_eq!(delta("reviews", "delayed"), 8);
    assert_eq!(delta("reviews", "errors"), 0);
    assert_eq!(delta("ratings", "requests"), 17);
    assert_eq!(delta("ratings", "aborted"), 17, "{ratings}");
    assert_eq!(delta("ratings", "errors"), 17);
    assert_eq!(delta("payments", "requests"), 6 + 3 + 9);
    assert_eq!(delta("payments", "would_abort"), 6);
    assert_eq!(delta("payments", "breaker_open"), 9, "{payments}");
    assert_eq!(delta("payments", "errors"), 3 + 9);
    assert_eq!(ratings["local_replies"]["aborted"], n(&ratings, "aborted"));
    assert_eq!(payments["local_replies"]["fail_fast"], 9);
    assert_eq!(reviews["local_replies"]["denied"], 11);
    // The aborts and fail-fasts never reached the callee: only web's sidecar saw them.
    assert_eq!(
        ratings["reported_by"],
        serde_json::json!(["inbound", "outbound"])
    );
    assert_eq!(payments["breaker"]["state"], "open", "{payments}");
    assert_eq!(n(&payments["breaker"], "open"), 9);

    // Rate and error rate, as the API computes them from its counts.
    for e in [&reviews, &ratings, &payments] {
        let requests = n(e, "requests") as f64;
        let rate = e["rate_per_sec"].as_f64().unwrap();
        assert!((rate - requests / WINDOW_SECS).abs() < 0.0006, "{e}");
        let error_rate = e["error_rate"].as_f64().unwrap();
        assert!(
            (error_rate - n(e, "errors") as f64 / requests).abs() < 0.0006,
            "{e}"
        );
    }
    assert!(n(&ratings, "errors") >= 17 && n(&payments, "errors") >= 12);
    // p50 / p99 of web -> reviews: the histogram reports a bucket's upper bound. 35 ms lies
    // in (30, 50]; 220 ms in (200, 300]. The 11 instant denials are below, the 35 ms requests
    // (and probes) reach past the middle rank, the slow ones are the top 10 of fewer than
    // 1000: p50 is 50 and p99 300; a loaded machine may add a bucket (80, 500), never remove
    // one (the app sleeps at least the delay).
    let (p50, p99) = (n(&reviews, "p50_ms"), n(&reviews, "p99_ms"));
    println!("web -> reviews: p50 {p50} ms, p99 {p99} ms");
    assert!(n(&reviews, "requests") < 1000);
    assert!([50, 80].contains(&p50), "p50 {p50}: {reviews}");
    assert!([300, 500].contains(&p99), "p99 {p99}: {reviews}");

    // The page: the same counts in the labels, and no two boxes overlapping.
    let screenshot = artifacts_dir().unwrap().join("graph-causes.png");
    let ui = format!("{}/ui#token={}", mesh.server.api, mesh.server.token);
    let shot = screenshot.clone();
    let dom = tokio::task::spawn_blocking(move || chromium(&ui, &shot).unwrap())
        .await
        .unwrap();
    assert!(dom.contains("data-loaded=\"true\""), "{dom}");
    for needle in [
        format!("aborted {}", n(&ratings, "aborted")),
        format!("fail-fast {}", n(&payments, "breaker_open")),
        format!("denied {}", n(&reviews, "denied")),
        "breaker open".to_string(),
        format!("dry run would: abort {}", n(&payments, "would_abort")),
        format!("delayed {}", n(&reviews, "delayed")),
    ] {
        assert!(dom.contains(&needle), "{needle} not on the page:\n{dom}");
    }
    let boxes = label_boxes(&dom);
    let names: Vec<&str> = boxes.iter().map(|b| b.name.as_str()).collect();
    for want in ["web", "reviews", "ratings", "payments", "web->ratings"] {
        assert!(names.contains(&want), "{want} not drawn: {names:?}");
    }
    assert_eq!(
        overlapping(&boxes),
        Vec::<(String, String)>::new(),
        "{boxes:?}"
    );
    println!(
        "{} boxes, none overlapping; screenshot: {}",
        boxes.len(),
        screenshot.display()
    );
}
