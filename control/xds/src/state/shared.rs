//! Replicas over etcd: each replica shares its sidecars (status and mesh endpoint) as rows
//! `<replica>/<node>` (`weft serve` keeps them in etcd under the replica's lease, see
//! `weft_etcd::shared`), and takes every other replica's rows into its index. So a sidecar
//! connected to any replica is listed by all of them, counted by an apply's wait for
//! acknowledgements through any of them, and its endpoint is in every sidecar's EDS; a
//! replica's death leaves its rows (endpoints included) until its lease lapses, and a
//! sidecar that reconnected elsewhere meanwhile is the same endpoint, so it keeps its place.

use super::XdsState;
use crate::event::Nack;
use crate::mesh::MeshEndpoint;
use crate::sidecar::{NodeKey, SidecarGroup, SidecarStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One sidecar as the replica it is connected to shares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedSidecar {
    pub node_id: String,
    pub namespace: String,
    pub service: String,
    pub version: String,
    pub inbound_address: Option<String>,
    pub connected: bool,
    pub protocol: String,
    pub synced_revision: Option<u64>,
    pub modules: BTreeMap<String, String>,
    pub current_nack: Option<Nack>,
    pub nack_count: u64,
    /// Its mesh endpoint (`ip`, `port`), while registered.
    pub endpoint: Option<(String, u32)>,
    /// Unix ms its stream to that replica opened: of two connected rows, the newer wins.
    pub since_ms: u64,
    /// The replica: taken from the row's key, never from its body.
    #[serde(skip)]
    pub replica: String,
}

impl SharedSidecar {
    fn key(&self) -> NodeKey {
        NodeKey {
            id: self.node_id.clone(),
            namespace: self.namespace.clone(),
            service: self.service.clone(),
        }
    }

    pub(crate) fn endpoint(&self) -> Option<MeshEndpoint> {
        let (ip, port) = self.endpoint.clone()?;
        Some(MeshEndpoint {
            group: SidecarGroup::new(&self.namespace, &self.service, &self.version),
            ip,
            port,
        })
    }

    fn status(&self) -> SidecarStatus {
        SidecarStatus {
            node_id: self.node_id.clone(),
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            version: self.version.clone(),
            inbound_address: self.inbound_address.clone(),
            connected: self.connected,
            protocol: if self.protocol == "delta" {
                "delta"
            } else {
                "sotw"
            },
            synced_revision: self.synced_revision,
            acked: BTreeMap::new(),
            modules: Arc::new(self.modules.clone()),
            current_nack: self.current_nack.clone(),
            last_nack: None,
            nack_count: self.nack_count,
            last_nack_at_ms: None,
            filters: None,
            filters_mismatch: None,
            replica: Some(self.replica.clone()),
        }
    }

    /// Of two rows of one sidecar, the one to believe: connected first, then the newest.
    fn better_than(&self, other: &Self) -> bool {
        (self.connected, self.since_ms) > (other.connected, other.since_ms)
    }
}

/// A row's name: the node key, escaped so that no `/` of a node id makes another path.
pub fn row_name(key: &NodeKey) -> String {
    let escape = weft_store::shared::key_segment;
    format!(
        "{}/{}/{}",
        escape(&key.namespace),
        escape(&key.service),
        escape(&key.id)
    )
}

/// This server's sidecars, with those other replicas hold in their stead: a remote row
/// stands for a sidecar this server does not hold, or holds disconnected while it is
/// connected there (it moved).
pub(super) fn with_remote(
    mut local: BTreeMap<NodeKey, SidecarStatus>,
    remote: &BTreeMap<NodeKey, SharedSidecar>,
) -> Vec<SidecarStatus> {
    for (key, row) in remote {
        let moved = local.get(key).is_none_or(|s| !s.connected && row.connected);
        if moved {
            local.insert(key.clone(), row.status());
        }
    }
    local.into_values().collect()
}

// === impl XdsState ===

impl XdsState {
    /// Names this server as one replica of several (its sidecars' `replica`).
    pub fn set_replica(&self, id: String) {
        self.lock().replica = Some(id);
    }

    /// Bumped whenever a sidecar's status changes (here or, through the rows, elsewhere).
    pub fn status_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.status_changed.subscribe()
    }

    /// This server's sidecars as rows: `row_name` -> [`SharedSidecar`] (JSON).
    pub fn shared_rows(&self) -> BTreeMap<String, Vec<u8>> {
        let inner = self.lock();
        inner
            .sidecars
            .iter()
            .filter_map(|(key, status)| {
                let endpoint = inner
                    .registrations
                    .get(key)
                    .and_then(|(_, endpoint, _)| endpoint.clone())
                    .map(|e| (e.ip, e.port));
                let row = SharedSidecar {
                    node_id: status.node_id.clone(),
                    namespace: status.namespace.clone(),
                    service: status.service.clone(),
                    version: status.version.clone(),
                    inbound_address: status.inbound_address.clone(),
                    connected: status.connected,
                    protocol: status.protocol.to_string(),
                    synced_revision: status.synced_revision,
                    modules: (*status.modules).clone(),
                    current_nack: status.current_nack.clone(),
                    nack_count: status.nack_count,
                    endpoint,
                    since_ms: inner.since.get(key).copied().unwrap_or(0),
                    replica: String::new(),
                };
                Some((row_name(key), serde_json::to_vec(&row).ok()?))
            })
            .collect()
    }

    /// Takes every replica's rows (`<replica>/<row name>` -> JSON); `live`: the replicas
    /// registered now (a row of a replica that is gone shows its sidecar disconnected, its
    /// endpoint kept until the row's lease lapses). Republishes when endpoints changed.
    pub fn set_remote_rows(
        self: &Arc<Self>,
        rows: &BTreeMap<String, Vec<u8>>,
        live: &BTreeSet<String>,
    ) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let remote = remote_view(
            inner.replica.as_deref(),
            rows,
            live,
            &mut inner.remote_parsed,
        );
        if remote == inner.remote {
            return;
        }
        let endpoints = |r: &BTreeMap<NodeKey, SharedSidecar>| -> BTreeSet<MeshEndpoint> {
            r.values().filter_map(SharedSidecar::endpoint).collect()
        };
        let moved = endpoints(&remote) != endpoints(&inner.remote);
        inner.remote = remote;
        if moved {
            self.publish_soon(inner);
        }
        drop(guard);
        self.status_changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Rows as last parsed, by row name, with the bytes they were parsed from: every change of
/// any row hands a replica the whole set again (one sidecar's ACK rewrites its row, so an
/// apply changes them all, one by one), and only rows whose bytes moved are parsed again.
/// A row that does not parse is kept as `None`, so it is warned about once.
#[derive(Debug, Default)]
pub(crate) struct ParsedRows(BTreeMap<String, (Vec<u8>, Option<SharedSidecar>)>);

impl ParsedRows {
    /// `rows` parsed, reusing what is held for bytes that did not change; rows no longer in
    /// `rows` are forgotten.
    fn update(&mut self, rows: &BTreeMap<String, Vec<u8>>) {
        self.0.retain(|name, _| rows.contains_key(name));
        for (name, body) in rows {
            if self.0.get(name).is_some_and(|(held, _)| held == body) {
                continue;
            }
            let row = match serde_json::from_slice::<SharedSidecar>(body) {
                Ok(row) => Some(row),
                Err(error) => {
                    tracing::warn!(row = %name, %error, "skipping a sidecar row another replica wrote");
                    None
                }
            };
            self.0.insert(name.clone(), (body.clone(), row));
        }
    }
}

/// Other replicas' rows, one per sidecar (the one to believe); rows that do not parse are
/// skipped with a warning naming their key.
fn remote_view(
    me: Option<&str>,
    rows: &BTreeMap<String, Vec<u8>>,
    live: &BTreeSet<String>,
    parsed: &mut ParsedRows,
) -> BTreeMap<NodeKey, SharedSidecar> {
    parsed.update(rows);
    let mut out: BTreeMap<NodeKey, SharedSidecar> = BTreeMap::new();
    for (name, (_, row)) in &parsed.0 {
        let Some((replica, _)) = name.split_once('/') else {
            continue;
        };
        if Some(replica) == me {
            continue;
        }
        let Some(row) = row else { continue };
        let mut row = row.clone();
        row.replica = replica.to_string();
        row.connected &= live.contains(replica);
        let key = row.key();
        if out.get(&key).is_none_or(|held| row.better_than(held)) {
            out.insert(key, row);
        }
    }
    out
}

#[cfg(test)]
mod tests;
