//! Telemetry: what each request did, aggregated per edge on the sidecar and reported to the
//! control plane in signed batches.
//!
//! The filter reads a [`Record`] per request in `on_log` and adds it to the worker's
//! [`Batch`] ([`Batch::record`]): counts by status class, authorization outcome, breaker
//! fail-fasts, a latency histogram and the methods and paths seen, per edge
//! `(source, destination, version)`. On the root context's tick [`Batch::take`] encodes the
//! batch ([`Report`], JSON) and [`sign`] its body with the sidecar group's key; the control
//! plane parses it with the same types. A batch is bounded in edges and routes: what does
//! not fit is counted as dropped, never held.

mod batch;
mod config;
mod marks;
mod record;
mod stats;

pub use batch::{Batch, EdgeReport, Report, RouteSeen};
pub use config::{Direction, TelemetryConfig};
pub use marks::{
    BreakerMark, FaultMarks, LocalReply, Marks, WafMark, BREAKER_PROPERTY, FAULT_PROPERTY,
    WAF_PROPERTY,
};
pub use record::{destination_from_cluster, status_class, AuthzOutcome, Record};
pub use stats::{
    edge_stat_prefix, service_of_principal, stat_tag_regexes, EdgeStats, EdgeTags, STAT_TAGS,
};

pub use crate::mac::{sign, verify};

/// Upper bounds (milliseconds) of the latency histogram buckets; one more bucket holds the
/// rest. Shared by the filter (which fills them) and the control plane (which merges them
/// and reads p50/p99 from them).
pub const LATENCY_BOUNDS_MS: [u64; 16] = [
    1, 2, 3, 5, 8, 13, 20, 30, 50, 80, 130, 200, 300, 500, 1000, 3000,
];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The header carrying [`sign`]'s signature of a batch body.
pub const SIGNATURE_HEADER: &str = "x-weft-telemetry-signature";
/// The authz filter's per-request outcome, as a stream property other filters read
/// (Envoy keeps it in the stream's filter state under `wasm.<name>`).
pub const AUTHZ_PROPERTY: &str = "weft_authz";
/// Why a weft filter answered a request itself (deny, injected abort, fail-fast), with the
/// policy and rule that decided: a stream property the sidecar's access log prints with
/// `%FILTER_STATE(wasm.weft_decision:PLAIN)%`. Set only on a local reply; its first word
/// (`authz:`, `fault:`, `breaker:`) is the cause telemetry counts ([`LocalReply`]).
pub const DECISION_PROPERTY: &str = "weft_decision";

/// The source of an edge a gateway reports into itself from outside (its edge WAF judged
/// the request as it came in), in an outbound report; never a service name (those cannot
/// hold parentheses). The control plane files it as the gateway's own inbound edge from a
/// caller without a mesh identity.
pub const INGRESS_SOURCE: &str = "(external)";

/// The bucket of a latency in microseconds.
pub fn latency_bucket(latency_us: u64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&bound| latency_us <= bound * 1000)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

#[cfg(test)]
mod tests;
