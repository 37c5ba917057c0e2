//! Prometheus text exposition of the edges (counters since start, a latency histogram) and
//! the ingest counters. The xDS server adds its own (see `weft_xds::metrics`); both write
//! through `weft_prometheus_text`.

use std::sync::atomic::Ordering;

use weft_filter_core::telemetry::LATENCY_BOUNDS_MS;
use weft_prometheus_text::{labels, Kind, Writer};

use crate::Telemetry;

/// A counter per edge: name, help, how to read it from the counts.
type Series = (&'static str, &'static str, fn(&crate::Counts) -> u64);

pub use weft_prometheus_text::escape;

/// Everything, as served on `GET /metrics`.
pub fn render(telemetry: &Telemetry, now_ms: u64) -> String {
    let mut out = Writer::new();
    let edges = telemetry.edges_at(crate::BUCKET_SECS, now_ms);
    let labels = |key: &crate::EdgeKey| {
        labels(&[
            ("reporter", key.reporter.as_str()),
            ("source", key.source_service()),
            ("destination", &key.destination),
            ("version", &key.version),
        ])
    };
    let series: [Series; 13] = [
        (
            "weft_edge_requests_total",
            "Requests per edge, by reporter.",
            |c| c.requests,
        ),
        (
            "weft_edge_errors_total",
            "5xx or no response per edge.",
            |c| c.errors(),
        ),
        ("weft_edge_denied_total", "Requests authz denied.", |c| {
            c.denied
        }),
        (
            "weft_edge_dry_run_denied_total",
            "Requests a dry-run policy would have denied.",
            |c| c.dry_run_denied,
        ),
        (
            "weft_edge_breaker_open_total",
            "Requests the caller's breaker failed fast.",
            |c| c.breaker_open,
        ),
        (
            "weft_edge_aborted_total",
            "Aborts the caller's fault stage injected.",
            |c| c.aborted,
        ),
        (
            "weft_edge_unreached_total",
            "Requests the caller's Envoy answered without an upstream host.",
            |c| c.unreached,
        ),
        (
            "weft_edge_waf_blocked_total",
            "Requests the callee's WAF refused.",
            |c| c.waf_blocked,
        ),
        (
            "weft_edge_waf_would_block_total",
            "Requests a detect-mode WAF would have refused.",
            |c| c.waf_detected,
        ),
        (
            "weft_edge_delayed_total",
            "Requests the caller's fault stage delayed.",
            |c| c.delayed,
        ),
        (
            "weft_edge_would_abort_total",
            "Requests a dry-run fault policy would have aborted.",
            |c| c.would_abort,
        ),
        (
            "weft_edge_would_delay_total",
            "Requests a dry-run fault policy would have delayed.",
            |c| c.would_delay,
        ),
        (
            "weft_edge_would_fail_fast_total",
            "Requests a dry-run breaker would have failed fast.",
            |c| c.would_fail_fast,
        ),
    ];
    for (name, help, value) in series {
        out.family(name, help, Kind::Counter);
        for (key, _, total) in &edges {
            out.sample(name, &labels(key), value(total));
        }
    }
    let name = "weft_edge_latency_ms";
    out.family(name, "Request latency per edge.", Kind::Histogram);
    for (key, _, total) in &edges {
        let overflow = total.latency.iter().skip(LATENCY_BOUNDS_MS.len()).sum();
        out.histogram(
            name,
            &labels(key),
            &LATENCY_BOUNDS_MS,
            &total.latency,
            overflow,
            total.latency_us_sum as f64 / 1000.0,
        );
    }
    let stats = &telemetry.stats;
    for (name, help, value) in [
        (
            "weft_telemetry_batches_total",
            "Telemetry batches accepted.",
            &stats.batches,
        ),
        (
            "weft_telemetry_rejected_total",
            "Telemetry batches refused (signature, format).",
            &stats.rejected,
        ),
        (
            "weft_telemetry_dropped_by_sidecars_total",
            "Requests sidecars reported they could not report.",
            &stats.dropped_reported,
        ),
    ] {
        out.single(name, help, Kind::Counter, value.load(Ordering::Relaxed));
    }
    if let Some(xds) = telemetry.xds_metrics() {
        out.push_text(&xds);
    }
    if let Some(more) = telemetry.more_metrics() {
        out.push_text(&more);
    }
    out.finish()
}
