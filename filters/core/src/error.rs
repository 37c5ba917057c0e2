//! Configuration errors shared by every filter.

use std::fmt;

/// A configuration the filter refuses, naming the field path and the reason.
///
/// `on_configure` logs `Display` of this as a single line and returns false, so Envoy
/// refuses to start (static config) or NACKs (ECDS) with the reason in its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Dotted field path, e.g. `policies[2].rules[0].ip_blocks[1]`.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Errors from serde_json already carry a line/column; keep the message, field is the path serde reports.
    pub fn from_json(err: &serde_json::Error) -> Self {
        Self::new("configuration", err.to_string())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.reason
        )
    }
}

/// Deserialize a filter configuration (a JSON object), naming the field serde was in when it
/// failed (e.g. `policies[0].rules[1].methodz`, found from serde's line and column) and keeping
/// serde's message. Cheaper in code size than tracking the path while deserializing, which
/// matters in every filter module.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    // serde would also accept a struct written as an array; only an object is meant.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new("configuration", "must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ConfigError::new(
            crate::json_path::path_at(bytes, e.line(), e.column()),
            e.to_string(),
        )
    })
}
