//! `weft bootstrap --gateway`: the edge gateway's Envoy bootstrap.
//!
//! A gateway is a sidecar without an application: it is made from the sidecar bootstrap (so it
//! authenticates to the control plane, gets its certificates and filter configurations the
//! same way, and reaches the mesh through the same CDS/EDS clusters with mTLS), then
//! - the mesh-facing `inbound` listener is removed, and the node does not announce an inbound
//!   address, so the gateway never becomes an endpoint of a mesh cluster;
//! - the `outbound` listener becomes the public `edge` listener: HTTPS with the gateway's own
//!   certificate (an external one, not a mesh SVID; TLS 1.2 or 1.3, no client certificate), and
//!   the authz filter (`weft.authz`, configured by AuthorizationPolicies that target the
//!   gateway's service, typically JWT rules) runs before the canary/fault/breaker filters;
//! - requests are routed by RDS `edge` ([`crate::mesh_routes`]): the `Host` header names a
//!   declared mesh service (its stable cluster, or the version of it the canary filter chose);
//!   any other host (a static service, `weft_xds`, a version cluster's name) gets 404;
//! - the client address is the TCP peer, or with `trusted_hops` N the N-th address from the
//!   right of `X-Forwarded-For` (load balancers in front of the gateway).

use serde_json::{json, Value};
use weft_filter_core::registry::Filter;

use crate::bootstrap::{named, render_value, BootstrapError, BootstrapParams};

/// What a gateway adds to a sidecar's parameters.
#[derive(Clone, Debug)]
pub struct GatewayParams {
    /// The public HTTPS port.
    pub port: u16,
    /// Directory inside the gateway holding `cert.pem` (the chain clients see) and `key.pem`.
    pub tls_dir: String,
    /// Proxies in front of the gateway trusted to append to `X-Forwarded-For`
    /// (`xff_num_trusted_hops`); 0: the TCP peer is the client.
    pub trusted_hops: u32,
}

/// The gateway bootstrap as YAML.
pub fn render_gateway(
    params: &BootstrapParams,
    gateway: &GatewayParams,
) -> Result<String, BootstrapError> {
    let value = render_gateway_value(params, gateway)?;
    serde_norway::to_string(&value).map_err(|e| BootstrapError::Print(e.to_string()))
}

/// The gateway bootstrap as a JSON value.
pub fn render_gateway_value(
    params: &BootstrapParams,
    gateway: &GatewayParams,
) -> Result<Value, BootstrapError> {
    let mut root = render_value(params)?;
    // Not an endpoint of the mesh: nobody routes to a gateway through CDS/EDS.
    if let Some(metadata) = root
        .pointer_mut("/node/metadata")
        .and_then(Value::as_object_mut)
    {
        metadata.remove("inbound_address");
    }
    // The authz filter entry (ECDS, fail-closed default) moves from the mesh listener to the
    // edge listener, in front of the outbound filters.
    let authz = named(&mut root, "/static_resources/listeners", "inbound")?
        .pointer("/filter_chains/0/filters/0/typed_config/http_filters")
        .and_then(Value::as_array)
        .and_then(|filters| filters.iter().find(|f| f["name"] == Filter::Authz.name()))
        .cloned()
        .ok_or(BootstrapError::Missing("the inbound weft.authz filter"))?;
    let listeners = root
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
        .ok_or(BootstrapError::Missing("static_resources.listeners"))?;
    listeners.retain(|l| l["name"] != "inbound");
    let edge = named(&mut root, "/static_resources/listeners", "outbound")?;
    edge["name"] = json!("edge");
    // Public, unlike the sidecar's loopback outbound listener it is made from.
    *edge
        .pointer_mut("/address/socket_address")
        .ok_or(BootstrapError::Missing("edge listener address"))? =
        json!({"address": "0.0.0.0", "port_value": gateway.port});
    let chain = edge
        .pointer_mut("/filter_chains/0")
        .and_then(Value::as_object_mut)
        .ok_or(BootstrapError::Missing("edge filter chain"))?;
    chain.insert("transport_socket".into(), edge_tls(&gateway.tls_dir));
    let hcm = edge
        .pointer_mut("/filter_chains/0/filters/0/typed_config")
        .ok_or(BootstrapError::Missing("edge http_connection_manager"))?;
    hcm["stat_prefix"] = json!("edge");
    // Outside clients send `Host: name:port`; the route names clusters by the bare name.
    hcm["strip_any_host_port"] = json!(true);
    hcm["xff_num_trusted_hops"] = json!(gateway.trusted_hops);
    // The edge starts a request: an outside x-request-id is not kept.
    hcm["preserve_external_request_id"] = json!(false);
    *hcm.pointer_mut("/rds/route_config_name")
        .ok_or(BootstrapError::Missing("edge rds.route_config_name"))? =
        json!(crate::mesh_routes::EDGE_ROUTES);
    if let Some(direction) = hcm.pointer_mut("/access_log/0/typed_config/log_format/json_format") {
        direction["direction"] = json!("edge");
        // Who called, as far as the edge knows: the client address (no client certificate).
        direction["source_ip"] = json!("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%");
    }
    let filters = hcm
        .pointer_mut("/http_filters")
        .and_then(Value::as_array_mut)
        .ok_or(BootstrapError::Missing("edge http_filters"))?;
    // Before the canary (and after anything that must see every request first, such as
    // telemetry).
    let at = filters
        .iter()
        .position(|f| f["name"] == Filter::Canary.name())
        .unwrap_or(0);
    filters.insert(at, authz);
    filters.insert(at, waf_entry());
    Ok(root)
}

