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

/// Deserialize a filter configuration, naming the field serde was in when it failed
/// (e.g. `policies[0].rules[1].methodz`) and keeping serde's message with line and column.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let config: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "configuration".to_string()
        } else {
            path
        };
        ConfigError::new(field, e.into_inner().to_string())
    })?;
    de.end().map_err(|e| ConfigError::from_json(&e))?;
    Ok(config)
}
