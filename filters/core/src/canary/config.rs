//! The canary filter's configuration, as JSON in the wasm `PluginConfig.configuration`.
//!
//! One entry per destination service the sidecar calls. For each request the filter picks a
//! version of the matched service, in this order:
//!
//! 1. the cohort header of an earlier hop, when it names a version of this service;
//! 2. the first matching `rules` entry (header, cookie or authz-forwarded claim);
//! 3. the weighted `split`, by a sticky bucket when `sticky` is set and the key is present,
//!    else by a random draw.
//!
//! It then writes the version's cluster into `cluster_header`, which the route reads with
//! `cluster_header`; the route configuration keeps a fallback route to the stable cluster for
//! requests the filter did not touch (filter skipped, service not configured).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Weights are basis points: a split sums to exactly this.
pub const TOTAL_WEIGHT_BP: u32 = 10_000;

/// Top-level canary configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Request header the chosen cluster is written to; the route reads it with
    /// `cluster_header`. An incoming value is removed from requests no service matches, so a
    /// caller cannot pick a cluster by sending it.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// A `claim` condition or sticky key named `sub` reads header `<prefix>sub` (dots in the
    /// claim name become `-`): the headers authz forwards validated JWT claims in.
    #[serde(default = "default_claim_header_prefix")]
    pub claim_header_prefix: String,
    /// Destination services; the first whose host (and path prefix) matches decides.
    #[serde(default)]
    pub services: Vec<Service>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            cluster_header: default_cluster_header(),
            claim_header_prefix: default_claim_header_prefix(),
            services: Vec::new(),
        }
    }
}

pub fn default_cluster_header() -> String {
    "x-weft-cluster".to_string()
}

pub fn default_claim_header_prefix() -> String {
    "x-weft-claim-".to_string()
}

/// One destination service and how its traffic is shared between versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Name in stats (`weft.canary.<name>.<version>.requests`); defaults to `host`. Must be
    /// unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matched against `:authority` / Host, case-insensitively, ignoring any port.
    pub host: String,
    /// Only requests whose `:path` starts with this (e.g. `/api/`); absent = any path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The version that gets traffic when nothing else decides; the route's fallback cluster
    /// should be this version's cluster.
    pub stable: String,
    /// Version name (e.g. `v2`; letters, digits, `.`, `_`, `-`) to its upstream cluster.
    pub versions: BTreeMap<String, Version>,
    /// Ordered; the first matching rule decides the version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MatchRule>,
    /// Weighted split in basis points, summing to 10000. The order is the bucket layout (see
    /// [`Sticky`]).
    pub split: Vec<SplitEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<Cohort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// Pick the version as usual and count it (`<name>.<version>.would_route`); route as
    /// before: no cluster header, cohort header or mirror.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Envoy cluster name; it must exist in Envoy, or the request fails with 503 NC.
    pub cluster: String,
}

/// Sends matching requests to `version`. Exactly one of `header`, `cookie`, `claim` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// A request header (e.g. a beta channel `x-beta: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<ValueMatch>,
    /// A cookie in the `cookie` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<ValueMatch>,
    /// A JWT claim, as forwarded by authz in `<claim_header_prefix><name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ValueMatch>,
    pub version: String,
}

/// `name` present, and equal to `value` when one is given (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One slice of the weighted split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub version: String,
    /// Basis points: 2500 = 25 %, 10 = 0.1 %.
    pub weight: u32,
}

/// Sticky assignment: the same key always lands in the same bucket, on every sidecar and
/// across restarts.
///
/// `bucket = u64_be(sha256(salt ‖ key)[..8]) mod 10000`, and the split's versions own
/// consecutive bucket ranges in the configured order. Moving weight from an earlier entry to a
/// later one (keeping the order) therefore moves keys only towards later entries: raising `v2`
/// in `[v1, v2]` from 10 % to 20 % moves users from v1 to v2, never back. Reordering the split
/// or changing the salt reshuffles everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    pub key: KeySource,
    /// Per-service salt, so two services do not put the same users in their canaries.
    #[serde(default)]
    pub salt: String,
}

/// Where a sticky key is read from. A request without it is split at random.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// `{"header": "x-user"}`
    Header(String),
    /// `{"cookie": "uid"}`
    Cookie(String),
    /// `{"claim": "sub"}`: the header authz forwards the claim in.
    Claim(String),
}

/// Cohort propagation: keeps a whole call chain on one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// Written with the chosen version on the request to the next hop. An incoming value that
    /// names a version of this service is honoured before rules and split (when
    /// `honour_incoming`), which is what keeps a chain on one cohort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header: Option<String>,
    /// Written with the chosen version on the response to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header: Option<String>,
    #[serde(default = "default_true")]
    pub honour_incoming: bool,
}

fn default_true() -> bool {
    true
}

/// Copies a share of the requests to a shadow cluster with `dispatch_http_call`; the copy's
/// answer is discarded and the caller's request is never held for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub cluster: String,
    /// Share of requests copied, basis points (10000 = all).
    pub percent_bp: u32,
    /// Bodies up to this size are copied along; a larger body cancels that request's copy.
    #[serde(default = "default_mirror_max_body")]
    pub max_body_bytes: u32,
    #[serde(default = "default_mirror_timeout")]
    pub timeout_ms: u32,
}

pub fn default_mirror_max_body() -> u32 {
    64 * 1024
}

pub fn default_mirror_timeout() -> u32 {
    5_000
}
