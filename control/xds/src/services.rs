//! The services sidecars are routed to: declared mesh services and static services outside
//! the mesh. A leaf module, read by the CDS/EDS builder ([`crate::mesh`]) and the RDS
//! builder ([`crate::mesh_routes`]).

use serde::{Deserialize, Serialize};

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
    /// The services (`(namespace, name)`) its sidecars call: their outbound routes,
    /// clusters and endpoints are only these. `None`: every declared service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<(String, String)>>,
}

impl MeshService {
    /// `namespace/name` on `port`, called by its name (the `host` a `Service` document
    /// leaves out), stable at `stable_version`.
    pub fn new(namespace: &str, name: &str, port: u16, stable_version: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            port,
            host: name.into(),
            stable_version: stable_version.into(),
            calls: None,
        }
    }

    /// Whether this is `namespace/name`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }
}

/// A service outside the mesh: a cluster resolved by DNS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticService {
    pub name: String,
    pub host: String,
    pub port: u32,
}
