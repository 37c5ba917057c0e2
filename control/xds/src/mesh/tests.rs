//! Mesh CDS and EDS: clusters per service version, stable fallback, static services.

use super::*;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use prost::Message;

fn group(service: &str, version: &str) -> SidecarGroup {
    SidecarGroup::new("default", service, version)
}

fn endpoints_of(resources: &[(String, Vec<Resource>)], cluster: &str) -> Vec<String> {
    let eds = &resources[1].1;
    let Some(r) = eds.iter().find(|r| r.name == cluster) else {
        return vec![];
    };
    let cla = ClusterLoadAssignment::decode(r.body.value.as_slice()).unwrap();
    cla.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => match &ep.address.as_ref().unwrap().address {
                Some(address::Address::SocketAddress(s)) => s.address.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        })
        .collect()
}

#[test]
fn version_and_stable_clusters_hold_registered_sidecars() {
    let services = vec![MeshService {
        namespace: "default".into(),
        name: "reviews".into(),
        port: 9080,
        host: "reviews".into(),
        stable_version: "v1".into(),
        calls: None,
    }];
    let endpoints = BTreeSet::from([
        MeshEndpoint {
            group: group("reviews", "v1"),
            ip: "10.0.0.1".into(),
            port: 15006,
        },
        MeshEndpoint {
            group: group("reviews", "v2"),
            ip: "10.0.0.2".into(),
            port: 15006,
        },
        MeshEndpoint {
            group: group("unknown", "v1"),
            ip: "10.0.0.3".into(),
            port: 15006,
        },
    ]);
    let out = mesh_resources(&services, &endpoints, &[], None);
    let names: Vec<&str> = out[0].1.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "outbound|9080|v1|reviews.default",
            "outbound|9080|v2|reviews.default",
            "reviews"
        ]
    );
    assert_eq!(
        endpoints_of(&out, "outbound|9080|v2|reviews.default"),
        ["10.0.0.2"]
    );
    assert_eq!(endpoints_of(&out, "reviews"), ["10.0.0.1"], "stable only");
    // Consistent: every EDS cluster has its assignment.
    crate::snapshot::Snapshot::new(1, out).unwrap();
}

#[test]
fn declared_service_without_sidecars_has_an_empty_stable_cluster() {
    let services = vec![MeshService {
        namespace: "default".into(),
        name: "ratings".into(),
        port: 80,
        host: "ratings".into(),
        stable_version: "v1".into(),
        calls: None,
    }];
    let out = mesh_resources(
        &services,
        &BTreeSet::new(),
        &[StaticService {
            name: "ext".into(),
            host: "example.com".into(),
            port: 443,
        }],
        None,
    );
    let names: Vec<&str> = out[0].1.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ratings", "ext"]);
    assert!(endpoints_of(&out, "ratings").is_empty());
}

#[test]
fn mesh_tls_puts_an_mtls_socket_checking_the_callee_spiffe_id_on_mesh_clusters_only() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let services = vec![MeshService {
        namespace: "demo".into(),
        name: "payments".into(),
        port: 8080,
        host: "payments".into(),
        stable_version: "v1".into(),
        calls: None,
    }];
    let endpoints = BTreeSet::from([MeshEndpoint {
        group: SidecarGroup::new("demo", "payments", "v1"),
        ip: "10.0.0.1".into(),
        port: 15006,
    }]);
    let statics = [StaticService {
        name: "ext".into(),
        host: "example.com".into(),
        port: 443,
    }];
    let tls = MeshTls::new("/etc/weft/tls/");
    let out = mesh_resources(&services, &endpoints, &statics, Some(&tls));
    let mut seen = 0;
    for resource in &out[0].1 {
        let cluster = Cluster::decode(resource.body.value.as_slice()).unwrap();
        if resource.name == "ext" {
            assert!(cluster.transport_socket.is_none());
            continue;
        }
        seen += 1;
        let socket = cluster.transport_socket.unwrap();
        assert_eq!(socket.name, "envoy.transport_sockets.tls");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
            panic!("no typed config")
        };
        assert!(any.type_url.ends_with("tls.v3.UpstreamTlsContext"));
        let context = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
        let common = context.common_tls_context.unwrap();
        let params = common.tls_params.unwrap();
        assert_eq!(
            (
                params.tls_minimum_protocol_version,
                params.tls_maximum_protocol_version
            ),
            (TlsProtocol::TlSv13 as i32, TlsProtocol::TlSv13 as i32)
        );
        let file = |d: &Option<DataSource>| match d.as_ref().unwrap().specifier.as_ref() {
            Some(data_source::Specifier::Filename(f)) => f.clone(),
            _ => String::new(),
        };
        assert_eq!(
            file(&common.tls_certificates[0].certificate_chain),
            "/etc/weft/tls/cert.pem"
        );
        assert_eq!(
            file(&common.tls_certificates[0].private_key),
            "/etc/weft/tls/key.pem"
        );
        let Some(ValidationContextType::ValidationContext(validation)) =
            common.validation_context_type
        else {
            panic!("no validation context")
        };
        assert_eq!(file(&validation.trusted_ca), "/etc/weft/tls/ca.pem");
        let san = &validation.match_typed_subject_alt_names[0];
        assert_eq!(san.san_type, SanType::Uri as i32);
        assert_eq!(
            san.matcher.as_ref().unwrap().match_pattern,
            Some(MatchPattern::Exact(
                "spiffe://cluster.local/ns/demo/sa/payments".into()
            ))
        );
    }
    assert_eq!(seen, 2, "the version cluster and the stable cluster");
    // Without TLS: plaintext, as before.
    let plain = mesh_resources(&services, &endpoints, &statics, None);
    for resource in &plain[0].1 {
        let cluster = Cluster::decode(resource.body.value.as_slice()).unwrap();
        assert!(cluster.transport_socket.is_none());
    }
}
