//! weft's xDS server.
//!
//! - [`resource`] and [`snapshot`]: resources keyed by type URL and name, with content
//!   versions; a snapshot is checked for consistency before it is published;
//! - [`ecds`], [`mesh`], [`mesh_routes`], [`sds`]: the resources themselves (filter entries,
//!   CDS/EDS/RDS, secrets); [`group_snapshots`]: a pure function from the state's inputs to
//!   each sidecar group's snapshot;
//! - [`sotw`] and [`delta`]: one ADS stream as a sans-IO state machine (requests, ACKs,
//!   NACKs, nonces, versions, subscriptions), unit-tested case by case;
//! - [`sidecar`]: the sidecar types (group, node key and identity, status), a leaf module;
//!   [`admission`]: the node check and stream limits every stream passes first;
//! - [`state`]: the latest snapshot per sidecar group, published through `tokio::sync::watch`
//!   so each connection reads the newest one at its own pace and a slow sidecar holds no
//!   one back, plus registrations, statuses and refusals;
//! - `svids`: the SVID per identity, signed with the state lock released;
//! - [`server`]: the thin tonic ADS service, a `select!` loop around the state machines
//!   and the sans-IO schedules of token checks (`token_watch`) and NACK retries (`nack_retry`).
//!
//! What each group is served is decided by `weft-translate` (policies → filter entries and
//! mesh services); this crate turns that into resources and serves them.
#![forbid(unsafe_code)]

pub mod admission;
pub mod ads_server;
pub mod bootstrap;
pub mod catch_panic;
pub mod delta;
pub mod ecds;
pub mod event;
pub mod gateway;
pub mod group_snapshots;
pub mod mesh;
pub mod mesh_routes;
pub mod metrics;
pub mod modules;
mod nack_retry;
pub mod resource;
pub mod sds;
pub mod server;
pub mod services;
pub mod sidecar;
pub mod snapshot;
pub mod sotw;
pub mod state;
mod stream;
pub mod suite_bootstrap;
mod svids;
pub mod tls;
mod token_watch;

#[cfg(test)]
mod test_support;

pub use ecds::{FailureMode, FilterSpec, ModuleSource, SUITE_INBOUND, SUITE_OUTBOUND};
pub use event::{Event, Nack};
pub use mesh::{CertSource, MeshEndpoint, MeshService, MeshTls, StaticService};
pub use modules::{ServedModule, WasmModule, WasmModules};
pub use resource::{type_url, Resource};
pub use server::{serve, serve_with, serve_with_tls};
pub use snapshot::{Snapshot, SnapshotError};
pub use state::{
    check_node, ModuleReload, NodeIdentity, NodeKey, Refused, SidecarGroup, SidecarStatus,
    StreamLimits, XdsSettings, XdsState,
};
pub use tls::XdsTls;
