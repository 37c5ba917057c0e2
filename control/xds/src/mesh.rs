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

/// CDS, EDS and RDS resources (type URL -> resources) for a sidecar that may call every
/// service ([`MeshIndex::resources`] with no scope). With `tls`, every mesh cluster (not the
/// static ones) carries the mTLS transport socket. The routes ([`crate::mesh_routes`]) reach
/// only these clusters, by declared host.
pub fn mesh_resources(
    services: &[MeshService],
    endpoints: &BTreeSet<MeshEndpoint>,
    statics: &[StaticService],
    tls: Option<&MeshTls>,
) -> Vec<(String, Vec<Resource>)> {
    MeshIndex::new(services, endpoints, statics, tls).resources(None)
}

/// `(namespace, name)` of a mesh service.
pub type ServiceKey = (String, String);

/// The mesh's clusters and endpoints, built once per publish and grouped by the service they
/// belong to, so each group's scoped selection ([`MeshIndex::resources`]) shares their bytes.
#[derive(Debug, Default)]
pub struct MeshIndex {
    services: Vec<MeshService>,
    statics: Vec<StaticService>,
    /// Per mesh service: its clusters and their load assignments.
    by_service: BTreeMap<ServiceKey, (Vec<Resource>, Vec<Resource>)>,
    static_clusters: Vec<Resource>,
}

// === impl MeshIndex ===

impl MeshIndex {
    pub fn new(
        services: &[MeshService],
        endpoints: &BTreeSet<MeshEndpoint>,
        statics: &[StaticService],
        tls: Option<&MeshTls>,
    ) -> Self {
        let mut by_service: BTreeMap<ServiceKey, (Vec<Resource>, Vec<Resource>)> = BTreeMap::new();
        for (name, (service, members)) in clusters_of(services, endpoints) {
            let mut cluster = eds_cluster(&name);
            cluster.transport_socket =
                tls.map(|tls| tls.upstream_socket(&service.namespace, &service.name));
            let assignment = load_assignment(&name, members.iter().map(|e| (e.ip.clone(), e.port)));
            let entry = by_service
                .entry((service.namespace.clone(), service.name.clone()))
                .or_default();
            entry.0.push(Resource::new(name.clone(), pack_any(cluster)));
            entry.1.push(Resource::new(name, pack_any(assignment)));
        }
        let static_clusters = statics
            .iter()
            .map(|service| {
                let mut cluster = base_cluster(&service.name, DiscoveryType::StrictDns);
                cluster.load_assignment = Some(load_assignment(
                    &service.name,
                    [(service.host.clone(), service.port)],
                ));
                Resource::new(service.name.clone(), pack_any(cluster))
            })
            .collect();
        Self {
            services: services.to_vec(),
            statics: statics.to_vec(),
            by_service,
            static_clusters,
        }
    }

    /// What the sidecars of `group` may call: its service's declared `calls`; `None` (every
    /// service) for a service that declares none, or a group no `Service` declares.
    pub fn scope_of(&self, group: &SidecarGroup) -> Option<BTreeSet<ServiceKey>> {
        self.services
            .iter()
            .find(|s| s.is(&group.namespace, &group.service))
            .and_then(|s| s.calls.as_ref())
            .map(|calls| calls.iter().cloned().collect())
    }

    /// CDS, EDS and RDS for a sidecar that calls the services in `scope` (`None`: all): only
    /// their clusters, endpoints and virtual hosts, plus the static services. Both route
    /// configurations are scoped, so no route names a cluster the sidecar was not sent.
    pub fn resources(&self, scope: Option<&BTreeSet<ServiceKey>>) -> Vec<(String, Vec<Resource>)> {
        let in_scope = |namespace: &str, name: &str| {
            scope.is_none_or(|scope| scope.contains(&(namespace.to_string(), name.to_string())))
        };
        let mut clusters = Vec::new();
        let mut assignments = Vec::new();
        for ((namespace, name), (c, a)) in &self.by_service {
            if in_scope(namespace, name) {
                clusters.extend(c.iter().cloned());
                assignments.extend(a.iter().cloned());
            }
        }
        clusters.extend(self.static_clusters.iter().cloned());
        let services: Vec<MeshService> = self
            .services
            .iter()
            .filter(|s| in_scope(&s.namespace, &s.name))
            .cloned()
            .collect();
        vec![
            (type_url::CLUSTER.to_string(), clusters),
            (type_url::ENDPOINT.to_string(), assignments),
            (
                type_url::ROUTE.to_string(),
                crate::mesh_routes::route_resources(&services, &self.statics),
            ),
        ]
    }
}

/// Cluster name -> (the declared service it belongs to, its endpoints): per service a
/// stable cluster (even with no endpoint yet: the route may name it) and a cluster per
/// version with registered sidecars. Endpoints of undeclared services are left out.
fn clusters_of<'a>(
    services: &'a [MeshService],
    endpoints: &'a BTreeSet<MeshEndpoint>,
) -> BTreeMap<String, (&'a MeshService, Vec<&'a MeshEndpoint>)> {
    let mut by_cluster: BTreeMap<String, (&MeshService, Vec<&MeshEndpoint>)> = BTreeMap::new();
    for service in services {
        by_cluster
            .entry(service.host.clone())
            .or_insert_with(|| (service, Vec::new()));
    }
    for endpoint in endpoints {
        let group = &endpoint.group;
        let Some(service) = services
            .iter()
            .find(|s| s.is(&group.namespace, &group.service))
        else {
            continue;
        };
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
    by_cluster
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
mod tests;
