//! CDS and EDS for mesh services. Per declared service: one cluster per version, named like
//! weft-compile's canary configuration names them (`outbound|<port>|<version>|<service>.<ns>`),
//! holding the inbound addresses of the sidecars registered for that version; and one
//! cluster named by the service's host, holding its stable version, which the outbound route
//! falls back to when the canary filter did not pick a cluster. Services outside the mesh are
//! static clusters resolved by DNS.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier, Address,
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::Duration;
use envoy_types::util::pack_any;
use serde::{Deserialize, Serialize};

use crate::resource::{type_url, Resource};
use crate::state::SidecarGroup;

/// A service of the mesh, as its `Service` document declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshService {
    pub namespace: String,
    pub name: String,
    /// The service port (part of cluster names).
    pub port: u16,
    /// What callers put in `:authority`; the stable fallback cluster's name.
    pub host: String,
    pub stable_version: String,
}

/// A sidecar's inbound address, registered for its service version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshEndpoint {
    pub group: SidecarGroup,
    /// An IP address (EDS endpoints are not resolved).
    pub ip: String,
    pub port: u32,
}

/// A service outside the mesh: a cluster resolved by DNS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticService {
    pub name: String,
    pub host: String,
    pub port: u32,
}

/// The cluster of one version of a mesh service (the same format as weft-compile's
/// `cluster_name`, Istio's naming).
pub fn version_cluster(namespace: &str, service: &str, port: u16, version: &str) -> String {
    format!("outbound|{port}|{version}|{service}.{namespace}")
}

/// CDS and EDS resources (type URL -> resources), the same for every sidecar.
pub fn mesh_resources(
    services: &[MeshService],
    endpoints: &BTreeSet<MeshEndpoint>,
    statics: &[StaticService],
) -> Vec<(String, Vec<Resource>)> {
    let mut by_cluster: BTreeMap<String, Vec<&MeshEndpoint>> = BTreeMap::new();
    let declared = |e: &MeshEndpoint| {
        services
            .iter()
            .find(|s| s.namespace == e.group.namespace && s.name == e.group.service)
    };
    for service in services {
        // A stable cluster exists even with no endpoint yet: the route may name it.
        by_cluster.entry(service.host.clone()).or_default();
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
            .or_default()
            .push(endpoint);
        if service.stable_version == group.version {
            by_cluster
                .entry(service.host.clone())
                .or_default()
                .push(endpoint);
        }
    }
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for (name, members) in &by_cluster {
        clusters.push(Resource::new(name.clone(), pack_any(eds_cluster(name))));
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
    #![allow(clippy::unwrap_used)]
    use super::*;
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
        let out = mesh_resources(&services, &endpoints, &[]);
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
        );
        let names: Vec<&str> = out[0].1.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ratings", "ext"]);
        assert!(endpoints_of(&out, "ratings").is_empty());
    }
}
