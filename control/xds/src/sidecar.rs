//! The sidecar types: the group a sidecar belongs to (what it runs), its node key and
//! identity (what it says in its xDS node), and its status (what it acknowledged or refused).
//! A leaf module: the state, the mesh resources and the metrics all read these types.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use serde::Serialize;

use crate::event::Nack;

/// Sidecars are grouped by what they run: a version of a service in a namespace (weft-compile
/// compiles one set of filter configurations per group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct SidecarGroup {
    pub namespace: String,
    pub service: String,
    pub version: String,
}

impl SidecarGroup {
    pub fn new(namespace: &str, service: &str, version: &str) -> Self {
        Self {
            namespace: namespace.into(),
            service: service.into(),
            version: version.into(),
        }
    }
}

impl std::fmt::Display for SidecarGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.service, self.version)
    }
}

/// Where a sidecar is registered: its node id within the identity it proved (with the CA on)
/// or claimed. Two identities can never touch each other's registration, whatever node ids
/// they send.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    pub id: String,
    pub namespace: String,
    pub service: String,
}

/// What one sidecar says about itself in its xDS node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub id: String,
    pub namespace: String,
    pub service: String,
    pub version: String,
    /// `ip:port` it serves on, when it takes inbound traffic.
    pub inbound: Option<(String, u32)>,
}

impl NodeIdentity {
    /// `node.cluster` is the service; `node.metadata` carries `version`, `namespace` (default
    /// `default`) and `inbound_address` (`ip:port`, or `:port` to take the IP the stream
    /// comes from).
    pub fn from_node(node: &Node, peer_ip: Option<String>) -> Self {
        let meta = |key: &str| -> Option<String> {
            use envoy_types::pb::google::protobuf::value::Kind;
            match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
                Kind::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        };
        let inbound = meta("inbound_address").and_then(|addr| {
            let (host, port) = addr.rsplit_once(':')?;
            let port: u32 = port.parse().ok()?;
            let host = if host.is_empty() || host == "0.0.0.0" {
                peer_ip.clone()?
            } else {
                host.to_string()
            };
            Some((host, port))
        });
        Self {
            id: node.id.clone(),
            namespace: meta("namespace").unwrap_or_else(|| "default".into()),
            service: node.cluster.clone(),
            version: meta("version").unwrap_or_else(|| "unversioned".into()),
            inbound,
        }
    }

    pub fn group(&self) -> SidecarGroup {
        SidecarGroup::new(&self.namespace, &self.service, &self.version)
    }

    pub fn key(&self) -> NodeKey {
        NodeKey {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            service: self.service.clone(),
        }
    }
}

/// What `weft status` shows for one sidecar.
#[derive(Clone, Debug, Serialize)]
pub struct SidecarStatus {
    pub node_id: String,
    pub namespace: String,
    pub service: String,
    pub version: String,
    pub inbound_address: Option<String>,
    pub connected: bool,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// The newest policy revision whose every resource this sidecar acknowledged.
    pub synced_revision: Option<u64>,
    /// Last acknowledged version per type URL.
    pub acked: BTreeMap<String, String>,
    /// The refusal in force: set by a NACK, cleared once the sidecar acknowledges everything.
    pub current_nack: Option<Nack>,
    /// The latest refusal, kept after it is resolved (a module fetch in progress is refused
    /// once, for example).
    pub last_nack: Option<Nack>,
    pub nack_count: u64,
    /// Unix milliseconds of the last NACK.
    pub last_nack_at_ms: Option<u64>,
}
