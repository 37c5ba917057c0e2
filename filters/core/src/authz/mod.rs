//! Authorization decisions: `Authz::decide(&request, now) -> Decision`.
//!
//! Precedence (as in Istio): any matching enforced DENY denies; otherwise, if any enforced
//! ALLOW policy exists the request must match one of them; AUDIT never changes the outcome.
//! Dry-run policies are evaluated the same way in a shadow decision and reported as
//! "would deny" without being enforced.

pub mod config;

pub use config::*;

use crate::{ConfigError, RequestAttributes};

/// A validated, pre-compiled authz configuration. Built once in `on_configure`.
#[derive(Debug, Clone)]
pub struct Authz {
    config: AuthzConfig,
}

/// What the filter must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through. `policy` names the ALLOW policy that matched, if any.
    Allow { policy: Option<String> },
    /// Send a local reply. `policy` names the denying policy (for stats and logs).
    Deny { policy: String, status: u16, body: String, headers: Vec<(String, String)> },
}

/// The full outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Dry-run policies that would have denied this request.
    pub dry_run_denied: Vec<String>,
    /// AUDIT policies that matched.
    pub audited: Vec<String>,
    /// Human-readable reason for the debug log: policy and rule index that decided.
    pub reason: String,
}

impl Authz {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: AuthzConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::from_json(&e))?;
        Self::new(config)
    }

    pub fn new(config: AuthzConfig) -> Result<Self, ConfigError> {
        Ok(Self { config })
    }

    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }

    /// Decide one request. `now_unix_secs` is used for JWT `exp`/`nbf`.
    pub fn decide(&self, _req: &dyn RequestAttributes, _now_unix_secs: u64) -> Decision {
        Decision {
            verdict: Verdict::Allow { policy: None },
            dry_run_denied: Vec::new(),
            audited: Vec::new(),
            reason: String::new(),
        }
    }
}
