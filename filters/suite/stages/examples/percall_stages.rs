//! Per-request host calls and instructions of each suite stage, and of the whole suite, on
//! the benchmark's request and configurations (`bench/run.py`).
//!
//! `cargo run --release -p weft-suite-stages --example percall_stages -- <stage> N` prints
//! the host calls per request by kind; under `valgrind --tool=callgrind` the instructions per
//! request are `(Ir at N - Ir at 0) / N`, less those of `none` (the harness). `<stage>`:
//! none, authz, canary, fault, breaker,
//! telemetry, suite (authz, canary, fault and breaker as the benchmark's S5, marks not
//! published), suite-marks (the same, marks published for a telemetry filter outside),
//! suite-telemetry
//! (the same plus telemetry, as a mesh sidecar runs it). A third argument `map` makes the
//! host prefer one read of the whole header map to single reads, as the wasm glue does
//! (`RequestAttributes::prefers_header_map`); without it headers are read one by one, as the
//! native glue does. An argument `busy` sums counter increments as the wasm suite does on a
//! worker with requests overlapping (`CounterBatch`, D106: one call per counter per batch);
//! without it every increment is a call, as on a worker serving one request at a time.
//! The host answers from memory and
//! counts calls in an array, so the instructions are the stages' own (plus the copies a
//! real host's answers cost the module: every returned string is allocated in the module).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;
use weft_filter_core::host::{CounterBatch, HostError, MetricId, MetricKind, SharedRecord};
use weft_filter_core::suite::Suite;
use weft_filter_core::testing::bench_config as bench;
use weft_filter_core::{Host, RequestAttributes};
use weft_suite_stages::{Stages, SuiteRequest};

/// The kinds of host call counted.
const KINDS: [&str; 10] = [
    "header read",
    "property read",
    "header write",
    "metric",
    "shared get",
    "shared set",
    "clock",
    "local reply",
    "stream property write",
    "other",
];

