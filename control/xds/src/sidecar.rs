//! The sidecar types: the group a sidecar belongs to (what it runs), its node key and
//! identity (what it says in its xDS node), and its status (what it acknowledged or refused).
//! A leaf module: the state, the mesh resources and the metrics all read these types.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The filter entries its bootstrap's chains name: `suite` or `modules` (metadata
    /// `weft_filters`; absent in bootstraps from before it existed).
    pub filters: Option<String>,
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
            filters: meta("weft_filters").filter(|f| f == "suite" || f == "modules"),
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
    /// The wasm modules it runs, name -> SHA-256: those of the filter resources of the
    /// newest revision it acknowledged in full (Envoy acknowledges a filter only once the
    /// module with that hash is fetched, verified and loaded).
    /// Shared: every sidecar of a group synced to one snapshot holds the same map.
    pub modules: Arc<BTreeMap<String, String>>,
    /// The refusal in force: set by a NACK, cleared once the sidecar acknowledges everything.
    pub current_nack: Option<Nack>,
    /// The latest refusal, kept after it is resolved (a module fetch in progress is refused
    /// once, for example).
    pub last_nack: Option<Nack>,
    pub nack_count: u64,
    /// Unix milliseconds of the last NACK.
    pub last_nack_at_ms: Option<u64>,
    /// The filter entries its bootstrap names (`suite` or `modules`), when it says.
    pub filters: Option<String>,
    /// Set when this server serves the sidecar's group none of the entries its bootstrap
    /// names (a suite bootstrap on `weft serve --modules`, or the reverse): its filters keep
    /// their bootstrap defaults, and this says why.
    pub filters_mismatch: Option<String>,
    /// The control-plane replica its stream is open to (or was, while disconnected): `None`
    /// for a server that is not one of several replicas.
    pub replica: Option<String>,
}

impl SidecarStatus {
    /// [`Self::filters_mismatch`] for the entries its group is served.
    pub fn check_filters(&mut self, served: Option<&[crate::FilterSpec]>) {
        let served = served.unwrap_or_default();
        let has = |suite: bool| {
            served
                .iter()
                .any(|f| f.name.starts_with("weft.suite.") == suite)
        };
        self.filters_mismatch = match self.filters.as_deref() {
            _ if served.is_empty() => None,
            Some("suite") if !has(true) => Some(
                "bootstrap names the suite entries (weft.suite.*) but this server serves the                  separate filters only (weft serve --modules, or no suite.wasm): filters keep                  their bootstrap defaults; re-render it with weft bootstrap --modules"
                    .into(),
            ),
            Some("modules") if !has(false) => Some(
                "bootstrap names the separate filters (weft.authz, ...) but this server serves                  the suite entries only (weft serve --suite): filters keep their bootstrap                  defaults; re-render it without --modules"
                    .into(),
            ),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FilterSpec;

    fn status(filters: Option<&str>) -> SidecarStatus {
        SidecarStatus {
            node_id: "n".into(),
            namespace: "default".into(),
            service: "reviews".into(),
            version: "v1".into(),
            inbound_address: None,
            connected: true,
            protocol: "sotw",
            synced_revision: None,
            acked: BTreeMap::new(),
            modules: Arc::default(),
            current_nack: None,
            last_nack: None,
            nack_count: 0,
            last_nack_at_ms: None,
            filters: filters.map(str::to_string),
            filters_mismatch: None,
            replica: None,
        }
    }

    #[test]
    fn a_bootstrap_naming_entries_the_server_does_not_serve_is_reported() {
        let separate = [FilterSpec::new("authz", "{}".into())];
        let suite = [
            FilterSpec::suite_inbound("{}".into()),
            FilterSpec::suite_outbound("{}".into()),
        ];
        let both: Vec<FilterSpec> = suite.iter().chain(&separate).cloned().collect();
        let check = |filters: Option<&str>, served: &[FilterSpec]| {
            let mut s = status(filters);
            s.check_filters(Some(served));
            s.filters_mismatch
        };
        assert!(check(Some("suite"), &separate)
            .unwrap()
            .contains("weft serve --modules"));
        assert!(check(Some("modules"), &suite)
            .unwrap()
            .contains("weft serve --suite"));
        for filters in [Some("suite"), Some("modules"), None] {
            assert_eq!(check(filters, &both), None, "{filters:?}");
        }
        assert_eq!(check(Some("suite"), &suite), None);
        assert_eq!(check(Some("modules"), &separate), None);
        // A bootstrap that does not say, or a group served nothing yet: nothing to report.
        assert_eq!(check(None, &separate), None);
        assert_eq!(check(Some("suite"), &[]), None);
    }
}
