//! The errors a user sees when a policy document is refused.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem with one field of one document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldError {
    /// `<kind>/<namespace>/<name> (#<n>)`, where `#n` counts the documents of the request from
    /// 1, or `(stored)` for a document already applied that the request breaks.
    pub document: String,
    /// Field path in the document, e.g. `spec.rules[0].from.principals[1]`.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(
        document: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            document: document.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.document, self.field, self.reason)
    }
}

/// Why a request's documents were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The request is larger than the limit; nothing was read.
    #[error("request is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// At least one document is invalid; every problem found is listed.
    #[error("{} validation error(s); first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<FieldError>),
}

impl PolicyError {
    /// The field errors (empty for `TooLarge`).
    pub fn details(&self) -> &[FieldError] {
        match self {
            Self::TooLarge { .. } => &[],
            Self::Invalid(list) => list,
        }
    }
}

/// Collects errors for one document under its label.
pub(crate) struct Collector<'a> {
    document: &'a str,
    out: &'a mut Vec<FieldError>,
}

// === impl Collector ===

impl<'a> Collector<'a> {
    pub(crate) fn new(document: &'a str, out: &'a mut Vec<FieldError>) -> Self {
        Self { document, out }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.out.push(FieldError::new(self.document, field, reason));
    }

    /// Records `Err` under `field`.
    pub(crate) fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(reason) = result {
            self.push(field, reason);
        }
    }
}
