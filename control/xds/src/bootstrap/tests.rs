//! The sidecar bootstrap: rendered from the template, every placeholder filled.

use super::*;

#[test]
fn fills_node_addresses_and_ports() {
    let mut params = BootstrapParams::new("reviews", "v2", "10.0.0.1", 18000);
    params.app_host = "reviews-app".into();
    params.inbound_port = 16000;
    params.delta = true;
    let v = render_value(&params).unwrap();
    assert_eq!(v["node"]["id"], "reviews-v2");
    assert_eq!(v["node"]["cluster"], "reviews");
    assert_eq!(v["node"]["metadata"]["version"], "v2");
    assert_eq!(v["node"]["metadata"]["inbound_address"], ":16000");
    assert_eq!(
        v["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );
    let text = render(&params).unwrap();
    assert!(text.contains("10.0.0.1") && text.contains("reviews-app") && text.contains("16000"));
    assert!(!text.contains("transport_socket"), "plaintext by default");
}

#[test]
fn admin_and_outbound_listener_stay_on_loopback_unless_told_otherwise() {
    let mut params = BootstrapParams::new("reviews", "v1", "10.0.0.1", 18000);
    let v = render_value(&params).unwrap();
    assert_eq!(
        v["admin"],
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}})
    );
    let listener = |v: &Value, name: &str| {
        v["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["address"]["socket_address"]
            .clone()
    };
    assert_eq!(
        listener(&v, "outbound"),
        json!({"address": "127.0.0.1", "port_value": 15001})
    );
    // The inbound listener is the way in: every address.
    assert_eq!(listener(&v, "inbound")["address"], "0.0.0.0");
    assert!(!render(&params)
        .unwrap()
        .contains("0.0.0.0, port_value: 9901"));

    params.admin_socket = Some("/run/weft-admin/admin.sock".into());
    params.outbound_bind = "0.0.0.0".into();
    let v = render_value(&params).unwrap();
    assert_eq!(
        v["admin"],
        json!({"address": {"pipe": {"path": "/run/weft-admin/admin.sock", "mode": 384}}})
    );
    assert_eq!(listener(&v, "outbound")["address"], "0.0.0.0");
}

