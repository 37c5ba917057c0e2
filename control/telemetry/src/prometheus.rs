//! Prometheus text exposition of the edges (counters since start, a latency histogram) and
//! the ingest counters. The xDS server adds its own (see `weft_xds::metrics`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use weft_filter_core::telemetry::LATENCY_BOUNDS_MS;

use crate::Telemetry;

/// A counter per edge: name, help, how to read it from the counts.
type Series = (&'static str, &'static str, fn(&crate::Counts) -> u64);

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Everything, as served on `GET /metrics`.
pub fn render(telemetry: &Telemetry, now_ms: u64) -> String {
    let mut out = String::new();
    let edges = telemetry.edges_at(crate::BUCKET_SECS, now_ms);
    let labels = |key: &crate::EdgeKey| {
        format!(
            "reporter=\"{}\",source=\"{}\",destination=\"{}\",version=\"{}\"",
            key.reporter.as_str(),
            escape(key.source_service()),
            escape(&key.destination),
            escape(&key.version)
        )
    };
    let series: [Series; 5] = [
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
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (key, _, total) in &edges {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(key), value(total));
        }
    }
    let name = "weft_edge_latency_ms";
    let _ = writeln!(
        out,
        "# HELP {name} Request latency per edge.\n# TYPE {name} histogram"
    );
    for (key, _, total) in &edges {
        let labels = labels(key);
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
            cumulative += total.latency.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count: u64 = total.latency.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            total.latency_us_sum as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    if let Some(xds) = telemetry.xds_metrics() {
        out.push_str(&xds);
    }
    out
}
