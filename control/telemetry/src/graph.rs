//! The service graph of a window: nodes (callers by service, callees by service and
//! version), one edge per (caller service, callee, version) merging the callee's report
//! (authoritative for counts, latency, authorization) with the caller's (breaker
//! fail-fasts, requests that never reached the callee), and the canary split callers saw.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;
use weft_filter_core::telemetry::Direction;

use crate::{Counts, EdgeKey, IngestStats};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphNode {
    /// `service` or `service@version`.
    pub id: String,
    pub service: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphEdge {
    pub source: String,
    pub destination: String,
    pub version: String,
    /// SPIFFE ids the callee saw for this caller.
    pub principals: Vec<String>,
    /// `inbound` (the callee reported), `outbound` (the caller reported).
    pub reported_by: Vec<&'static str>,
    pub requests: u64,
    pub rate_per_sec: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub denied: u64,
    pub dry_run_denied: u64,
    /// Requests the caller's breaker failed fast (never sent).
    pub breaker_open: u64,
    /// Status classes: `none`, `1xx` .. `5xx`.
    pub status: BTreeMap<&'static str, u64>,
    /// Requests since the control plane started.
    pub total_requests: u64,
}

/// The versions one caller's requests to one service went to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Split {
    pub source: String,
    pub destination: String,
    /// version -> share of requests (0..1).
    pub observed: BTreeMap<String, f64>,
    pub requests: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Graph {
    pub window_secs: u64,
    pub generated_at_ms: u64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    pub splits: Vec<Split>,
    pub ingest: IngestView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestView {
    pub batches: u64,
    pub rejected: u64,
    pub dropped_by_sidecars: u64,
}

const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub(crate) fn build(
    edges: Vec<(EdgeKey, Counts, Counts)>,
    window_secs: u64,
    now_ms: u64,
    stats: &IngestStats,
) -> Graph {
    // (caller service, callee, version) -> (inbound window, outbound window, totals, principals)
    type Merged = (Option<Counts>, Option<Counts>, u64, u64, Vec<String>);
    let mut merged: BTreeMap<(String, String, String), Merged> = BTreeMap::new();
    let mut splits: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for (key, window, total) in &edges {
        if window.requests == 0 {
            continue;
        }
        let pair = (
            key.source_service().to_string(),
            key.destination.clone(),
            key.version.clone(),
        );
        let entry = merged.entry(pair).or_insert((None, None, 0, 0, Vec::new()));
        match key.reporter {
            Direction::Inbound => {
                entry.0.get_or_insert_with(Counts::default).merge(window);
                entry.2 += total.requests;
                if !key.source.is_empty() {
                    entry.4.push(key.source.clone());
                }
            }
            Direction::Outbound => {
                entry.1.get_or_insert_with(Counts::default).merge(window);
                entry.3 += total.requests;
                *splits
                    .entry((key.source.clone(), key.destination.clone()))
                    .or_default()
                    .entry(key.version.clone())
                    .or_default() += window.requests;
            }
        }
    }
    let mut nodes: BTreeMap<String, GraphNode> = BTreeMap::new();
    let mut out = Vec::new();
    let seconds = window_secs.max(1) as f64;
    for ((source, destination, version), (inbound, outbound, in_total, out_total, principals)) in
        merged
    {
        let mut reported_by = Vec::new();
        if inbound.is_some() {
            reported_by.push("inbound");
        }
        if outbound.is_some() {
            reported_by.push("outbound");
        }
        let breaker_open = outbound.as_ref().map_or(0, |c| c.breaker_open);
        // The callee's view when it has one; requests it never saw (the caller's breaker
        // failed them fast) are added from the caller's view.
        let (mut counts, total) = match (inbound, outbound) {
            (Some(inbound), _) => (inbound, in_total),
            (None, Some(outbound)) => (outbound, out_total),
            (None, None) => continue,
        };
        if counts.breaker_open == 0 && breaker_open > 0 && reported_by.len() == 2 {
            counts.requests += breaker_open;
            counts.status[5] += breaker_open;
        }
        nodes.entry(source.clone()).or_insert_with(|| GraphNode {
            id: source.clone(),
            service: source.clone(),
            version: None,
        });
        let id = format!("{destination}@{version}");
        nodes.entry(id.clone()).or_insert_with(|| GraphNode {
            id,
            service: destination.clone(),
            version: Some(version.clone()),
        });
        let errors = counts.errors();
        out.push(GraphEdge {
            principals,
            reported_by,
            requests: counts.requests,
            rate_per_sec: round3(counts.requests as f64 / seconds),
            errors,
            error_rate: if counts.requests == 0 {
                0.0
            } else {
                round3(errors as f64 / counts.requests as f64)
            },
            p50_ms: counts.quantile_ms(0.5),
            p99_ms: counts.quantile_ms(0.99),
            denied: counts.denied,
            dry_run_denied: counts.dry_run_denied,
            breaker_open,
            status: CLASSES
                .iter()
                .copied()
                .zip(counts.status)
                .filter(|(_, n)| *n > 0)
                .collect(),
            total_requests: total,
            source,
            destination,
            version,
        });
    }
    let splits = splits
        .into_iter()
        .map(|((source, destination), versions)| {
            let requests: u64 = versions.values().sum();
            Split {
                observed: versions
                    .into_iter()
                    .map(|(v, n)| (v, round3(n as f64 / requests.max(1) as f64)))
                    .collect(),
                requests,
                source,
                destination,
            }
        })
        .collect();
    Graph {
        window_secs,
        generated_at_ms: now_ms,
        nodes: nodes.into_values().collect(),
        edges: out,
        splits,
        ingest: IngestView {
            batches: stats.batches.load(Ordering::Relaxed),
            rejected: stats.rejected.load(Ordering::Relaxed),
            dropped_by_sidecars: stats.dropped_reported.load(Ordering::Relaxed),
        },
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
