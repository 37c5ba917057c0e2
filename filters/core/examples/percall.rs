//! Per-request cost of the filter cores, for `valgrind --tool=callgrind`.
//!
//! `cargo build --release -p weft-filter-core --example percall` then
//! `valgrind --tool=callgrind target/release/examples/percall <authz|canary|sticky|fault|breaker|telemetry|waf-get|waf-json> N`.
//! Instructions per request = (Ir at N - Ir at 0) / N. The request is the benchmark's
//! (`bench/run.py`); host reads are counted and printed.

use std::cell::Cell;
use std::hint::black_box;
use weft_filter_core::authz::Authz;
use weft_filter_core::breaker::{Admission, Breaker, BreakerState};
use weft_filter_core::canary::Canary;
use weft_filter_core::fault::Fault;
use weft_filter_core::rng::Rng;
use weft_filter_core::RequestAttributes;

#[derive(Default)]
struct Req {
    reads: Cell<u64>,
}

impl RequestAttributes for Req {
    fn method(&self) -> Option<String> {
        self.header(":method")
    }
    fn path(&self) -> Option<String> {
        self.header(":path")
    }
    fn header(&self, name: &str) -> Option<String> {
        self.reads.set(self.reads.get() + 1);
        match name {
            ":method" => Some("GET".into()),
            ":path" => Some("/reports/q?x=1".into()),
            ":authority" => Some("reviews:8080".into()),
            "x-user" => Some("user-42".into()),
            _ => None,
        }
    }
    fn source_address(&self) -> Option<String> {
        self.reads.set(self.reads.get() + 1);
        Some("127.0.0.1:5555".into())
    }
    fn peer_principal(&self) -> Option<String> {
        self.reads.set(self.reads.get() + 1);
        Some("spiffe://weft.test/ns/corp/sa/exec-portal".into())
    }
}

use weft_filter_core::testing::bench_config::{
    AUTHZ, BREAKER_V1 as BREAKER, CANARY, FAULT, STICKY,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("authz", String::as_str);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let req = Req::default();
    let mut rng = Rng::new(7);
    match which {
        "authz" => {
            let authz = Authz::from_json(AUTHZ.as_bytes())?;
            for _ in 0..n {
                black_box(authz.decide(&req, 1_800_000_000));
            }
        }
        "canary" | "sticky" => {
            let canary =
                Canary::from_json(if which == "canary" { CANARY } else { STICKY }.as_bytes())?;
            for _ in 0..n {
                black_box(canary.decide(&req, &mut rng));
            }
        }
        "fault" => {
            let fault = Fault::from_json(FAULT.as_bytes())?;
            for _ in 0..n {
                black_box(fault.decide(&req, 1_800_000_000_000, 0, &mut rng));
            }
        }
        "breaker" => {
            let breaker = Breaker::from_json(BREAKER.as_bytes())?;
            let policy = breaker.policy("v1").ok_or("no breaker policy for v1")?;
            // What the cdylib does per request: read-decode-admit-encode, then
            // read-decode-classify-on_result-encode, on the shared record's bytes.
            let mut record = BreakerState::default().to_bytes();
            for i in 0..n {
                let now = 1_800_000_000_000 + i;
                let mut state = BreakerState::decode(black_box(&record)).unwrap_or_default();
                let now_if_open = if policy.admit_needs_time(&state) {
                    now
                } else {
                    0
                };
                let (admission, _) = policy.admit(now_if_open, &mut state);
                let encoded = state.to_bytes();
                if encoded != record {
                    record = encoded;
                }
                let Admission::Admitted(ticket) = admission else {
                    return Err("the breaker rejected a request".into());
                };
                let flags = if black_box(policy.needs_flags(200)) {
                    0
                } else {
                    1
                };
                let outcome = policy.classify(200, black_box(flags));
                let mut state = BreakerState::decode(black_box(&record)).unwrap_or_default();
                black_box(policy.on_result(now, ticket, outcome, &mut rng, &mut state));
                record = state.to_bytes();
            }
        }
        "telemetry" => telemetry(n)?,
        "chain" | "suite" => four_stages(which == "suite", n, &req, &mut rng)?,
        "waf-get" => waf_request(n, false)?,
        "waf-json" => waf_request(n, true)?,
        other => return Err(format!("unknown filter {other}").into()),
    }
    eprintln!("{which}: {n} requests, {} host reads", req.reads.get());
    Ok(())
}

