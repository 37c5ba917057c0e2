//! `weft check --matrix`: every declared caller (and a caller without a mesh identity)
//! against every declared service, for one method and path: who can call whom.

use serde::{Deserialize, Serialize};

use crate::call::Call;
use crate::run::Checker;
use crate::CheckError;

/// Stands for a caller without a mesh identity in [`Matrix::callers`].
pub const NO_IDENTITY: &str = "(no identity)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matrix {
    pub policy_version: u64,
    pub method: String,
    pub path: String,
    /// Row order: `namespace/name`, then `NO_IDENTITY` ("(no identity)").
    pub callers: Vec<String>,
    /// Column order: `namespace/name`.
    pub services: Vec<String>,
    /// One per caller × service, row by row.
    pub cells: Vec<MatrixCell>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixCell {
    pub from: String,
    pub to: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The deciding policy (see `AuthzTrace::policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
}

/// Most cells one matrix computes (a mesh of 100 services, and a caller without identity).
pub const MAX_CELLS: usize = 101 * 100;

impl Checker<'_> {
    /// The matrix for `method path` (each target at its stable version, or the version the
    /// caller's canary picks deterministically).
    pub fn matrix(&self, method: &str, path: &str, now_ms: u64) -> Result<Matrix, CheckError> {
        let services: Vec<String> = self
            .snapshot()
            .documents
            .services()
            .map(|(ns, name, _)| format!("{ns}/{name}"))
            .collect();
        if (services.len() + 1) * services.len() > MAX_CELLS {
            return Err(CheckError::invalid(
                "matrix",
                "more than 100 services: check callers one by one",
            ));
        }
        let callers: Vec<Option<&String>> = services.iter().map(Some).chain([None]).collect();
        let mut cells = Vec::with_capacity(callers.len() * services.len());
        for from in &callers {
            for to in &services {
                let call = Call {
                    from: from.cloned(),
                    to: to.clone(),
                    method: method.to_string(),
                    path: path.to_string(),
                    ..Call::default()
                };
                let result = self.check(&call, now_ms, None)?;
                cells.push(MatrixCell {
                    from: from.map_or_else(|| NO_IDENTITY.to_string(), Clone::clone),
                    to: to.clone(),
                    allowed: result.allowed,
                    status: result.status,
                    rule: result.authz.rule.filter(|_| !waf_blocked(&result)),
                    policy: match &result.waf {
                        Some(w) if w.status.is_some() => Some(format!("waf:{}", w.name)),
                        _ => result.authz.policy,
                    },
                });
            }
        }
        Ok(Matrix {
            policy_version: self.snapshot().version,
            method: method.to_string(),
            path: path.to_string(),
            callers: callers
                .iter()
                .map(|c| c.map_or_else(|| NO_IDENTITY.to_string(), Clone::clone))
                .collect(),
            services,
            cells,
        })
    }
}

/// The target's WAF refused the call (authz never saw it).
fn waf_blocked(result: &crate::CheckResult) -> bool {
    result.waf.as_ref().is_some_and(|w| w.status.is_some())
}
