//! Suite mode in `weft serve --suite`: each sidecar group gets two `suite.wasm` entries,
//! `weft.suite.inbound` (telemetry + authz, fail closed) and `weft.suite.outbound`
//! (telemetry + canary + fault + breaker, fail open), instead of the five separate filters.
//! Both name VM id `suite`, so each Envoy worker runs one VM for the two.

use weft_compile::{suite_configs, SidecarFilters};
use weft_filter_core::telemetry::Direction;
use weft_telemetry_plane::Telemetry;
use weft_xds::{FilterSpec, SidecarGroup};

/// The two suite entries of `group`, compiled to `filters`, with the group's telemetry
/// (its own key, as the separate telemetry filters get it).
pub fn filter_specs(
    telemetry: &Telemetry,
    group: &SidecarGroup,
    filters: &SidecarFilters,
) -> serde_json::Result<Vec<FilterSpec>> {
    let inbound = crate::telemetry::config(telemetry, group, Direction::Inbound);
    let outbound = crate::telemetry::config(telemetry, group, Direction::Outbound);
    let configs = suite_configs(filters, Some((&inbound, &outbound)))?;
    Ok(vec![
        FilterSpec::suite_inbound(configs.inbound),
        FilterSpec::suite_outbound(configs.outbound),
    ])
}
