//! The incremental (Delta) ADS connection as a sans-IO state machine.
//!
//! Per type URL it keeps what Envoy subscribed to (names, or wildcard) and which version of
//! each resource Envoy has, and sends only differences: changed or new resources in
//! `resources`, vanished ones in `removed_resources`. Rules (xDS protocol):
//!
//! - the first request of a type with no names subscribes to the wildcard; `*` subscribes to
//!   it and unsubscribing `*` leaves it;
//! - `initial_resource_versions` (a reconnect) says what Envoy already has: equal versions are
//!   not resent, and names it has that no longer exist are removed;
//! - subscription changes apply whatever the nonce; every response is ACKed or NACKed on its
//!   own (unlike SotW), so each outstanding nonce is tracked; a NACK is recorded, and nothing
//!   more is sent for the type until `resend_nacked`;
//! - an explicitly subscribed name that does not exist is reported in `removed_resources`
//!   once, so Envoy does not wait for it;
//! - a type the snapshot does not hold is not answered at all (see
//!   [`crate::snapshot::Snapshot::has_type`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};

use crate::event::{reply_event, Answered, Event};
use crate::snapshot::Snapshot;
use crate::sotw::ProtocolError;

#[derive(Clone, Debug, Default)]
struct DeltaWatch {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What Envoy has (or has been sent): name -> version. An empty version marks a name we
    /// told Envoy does not exist.
    known: BTreeMap<String, String>,
    /// Responses not yet ACKed or NACKed: nonce -> the names they carried.
    /// Responses awaiting a reply, by nonce: the names they carried and their revision.
    pending: BTreeMap<String, (Vec<String>, u64)>,
    /// Names carried by NACKed responses, to send again on `resend_nacked(true)`.
    refused: BTreeSet<String>,
    /// A response was sent at least once.
    answered: bool,
    nacked: bool,
    /// See the SotW machine: nothing is sent after a NACK until `resend_nacked`.
    held: bool,
}

/// One ADS stream, incremental.
#[derive(Debug)]
pub struct DeltaConnection {
    node: Option<Node>,
    snapshot: Arc<Snapshot>,
    watches: BTreeMap<String, DeltaWatch>,
    next_nonce: u64,
    events: Vec<Event>,
}

// === impl DeltaConnection ===

