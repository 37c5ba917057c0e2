//! The state-of-the-world ADS connection as a sans-IO state machine.
//!
//! It is fed requests from Envoy ([`SotwConnection::handle_request`]) and new snapshots
//! ([`SotwConnection::handle_update`]) and answers with the responses to send. It keeps, per
//! type URL, what Envoy subscribed to, the last nonce and version sent, and the last version
//! acknowledged. Rules (xDS protocol):
//!
//! - the first request of a type is always answered, even when the client already has the
//!   version (it may be a new control plane instance after a restart);
//! - a request whose nonce is not the last one sent for its type is stale and ignored;
//! - a request with the current nonce is an ACK, or a NACK when it carries `error_detail`; a
//!   NACK is recorded and never answered by resending the same thing (that would loop);
//! - a changed subscription is answered with the newly selected resources;
//! - an empty subscription means all resources for CDS and LDS (wildcard), and `*` means all
//!   for any type;
//! - a new snapshot is sent for a type only when the selected resources changed, and not
//!   while the type's last response awaits its ACK (it goes with the ACK's answer);
//! - a type the snapshot does not hold is not answered at all (see [`Snapshot::has_type`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use crate::event::{reply_event, Answered, Event};
use crate::resource::{type_url::is_wildcard_type, SotwResponse};
use crate::snapshot::Snapshot;

/// A request the protocol does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("a request on an aggregated stream must name its type_url")]
    MissingTypeUrl,
}

/// One type's subscription on one stream.
#[derive(Clone, Debug, Default)]
struct Watch {
    /// `None`: wildcard.
    names: Option<BTreeSet<String>>,
    sent_version: Option<String>,
    /// The snapshot's version of this type (`Snapshot::type_version`) that `sent_version`
    /// was selected from, while the subscription stays the same: a snapshot with the same
    /// type version selects the same resources, so nothing is selected or hashed again.
    sent_basis: Option<String>,
    /// The snapshot revision of the last response sent.
    sent_revision: u64,
    sent_nonce: Option<String>,
    acked_version: Option<String>,
    /// The last response sent is neither ACKed nor NACKed yet.
    awaiting_reply: bool,
    /// The last response sent was NACKed.
    nacked: bool,
    /// After a NACK nothing more is sent for this type until [`SotwConnection::resend_nacked`]:
    /// a refusal may be transient (a module fetch in progress), and Envoy may accept a
    /// resend during that window without applying it.
    held: bool,
}

/// One ADS stream, state of the world.
#[derive(Debug)]
pub struct SotwConnection {
    node: Option<Node>,
    snapshot: Arc<Snapshot>,
    /// Per type URL; a handful, looked up by `==` (see `Snapshot`'s types).
    watches: Vec<(String, Watch)>,
    next_nonce: u64,
    events: Vec<Event>,
}

// === impl SotwConnection ===

