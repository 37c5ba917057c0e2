//! Resources as the xDS protocol carries them: a type URL, a name, an opaque `Any` body and a
//! content version, so a connection can tell what changed without decoding anything.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

/// The type URLs weft serves.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// ECDS: one `TypedExtensionConfig` per HTTP filter entry.
    pub const EXTENSION_CONFIG: &str =
        "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    /// The `typed_config` inside an ECDS resource for a wasm filter.
    pub const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

    /// Types where an empty SotW subscription means "everything" (xDS wildcard semantics).
    pub fn is_wildcard_type(type_url: &str) -> bool {
        type_url == CLUSTER || type_url == LISTENER
    }
}

/// One named resource of one type.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    /// A hash of the encoded body: equal bodies have equal versions.
    pub version: String,
    /// Shared: every group's snapshot that holds this resource holds the same bytes.
    pub body: Arc<Any>,
}

// === impl Resource ===

impl Resource {
    pub fn new(name: impl Into<String>, body: Any) -> Self {
        let version = content_version(&[body.type_url.as_bytes(), &body.value]);
        Self {
            name: name.into(),
            version,
            body: Arc::new(body),
        }
    }
}

/// 16 hex digits of a SHA-256 over `parts` (each length-prefixed, so the split is unambiguous).
pub fn content_version(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