impl DeltaConnection {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            node: None,
            snapshot,
            watches: BTreeMap::new(),
            next_nonce: 0,
            events: Vec::new(),
        }
    }

    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    pub fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ProtocolError> {
        if request.type_url.is_empty() {
            return Err(ProtocolError::MissingTypeUrl);
        }
        if self.node.is_none() {
            self.node = request.node.clone();
        }
        let first = !self.watches.contains_key(&request.type_url);
        let watch = self.watches.entry(request.type_url.clone()).or_default();
        if first {
            watch.known = request
                .initial_resource_versions
                .clone()
                .into_iter()
                .collect();
            watch.wildcard = request.resource_names_subscribe.is_empty();
        }
        let replied = match request.response_nonce.as_str() {
            "" => None,
            nonce => watch.pending.remove(nonce),
        };
        if let Some((names, revision)) = replied {
            if request.error_detail.is_some() {
                watch.nacked = true;
                watch.held = true;
                watch.refused.extend(names);
            } else {
                // An ACK of another response does not fix what was refused.
                watch.nacked = !watch.refused.is_empty();
            }
            // Delta's version is the revision of the response answered (not the newest).
            let answered = Answered {
                version: revision.to_string(),
                revision,
            };
            self.events.push(reply_event(
                &request.type_url,
                &request.response_nonce,
                request.error_detail.as_ref(),
                answered,
            ));
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                watch.wildcard = true;
            } else {
                watch.names.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                watch.wildcard = false;
            } else {
                watch.names.remove(name);
            }
            // Forget it so a later subscribe sends it again.
            watch.known.remove(name);
        }
        if !watch.wildcard {
            let names = watch.names.clone();
            watch.known.retain(|name, _| names.contains(name));
        }
        let response = self.respond(&request.type_url);
        Ok(match response {
            Some(response) => vec![response],
            // The first request is always answered, so Envoy ends its initial fetch.
            None if first
                && self.snapshot.has_type(&request.type_url)
                && !self.watches.get(&request.type_url).is_some_and(|w| w.held) =>
            {
                self.empty_response(&request.type_url).into_iter().collect()
            }
            None => Vec::new(),
        })
    }

    /// A new snapshot: the differences for every subscribed type.
    pub fn handle_update(&mut self, snapshot: Arc<Snapshot>) -> Vec<DeltaDiscoveryResponse> {
        self.snapshot = snapshot;
        let types: Vec<String> = self.watches.keys().cloned().collect();
        types.iter().filter_map(|t| self.respond(t)).collect()
    }

    /// Sends again what Envoy refused last (see [`crate::sotw::SotwConnection::resend_nacked`]).
    /// With `force` false it only releases the hold (changes since are sent).
    pub fn resend_nacked(&mut self, force: bool) -> Vec<DeltaDiscoveryResponse> {
        let mut types = Vec::new();
        for (type_url, watch) in &mut self.watches {
            if watch.held {
                watch.held = false;
                let refused = std::mem::take(&mut watch.refused);
                if force {
                    for name in &refused {
                        watch.known.remove(name);
                    }
                }
                types.push(type_url.clone());
            }
        }
        types.iter().filter_map(|t| self.respond(t)).collect()
    }

    pub fn is_synced(&self) -> bool {
        self.watches
            .values()
            .all(|w| w.pending.is_empty() && !w.nacked && w.answered)
    }

    pub fn snapshot_revision(&self) -> u64 {
        self.snapshot.revision
    }

    /// The modules (name -> SHA-256) of the ECDS resources this stream has sent and not
    /// removed: what the sidecar runs once [`DeltaConnection::is_synced`].
    pub fn running_modules(&self) -> Arc<BTreeMap<String, String>> {
        let Some(watch) = self
            .watches
            .get(crate::resource::type_url::EXTENSION_CONFIG)
        else {
            return Arc::default();
        };
        self.snapshot.modules_of(
            watch
                .known
                .iter()
                .filter(|(_, version)| !version.is_empty())
                .map(|(name, _)| name.as_str()),
        )
    }

    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn respond(&mut self, type_url: &str) -> Option<DeltaDiscoveryResponse> {
        let snapshot = Arc::clone(&self.snapshot);
        let watch = self.watches.get_mut(type_url)?;
        if watch.held || !snapshot.has_type(type_url) {
            return None;
        }
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        let selected: Vec<String> = if watch.wildcard {
            snapshot
                .resources(type_url)
                .map(|r| r.name.clone())
                .chain(watch.names.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            watch.names.iter().cloned().collect()
        };
        for name in &selected {
            match snapshot.get(type_url, name) {
                Some(resource) => {
                    if watch.known.get(name) != Some(&resource.version) {
                        watch.known.insert(name.clone(), resource.version.clone());
                        resources.push(DeltaResource {
                            name: name.clone(),
                            version: resource.version.clone(),
                            resource: Some((*resource.body).clone()),
                            ..Default::default()
                        });
                    }
                }
                None => {
                    // Tell Envoy once that the name does not exist (or no longer does).
                    if watch.known.get(name).is_none_or(|v| !v.is_empty()) {
                        watch.known.insert(name.clone(), String::new());
                        removed.push(name.clone());
                    }
                }
            }
        }
        // Names Envoy has under a wildcard that vanished from the snapshot.
        let gone: Vec<String> = watch
            .known
            .iter()
            .filter(|(name, v)| {
                !v.is_empty() && snapshot.get(type_url, name).is_none() && !selected.contains(name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            watch.known.remove(&name);
            removed.push(name);
        }
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        Some(self.send(type_url, resources, removed))
    }

    fn empty_response(&mut self, type_url: &str) -> Option<DeltaDiscoveryResponse> {
        self.watches.get(type_url)?;
        Some(self.send(type_url, Vec::new(), Vec::new()))
    }

    fn send(
        &mut self,
        type_url: &str,
        resources: Vec<DeltaResource>,
        removed_resources: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        if let Some(watch) = self.watches.get_mut(type_url) {
            let names = resources
                .iter()
                .map(|r| r.name.clone())
                .chain(removed_resources.iter().cloned())
                .collect();
            watch
                .pending
                .insert(nonce.clone(), (names, self.snapshot.revision));
            watch.answered = true;
            watch.nacked = false;
        }
        DeltaDiscoveryResponse {
            system_version_info: self.snapshot.revision.to_string(),
            resources,
            type_url: type_url.to_string(),
            removed_resources,
            nonce,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests;
