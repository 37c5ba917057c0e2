//! CDS and EDS for mesh services. Per declared service: one cluster per version, named like
//! weft-compile's canary configuration names them (`outbound|<port>|<version>|<service>.<ns>`),
//! holding the inbound addresses of the sidecars registered for that version; and one
//! cluster named by the service's host, holding its stable version, which the outbound route
//! falls back to when the canary filter did not pick a cluster. Services outside the mesh are
//! static clusters resolved by DNS.
//!
//! With [`MeshTls`] the mesh clusters speak mTLS to the callee's inbound listener: the caller
//! presents its own certificate and accepts only a peer whose certificate chains to the mesh
//! CA and carries the SPIFFE id of the destination service (certificate files in the sidecar,
//! see `weft bootstrap --mesh-tls-dir`; or SDS from the control plane's CA, see [`crate::sds`]).

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, data_source, socket_address::PortSpecifier,
    transport_socket, Address, AggregatedConfigSource, ApiVersion, ConfigSource, DataSource,
    SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CertificateValidationContext, CommonTlsContext,
    TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use serde::{Deserialize, Serialize};

use crate::resource::{type_url, Resource};
use crate::sidecar::SidecarGroup;

pub use crate::services::{MeshService, StaticService};

/// A sidecar's inbound address, registered for its service version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshEndpoint {
    pub group: SidecarGroup,
    /// An IP address (EDS endpoints are not resolved).
    pub ip: String,
    pub port: u32,
}

/// Where the sidecars' mesh certificates come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Files inside every sidecar: `ca.pem` (the mesh CA), `cert.pem` (the sidecar's own
    /// chain) and `key.pem`.
    Files { dir: String },
    /// The control plane's CA over SDS (secrets `default` and `ROOTCA`, see [`crate::sds`]).
    Sds,
}

/// Mesh mTLS: where the certificates come from, and the trust domain of the SPIFFE ids
/// (`spiffe://<trust_domain>/ns/<namespace>/sa/<service>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshTls {
    pub source: CertSource,
    /// weft-compile's trust domain is `cluster.local`.
    pub trust_domain: String,
}

impl MeshTls {
    /// Certificate files in `dir` inside every sidecar.
    pub fn new(dir: &str) -> Self {
        Self {
            source: CertSource::Files {
                dir: dir.trim_end_matches('/').to_string(),
            },
            trust_domain: "cluster.local".into(),
        }
    }

    /// Certificates from the control plane's CA over SDS.
    pub fn sds(trust_domain: &str) -> Self {
        Self {
            source: CertSource::Sds,
            trust_domain: trust_domain.to_string(),
        }
    }

    /// The SPIFFE id the sidecars of `service` present.
    pub fn spiffe_id(&self, namespace: &str, service: &str) -> String {
        format!("spiffe://{}/ns/{namespace}/sa/{service}", self.trust_domain)
    }

    /// The transport socket of a cluster of `service`: TLS 1.3, our certificate, and the
    /// peer must be a sidecar of `service`.
    pub fn upstream_socket(&self, namespace: &str, service: &str) -> TransportSocket {
        let peer = self.spiffe_id(namespace, service);
        let common = match &self.source {
            CertSource::Sds => crate::sds::upstream_common_context(&peer),
            CertSource::Files { dir } => files_context(dir, &peer),
        };
        let context = UpstreamTlsContext {
            common_tls_context: Some(common),
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
        }
    }
}

fn files_context(dir: &str, peer_spiffe_id: &str) -> CommonTlsContext {
    let file = |name: &str| {
        Some(DataSource {
            specifier: Some(data_source::Specifier::Filename(format!("{dir}/{name}"))),
            ..Default::default()
        })
    };
    CommonTlsContext {
        tls_params: Some(crate::sds::tls13()),
        tls_certificates: vec![TlsCertificate {
            certificate_chain: file("cert.pem"),
            private_key: file("key.pem"),
            ..Default::default()
        }],
        validation_context_type: Some(ValidationContextType::ValidationContext(
            CertificateValidationContext {
                trusted_ca: file("ca.pem"),
                match_typed_subject_alt_names: vec![crate::sds::spiffe_san(peer_spiffe_id)],
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The cluster of one version of a mesh service (the same format as weft-compile's
/// `cluster_name`, Istio's naming).
pub fn version_cluster(namespace: &str, service: &str, port: u16, version: &str) -> String {
    format!("outbound|{port}|{version}|{service}.{namespace}")
}

/// CDS, EDS and RDS resources (type URL -> resources), the same for every sidecar. With
/// `tls`, every mesh cluster (not the static ones) carries the mTLS transport socket. The
/// routes ([`crate::mesh_routes`]) reach only these clusters, by declared host.
pub fn mesh_resources(
    services: &[MeshService],
    endpoints: &BTreeSet<MeshEndpoint>,
    statics: &[StaticService],
    tls: Option<&MeshTls>,
) -> Vec<(String, Vec<Resource>)> {
    // Cluster name -> (the service it belongs to, its endpoints).
    let mut by_cluster: BTreeMap<String, (&MeshService, Vec<&MeshEndpoint>)> = BTreeMap::new();
    let declared = |e: &MeshEndpoint| {
        services
            .iter()
            .find(|s| s.namespace == e.group.namespace && s.name == e.group.service)
    };
    for service in services {
        // A stable cluster exists even with no endpoint yet: the route may name it.
        by_cluster
            .entry(service.host.clone())
            .or_insert_with(|| (service, Vec::new()));
    }
    for endpoint in endpoints {
        let Some(service) = declared(endpoint) else {
            continue;
        };
        let group = &endpoint.group;
        by_cluster
            .entry(version_cluster(
                &group.namespace,
                &group.service,
                service.port,
                &group.version,
            ))
            .or_insert_with(|| (service, Vec::new()))
            .1
            .push(endpoint);
        if service.stable_version == group.version {
            by_cluster
                .entry(service.host.clone())
                .or_insert_with(|| (service, Vec::new()))
                .1
                .push(endpoint);
        }
    }
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for (name, (service, members)) in &by_cluster {
        let mut cluster = eds_cluster(name);
        cluster.transport_socket =
            tls.map(|tls| tls.upstream_socket(&service.namespace, &service.name));
        clusters.push(Resource::new(name.clone(), pack_any(cluster)));
        assignments.push(Resource::new(
            name.clone(),
            pack_any(load_assignment(
                name,
                members.iter().map(|e| (e.ip.clone(), e.port)),
            )),
        ));
    }
    for service in statics {
        let mut cluster = base_cluster(&service.name, DiscoveryType::StrictDns);
        cluster.load_assignment = Some(load_assignment(
            &service.name,
            [(service.host.clone(), service.port)],
        ));
        clusters.push(Resource::new(service.name.clone(), pack_any(cluster)));
    }
    vec![
        (type_url::CLUSTER.to_string(), clusters),
        (type_url::ENDPOINT.to_string(), assignments),
        (
            type_url::ROUTE.to_string(),
            crate::mesh_routes::route_resources(services, statics),
        ),
    ]
}

fn base_cluster(name: &str, kind: DiscoveryType) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

fn eds_cluster(name: &str) -> Cluster {
    let mut cluster = base_cluster(name, DiscoveryType::Eds);
    cluster.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            resource_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
        service_name: name.to_string(),
    });
    cluster
}

fn load_assignment(
    name: &str,
    addresses: impl IntoIterator<Item = (String, u32)>,
) -> ClusterLoadAssignment {
    let lb_endpoints = addresses
        .into_iter()
        .map(|(host, port)| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: host,
                        port_specifier: Some(PortSpecifier::PortValue(port)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
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
}
