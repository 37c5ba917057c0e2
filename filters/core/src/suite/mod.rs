//! The combined module (`weft-suite`): one JSON configuration with an optional section per
//! stage, and a request view that every stage of one request shares.
//!
//! `{"telemetry": {...}, "authz": {...}, "canary": {...}, "fault": {...}, "breaker": {...}}`:
//! each section is
//! exactly what that filter takes on its own, parsed by that filter's own parser; an absent
//! (or `null`) section turns the stage off, except authz on an inbound listener: there an
//! absent section denies every request (fail closed), as an empty authz configuration does.
//! `"listener": "inbound" | "outbound"` says which; without it a configuration with none of
//! canary, fault and breaker is taken for inbound. An error inside a section names it, e.g.
//! `canary.services[0].split[1].weight`.
//!
//! `"publish_marks": false` says no filter outside this module reads the marks its stages
//! leave for telemetry (fault, breaker, WAF, authz's refusals): they are then not written to
//! the host's stream properties. Without a telemetry section they are written by default, for
//! a telemetry filter later in the chain, as the separate filters write them; with one they
//! stay in this module's memory either way. The access log's `weft_decision` is always
//! written.

mod memo;
#[cfg(test)]
mod tests;

pub use memo::{Carried, MemoRequest};

use crate::authz::Authz;
use crate::breaker::Breaker;
use crate::canary::Canary;
use crate::fault::Fault;
use crate::registry::Filter;
use crate::telemetry::TelemetryConfig;
use crate::waf::Waf;
use crate::ConfigError;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The stages in the order they run on a request (the order of the chained filters).
/// Telemetry is first, as in the chain, but does its work in `on_log`, after the others.
/// Read from the filter registry.
pub const STAGES: [&str; crate::registry::FILTERS.len()] = {
    let mut stages = [""; crate::registry::FILTERS.len()];
    let mut i = 0;
    while i < stages.len() {
        stages[i] = crate::registry::FILTERS[i].module;
        i += 1;
    }
    stages
};

/// The compiled configuration of each enabled stage.
#[derive(Debug, Default)]
pub struct Suite {
    pub telemetry: Option<TelemetryConfig>,
    pub authz: Option<Authz>,
    pub canary: Option<Canary>,
    pub fault: Option<Fault>,
    pub breaker: Option<Breaker>,
    /// The edge WAF: runs before every other stage (`"waf"`, not a registry filter).
    pub waf: Option<Waf>,
    /// A filter outside this module may read the stages' marks (`"publish_marks"`, default
    /// true; false when the telemetry stage runs here, since it reads them from memory).
    pub publish_marks: bool,
}

/// The key of the WAF's section.
pub const WAF_SECTION: &str = "waf";

/// The sections as written, before each stage parses its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    telemetry: Option<Box<RawValue>>,
    #[serde(default)]
    authz: Option<Box<RawValue>>,
    #[serde(default)]
    canary: Option<Box<RawValue>>,
    #[serde(default)]
    fault: Option<Box<RawValue>>,
    #[serde(default)]
    breaker: Option<Box<RawValue>>,
    #[serde(default)]
    waf: Option<Box<RawValue>>,
    #[serde(default)]
    listener: Option<Listener>,
    #[serde(default)]
    publish_marks: Option<bool>,
}

/// Which listener's chain a suite configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Listener {
    Inbound,
    Outbound,
}

// === impl Suite ===

impl Suite {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        // serde would also accept the sections written as an array; only an object is meant.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ConfigError::new("configuration", "must be a JSON object"));
        }
        let sections: Sections = crate::error::parse_json(bytes)?;
        let inbound = match sections.listener {
            Some(listener) => listener == Listener::Inbound,
            None => [&sections.canary, &sections.fault, &sections.breaker]
                .iter()
                .all(|s| s.is_none()),
        };
        let s = &sections;
        let telemetry = section(
            Filter::Telemetry,
            s.telemetry.as_deref(),
            TelemetryConfig::from_json,
        )?;
        // A telemetry stage here reads the marks from memory; nothing else would.
        let publish_marks = telemetry.is_none() && s.publish_marks.unwrap_or(true);
        let mut suite = Self {
            telemetry,
            authz: section(Filter::Authz, s.authz.as_deref(), Authz::from_json)?,
            canary: section(Filter::Canary, s.canary.as_deref(), Canary::from_json)?,
            fault: section(Filter::Fault, s.fault.as_deref(), Fault::from_json)?,
            breaker: section(Filter::Breaker, s.breaker.as_deref(), Breaker::from_json)?,
            waf: named_section(WAF_SECTION, s.waf.as_deref(), Waf::from_json)?,
            publish_marks,
        };
        if inbound && suite.authz.is_none() {
            // The empty authz configuration: it denies every request.
            suite.authz = Some(Authz::new(crate::authz::AuthzConfig::default())?);
        }
        Ok(suite)
    }

    /// The enabled stages, in run order (for the log line at configuration).
    pub fn enabled(&self) -> Vec<&'static str> {
        let on = [
            self.telemetry.is_some(),
            self.authz.is_some(),
            self.canary.is_some(),
            self.fault.is_some(),
            self.breaker.is_some(),
        ];
        let mut enabled: Vec<&'static str> = self.waf.iter().map(|_| WAF_SECTION).collect();
        enabled.extend(
            STAGES
                .iter()
                .zip(on)
                .filter_map(|(name, on)| on.then_some(*name)),
        );
        enabled
    }
}

/// Parse one section with its stage's own parser; errors name the section first.
fn section<T>(
    filter: Filter,
    raw: Option<&RawValue>,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    named_section(filter.module(), raw, parse)
}

/// [`section`] by the section's key.
fn named_section<T>(
    name: &str,
    raw: Option<&RawValue>,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    parse(raw.get().as_bytes()).map(Some).map_err(|err| {
        let field = match err.field.as_str() {
            "" | "configuration" => name.to_string(),
            f if f.starts_with('[') => format!("{name}{f}"),
            f => format!("{name}.{f}"),
        };
        ConfigError::new(field, err.reason)
    })
}
