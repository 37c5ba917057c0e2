//! One request as the telemetry filter saw it.

use super::marks::{LocalReply, Marks};

/// What authz decided, as far as this request shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzOutcome {
    /// No authz verdict recorded (outbound, or authz let it through).
    Allowed,
    /// An enforced policy denied it (authz's local reply).
    Denied,
    /// Allowed, but a dry-run policy would have denied it.
    DryRunDenied,
}

impl AuthzOutcome {
    /// From the authz filter's stream property ([`super::AUTHZ_PROPERTY`]).
    pub fn from_property(value: Option<&[u8]>) -> Self {
        match value {
            Some(b"deny") => AuthzOutcome::Denied,
            Some(b"dry_run_deny") => AuthzOutcome::DryRunDenied,
            _ => AuthzOutcome::Allowed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthzOutcome::Allowed => "allow",
            AuthzOutcome::Denied => "deny",
            AuthzOutcome::DryRunDenied => "dry_run_deny",
        }
    }
}

/// A finished request. `source` is a SPIFFE id (inbound; empty without mTLS) or the
/// reporting sidecar's service (outbound); `version` may be empty when the caller's route
/// fell back to the stable cluster (the control plane knows which version that is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub version: &'a str,
    /// 0: no response (reset).
    pub status: u16,
    pub latency_us: u64,
    pub authz: AuthzOutcome,
    /// Answered on this sidecar without reaching the next hop, and by whom.
    pub local: Option<LocalReply>,
    /// Delays, dry-run verdicts and the breaker phase the other stages left.
    pub marks: Marks,
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
}

impl Record<'_> {
    /// The breaker failed it fast.
    pub fn failed_fast(&self) -> bool {
        self.local == Some(LocalReply::FailFast)
    }
}

/// `2xx`, `4xx`, ...; `0xx` for no response.
pub fn status_class(status: u16) -> usize {
    usize::from(status / 100).min(5)
}

/// `(service, version)` of a mesh cluster `outbound|<port>|<version>|<service>.<namespace>`;
/// `None` for any other cluster name (the stable fallback cluster is named by the host).
pub fn destination_from_cluster(cluster: &str) -> Option<(&str, &str)> {
    let mut parts = cluster.split('|');
    let (Some("outbound"), Some(_port), Some(version), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let service = host.split_once('.').map_or(host, |(service, _)| service);
    Some((service, version))
}