#[test]
fn the_template_itself_keeps_admin_and_outbound_on_loopback() {
    let v: Value = serde_norway::from_str(SIDECAR_TEMPLATE).unwrap();
    assert_eq!(
        v["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    let outbound = v["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "outbound")
        .unwrap();
    assert_eq!(
        outbound["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
}

#[test]
fn sds_mode_refers_to_the_identity_secrets_and_the_token_rides_in_the_ads_metadata() {
    let mut params = BootstrapParams::new("payments", "v1", "10.0.0.1", 18000);
    params.sds = true;
    params.token = Some("claims.signature".into());
    assert!(matches!(
        render_value(&params),
        Err(BootstrapError::TokenInClear)
    ));
    params.xds_tls = Some(XdsUpstreamTls::new(ROOT_PEM, "cluster.local", "10.0.0.1").unwrap());
    let v = render_value(&params).unwrap();
    let listeners = v["static_resources"]["listeners"].as_array().unwrap();
    let inbound = listeners.iter().find(|l| l["name"] == "inbound").unwrap();
    let tls = &inbound["filter_chains"][0]["transport_socket"]["typed_config"];
    assert_eq!(tls["require_client_certificate"], true);
    let common = &tls["common_tls_context"];
    assert_eq!(
        common["tls_params"]["tls_maximum_protocol_version"],
        "TLSv1_3"
    );
    assert_eq!(
        common["tls_certificate_sds_secret_configs"][0]["name"],
        "default"
    );
    assert_eq!(
        common["validation_context_sds_secret_config"]["name"],
        "ROOTCA"
    );
    assert!(common["validation_context_sds_secret_config"]["sds_config"]["ads"].is_object());
    assert_eq!(
        v["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"],
        json!([{"key": "x-weft-token", "value": "claims.signature"}])
    );
    params.mesh_tls_dir = Some("/etc/weft/tls".into());
    assert!(matches!(
        render_value(&params),
        Err(BootstrapError::TlsSourceConflict)
    ));
}

const ROOT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn xds_cluster(v: &Value) -> &Value {
    let clusters = v["static_resources"]["clusters"].as_array().unwrap();
    clusters.iter().find(|c| c["name"] == "weft_xds").unwrap()
}

#[test]
fn the_xds_cluster_pins_the_control_plane_roots_and_spiffe_id() {
    let mut params = BootstrapParams::new("payments", "v1", "weft-control", 18000);
    params.sds = true;
    params.token = Some("t".into());
    params.xds_tls = Some(XdsUpstreamTls::new(ROOT_PEM, "corp.example", "weft-control").unwrap());
    let v = render_value(&params).unwrap();
    let socket = &xds_cluster(&v)["transport_socket"];
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let tls = &socket["typed_config"];
    assert_eq!(
        tls["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    assert_eq!(tls["sni"], "weft-control");
    let common = &tls["common_tls_context"];
    assert_eq!(common["alpn_protocols"], json!(["h2"]));
    assert_eq!(
        common["tls_params"]["tls_minimum_protocol_version"],
        "TLSv1_3"
    );
    let validation = &common["validation_context"];
    assert_eq!(validation["trusted_ca"]["inline_string"], ROOT_PEM);
    assert_eq!(
        validation["match_typed_subject_alt_names"],
        json!([{"san_type": "URI", "matcher": {
            "exact": "spiffe://corp.example/ns/weft-system/sa/weft-control"}}])
    );
    // Still HTTP/2 to the control plane, and the YAML carries the PEM intact.
    assert!(xds_cluster(&v)["typed_extension_protocol_options"]
        .to_string()
        .contains("http2_protocol_options"));
    assert!(render(&params).unwrap().contains("BEGIN CERTIFICATE"));

    // By IP: no SNI (an IP is not a server name). Without a bundle: refused.
    let by_ip = XdsUpstreamTls::new(ROOT_PEM, "cluster.local", "10.0.0.1").unwrap();
    assert_eq!(by_ip.sni, None);
    assert!(by_ip.transport_socket()["typed_config"]
        .get("sni")
        .is_none());
    assert!(matches!(
        XdsUpstreamTls::new("not a pem", "cluster.local", "h"),
        Err(BootstrapError::EmptyTrustBundle)
    ));
    // Without TLS, the cluster stays plaintext.
    let plain = render_value(&BootstrapParams::new("p", "v1", "h", 1)).unwrap();
    assert!(xds_cluster(&plain).get("transport_socket").is_none());
}

fn hcm<'a>(v: &'a Value, listener: &str) -> &'a Value {
    let listeners = v["static_resources"]["listeners"].as_array().unwrap();
    let l = listeners.iter().find(|l| l["name"] == listener).unwrap();
    &l["filter_chains"][0]["filters"][0]["typed_config"]
}

#[test]
fn both_listeners_normalize_paths_and_take_the_source_from_the_tcp_peer() {
    let v = render_value(&BootstrapParams::new("payments", "v1", "10.0.0.1", 18000)).unwrap();
    for listener in ["inbound", "outbound"] {
        let hcm = hcm(&v, listener);
        assert_eq!(hcm["normalize_path"], true, "{listener}");
        assert_eq!(hcm["merge_slashes"], true, "{listener}");
        assert_eq!(
            hcm["path_with_escaped_slashes_action"], "UNESCAPE_AND_FORWARD",
            "{listener}"
        );
        assert_eq!(
            hcm["common_http_protocol_options"]["headers_with_underscores_action"],
            "REJECT_REQUEST",
            "{listener}"
        );
        assert_eq!(hcm["use_remote_address"], true, "{listener}");
        assert_eq!(hcm["xff_num_trusted_hops"], 0, "{listener}");
    }
    // Inbound: everything goes to the local app, whatever the Host.
    let inbound = &hcm(&v, "inbound")["route_config"]["virtual_hosts"];
    assert_eq!(inbound.as_array().unwrap().len(), 1);
    assert_eq!(
        inbound[0]["routes"],
        json!([{"match": {"prefix": "/"}, "route": {"cluster": "local_app"}}])
    );
    // Outbound: declared services only, from the control plane; the caller's
    // x-weft-cluster is removed before the filters run.
    let outbound = hcm(&v, "outbound");
    assert!(outbound.get("route_config").is_none());
    assert_eq!(outbound["rds"]["route_config_name"], "outbound");
    assert_eq!(
        outbound["early_header_mutation_extensions"][0]["typed_config"]["mutations"],
        json!([{"remove": "x-weft-cluster"}])
    );
    assert!(!SIDECAR_TEMPLATE.contains("cluster_header: \":authority\""));
}

#[test]
fn mesh_tls_dir_makes_the_inbound_listener_require_mesh_client_certificates() {
    let mut params = BootstrapParams::new("payments", "v1", "10.0.0.1", 18000);
    params.mesh_tls_dir = Some("/etc/weft/tls/".into());
    let v = render_value(&params).unwrap();
    let listeners = v["static_resources"]["listeners"].as_array().unwrap();
    let inbound = listeners.iter().find(|l| l["name"] == "inbound").unwrap();
    let outbound = listeners.iter().find(|l| l["name"] == "outbound").unwrap();
    let tls = &inbound["filter_chains"][0]["transport_socket"]["typed_config"];
    assert_eq!(tls["require_client_certificate"], true);
    let common = &tls["common_tls_context"];
    assert_eq!(
        common["tls_params"]["tls_minimum_protocol_version"],
        "TLSv1_3"
    );
    assert_eq!(
        common["tls_certificates"][0]["certificate_chain"]["filename"],
        "/etc/weft/tls/cert.pem"
    );
    assert_eq!(
        common["tls_certificates"][0]["private_key"]["filename"],
        "/etc/weft/tls/key.pem"
    );
    assert_eq!(
        common["validation_context"]["trusted_ca"]["filename"],
        "/etc/weft/tls/ca.pem"
    );
    // The app talks plaintext to the outbound listener; callees get mTLS from CDS.
    assert!(outbound["filter_chains"][0]
        .get("transport_socket")
        .is_none());
    // The filters are still there.
    assert_eq!(
        inbound["filter_chains"][0]["filters"][0]["name"],
        "envoy.filters.network.http_connection_manager"
    );
}

#[test]
fn more_replicas_are_endpoints_of_the_one_xds_cluster() {
    let mut params = BootstrapParams::new("reviews", "v1", "cp-1", 18000);
    params.xds_more = vec![("cp-2".into(), 18001), ("10.0.0.3".into(), 18002)];
    let root = render_value(&params).unwrap();
    let clusters = root["static_resources"]["clusters"].as_array().unwrap();
    let xds = clusters.iter().find(|c| c["name"] == "weft_xds").unwrap();
    let addresses: Vec<(String, u64)> = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let a = &e["endpoint"]["address"]["socket_address"];
            (
                a["address"].as_str().unwrap().to_string(),
                a["port_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        addresses,
        [
            ("cp-1".to_string(), 18000),
            ("cp-2".to_string(), 18001),
            ("10.0.0.3".to_string(), 18002)
        ]
    );
    // One ADS stream, to the cluster: Envoy picks a live endpoint on each retry.
    assert_eq!(
        root["dynamic_resources"]["ads_config"]["grpc_services"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
