//! `weft bootstrap --suite`: the sidecar bootstrap for a control plane run with
//! `weft serve --suite`.
//!
//! Made from the sidecar bootstrap: in each listener's HTTP filter chain the separate weft
//! entries (`weft.telemetry.inbound`, `weft.authz`; `weft.telemetry.outbound`, `weft.canary`,
//! `weft.fault`, `weft.breaker`) are replaced, where the first of them stood, by one ECDS entry
//! for `suite.wasm`: [`SUITE_INBOUND`] and [`SUITE_OUTBOUND`]. Each takes its discovery
//! settings and default configuration from the entry that sets the listener's failure mode
//! today: the inbound one from `weft.authz` (a deny-all RBAC until the first configuration
//! arrives: fail closed), the outbound one from `weft.canary` (a no-op: fail open). Everything
//! else (node, clusters, TLS, SDS, stats tags) is the sidecar bootstrap's.

use serde_json::{json, Value};
use weft_filter_core::registry::Filter;

use crate::bootstrap::{named, render_value, BootstrapError, BootstrapParams};
use crate::ecds::{SUITE_INBOUND, SUITE_OUTBOUND};

/// Per listener: the suite entry and the separate entry whose defaults it takes.
const LISTENERS: [(&str, &str, &str); 2] = [
    ("inbound", SUITE_INBOUND, Filter::Authz.name()),
    ("outbound", SUITE_OUTBOUND, Filter::Canary.name()),
];

/// The suite-mode sidecar bootstrap as YAML.
pub fn render_suite(params: &BootstrapParams) -> Result<String, BootstrapError> {
    let value = render_suite_value(params)?;
    serde_norway::to_string(&value).map_err(|e| BootstrapError::Print(e.to_string()))
}

/// The suite-mode sidecar bootstrap as a JSON value.
pub fn render_suite_value(params: &BootstrapParams) -> Result<Value, BootstrapError> {
    let mut root = render_value(params)?;
    to_suite(&mut root)?;
    Ok(root)
}

/// Replaces the separate weft filter entries of a rendered sidecar bootstrap by the two
/// suite entries.
pub fn to_suite(root: &mut Value) -> Result<(), BootstrapError> {
    if let Some(metadata) = root.pointer_mut("/node/metadata") {
        metadata["weft_filters"] = json!("suite");
    }
    for (listener, suite, defaults_from) in LISTENERS {
        let filters = named(root, "/static_resources/listeners", listener)?
            .pointer_mut("/filter_chains/0/filters/0/typed_config/http_filters")
            .and_then(Value::as_array_mut)
            .ok_or(BootstrapError::Missing("a listener's http_filters"))?;
        let template = filters
            .iter()
            .find(|f| f["name"] == defaults_from)
            .cloned()
            .ok_or(BootstrapError::Missing(
                "the weft.authz / weft.canary entry suite mode takes its defaults from",
            ))?;
        let is_weft = |f: &Value| f["name"].as_str().is_some_and(|n| n.starts_with("weft."));
        let at = filters.iter().position(is_weft).unwrap_or(0);
        filters.retain(|f| !is_weft(f));
        let mut entry = template;
        entry["name"] = json!(suite);
        filters.insert(at, entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(root: &Value, listener: &str) -> Vec<Value> {
        root["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == listener)
            .unwrap()["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn names(filters: &[Value]) -> Vec<&str> {
        filters
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn each_chain_has_one_suite_entry_before_the_router() {
        let params = BootstrapParams::new("productpage", "v1", "10.0.0.1", 18000);
        let root = render_suite_value(&params).unwrap();
        let inbound = chain(&root, "inbound");
        let outbound = chain(&root, "outbound");
        assert_eq!(
            names(&inbound),
            [SUITE_INBOUND, "envoy.filters.http.router"]
        );
        assert_eq!(
            names(&outbound),
            [SUITE_OUTBOUND, "envoy.filters.http.router"]
        );
        // Both served over ADS, as wasm (or the RBAC default).
        for entry in [&inbound[0], &outbound[0]] {
            let discovery = &entry["config_discovery"];
            assert!(discovery["config_source"]["ads"].is_object());
            assert_eq!(discovery["apply_default_config_without_warming"], true);
            assert!(discovery["type_urls"].as_array().unwrap().contains(&json!(
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
            )));
        }
    }

    #[test]
    fn inbound_fails_closed_and_outbound_open_until_configured() {
        let params = BootstrapParams::new("productpage", "v1", "10.0.0.1", 18000);
        let separate = render_value(&params).unwrap();
        let suite = render_suite_value(&params).unwrap();
        let default_of = |filters: &[Value], name: &str| {
            filters.iter().find(|f| f["name"] == name).unwrap()["config_discovery"]
                ["default_config"]
                .clone()
        };
        let inbound = default_of(&chain(&suite, "inbound"), SUITE_INBOUND);
        assert_eq!(
            inbound,
            default_of(&chain(&separate, "inbound"), "weft.authz")
        );
        // RBAC ALLOW with no policy matches nothing: every request is refused.
        assert_eq!(inbound["rules"]["action"], "ALLOW");
        assert!(inbound["rules"].get("policies").is_none());
        let outbound = default_of(&chain(&suite, "outbound"), SUITE_OUTBOUND);
        assert_eq!(
            outbound,
            default_of(&chain(&separate, "outbound"), "weft.canary")
        );
        assert!(outbound.get("rules").is_none(), "no rules: a no-op");
    }

    #[test]
    fn only_the_filter_chains_and_the_layout_metadata_differ_from_the_sidecar_bootstrap() {
        let params = BootstrapParams::new("productpage", "v1", "10.0.0.1", 18000);
        let mut separate = render_value(&params).unwrap();
        let mut suite = render_suite_value(&params).unwrap();
        assert_ne!(separate, suite);
        assert_eq!(separate["node"]["metadata"]["weft_filters"], "modules");
        assert_eq!(suite["node"]["metadata"]["weft_filters"], "suite");
        for root in [&mut separate, &mut suite] {
            root["node"]["metadata"]["weft_filters"] = Value::Null;
            for listener in root["static_resources"]["listeners"]
                .as_array_mut()
                .unwrap()
            {
                listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] =
                    Value::Null;
            }
        }
        assert_eq!(separate, suite);
    }
}
