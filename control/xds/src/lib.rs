//! weft's xDS server.
//!
//! - [`resource`] and [`snapshot`]: resources keyed by type URL and name, with content
//!   versions; a snapshot is checked for consistency before it is published;
//! - [`sotw`] and [`delta`]: one ADS stream as a sans-IO state machine (requests, ACKs,
//!   NACKs, nonces, versions, subscriptions), unit-tested case by case;
//! - [`state`]: the latest snapshot per node group, published through `tokio::sync::watch`
//!   so each connection reads the newest one at its own pace and a slow sidecar holds no
//!   one back;
//! - [`server`]: the thin tonic ADS service, a `select!` loop around the state machines.
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod catch_panic;
pub mod delta;
pub mod ecds;
pub mod event;
pub mod gateway;
pub mod mesh;
pub mod mesh_routes;
pub mod metrics;
pub mod modules;
pub mod resource;
pub mod sds;
pub mod server;
pub mod snapshot;
pub mod sotw;
pub mod state;
pub mod suite_bootstrap;
pub mod tls;

#[cfg(test)]
mod test_support;

pub use ecds::{FailureMode, FilterSpec, ModuleSource, SUITE_INBOUND, SUITE_OUTBOUND};
pub use event::{Event, Nack};
pub use mesh::{CertSource, MeshEndpoint, MeshService, MeshTls, StaticService};
pub use modules::{WasmModule, WasmModules};
pub use resource::{type_url, Resource};
pub use server::{serve, serve_with, serve_with_tls};
pub use snapshot::{Snapshot, SnapshotError};
pub use state::{
    check_node, NodeIdentity, NodeKey, Refused, SidecarGroup, SidecarStatus, StreamLimits,
    XdsSettings, XdsState,
};
pub use tls::XdsTls;
