//! Fixtures shared by the state machine tests.

use envoy_types::pb::google::protobuf::Any;

use crate::resource::{type_url, Resource};
use crate::snapshot::Snapshot;

pub const ECDS: &str = type_url::EXTENSION_CONFIG;
pub const CDS: &str = type_url::CLUSTER;

pub fn mk_resource(type_url: &str, name: &str, body: &str) -> Resource {
    Resource::new(
        name,
        Any {
            type_url: type_url.to_string(),
            value: body.as_bytes().to_vec(),
        },
    )
}

/// A snapshot of ECDS resources `(name, body)`.
pub fn mk_snapshot(revision: u64, filters: &[(&str, &str)]) -> std::sync::Arc<Snapshot> {
    let resources = filters
        .iter()
        .map(|(name, body)| mk_resource(ECDS, name, body))
        .collect();
    match Snapshot::new(revision, [(ECDS.to_string(), resources)]) {
        Ok(snapshot) => std::sync::Arc::new(snapshot),
        Err(error) => unreachable!("fixture snapshot is consistent: {error}"),
    }
}
