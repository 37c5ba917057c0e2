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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_filter_core::suite::Suite;
    use weft_telemetry_plane::GroupKeys;
    use weft_xds::{FailureMode, SUITE_INBOUND, SUITE_OUTBOUND};

    #[test]
    fn a_group_gets_the_two_suite_entries_with_its_own_telemetry_key() {
        let telemetry = Telemetry::new(GroupKeys::new(b"secret".to_vec()));
        let group = SidecarGroup::new("shop", "reviews", "v2");
        let filters: SidecarFilters = serde_json::from_value(serde_json::json!({
            "authz": {"policies": [{"name": "p", "action": "DENY", "rules": [{"paths": ["/x"]}]}]},
            "canary": {}, "fault": {}, "breaker": {},
        }))
        .unwrap();
        let specs = filter_specs(&telemetry, &group, &filters).unwrap();
        let shape: Vec<(&str, &str, FailureMode)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.module.as_str(), s.failure))
            .collect();
        assert_eq!(
            shape,
            [
                (SUITE_INBOUND, "suite", FailureMode::FailClosed),
                (SUITE_OUTBOUND, "suite", FailureMode::FailOpen),
            ]
        );
        let key = telemetry.keys().key_hex("shop", "reviews", "v2");
        let inbound = Suite::from_json(specs[0].configuration.as_bytes()).unwrap();
        assert_eq!(inbound.enabled(), ["telemetry", "authz"]);
        let t = inbound.telemetry.unwrap();
        assert_eq!(
            (t.direction, t.service.as_str(), t.key),
            (Direction::Inbound, "reviews", key)
        );
        let outbound = Suite::from_json(specs[1].configuration.as_bytes()).unwrap();
        assert_eq!(
            outbound.enabled(),
            ["telemetry", "canary", "fault", "breaker"]
        );
        assert_eq!(outbound.telemetry.unwrap().direction, Direction::Outbound);
    }
}
