//! The service graph of a window: one node per service, one edge per (caller service,
//! callee, version) merging the callee's report (authoritative for what reached it:
//! counts, latency, authorization) with the caller's (what its own sidecar answered or did:
//! injected aborts, fail-fasts, Envoy replies without an upstream, delays, dry-run verdicts,
//! the breaker's phase), the canary split callers saw, and a layered layout of it all
//! (`links`: one labelled arrow per caller and callee service, see [`crate::layout`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;
use weft_filter_core::breaker::Phase;
use weft_filter_core::telemetry::Direction;

use crate::layout::Rect;
use crate::{Counts, EdgeKey, IngestStats};

/// A service: its versions that were called, the lines its box shows and where the layout
/// put the box.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphNode {
    /// The service.
    pub id: String,
    pub service: String,
    pub versions: Vec<String>,
    /// A running rollout's one-line status (see [`crate::Telemetry::set_badges`]).
    pub badge: Option<String>,
    #[serde(rename = "box")]
    pub rect: Rect,
}

/// The caller's breaker for one destination version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerView {
    /// The phase the newest admission in the window saw: `closed`, `open`, `half-open`.
    pub state: &'static str,
    /// Admissions (and refusals) by the phase they saw.
    pub closed: u64,
    pub open: u64,
    pub half_open: u64,
}

/// One arrow of the drawing: every edge from one caller service to one callee service,
/// its label's lines (one block per version), where the label sits and the arrow's path.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Link {
    pub source: String,
    pub destination: String,
    pub versions: Vec<String>,
    pub lines: Vec<LabelLine>,
    /// The worst thing on it: `ok`, `error`, `denied`, `breaker`.
    pub status: &'static str,
    pub label: Rect,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelLine {
    pub text: String,
    /// `head` (a version's traffic), `cause`, `breaker`, `dry-run`.
    pub kind: &'static str,
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
    /// Denied by authz (the callee's, or a gateway's own).
    pub denied: u64,
    pub dry_run_denied: u64,
    /// Requests the caller's breaker failed fast (never sent): open, half-open with every
    /// probe out, or over its concurrency cap.
    pub breaker_open: u64,
    /// Aborts the caller's fault stage injected (never sent).
    pub aborted: u64,
    /// Answered by the caller's Envoy without an upstream host (no healthy upstream, ...).
    pub unreached: u64,
    /// Refused by the callee's WAF (a gateway's edge WAF: on the edge from `external`).
    pub waf_blocked: u64,
    /// Detect mode: what the WAF would have refused (they went on).
    pub waf_would_block: u64,
    /// Requests the caller's fault stage delayed, and their rate.
    pub delayed: u64,
    pub delayed_per_sec: f64,
    /// Dry-run verdicts of the caller's fault and breaker policies (nothing was done).
    pub would_abort: u64,
    pub would_delay: u64,
    pub would_fail_fast: u64,
    /// Requests a sidecar answered itself, by cause: `denied`, `aborted`, `fail_fast`,
    /// `unreached`, `waf` (only the causes seen).
    pub local_replies: BTreeMap<&'static str, u64>,
    /// `None`: the caller guards no cluster of this version (or sent nothing to it).
    pub breaker: Option<BreakerView>,
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
    pub links: Vec<Link>,
    /// The drawing's size (every box and path lies inside).
    pub width: f64,
    pub height: f64,
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
    type Merged = (Option<Counts>, Option<Counts>, u64, Counts, Vec<String>);
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
        let entry = merged
            .entry(pair)
            .or_insert((None, None, 0, Counts::default(), Vec::new()));
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
                entry.3.merge(total);
                *splits
                    .entry((key.source.clone(), key.destination.clone()))
                    .or_default()
                    .entry(key.version.clone())
                    .or_default() += window.requests;
            }
        }
    }
    // service -> the versions called
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
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
        // The callee's view when it has one, plus what only the caller's side knows: the
        // requests its sidecar answered itself never reached the callee.
        let (counts, total) = match (inbound, outbound) {
            (Some(mut inbound), Some(outbound)) => {
                inbound.add_caller_view(&outbound);
                (inbound, in_total + out_total.local_requests())
            }
            (Some(inbound), None) => (inbound, in_total),
            (None, Some(outbound)) => (outbound, out_total.requests),
            (None, None) => continue,
        };
        for service in [&source, &destination] {
            nodes.entry(service.clone()).or_default();
        }
        if let Some(versions) = nodes.get_mut(&destination) {
            if !versions.contains(&version) {
                versions.push(version.clone());
            }
        }
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
            breaker_open: counts.breaker_open,
            aborted: counts.aborted,
            unreached: counts.unreached,
            waf_blocked: counts.waf_blocked,
            waf_would_block: counts.waf_detected,
            delayed: counts.delayed,
            delayed_per_sec: round3(counts.delayed as f64 / seconds),
            would_abort: counts.would_abort,
            would_delay: counts.would_delay,
            would_fail_fast: counts.would_fail_fast,
            local_replies: [
                ("denied", counts.denied),
                ("aborted", counts.aborted),
                ("fail_fast", counts.breaker_open),
                ("unreached", counts.unreached),
                ("waf", counts.waf_blocked),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
            breaker: counts.breaker_state.map(|phase| BreakerView {
                state: phase.as_str(),
                closed: counts.breaker_phases[Phase::Closed as usize],
                open: counts.breaker_phases[Phase::Open as usize],
                half_open: counts.breaker_phases[Phase::HalfOpen as usize],
            }),
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
        nodes: nodes
            .into_iter()
            .map(|(service, versions)| GraphNode {
                id: service.clone(),
                service,
                versions,
                badge: None,
                rect: Rect::default(),
            })
            .collect(),
        edges: out,
        // Filled in by `drawing::draw`.
        links: Vec::new(),
        width: 0.0,
        height: 0.0,
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
