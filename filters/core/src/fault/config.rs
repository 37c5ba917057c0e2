//! The fault filter's configuration, as JSON in the wasm `PluginConfig.configuration`.
//!
//! Modelled on Envoy's fault filter and Istio's `VirtualService.fault` (abort and delay,
//! each with a percentage), plus the safety limits those lack: a cap on concurrently
//! delayed requests, an expiry time per policy, and a percentage cap that a policy cannot
//! exceed unless the configuration raises it explicitly.
//!
//! ```json
//! {
//!   "percent_cap": 50.0,
//!   "max_concurrent_delays": 100,
//!   "policies": [{
//!     "name": "ratings-chaos",
//!     "match": { "hosts": ["ratings"], "path_prefixes": ["/"],
//!                "principals": ["spiffe://cluster.local/ns/shop/sa/reviews"] },
//!     "abort": { "percent": 20.0, "http_status": 503, "grpc_status": 14, "body": "injected" },
//!     "delay": { "percent": 10.0, "fixed_ms": 200, "max_ms": 400 },
//!     "allow_header_trigger": false,
//!     "expires_at_unix_ms": 1767225600000,
//!     "max_active": 10,
//!     "max_percent": 25.0
//!   }]
//! }
//! ```

use serde::{Deserialize, Serialize};

/// Top-level fault configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Evaluated in order; the first policy that matches a request (and has not expired)
    /// decides its faults.
    #[serde(default)]
    pub policies: Vec<FaultPolicy>,
    /// Upper bound for every configured `percent`. Defaults to [`DEFAULT_PERCENT_CAP`]; a
    /// policy above it is rejected, so injecting into more than half of the traffic takes a
    /// deliberate `"percent_cap": 100`. Header-triggered faults are opt-in per request and
    /// not subject to it.
    #[serde(default = "default_percent_cap")]
    pub percent_cap: f64,
    /// Most requests one Envoy worker holds delayed at once; past it no delay is injected
    /// (the request proceeds at once, counted as skipped). Per worker thread: with
    /// `--concurrency N` the proxy-wide bound is N times this.
    #[serde(default = "default_max_concurrent_delays")]
    pub max_concurrent_delays: u32,
    /// Request header read by policies with `allow_header_trigger`, e.g.
    /// `x-weft-fault: abort=503`, `x-weft-fault: delay=200ms`, or both joined by `,`.
    #[serde(default = "default_trigger_header")]
    pub trigger_header: String,
    /// Longest delay a trigger header may ask for, milliseconds.
    #[serde(default = "default_max_header_delay_ms")]
    pub max_header_delay_ms: u64,
}

/// Default [`FaultConfig::percent_cap`].
pub const DEFAULT_PERCENT_CAP: f64 = 50.0;

pub fn default_percent_cap() -> f64 {
    DEFAULT_PERCENT_CAP
}

pub fn default_max_concurrent_delays() -> u32 {
    100
}

pub fn default_trigger_header() -> String {
    "x-weft-fault".to_string()
}

pub fn default_max_header_delay_ms() -> u64 {
    10_000
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            percent_cap: default_percent_cap(),
            max_concurrent_delays: default_max_concurrent_delays(),
            trigger_header: default_trigger_header(),
            max_header_delay_ms: default_max_header_delay_ms(),
        }
    }
}

/// One fault policy: which requests, which faults, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPolicy {
    /// Unique name; appears in stats (`weft.fault.policy.<name>.*`) and logs.
    pub name: String,
    /// Which requests the policy applies to. Absent = every request.
    #[serde(default, rename = "match", skip_serializing_if = "FaultMatch::is_any")]
    pub matcher: FaultMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    /// Honour the trigger header on matching requests (injecting what it asks, every time).
    #[serde(default)]
    pub allow_header_trigger: bool,
    /// From this host time on (Unix milliseconds) the policy is switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_unix_ms: Option<u64>,
    /// Decide as usual, inject nothing: the filter only counts what it would have injected
    /// (and such a policy never hides an enforced one behind it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Most requests this policy holds delayed at once on one worker (1 ..=
    /// [`MAX_ACTIVE_LIMIT`]); past it a drawn delay is skipped, counted `skipped_by_max_active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
    /// Most of this policy's matching requests, in percent (0.01 ..= 100), that get any fault
    /// (sampled or by trigger header), counted per worker since the configuration arrived;
    /// past it the fault is skipped, counted `skipped_by_max_percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<f64>,
}

/// Largest [`FaultPolicy::max_active`].
pub const MAX_ACTIVE_LIMIT: u32 = 100_000;

/// All present fields must match; inside a list any value may match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultMatch {
    /// `:authority` without the port, case-insensitive: exact, or `*.suffix`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Prefixes of `:path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// SPIFFE ids of the mTLS peer: exact, `prefix*` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Header conditions (e.g. a caller-identity header), all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A request header condition. Neither `exact` nor `prefix` = presence check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Answer a sampled request locally instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    /// 0.01 .. `percent_cap`, in steps of 0.01.
    pub percent: f64,
    /// Status for plain HTTP requests, 200..=599.
    pub http_status: u16,
    /// `grpc-status` for gRPC requests (`content-type: application/grpc*`), 0..=16; when
    /// absent it follows from `http_status` by the gRPC HTTP-to-status mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// Response body (HTTP) or `grpc-message` (gRPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Hold a sampled request before forwarding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// 0.01 .. `percent_cap`, in steps of 0.01.
    pub percent: f64,
    /// The delay, milliseconds (1 ..= [`MAX_DELAY_MS`]).
    pub fixed_ms: u64,
    /// When set, the delay is drawn uniformly from `fixed_ms ..= max_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
}

/// Longest delay a policy may configure: five minutes.
pub const MAX_DELAY_MS: u64 = 300_000;

impl FaultMatch {
    /// True when no condition is set: every request matches.
    pub fn is_any(&self) -> bool {
        self.hosts.is_empty()
            && self.path_prefixes.is_empty()
            && self.principals.is_empty()
            && self.headers.is_empty()
    }
}