#[derive(Default)]
struct BenchHost {
    headers: RefCell<Vec<(String, String)>>,
    properties: Vec<(&'static str, Vec<u8>)>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    calls: RefCell<[u64; KINDS.len()]>,
    now: Cell<u64>,
    metrics: Cell<u32>,
    prefers_map: bool,
    /// `busy`: counter increments held as on a worker with other requests in flight.
    batch: Option<RefCell<CounterBatch>>,
}

impl BenchHost {
    fn new() -> Self {
        let headers = [
            (":method", "GET"),
            (":path", "/reports/q?x=1"),
            (":authority", "reviews"),
            ("x-user", "user-42"),
            ("user-agent", "wrk"),
        ];
        Self {
            headers: RefCell::new(
                headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
            properties: vec![
                ("response.code", 200u64.to_le_bytes().to_vec()),
                ("response.flags", 0u64.to_le_bytes().to_vec()),
                ("request.duration", 1_000_000u64.to_le_bytes().to_vec()),
                ("xds.cluster_name", b"v1".to_vec()),
                ("source.address", b"127.0.0.1:5555".to_vec()),
                (
                    "connection.uri_san_peer_certificate",
                    b"spiffe://weft.test/ns/corp/sa/exec-portal".to_vec(),
                ),
            ],
            now: Cell::new(1_800_000_000_000),
            ..Self::default()
        }
    }

    fn count(&self, kind: usize) {
        if let Some(n) = self.calls.borrow_mut().get_mut(kind) {
            *n += 1;
        }
    }

    fn reset(&self) {
        *self.calls.borrow_mut() = [0; KINDS.len()];
    }
}

impl RequestAttributes for BenchHost {
    fn method(&self) -> Option<String> {
        self.header(":method")
    }
    fn path(&self) -> Option<String> {
        self.header(":path")
    }
    fn header(&self, name: &str) -> Option<String> {
        self.count(0);
        let headers = self.headers.borrow();
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
    fn header_map(&self) -> Option<Vec<(String, String)>> {
        self.count(0);
        Some(self.headers.borrow().clone())
    }
    fn prefers_header_map(&self) -> bool {
        self.prefers_map
    }
    fn source_address(&self) -> Option<String> {
        self.property_string(&["source", "address"])
    }
    fn peer_principal(&self) -> Option<String> {
        self.property_string(&["connection", "uri_san_peer_certificate"])
    }
}

impl Host for BenchHost {
    fn now_millis(&self) -> u64 {
        self.count(6);
        self.now.get()
    }
    fn seed(&self, context_id: u32) -> u64 {
        u64::from(context_id)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.count(1);
        let found = self.properties.iter().find(|(p, _)| {
            let mut parts = p.split('.');
            path.iter().all(|s| parts.next() == Some(s)) && parts.next().is_none()
        });
        found.map(|(_, v)| v.clone())
    }
    fn set_property(&self, _name: &str, _value: &[u8]) {
        self.count(8);
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.count(2);
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    fn add_request_header(&self, name: &str, value: &str) {
        self.count(2);
        let mut headers = self.headers.borrow_mut();
        headers.push((name.to_string(), value.to_string()));
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        self.count(0);
        self.headers.borrow().clone()
    }
    fn request_body(&self, _size: usize) -> Vec<u8> {
        self.count(9);
        Vec::new()
    }
    fn response_header(&self, _name: &str) -> Option<String> {
        self.count(0);
        None
    }
    fn send_local_reply(&self, _status: u16, _headers: &[(String, String)], _body: &str) {
        self.count(7);
    }
    fn define_metric(&self, kind: MetricKind, _name: &str) -> Result<MetricId, HostError> {
        self.count(9);
        self.metrics.set(self.metrics.get() + 1);
        if let Some(batch) = &self.batch {
            batch.borrow_mut().defined(kind, self.metrics.get());
        }
        Ok(self.metrics.get())
    }
    fn increment_metric(&self, id: MetricId, delta: i64) {
        let Some(batch) = &self.batch else {
            return self.count(3);
        };
        batch
            .borrow_mut()
            .increment(id, delta, |_, _| self.count(3));
    }
    fn record_metric(&self, _id: MetricId, _value: u64) {
        self.count(3);
    }
    fn shared_get(&self, key: &str) -> Result<SharedRecord, HostError> {
        self.count(4);
        Ok(match self.shared.borrow().get(key) {
            Some((bytes, cas)) => (Some(bytes.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.count(5);
        let mut shared = self.shared.borrow_mut();
        let entry = shared.entry(key.to_string()).or_insert((Vec::new(), 0));
        if cas.is_some_and(|cas| cas != entry.1) {
            return Err(HostError::CasMismatch);
        }
        *entry = (value.to_vec(), entry.1 + 1);
        Ok(())
    }
    fn dispatch_http_call(
        &self,
        _upstream: &str,
        _headers: &[(String, String)],
        _body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, HostError> {
        self.count(9);
        Ok(1)
    }
    fn http_call_response_status(&self) -> Option<u16> {
        self.count(9);
        Some(200)
    }
    fn set_tick_period(&self, _period: Duration) -> Result<(), HostError> {
        self.count(9);
        Ok(())
    }
    fn set_effective_context(&self, _context_id: u32) -> Result<(), HostError> {
        self.count(9);
        Ok(())
    }
    fn resume_http_request(&self) -> Result<(), HostError> {
        self.count(9);
        Ok(())
    }
}

/// The suite configuration measuring `which`.
fn config(which: &str) -> Option<String> {
    let (a, c, f, b, t) = (
        bench::AUTHZ,
        bench::CANARY,
        bench::FAULT,
        bench::BREAKER_V1,
        bench::TELEMETRY,
    );
    Some(match which {
        // The harness alone (a request with no stage), to subtract.
        "none" => r#"{"listener": "outbound"}"#.to_string(),
        "authz" => format!(r#"{{"listener": "inbound", "authz": {a}}}"#),
        "canary" => format!(r#"{{"listener": "outbound", "canary": {c}}}"#),
        "fault" => format!(r#"{{"listener": "outbound", "fault": {f}}}"#),
        "breaker" => format!(r#"{{"listener": "outbound", "breaker": {b}}}"#),
        "telemetry" => format!(r#"{{"listener": "outbound", "telemetry": {t}}}"#),
        // As `bench/run.py`'s S5: no telemetry filter in the chain reads the marks (D108);
        // `suite-marks` writes them, for a telemetry filter later in the chain.
        "suite" | "suite-marks" => {
            let (a, b) = (bench::AUTHZ_NO_PEER, bench::BREAKER_V1_V2);
            let publish = which == "suite-marks";
            format!(
                r#"{{"publish_marks": {publish}, "authz": {a}, "canary": {c}, "fault": {f}, "breaker": {b}}}"#
            )
        }
        "suite-telemetry" => {
            let (a, b) = (bench::AUTHZ_NO_PEER, bench::BREAKER_V1_V2);
            format!(
                r#"{{"telemetry": {t}, "authz": {a}, "canary": {c}, "fault": {f}, "breaker": {b}}}"#
            )
        }
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("suite", String::as_str);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let json = config(which).ok_or_else(|| format!("unknown stage {which}"))?;
    let flags = args.get(3..).unwrap_or_default();
    let host = BenchHost {
        prefers_map: flags.iter().any(|a| a == "map"),
        batch: flags.iter().any(|a| a == "busy").then(|| {
            let mut batch = CounterBatch::default();
            // Another request is always in flight on this worker.
            batch.request_began();
            RefCell::new(batch)
        }),
        ..BenchHost::new()
    };
    let stages = Stages::new(Suite::from_json(json.as_bytes())?, 1, &host);
    host.reset();
    let original = host.headers.borrow().clone();
    let mut headers_calls = [0u64; KINDS.len()];
    for i in 0..n {
        let mut request = SuiteRequest::new(2 + (i % 1000) as u32);
        black_box(request.on_request_headers(&stages, &host, true));
        if i == 0 {
            headers_calls = *host.calls.borrow();
        }
        black_box(request.take_response_header());
        request.on_log(&stages, &host);
        request.on_done(&stages, &host);
        host.now.set(host.now.get() + 1);
        // The next request arrives without the headers a stage wrote on this one.
        host.headers.borrow_mut().clone_from(&original);
    }
    if n > 0 {
        let calls = *host.calls.borrow();
        let per = |total: u64| total as f64 / n as f64;
        let total: u64 = calls.iter().sum();
        let on_headers: u64 = headers_calls.iter().sum();
        println!(
            "{which}: {n} requests; host calls per request {:.2} (request headers {on_headers}, \
             the rest in on_log/on_done)",
            per(total)
        );
        for (kind, count) in KINDS.iter().zip(calls) {
            if count > 0 {
                println!("  {kind:<22} {:.2}", per(count));
            }
        }
    }
    Ok(())
}