/// The edge WAF's entry, first of the weft filters on the edge: configured over ECDS when a
/// `WebApplicationFirewall` targets the gateway's service; until then (and without one) a
/// native no-op (an RBAC filter that denies nothing), so a gateway without a WAF policy loads
/// no module for it.
fn waf_entry() -> Value {
    json!({
        "name": "weft.waf",
        "config_discovery": {
            "config_source": {"ads": {}, "resource_api_version": "V3"},
            "apply_default_config_without_warming": true,
            "default_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "DENY"},
            },
            "type_urls": [
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            ],
        },
    })
}

/// The edge listener's TLS: the gateway's own certificate; clients are not asked for one.
fn edge_tls(dir: &str) -> Value {
    let dir = dir.trim_end_matches('/');
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": format!("{dir}/cert.pem")},
                    "private_key": {"filename": format!("{dir}/key.pem")},
                }],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Value {
        let params = BootstrapParams::new("gateway", "v1", "10.0.0.1", 18000);
        render_gateway_value(
            &params,
            &GatewayParams {
                port: 8443,
                tls_dir: "/etc/weft/edge/".into(),
                trusted_hops: 0,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_edge_listener_is_https_runs_authz_first_and_routes_into_the_mesh() {
        let v = gateway();
        let listeners = v["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 1, "only the edge listener");
        let edge = &listeners[0];
        assert_eq!(edge["name"], "edge");
        assert_eq!(edge["address"]["socket_address"]["port_value"], 8443);
        assert_eq!(edge["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(
            v["admin"]["address"]["socket_address"]["address"],
            "127.0.0.1"
        );
        let tls = &edge["filter_chains"][0]["transport_socket"]["typed_config"];
        assert!(tls.get("require_client_certificate").is_none());
        assert_eq!(
            tls["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"],
            "/etc/weft/edge/cert.pem"
        );
        let hcm = &edge["filter_chains"][0]["filters"][0]["typed_config"];
        let names: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
        assert!(at("weft.authz") < at("weft.canary"));
        assert!(at("weft.waf") < at("weft.authz"));
        assert!(at("weft.canary") < at("weft.fault") && at("weft.fault") < at("weft.breaker"));
        assert_eq!(names.last(), Some(&"envoy.filters.http.router"));
        // Routed by the edge route configuration (mesh services only), never by a header the
        // client controls; the client's x-weft-cluster is gone before any filter runs.
        assert_eq!(hcm["rds"]["route_config_name"], "edge");
        assert!(hcm["rds"]["config_source"]["ads"].is_object());
        assert!(hcm.get("route_config").is_none());
        assert_eq!(
            hcm["early_header_mutation_extensions"][0]["typed_config"]["mutations"],
            json!([{"remove": "x-weft-cluster"}])
        );
        // Paths normalized, the TCP peer is the client by default.
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(hcm["merge_slashes"], true);
        assert_eq!(
            hcm["path_with_escaped_slashes_action"],
            "UNESCAPE_AND_FORWARD"
        );
        assert_eq!(hcm["use_remote_address"], true);
        assert_eq!(hcm["xff_num_trusted_hops"], 0);
        assert_eq!(hcm["preserve_external_request_id"], false);
    }

    #[test]
    fn trusted_hops_in_front_of_the_gateway_are_an_explicit_setting() {
        let params = BootstrapParams::new("gateway", "v1", "10.0.0.1", 18000);
        let v = render_gateway_value(
            &params,
            &GatewayParams {
                port: 8443,
                tls_dir: "/etc/weft/edge".into(),
                trusted_hops: 2,
            },
        )
        .unwrap();
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["xff_num_trusted_hops"], 2);
        assert_eq!(hcm["use_remote_address"], true);
    }

    #[test]
    fn the_gateway_is_not_a_mesh_endpoint() {
        let v = gateway();
        assert!(v["node"]["metadata"].get("inbound_address").is_none());
        assert_eq!(v["node"]["cluster"], "gateway");
    }
}
