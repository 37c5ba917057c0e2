//! `weft check`: would this call be allowed, and what would happen to it?
//!
//! [`Checker::new`] takes a policy [`Snapshot`] (the server's current one, or files compiled
//! offline) through the very translation the xDS publisher serves (`weft-translate`, with
//! `weft-compile` under it) and parses each sidecar group's filter configurations with the
//! filters' own parsers (`Authz::from_json`, ...). [`Checker::check`] then runs the filters'
//! decision cores (`weft-filter-core`: authz `explain` = `decide` + the rule trace, canary
//! `decide`, fault `decide`, the breaker's policy) over a request view built like the
//! sidecars' (`MemoRequest` over an in-memory host: the same header lookups, repeated
//! headers, path normalisation), in chain order: the caller's outbound canary, fault and
//! breaker, then the target's WAF (a gateway's, or a service's inbound one) and authz.
//! Nothing here re-implements a decision.
//!
//! What it cannot know is reported, not guessed: a random split's draw (the split is
//! shown), a fault's coin (its percentages are), the breaker's state (from the control
//! plane's telemetry of the edge when there is any, else `unknown`).
#![forbid(unsafe_code)]

mod call;
mod matrix;
mod render;
pub mod routes;
mod run;
mod trace;
mod waf;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod waf_tests;

pub use call::{Call, Header, MAX_BODY_TEXT, MAX_HEADERS, MAX_TEXT};
pub use matrix::{Matrix, MatrixCell};
pub use render::{render_matrix, render_text};
pub use run::{BreakerView, Checker, EdgeObservation};
pub use trace::*;

use weft_policy::PolicySet;
use weft_state::Snapshot;

/// Why a check could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A field of the call is unusable.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A named service is not declared.
    #[error("{0}")]
    NotFound(String),
    /// The documents do not compile, or a sidecar's configuration does not parse (a bug
    /// validation should have caught); each line names the document or sidecar.
    #[error("{0}")]
    Config(String),
}

impl CheckError {
    pub(crate) fn invalid(field: &str, reason: &str) -> Self {
        Self::Invalid {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A snapshot of `set` compiled as the server would (version 0): for `weft check -f`.
pub fn offline_snapshot(set: PolicySet) -> Result<Snapshot, CheckError> {
    let compiled = weft_compile::compile(&set).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        CheckError::Config(lines.join("\n"))
    })?;
    Ok(Snapshot {
        version: 0,
        documents: set,
        compiled,
    })
}
