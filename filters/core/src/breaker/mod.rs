//! Circuit breaker per upstream cluster: closed / open / half-open with probes, back-off
//! with jitter, and a concurrency cap shared by all worker threads.
//!
//! [`Breaker::from_json`] validates and compiles the configuration into one [`Policy`] per
//! cluster. The state machine is [`Policy::admit`] / [`Policy::on_result`] (`machine`) over a
//! [`BreakerState`] (`state`) that the filter keeps in Envoy shared data.

mod config;
mod machine;
mod state;
pub mod worker;
#[cfg(test)]
mod worker_tests;

pub use config::*;
pub use machine::{
    flags, Admission, Outcome, Policy, RateRule, Rejection, Ticket, Transition, TripReason,
};
pub use state::{BreakerState, Bucket, Phase, Window, ENCODED_LEN, WINDOW_BUCKETS};

use crate::ConfigError;
use std::collections::BTreeMap;

/// Longest open interval or window accepted: one day.
const MAX_INTERVAL_MS: u64 = 86_400_000;

/// The compiled breaker configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    config: BreakerConfig,
    policies: BTreeMap<String, Policy>,
}

// === impl Breaker ===

impl Breaker {
    /// Parses and validates; errors name the field, e.g. `clusters.reviews.jitter_percent`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::new(crate::error::parse_json::<BreakerConfig>(bytes)?)
    }

    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        if let Some(header) = &config.cluster_header {
            let valid = !header.is_empty()
                && header.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid {
                return Err(ConfigError::new(
                    "cluster_header",
                    "must be a lowercase header name",
                ));
            }
        }
        let policies = config
            .clusters
            .iter()
            .map(|(name, policy)| {
                if name.is_empty() {
                    return Err(ConfigError::new(
                        "clusters",
                        "cluster names must not be empty",
                    ));
                }
                Ok((name.clone(), compile(&format!("clusters.{name}"), policy)?))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { config, policies })
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The policy guarding `cluster`, if it is guarded.
    pub fn policy(&self, cluster: &str) -> Option<&Policy> {
        self.policies.get(cluster)
    }

    pub fn clusters(&self) -> impl Iterator<Item = (&str, &Policy)> {
        self.policies
            .iter()
            .map(|(name, policy)| (name.as_str(), policy))
    }
}

fn compile(at: &str, p: &BreakerPolicy) -> Result<Policy, ConfigError> {
    let err = |field: &str, reason: &str| ConfigError::new(format!("{at}.{field}"), reason);
    if p.failure_on.is_empty() {
        return Err(err("failure_on", "must name at least one failure kind"));
    }
    if p.open_interval_ms == 0 || p.open_interval_ms > MAX_INTERVAL_MS {
        return Err(err("open_interval_ms", "must be between 1 and 86400000"));
    }
    if p.max_open_interval_ms < p.open_interval_ms || p.max_open_interval_ms > MAX_INTERVAL_MS {
        return Err(err(
            "max_open_interval_ms",
            "must be between open_interval_ms and 86400000",
        ));
    }
    if !p.backoff_multiplier.is_finite() || !(1.0..=100.0).contains(&p.backoff_multiplier) {
        return Err(err("backoff_multiplier", "must be between 1 and 100"));
    }
    if p.jitter_percent > 100 {
        return Err(err("jitter_percent", "must be between 0 and 100"));
    }
    if p.half_open_probes == 0 || p.half_open_probes > 10_000 {
        return Err(err("half_open_probes", "must be between 1 and 10000"));
    }
    if p.max_concurrent == Some(0) {
        return Err(err(
            "max_concurrent",
            "must be at least 1 (omit it for no cap)",
        ));
    }
    if !(200..=599).contains(&p.reject_status) {
        return Err(err(
            "reject_status",
            "must be an HTTP status between 200 and 599",
        ));
    }
    let rate = match &p.failure_rate {
        None => None,
        Some(rate) => {
            if !(1..=100).contains(&rate.threshold_percent) {
                return Err(err(
                    "failure_rate.threshold_percent",
                    "must be between 1 and 100",
                ));
            }
            if rate.window_ms < WINDOW_BUCKETS as u64 || rate.window_ms > MAX_INTERVAL_MS {
                return Err(err(
                    "failure_rate.window_ms",
                    "must be between 10 and 86400000",
                ));
            }
            if rate.min_requests == 0 {
                return Err(err("failure_rate.min_requests", "must be at least 1"));
            }
            Some(RateRule {
                threshold_percent: rate.threshold_percent,
                bucket_ms: rate.window_ms / WINDOW_BUCKETS as u64,
                min_requests: rate.min_requests,
            })
        }
    };
    let has = |k: FailureKind| p.failure_on.contains(&k);
    Ok(Policy {
        consecutive_failures: p.consecutive_failures,
        rate,
        on_5xx: has(FailureKind::Status5xx),
        on_gateway: has(FailureKind::GatewayErrors),
        on_connect_failure: has(FailureKind::ConnectFailure),
        on_reset: has(FailureKind::Reset),
        on_timeout: has(FailureKind::Timeout),
        open_interval_ms: p.open_interval_ms,
        max_open_interval_ms: p.max_open_interval_ms,
        // In range by the check above, so the cast cannot truncate.
        backoff_permille: (p.backoff_multiplier * 1000.0).round() as u64,
        jitter_percent: u64::from(p.jitter_percent),
        half_open_probes: p.half_open_probes,
        max_concurrent: p.max_concurrent,
        reject_status: p.reject_status,
        dry_run: p.dry_run,
    })
}

#[cfg(test)]
mod tests;
