//! The telemetry filter's configuration, compiled per sidecar group by the control plane.

use crate::ConfigError;
use serde::{Deserialize, Serialize};

/// Which listener the filter instance sits on, i.e. who reports: the callee (`inbound`,
/// source = the mTLS peer) or the caller (`outbound`, destination = the picked cluster).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

fn default_cluster() -> String {
    "weft_xds".into()
}
fn default_authority() -> String {
    "weft-control".into()
}
fn default_path() -> String {
    "/v1/telemetry".into()
}
fn default_flush() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    2000
}
fn default_max_edges() -> usize {
    256
}
fn default_max_routes() -> usize {
    16
}

/// `{}` is valid: local Envoy stats only, nothing reported (no key, no group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub direction: Direction,
    /// This sidecar's group; reported batches name it and the control plane checks the
    /// signature with that group's key.
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub version: String,
    /// Hex HMAC-SHA256 key of this group; empty: batches are not reported.
    #[serde(default)]
    pub key: String,
    /// The cluster and request line batches go to.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// The root context's tick: one batch per worker at most this often.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Distinct edges per batch; a request on a new edge beyond it is dropped (counted).
    #[serde(default = "default_max_edges")]
    pub max_edges: usize,
    /// Distinct `(method, path)` per edge kept for policy suggestions; beyond it the edge
    /// is marked `routes_truncated`.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
    /// Define tagged Envoy stats per edge (`wasmcustom.weft.telemetry...`).
    #[serde(default = "default_true")]
    pub envoy_stats: bool,
    /// Outbound: the request header the canary writes its picked cluster into; a local
    /// reply made before the route read it is attributed to that cluster's version.
    #[serde(default = "crate::canary::config::default_cluster_header")]
    pub cluster_header: String,
}

fn default_true() -> bool {
    true
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            direction: Direction::Inbound,
            namespace: String::new(),
            service: String::new(),
            version: String::new(),
            key: String::new(),
            cluster: default_cluster(),
            authority: default_authority(),
            path: default_path(),
            flush_interval_ms: default_flush(),
            timeout_ms: default_timeout(),
            max_edges: default_max_edges(),
            max_routes: default_max_routes(),
            envoy_stats: true,
            cluster_header: crate::canary::config::default_cluster_header(),
        }
    }
}

impl TelemetryConfig {
    /// Parses and validates; errors name the field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = crate::error::parse_json(bytes)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=60_000).contains(&self.flush_interval_ms) {
            return Err(ConfigError::new(
                "flush_interval_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                "timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(1..=4096).contains(&self.max_edges) {
            return Err(ConfigError::new("max_edges", "must be between 1 and 4096"));
        }
        if self.max_routes > 256 {
            return Err(ConfigError::new("max_routes", "must be at most 256"));
        }
        if !self.key.is_empty() {
            if self.key_bytes().is_none() || self.key.len() < 32 {
                return Err(ConfigError::new("key", "must be hex, at least 16 bytes"));
            }
            if self.service.is_empty() {
                return Err(ConfigError::new("service", "required with a key"));
            }
        }
        crate::authz::header_name(&self.cluster_header)
            .map_err(|e| ConfigError::new("cluster_header", e))?;
        if !self.path.starts_with('/') {
            return Err(ConfigError::new("path", "must start with /"));
        }
        Ok(())
    }

    /// The HMAC key, when batches are reported.
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        if self.key.is_empty() {
            return None;
        }
        crate::mac::decode_hex(&self.key)
    }

    pub fn reports(&self) -> bool {
        !self.key.is_empty()
    }
}
