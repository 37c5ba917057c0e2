//! Suite mode (`weft serve --suite`): a sidecar's filter configurations as the two sections
//! documents of `suite.wasm`, one per listener.
//!
//! Inbound `{"telemetry": .., "authz": ..}`, outbound `{"telemetry": .., "canary": ..,
//! "fault": .., "breaker": ..}`: each section is exactly what the separate filter gets, so the
//! suite behaves as the chain of separate filters does. Telemetry is optional (absent when the
//! control plane does not collect it); without it, `"publish_marks": false`: no filter beside
//! the suite in a weft chain reads the marks the stages leave for telemetry, so they are not
//! written to Envoy's filter state (one object per guarded request fewer, D108).

use serde::Serialize;
use weft_filter_core::authz::AuthzConfig;
use weft_filter_core::breaker::BreakerConfig;
use weft_filter_core::canary::CanaryConfig;
use weft_filter_core::fault::FaultConfig;
use weft_filter_core::telemetry::TelemetryConfig;

use crate::SidecarFilters;

/// The configurations of a sidecar's two suite entries (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteConfigs {
    pub inbound: String,
    pub outbound: String,
}

#[derive(Serialize)]
struct Inbound<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    telemetry: Option<&'a TelemetryConfig>,
    authz: &'a AuthzConfig,
    /// A service's inbound WAF runs first in its inbound suite entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    waf: Option<&'a weft_filter_core::waf::WafConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_marks: Option<bool>,
}

#[derive(Serialize)]
struct Outbound<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    telemetry: Option<&'a TelemetryConfig>,
    canary: &'a CanaryConfig,
    fault: &'a FaultConfig,
    breaker: &'a BreakerConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_marks: Option<bool>,
}

/// The suite entries' configurations of a sidecar compiled to `filters`, with its inbound and
/// outbound telemetry configurations when telemetry is collected.
pub fn suite_configs(
    filters: &SidecarFilters,
    telemetry: Option<(&TelemetryConfig, &TelemetryConfig)>,
) -> serde_json::Result<SuiteConfigs> {
    // Only a telemetry stage reads the marks, and in a weft chain it runs inside the suite.
    let publish_marks = telemetry.is_none().then_some(false);
    let (inbound_telemetry, outbound_telemetry) = telemetry.unzip();
    Ok(SuiteConfigs {
        inbound: serde_json::to_string(&Inbound {
            telemetry: inbound_telemetry,
            authz: &filters.authz,
            waf: filters.waf.as_ref(),
            publish_marks,
        })?,
        outbound: serde_json::to_string(&Outbound {
            telemetry: outbound_telemetry,
            canary: &filters.canary,
            fault: &filters.fault,
            breaker: &filters.breaker,
            publish_marks,
        })?,
    })
}