/// What the telemetry filter does per request in `on_log` (the tagged stat name and the
/// batch), plus its share of the tick's encode-and-sign of a 1 s batch at 1000 req/s.
fn telemetry(n: u64) -> Result<(), Box<dyn std::error::Error>> {
    use weft_filter_core::telemetry::{service_of_principal, sign, EdgeStats, EdgeTags};
    use weft_filter_core::telemetry::{AuthzOutcome, Batch, Direction, Record};
    let mut batch = Batch::new(256, 16);
    let mut stats = EdgeStats::new(512);
    let principal = "spiffe://cluster.local/ns/default/sa/exec-portal";
    for i in 0..n {
        let record = Record {
            source: black_box(principal),
            destination: "finance-reporting",
            version: "v1",
            status: 200,
            latency_us: 1_000 + i % 5_000,
            authz: AuthzOutcome::Allowed,
            local: None,
            marks: Default::default(),
            method: "GET",
            path: "/reports/q3",
        };
        black_box(stats.get_or_define(
            &EdgeTags {
                reporter: "inbound",
                source: service_of_principal(record.source),
                record: &record,
            },
            |name| name.len(),
        ));
        black_box(batch.record(&record));
        if i % 1000 == 999 {
            let report = batch.take(Direction::Inbound, "default", "finance-reporting", "v1");
            let body = report.map(|r| r.encode()).transpose()?.unwrap_or_default();
            black_box(sign(b"0123456789abcdef0123456789abcdef", &body));
        }
    }
    Ok(())
}

/// authz, canary and fault, then the breaker's read of the cluster header, on one request:
/// as four chained filters (`chain`: each reads the host itself) or as the suite's stages
/// sharing one `MemoRequest` (`suite`: the canary's header write is noted, not read back).
fn four_stages(
    shared: bool,
    n: u64,
    req: &Req,
    rng: &mut Rng,
) -> Result<(), Box<dyn std::error::Error>> {
    use weft_filter_core::suite::MemoRequest;
    let authz = Authz::from_json(AUTHZ.as_bytes())?;
    let canary = Canary::from_json(CANARY.as_bytes())?;
    let fault = Fault::from_json(FAULT.as_bytes())?;
    for _ in 0..n {
        if shared {
            let memo = MemoRequest::new(req);
            black_box(authz.decide(&memo, 1_800_000_000));
            let cluster = canary.decide(&memo, rng).map(|d| d.cluster.to_string());
            memo.note_header("x-weft-cluster", cluster.as_deref());
            black_box(fault.decide(&memo, 1_800_000_000_000, 0, rng));
            black_box(memo.header("x-weft-cluster"));
        } else {
            black_box(authz.decide(req, 1_800_000_000));
            black_box(canary.decide(req, rng));
            black_box(fault.decide(req, 1_800_000_000_000, 0, rng));
            black_box(req.header("x-weft-cluster"));
        }
    }
    Ok(())
}

/// The edge WAF (default rules and limits) on `bench/run.py`'s S6 requests: a small GET with
/// a query, or a 10 KB JSON POST held and inspected whole. The headers are what Envoy hands
/// the filter for wrk's request.
fn waf_request(n: u64, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    use weft_filter_core::waf::{BodyPlan, Head, Verdict, Waf, WafConfig};
    let waf = Waf::new(WafConfig::default())?;
    let items: Vec<String> = (0..110)
        .map(|i| {
            format!(
                r#"{{"sku": "SKU-{i:04}", "name": "blue cotton shirt size {}", "qty": {}, "note": "leave it at the door, thanks!"}}"#,
                i % 5,
                i % 3 + 1
            )
        })
        .collect();
    let body = format!(r#"{{"items": [{}]}}"#, items.join(", "));
    let mut headers: Vec<(String, String)> = [
        (":authority", "127.0.0.1:18000"),
        (":scheme", "http"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "2f0e1b7c-6a8e-4b51-9c61-8d5f0c3b2a17"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (method, path) = if json {
        headers.push(("content-type".into(), "application/json".into()));
        headers.push(("content-length".into(), body.len().to_string()));
        ("POST", "/reports/q3")
    } else {
        ("GET", "/reports/q3?q=red+shoes&page=2&sort=price")
    };
    for _ in 0..n {
        let mut a = waf.check_head(&Head {
            method,
            path: black_box(path),
            headers: &headers,
            end_of_stream: !json,
        });
        if let BodyPlan::Inspect(kind) = a.body {
            waf.check_body(&mut a, kind, black_box(body.as_bytes()), true);
        }
        if waf.verdict(&a) != Verdict::Pass {
            return Err(format!("the WAF refused the benchmark request: {:?}", a.matches).into());
        }
    }
    Ok(())
}