impl SotwConnection {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            node: None,
            snapshot,
            watches: Vec::new(),
            next_nonce: 0,
            events: Vec::new(),
        }
    }

    /// The node of the first request that named one.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    pub fn handle_request(
        &mut self,
        request: DiscoveryRequest,
    ) -> Result<Vec<SotwResponse>, ProtocolError> {
        if request.type_url.is_empty() {
            return Err(ProtocolError::MissingTypeUrl);
        }
        if self.node.is_none() {
            self.node = request.node.clone();
        }
        let (index, first) = match self.watch_index(&request.type_url) {
            Some(index) => (index, false),
            None => {
                self.watches
                    .push((request.type_url.clone(), Watch::default()));
                (self.watches.len() - 1, true)
            }
        };
        let watch = &mut self.watches[index].1;
        if !first && watch.sent_nonce.as_deref() != Some(request.response_nonce.as_str()) {
            // Stale (or absent) nonce: Envoy has not seen our latest response yet; it will
            // answer that one.
            return Ok(Vec::new());
        }
        if !request.response_nonce.is_empty() {
            watch.awaiting_reply = false;
            let answered = Answered {
                version: match &request.error_detail {
                    Some(_) => watch.sent_version.clone().unwrap_or_default(),
                    None => request.version_info.clone(),
                },
                revision: watch.sent_revision,
            };
            if request.error_detail.is_some() {
                watch.nacked = true;
                watch.held = true;
            } else {
                watch.nacked = false;
                watch.acked_version = Some(request.version_info.clone());
            }
            self.events.push(reply_event(
                &request.type_url,
                &request.response_nonce,
                request.error_detail.as_ref(),
                answered,
            ));
        }
        let replied = !request.response_nonce.is_empty();
        let changed = !same_subscription(
            watch.names.as_ref(),
            &request.type_url,
            &request.resource_names,
        );
        if changed {
            watch.sent_basis = None;
            watch.names = subscription(&request.type_url, &request.resource_names);
        }
        if first || changed {
            Ok(self.respond(index, true).into_iter().collect())
        } else if replied {
            // What changed while the response was in flight goes now (see `respond`).
            Ok(self.respond(index, false).into_iter().collect())
        } else {
            Ok(Vec::new())
        }
    }

    /// A new snapshot: the responses for every subscribed type whose selection changed.
    pub fn handle_update(&mut self, snapshot: Arc<Snapshot>) -> Vec<SotwResponse> {
        self.snapshot = snapshot;
        (0..self.watches.len())
            .filter_map(|index| self.respond(index, false))
            .collect()
    }

    /// Sends again what Envoy refused last, for every type whose latest response was NACKed.
    ///
    /// Some refusals are transient: with `nack_on_code_cache_miss` Envoy refuses a wasm
    /// module it has not fetched yet and fetches it in the background, so the same
    /// configuration succeeds a moment later. The caller decides when (and how often) to retry.
    /// With `force` false it only releases the hold: a type is sent when its selection
    /// changed since the refused response.
    pub fn resend_nacked(&mut self, force: bool) -> Vec<SotwResponse> {
        let held: Vec<usize> = self
            .watches
            .iter_mut()
            .enumerate()
            .filter(|(_, (_, w))| w.held)
            .map(|(index, (_, w))| {
                w.held = false;
                index
            })
            .collect();
        held.into_iter()
            .filter_map(|index| self.respond(index, force))
            .collect()
    }

    /// Every subscribed type has acknowledged the latest response: the sidecar runs the
    /// current snapshot.
    pub fn is_synced(&self) -> bool {
        self.watches
            .iter()
            .map(|(_, w)| w)
            .all(|w| !w.awaiting_reply && !w.nacked && w.sent_nonce.is_some())
    }

    pub fn snapshot_revision(&self) -> u64 {
        self.snapshot.revision
    }

    /// The modules (name -> SHA-256) of the ECDS resources this stream selects in its
    /// snapshot: what the sidecar runs once [`SotwConnection::is_synced`].
    pub fn running_modules(&self) -> Arc<BTreeMap<String, String>> {
        let Some(index) = self.watch_index(crate::resource::type_url::EXTENSION_CONFIG) else {
            return Arc::default();
        };
        let watch = &self.watches[index].1;
        let selection = self.snapshot.selection(
            crate::resource::type_url::EXTENSION_CONFIG,
            watch.names.as_ref(),
        );
        self.snapshot.modules_of_selection(&selection)
    }

    fn watch_index(&self, type_url: &str) -> Option<usize> {
        self.watches.iter().position(|(t, _)| t == type_url)
    }

    /// ACKs and NACKs seen since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The response for `type_url` when its selection changed since the last one sent (or
    /// always with `force`). Unforced, nothing is sent while the last response of the type
    /// awaits its ACK: a sidecar slower than the snapshots then holds one response per type
    /// in flight rather than a queue of stale ones (each a copy of its resources), and gets
    /// the newest selection once it answers — go-control-plane's flow control.
    fn respond(&mut self, index: usize, force: bool) -> Option<SotwResponse> {
        let (type_url, watch) = self.watches.get_mut(index)?;
        let type_url = type_url.as_str();
        if watch.held || !self.snapshot.has_type(type_url) || (watch.awaiting_reply && !force) {
            return None;
        }
        let basis = self.snapshot.type_version(type_url);
        if !force && basis.is_some() && watch.sent_basis.as_deref() == basis {
            return None;
        }
        let basis = basis.map(str::to_string);
        let selection = self.snapshot.selection(type_url, watch.names.as_ref());
        let version = selection.version.clone();
        if !force && watch.sent_version.as_deref() == Some(version.as_str()) {
            watch.sent_basis = basis;
            return None;
        }
        watch.sent_basis = basis;
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        watch.sent_version = Some(version.clone());
        watch.sent_revision = self.snapshot.revision;
        watch.sent_nonce = Some(nonce.clone());
        watch.awaiting_reply = true;
        watch.nacked = false;
        Some(SotwResponse {
            version_info: version,
            resources: Arc::clone(&selection.resources),
            type_url: type_url.to_string(),
            nonce,
        })
    }
}

/// Whether `names` subscribe to exactly `current` (what [`subscription`] would make of
/// them), without building a set: an ACK repeats its stream's names, and every ACK of an
/// apply used to copy them into a new set to compare.
fn same_subscription(current: Option<&BTreeSet<String>>, type_url: &str, names: &[String]) -> bool {
    match current {
        None => is_wildcard(type_url, names),
        // Strictly ascending (as Envoy sends them): distinct, so equal iff in step.
        Some(set) if names.windows(2).all(|w| w[0] < w[1]) => {
            set.len() == names.len() && set.iter().zip(names).all(|(a, b)| a == b)
        }
        Some(set) => subscription(type_url, names).as_ref() == Some(set),
    }
}

/// Whether `names` subscribe to every resource of `type_url`: `*`, or an empty list on a
/// wildcard type.
fn is_wildcard(type_url: &str, names: &[String]) -> bool {
    names.iter().any(|n| n == "*") || (names.is_empty() && is_wildcard_type(type_url))
}

/// `None` (wildcard, see [`is_wildcard`]), else the set of `names`.
fn subscription(type_url: &str, names: &[String]) -> Option<BTreeSet<String>> {
    if is_wildcard(type_url, names) {
        None
    } else {
        Some(names.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests;
