//! Resources as the xDS protocol carries them: a type URL, a name, an opaque `Any` body and a
//! content version, so a connection can tell what changed without decoding anything.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use prost::bytes::Bytes;
use prost::Message;
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
    /// The body as one entry of a SotW `DiscoveryResponse` (field 2: tag, length, `Any`),
    /// encoded once: every stream's response carries these very bytes (D102).
    pub entry: Bytes,
}

// === impl Resource ===

impl Resource {
    pub fn new(name: impl Into<String>, body: Any) -> Self {
        let version = content_version(&[body.type_url.as_bytes(), &body.value]);
        let mut entry = Vec::with_capacity(body.encoded_len() + 8);
        prost::encoding::message::encode(RESOURCES_FIELD, &body, &mut entry);
        Self {
            name: name.into(),
            version,
            body: Arc::new(body),
            entry: Bytes::from(entry),
        }
    }
}

/// Resource entries this large or larger go out as shared chunks (EDS of busy services);
/// smaller ones are copied into their response.
pub const SHARED_ENTRY: usize = 16 * 1024;

/// `DiscoveryResponse.resources`.
const RESOURCES_FIELD: u32 = 2;
/// `DiscoveryResponse.version_info`, `.type_url`, `.nonce`.
const VERSION_INFO_FIELD: u32 = 1;
const TYPE_URL_FIELD: u32 = 4;
const NONCE_FIELD: u32 = 5;

/// A state-of-the-world `DiscoveryResponse` for one stream: its own small fields, and the
/// resources as the snapshot holds them, whose wire encoding ([`Resource::entry`]) is shared
/// by every stream they are sent to. 10,000 sidecars waiting for the same 90 KB of
/// endpoints hold one copy of it, not 10,000 (D102).
#[derive(Clone, Debug, PartialEq)]
pub struct SotwResponse {
    pub version_info: String,
    pub type_url: String,
    pub nonce: String,
    /// Shared with every stream whose subscription selects the same resources.
    pub resources: Arc<[Resource]>,
}

impl SotwResponse {
    /// The response as one gRPC length-prefixed message, in chunks: the 5-byte prefix with
    /// this response's own fields, then the resources' entries (protobuf reads fields in any
    /// order and concatenates a repeated field's entries). An entry of at least
    /// [`SHARED_ENTRY`] bytes is its own chunk, the very bytes every stream sends; smaller
    /// ones are copied into the chunk before them, so a response of small resources is one
    /// chunk, written with one system call (HTTP/2 writes each large DATA frame on its own).
    /// `None` past gRPC's 4 GiB message limit.
    pub fn grpc_chunks(&self) -> Option<Vec<Bytes>> {
        let length = self
            .resources
            .iter()
            .try_fold(self.head_length(), |sum, r| sum.checked_add(r.entry.len()))?;
        let length = u32::try_from(length).ok()?;
        let copied: usize = self
            .resources
            .iter()
            .map(|r| r.entry.len())
            .take_while(|n| *n < SHARED_ENTRY)
            .sum();
        let mut current = Vec::with_capacity(5 + self.head_length() + copied);
        // Byte 0: not compressed; bytes 1-4: the message length, big-endian.
        current.push(0);
        current.extend_from_slice(&length.to_be_bytes());
        for (field, value) in self.head_fields() {
            prost::encoding::string::encode(field, value, &mut current);
        }
        let mut chunks = Vec::new();
        for resource in self.resources.iter() {
            if resource.entry.len() < SHARED_ENTRY {
                current.extend_from_slice(&resource.entry);
            } else {
                if !current.is_empty() {
                    chunks.push(Bytes::from(std::mem::take(&mut current)));
                }
                chunks.push(resource.entry.clone());
            }
        }
        if !current.is_empty() {
            chunks.push(Bytes::from(current));
        }
        Some(chunks)
    }

    /// `version_info`, `type_url`, `nonce` as prost writes them: absent when empty.
    fn head_fields(&self) -> impl Iterator<Item = (u32, &String)> {
        [
            (VERSION_INFO_FIELD, &self.version_info),
            (TYPE_URL_FIELD, &self.type_url),
            (NONCE_FIELD, &self.nonce),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
    }

    fn head_length(&self) -> usize {
        self.head_fields()
            .map(|(field, value)| prost::encoding::string::encoded_len(field, value))
            .sum()
    }

    /// The protobuf message these chunks encode.
    pub fn to_message(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: self.version_info.clone(),
            resources: self.resources.iter().map(|r| (*r.body).clone()).collect(),
            type_url: self.type_url.clone(),
            nonce: self.nonce.clone(),
            ..Default::default()
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

#[cfg(test)]
mod tests;
