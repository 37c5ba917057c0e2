// Over 400 lines: every operation on the index (register, record, expire, refuse, publish) shares its one lock discipline; the refusal log is the next to move out.
//! The xDS index: what the control plane wants each group of sidecars to run, who is
//! connected, and what each sidecar acknowledged or refused. One mutex guards the inputs;
//! every change rebuilds the snapshots and publishes them through one `watch` channel per
//! group, so connections read the newest snapshot at their own pace. SVIDs are signed with
//! that mutex released (see `crate::svids`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::ecds::{FilterSpec, ModuleSource};
use crate::event::Event;
use crate::group_snapshots::{build_snapshots, SnapshotInputs};
use crate::mesh::{MeshEndpoint, MeshIndex, MeshService, MeshTls, StaticService};
use crate::modules::WasmModules;
use crate::snapshot::Snapshot;
use crate::svids::{IdentityKey, SignRequest, Signed, SvidState};

pub use crate::group_snapshots::PublishError;

pub(crate) use crate::admission::truncated;
pub use crate::admission::{check_node, Refused, StreamLimits};
pub use crate::sidecar::{NodeIdentity, NodeKey, SidecarGroup, SidecarStatus};

type GroupKey = SidecarGroup;

/// Fixed settings of the xDS server.
#[derive(Clone, Debug)]
pub struct XdsSettings {
    pub module_source: ModuleSource,
    /// How long a sidecar's endpoint stays after its stream ends (it may just be reconnecting).
    pub grace: Duration,
    /// After a (re)start, CDS/EDS are not served for this long, so sidecars reconnecting
    /// after a control-plane restart can register before anyone is told the mesh; otherwise
    /// the first caller back would be sent a mesh without the others and drop their
    /// clusters. Filter configurations (ECDS) are served at once. Zero for a fresh mesh.
    pub mesh_warmup: Duration,
}

/// A stream the control plane refused (bad token, or a node claiming another identity).
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub node_id: String,
    /// `<namespace>/<service>` the node claimed.
    pub claimed: String,
    /// `<namespace>/<service>` of the token, when it verified.
    pub token_identity: Option<String>,
    /// `missing`, `malformed`, `bad_signature`, `expired`, `revoked` or `identity_mismatch`.
    pub reason: String,
    pub message: String,
    pub at_ms: u64,
    /// Logged at warn (repeats within a minute are logged at debug only).
    #[serde(skip)]
    pub logged: bool,
}

/// Counts of refused streams, shown by `GET /v1/sidecars` and `weft status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Refusals {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// The newest refusals, newest last.
    pub recent: VecDeque<Refusal>,
}

const RECENT_REFUSALS: usize = 32;
/// A sidecar joining a group that already runs changes only EDS (its endpoint), so that change
/// is published at most this often: a reconnect storm of N sidecars then rebuilds and pushes
/// the snapshots a few times instead of N times (Istio debounces pushes by 100 ms too).
const ENDPOINT_DEBOUNCE: Duration = Duration::from_millis(100);
const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;

#[derive(Default)]
pub(crate) struct Inner {
    /// The CA and join tokens; SDS secrets are served and tokens required when set.
    identity: Option<SvidState>,
    refusals: Refusals,
    revision: u64,
    filters: BTreeMap<GroupKey, Vec<FilterSpec>>,
    services: Vec<MeshService>,
    statics: Vec<StaticService>,
    /// mTLS on the mesh clusters, when the sidecars have certificate files.
    mesh_tls: Option<MeshTls>,
    modules: WasmModules,
    /// node -> (connection id, endpoint, connected).
    registrations: BTreeMap<NodeKey, (u64, Option<MeshEndpoint>, bool)>,
    /// By hash, not in order: every ACK of every stream finds its sidecar here, and a
    /// B-tree of 10,000 keys compared string by string cost an apply ~4 % of its CPU.
    /// Listings sort (`sidecars`).
    sidecars: HashMap<NodeKey, SidecarStatus>,
    groups: HashMap<GroupKey, watch::Sender<Arc<Snapshot>>>,
    /// Per group, bumped to make Envoy re-create filters after a refused module fetch.
    refresh: HashMap<GroupKey, u64>,
    /// CDS/EDS are published (the warm-up is over).
    mesh_ready: bool,
    next_connection: u64,
    /// A debounced publish is pending (see [`ENDPOINT_DEBOUNCE`]).
    publish_scheduled: bool,
    limits: StreamLimits,
    module_reload: ModuleReload,
    /// Replicas over etcd: this replica's id, when it is one (see `shared`).
    replica: Option<String>,
    /// Unix ms at which each registered sidecar's current stream opened.
    since: BTreeMap<NodeKey, u64>,
    /// Sidecars connected to other replicas, as they share them (see `shared`).
    remote: BTreeMap<NodeKey, shared::SharedSidecar>,
    /// Other replicas' rows as last parsed, by row name (see `shared::ParsedRows`).
    remote_parsed: shared::ParsedRows,
    /// How many of `sidecars` each identity (namespace, service) has: the identities
    /// present, without a pass over every sidecar at each connect.
    identities: BTreeMap<IdentityKey, usize>,
}

/// The outcome of the latest reload of the modules directory (`weft serve` on SIGHUP).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModuleReload {
    pub attempts: u64,
    /// Unix milliseconds of the latest attempt.
    pub last_at_ms: Option<u64>,
    /// Why the latest attempt was refused (the modules served did not change); `None` when
    /// it succeeded.
    pub last_error: Option<String>,
}

/// The shared state of the xDS server.
pub struct XdsState {
    settings: XdsSettings,
    inner: Mutex<Inner>,
    /// Bumped whenever a sidecar's status changes; `wait_synced` watches it.
    status_changed: watch::Sender<u64>,
    /// Pushes, ACKs, NACKs and push-to-ACK times (Prometheus, via the telemetry views).
    metrics: crate::metrics::XdsMetrics,
    /// Test hook: for each signing, whether the index lock was free (`try_lock` succeeded).
    #[cfg(test)]
    pub(crate) signed_unlocked: Mutex<Vec<bool>>,
}

// === impl XdsState ===

impl XdsState {
    pub fn new(settings: XdsSettings, modules: WasmModules) -> Arc<Self> {
        let (status_changed, _) = watch::channel(0);
        let mesh_ready = settings.mesh_warmup.is_zero();
        Arc::new(Self {
            settings,
            inner: Mutex::new(Inner {
                modules,
                mesh_ready,
                ..Default::default()
            }),
            status_changed,
            metrics: Default::default(),
            #[cfg(test)]
            signed_unlocked: Mutex::default(),
        })
    }

    pub fn settings(&self) -> &XdsSettings {
        &self.settings
    }

    /// Replaces the stream limits (defaults: [`StreamLimits::default`]); streams already open
    /// keep running.
    pub fn set_limits(&self, limits: StreamLimits) {
        self.lock().limits = limits;
    }

    pub fn limits(&self) -> StreamLimits {
        self.lock().limits.clone()
    }

    pub fn metrics(&self) -> &crate::metrics::XdsMetrics {
        &self.metrics
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes revision `revision`: the compiled filter configurations by sidecar group and
    /// the declared mesh services. Refused as a whole when any group's snapshot would be
    /// inconsistent; the previous revision then stays.
    pub fn set_config(
        &self,
        revision: u64,
        filters: BTreeMap<GroupKey, Vec<FilterSpec>>,
        services: Vec<MeshService>,
    ) -> Result<(), PublishError> {
        let mut inner = self.lock();
        let previous = (
            std::mem::replace(&mut inner.filters, filters),
            std::mem::replace(&mut inner.services, services),
            std::mem::replace(&mut inner.revision, revision),
        );
        if let Err(error) = self.publish(&mut inner) {
            (inner.filters, inner.services, inner.revision) = previous;
            return Err(error);
        }
        Ok(())
    }

    /// Ends the mesh warm-up (see [`XdsSettings::mesh_warmup`]): CDS/EDS go out.
    pub fn end_mesh_warmup(&self) {
        let mut inner = self.lock();
        if inner.mesh_ready {
            return;
        }
        inner.mesh_ready = true;
        if let Err(error) = self.publish(&mut inner) {
            tracing::error!(%error, "publishing the mesh after the warm-up");
        }
    }

    /// Replaces the static (outside the mesh) services.
    pub fn set_static_services(&self, statics: Vec<StaticService>) -> Result<(), PublishError> {
        let mut inner = self.lock();
        inner.statics = statics;
        self.publish(&mut inner)
    }

    /// Turns mesh mTLS on (or off with `None`) for every mesh cluster and republishes.
    pub fn set_mesh_tls(&self, tls: Option<MeshTls>) -> Result<(), PublishError> {
        let mut inner = self.lock();
        inner.mesh_tls = tls;
        self.publish(&mut inner)
    }

    /// Turns the CA on: every group's snapshot carries its identity's SDS secrets (`default`,
    /// `ROOTCA`) and every ADS stream must present a join token for its identity.
    pub fn set_identity(&self, authority: Arc<weft_ca::Identity>) -> Result<(), PublishError> {
        let present = inner_identities(&self.lock());
        let mut identity = SvidState::new(authority);
        let signed = identity
            .due(&present, false, unix_ms())
            .map(|request| self.sign(request));
        let mut inner = self.lock();
        // Sidecars that left meanwhile lose theirs; those that came are signed just below.
        identity.install(signed, &inner_identities(&inner), unix_ms());
        inner.identity = Some(identity);
        let published = self.publish(&mut inner);
        drop(inner);
        self.issue_missing();
        published
    }

    /// The CA and tokens, when on.
    pub fn identity(&self) -> Option<Arc<weft_ca::Identity>> {
        self.lock()
            .identity
            .as_ref()
            .map(|i| Arc::clone(&i.authority))
    }

    /// Renews SVIDs past half their lifetime or signed by a root that no longer signs, and
    /// picks up trust-bundle changes (root rotation); republishes when anything changed.
    /// Called on a timer by the server.
    /// Also signs for identities whose issue failed before. Signs with the lock released.
    pub fn refresh_identities(&self) {
        self.sign_due(true);
    }

    /// Signs for registered identities without an SVID (a sidecar that registered while
    /// the lock was released for signing, or whose issue failed) and republishes.
    fn issue_missing(&self) {
        self.sign_due(false);
    }

    /// Takes what is due under the lock (`renewals`: SVIDs past half their lifetime or
    /// signed by a root that no longer signs too), signs without it, re-takes it, installs
    /// what is still wanted and republishes when anything changed.
    fn sign_due(&self, renewals: bool) {
        let request = {
            let inner = self.lock();
            let present = inner_identities(&inner);
            let Some(identity) = inner.identity.as_ref() else {
                return;
            };
            identity.due(&present, renewals, unix_ms())
        };
        if request.is_none() && !renewals {
            return;
        }
        let signed = request.map(|request| self.sign(request));
        let mut inner = self.lock();
        let present = inner_identities(&inner);
        let Some(identity) = inner.identity.as_mut() else {
            return;
        };
        if identity.install(signed, &present, unix_ms()) {
            if let Err(error) = self.publish(&mut inner) {
                tracing::error!(%error, "publishing renewed certificates");
            }
        }
    }

    /// Signs; never called with the index lock held (the test hook checks it).
    fn sign(&self, request: SignRequest) -> Signed {
        #[cfg(test)]
        {
            let unlocked = self.inner.try_lock().is_ok();
            self.signed_unlocked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(unlocked);
        }
        request.sign()
    }

    /// Counts and logs a refused stream.
    pub(crate) fn refused(&self, refusal: Refusal) {
        let mut inner = self.lock();
        let refusals = &mut inner.refusals;
        // Envoy retries a refused stream every 0.1-0.5 s: every attempt is counted, but the
        // same refusal of the same node is logged at warn once a minute.
        let repeated = refusals.recent.iter().rev().any(|r| {
            r.node_id == refusal.node_id
                && r.reason == refusal.reason
                && refusal.at_ms.saturating_sub(r.at_ms) < REFUSAL_LOG_INTERVAL_MS
                && r.logged
        });
        let refusal = Refusal {
            logged: !repeated,
            ..refusal
        };
        if repeated {
            tracing::debug!(node = %refusal.node_id, reason = %refusal.reason, "refused an xDS stream again");
        } else {
            tracing::warn!(
                node = %refusal.node_id,
                claimed = %refusal.claimed,
                token_identity = refusal.token_identity.as_deref().unwrap_or("-"),
                reason = %refusal.reason,
                message = %refusal.message,
                "refused an xDS stream"
            );
        }
        refusals.total = refusals.total.saturating_add(1);
        *refusals
            .by_reason
            .entry(refusal.reason.clone())
            .or_default() += 1;
        if refusals.recent.len() == RECENT_REFUSALS {
            refusals.recent.pop_front();
        }
        refusals.recent.push_back(refusal);
    }

    pub fn refusals(&self) -> Refusals {
        self.lock().refusals.clone()
    }

    /// Replaces the served modules and republishes (filter resources carry their hashes).
    pub fn set_modules(&self, modules: WasmModules) -> Result<(), PublishError> {
        let mut inner = self.lock();
        let previous = std::mem::replace(&mut inner.modules, modules);
        if let Err(error) = self.publish(&mut inner) {
            inner.modules = previous;
            return Err(error);
        }
        Ok(())
    }

    /// A reload of the modules directory was refused: the served modules stay as they are.
    pub fn module_reload_refused(&self, error: String) {
        let mut inner = self.lock();
        let reload = &mut inner.module_reload;
        reload.attempts = reload.attempts.saturating_add(1);
        reload.last_at_ms = Some(unix_ms());
        reload.last_error = Some(error);
    }

    /// Replaces the served modules after a reload of the modules directory
    /// ([`XdsState::set_modules`], counted as a reload attempt).
    pub fn reload_modules(&self, modules: WasmModules) -> Result<(), PublishError> {
        let result = self.set_modules(modules);
        let mut inner = self.lock();
        let reload = &mut inner.module_reload;
        reload.attempts = reload.attempts.saturating_add(1);
        reload.last_at_ms = Some(unix_ms());
        reload.last_error = result.as_ref().err().map(ToString::to_string);
        result
    }

    pub fn module_reload(&self) -> ModuleReload {
        self.lock().module_reload.clone()
    }

    /// Every served module: name, SHA-256, signer.
    pub fn served_modules(&self) -> Vec<crate::modules::ServedModule> {
        self.lock().modules.summary()
    }

    /// The module with this name, for the HTTP handler.
    pub fn module(&self, name: &str) -> Option<crate::modules::WasmModule> {
        self.lock().modules.get(name).cloned()
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Every sidecar: this server's, and those other replicas share (see `shared`).
    pub fn sidecars(&self) -> Vec<SidecarStatus> {
        let inner = self.lock();
        let local = inner.sidecars.iter().map(|(key, status)| {
            let mut status = status.clone();
            let group = SidecarGroup::new(&status.namespace, &status.service, &status.version);
            status.check_filters(inner.filters.get(&group).map(Vec::as_slice));
            status.replica.clone_from(&inner.replica);
            (key.clone(), status)
        });
        shared::with_remote(local.collect(), &inner.remote)
    }

    /// The current snapshot of a group (built on demand).
    pub fn snapshot(&self, group: &GroupKey) -> Arc<Snapshot> {
        let mut inner = self.lock();
        self.subscribe_locked(&mut inner, group).borrow().clone()
    }

    /// Waits until `want` connected sidecars (all connected ones when `None`) run `revision`
    /// or `timeout` passes; returns the final statuses.
    pub async fn wait_synced(
        &self,
        revision: u64,
        want: Option<usize>,
        timeout: Duration,
    ) -> Vec<SidecarStatus> {
        let mut changed = self.status_changed.subscribe();
        let now = tokio::time::Instant::now();
        // A timeout past the clock's range waits a year (for ever, in practice).
        let deadline = now
            .checked_add(timeout)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(now);
        loop {
            let sidecars = self.sidecars();
            let connected: Vec<&SidecarStatus> = sidecars.iter().filter(|s| s.connected).collect();
            let synced = connected
                .iter()
                .filter(|s| s.synced_revision.is_some_and(|r| r >= revision))
                .count();
            if synced >= want.unwrap_or(connected.len()) {
                return sidecars;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return sidecars,
            }
        }
    }

    /// A stream identified its node: registers it and returns its group's snapshots and a
    /// connection id for [`XdsState::disconnected`]; refused beyond the stream and group
    /// limits (see [`StreamLimits`]).
    pub(crate) fn connected(
        self: &Arc<Self>,
        identity: &NodeIdentity,
        protocol: &'static str,
    ) -> Result<(u64, watch::Receiver<Arc<Snapshot>>), Refused> {
        let group = identity.group();
        let key = identity.key();
        let identity_key: IdentityKey = (identity.namespace.clone(), identity.service.clone());
        // A new identity's SVID is signed before registering, with the lock released, so the
        // group's first snapshot carries it.
        let request = {
            let inner = self.lock();
            admit(&inner, &key, &group)?;
            inner
                .identity
                .as_ref()
                .filter(|svids| !svids.has(&identity_key))
                .map(|svids| SignRequest::one(Arc::clone(&svids.authority), identity_key.clone()))
        };
        let signed = request.map(|request| self.sign(request));
        let mut inner = self.lock();
        // Re-checked: the lock was released.
        admit(&inner, &key, &group)?;
        // The group's snapshot already exists and speaks for registered sidecars (certificates
        // included): this sidecar can have it at once.
        let group_runs = inner.groups.contains_key(&group)
            && inner.sidecars.values().any(|s| {
                s.namespace == group.namespace
                    && s.service == group.service
                    && s.version == group.version
            });
        inner.next_connection = inner.next_connection.wrapping_add(1);
        let connection = inner.next_connection;
        let endpoint = identity.inbound.as_ref().map(|(ip, port)| MeshEndpoint {
            group: identity.group(),
            ip: ip.clone(),
            port: *port,
        });
        let endpoint_changed = inner
            .registrations
            .insert(key.clone(), (connection, endpoint.clone(), true))
            .and_then(|(_, previous, _)| previous)
            != endpoint;
        let status = SidecarStatus {
            node_id: identity.id.clone(),
            namespace: identity.namespace.clone(),
            service: identity.service.clone(),
            version: identity.version.clone(),
            inbound_address: identity
                .inbound
                .as_ref()
                .map(|(ip, port)| format!("{ip}:{port}")),
            connected: true,
            protocol,
            synced_revision: None,
            acked: BTreeMap::new(),
            modules: Arc::default(),
            current_nack: None,
            last_nack: None,
            nack_count: 0,
            last_nack_at_ms: None,
            filters: identity.filters.clone(),
            filters_mismatch: None,
            replica: None,
        };
        inner.since.insert(key.clone(), unix_ms());
        let previous = inner.sidecars.insert(key.clone(), status);
        if previous.is_none() {
            *inner.identities.entry(identity_key.clone()).or_default() += 1;
        }
        if let (Some(previous), Some(status)) = (previous, inner.sidecars.get_mut(&key)) {
            // NACK history survives reconnects.
            status.last_nack = previous.last_nack;
            status.nack_count = previous.nack_count;
            status.last_nack_at_ms = previous.last_nack_at_ms;
        }
        if inner.identity.is_some() {
            let present = inner_identities(&inner);
            if let Some(svids) = inner.identity.as_mut() {
                svids.install(signed, &present, unix_ms());
            }
        }
        // Still none (the CA was replaced meanwhile, or the issue failed): signed again below.
        let unsigned = inner
            .identity
            .as_ref()
            .is_some_and(|svids| !svids.has(&identity_key));
        let receiver = self.subscribe_locked(&mut inner, &group);
        if !group_runs {
            if let Err(error) = self.publish(&mut inner) {
                tracing::error!(%error, "publishing after a sidecar connected");
            }
        } else if endpoint_changed {
            self.publish_soon(&mut inner);
        }
        drop(inner);
        if unsigned {
            self.issue_missing();
        }
        self.status_changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok((connection, receiver))
    }

    /// Publishes within [`ENDPOINT_DEBOUNCE`]; changes meanwhile ride along.
    fn publish_soon(self: &Arc<Self>, inner: &mut Inner) {
        if inner.publish_scheduled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if let Err(error) = self.publish(inner) {
                tracing::error!(%error, "publishing a sidecar's endpoint");
            }
            return;
        };
        inner.publish_scheduled = true;
        let state = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(ENDPOINT_DEBOUNCE).await;
            let mut inner = state.lock();
            inner.publish_scheduled = false;
            if let Err(error) = state.publish(&mut inner) {
                tracing::error!(%error, "publishing sidecars' endpoints");
            }
        });
    }

    /// Re-issues a group's filter resources with a new module URL (see
    /// [`crate::ecds::extension_config`]): used after a sidecar NACKed them.
    pub(crate) fn refresh_group(&self, group: &GroupKey) {
        let mut inner = self.lock();
        if !inner.filters.contains_key(group) {
            return;
        }
        let refresh = inner.refresh.entry(group.clone()).or_default();
        *refresh = refresh.wrapping_add(1);
        if let Err(error) = self.publish(&mut inner) {
            tracing::error!(%error, "publishing a refresh");
        }
    }

    /// Records what a connection's state machine reported; `synced`: the revision it
    /// acknowledged in full, and the modules that revision runs on it.
    pub(crate) fn record(
        &self,
        node: &NodeKey,
        events: Vec<Event>,
        synced: Option<(u64, Arc<BTreeMap<String, String>>)>,
    ) {
        if events.is_empty() && synced.is_none() {
            return;
        }
        let node_id = node.id.as_str();
        let mut inner = self.lock();
        let Some(status) = inner.sidecars.get_mut(node) else {
            return;
        };
        for event in events {
            match event {
                Event::Acked { type_url, version } => {
                    status.acked.insert(type_url, version);
                }
                Event::Nacked(nack) => {
                    tracing::warn!(node = node_id, type_url = %nack.type_url, message = %nack.message, "NACK");
                    status.nack_count = status.nack_count.saturating_add(1);
                    status.last_nack_at_ms = Some(unix_ms());
                    status.current_nack = Some(nack.clone());
                    status.last_nack = Some(nack);
                }
            }
        }
        if let Some((revision, modules)) = synced {
            status.synced_revision = Some(revision);
            status.current_nack = None;
            status.modules = modules;
        }
        drop(inner);
        self.status_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A stream ended: the sidecar is shown disconnected at once and its endpoint removed
    /// after the grace period unless it reconnected meanwhile.
    pub(crate) fn disconnected(self: &Arc<Self>, node: &NodeKey, connection: u64) {
        {
            let mut inner = self.lock();
            match inner.registrations.get_mut(node) {
                Some(entry) if entry.0 == connection => entry.2 = false,
                _ => return,
            }
            if let Some(status) = inner.sidecars.get_mut(node) {
                status.connected = false;
            }
        }
        self.status_changed.send_modify(|n| *n = n.wrapping_add(1));
        let state = Arc::clone(self);
        let node = node.clone();
        let grace = self.settings.grace;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                state.expire(&node, connection);
            });
        }
    }

    fn expire(&self, node: &NodeKey, connection: u64) {
        let mut inner = self.lock();
        let group = match inner.registrations.get(node) {
            Some((c, _, false)) if *c == connection => inner
                .sidecars
                .get(node)
                .map(|s| SidecarGroup::new(&s.namespace, &s.service, &s.version)),
            _ => return,
        };
        inner.registrations.remove(node);
        if inner.sidecars.remove(node).is_some() {
            let identity = (node.namespace.clone(), node.service.clone());
            if let Some(count) = inner.identities.get_mut(&identity) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    inner.identities.remove(&identity);
                }
            }
        }
        inner.since.remove(node);
        // A group no policy declares lives only while a sidecar of it is registered, so
        // sidecars cycling through made-up versions leave nothing behind.
        if let Some(group) = group {
            let in_use = inner.sidecars.values().any(|s| {
                s.namespace == group.namespace
                    && s.service == group.service
                    && s.version == group.version
            });
            if !in_use && !inner.filters.contains_key(&group) {
                inner.groups.remove(&group);
                inner.refresh.remove(&group);
            }
        }
        if let Err(error) = self.publish(&mut inner) {
            tracing::error!(%error, "publishing after a sidecar left");
        }
        drop(inner);
        self.status_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe_locked(
        &self,
        inner: &mut Inner,
        group: &GroupKey,
    ) -> watch::Receiver<Arc<Snapshot>> {
        inner
            .groups
            .entry(group.clone())
            .or_insert_with(|| watch::channel(Arc::new(Snapshot::default())).0)
            .subscribe()
    }

    /// Rebuilds every group's snapshot; publishes only when all are consistent.
    fn publish(&self, inner: &mut Inner) -> Result<(), PublishError> {
        // A sidecar that moved between replicas has the same endpoint on both: one entry.
        let endpoints: BTreeSet<MeshEndpoint> = inner
            .registrations
            .values()
            .filter_map(|(_, endpoint, _)| endpoint.clone())
            .chain(
                inner
                    .remote
                    .values()
                    .filter_map(shared::SharedSidecar::endpoint),
            )
            .collect();
        let mesh = inner.mesh_ready.then(|| {
            MeshIndex::new(
                &inner.services,
                &endpoints,
                &inner.statics,
                inner.mesh_tls.as_ref(),
            )
        });
        let keys: BTreeSet<GroupKey> = inner
            .groups
            .keys()
            .cloned()
            .chain(inner.filters.keys().cloned())
            .collect();
        // Certificates only for groups with a registered sidecar (connected, or in its grace).
        let subscribed: BTreeSet<GroupKey> = inner
            .sidecars
            .values()
            .map(|s| SidecarGroup::new(&s.namespace, &s.service, &s.version))
            .collect();
        let mut secrets = BTreeMap::new();
        if let Some(identity) = inner.identity.as_ref() {
            for group in keys.iter().filter(|g| subscribed.contains(*g)) {
                secrets.insert(group.clone(), identity.secrets(group));
            }
        }
        let built = build_snapshots(
            keys,
            &SnapshotInputs {
                revision: inner.revision,
                filters: &inner.filters,
                modules: &inner.modules,
                module_source: &self.settings.module_source,
                refresh: &inner.refresh,
                mesh: mesh.as_ref(),
                secrets: &secrets,
            },
        )?;
        for (group, snapshot) in built {
            let sender = inner
                .groups
                .entry(group)
                .or_insert_with(|| watch::channel(Arc::new(Snapshot::default())).0);
            sender.send_if_modified(|current| {
                if **current == snapshot {
                    return false;
                }
                *current = Arc::new(snapshot);
                true
            });
        }
        Ok(())
    }
}

/// Refuses a registration beyond the limits: with the CA on, streams per identity and
/// undeclared groups per identity; always, undeclared groups in total. A node re-registering
/// under its own key (a reconnect) does not count against itself.
fn admit(inner: &Inner, key: &NodeKey, group: &GroupKey) -> Result<(), Refused> {
    let limits = &inner.limits;
    let authenticated = inner.identity.is_some();
    let same_identity =
        |ns: &str, svc: &str| ns == key.namespace.as_str() && svc == key.service.as_str();
    if authenticated {
        let open = inner
            .registrations
            .iter()
            .filter(|(k, (_, _, connected))| {
                *connected && *k != key && same_identity(&k.namespace, &k.service)
            })
            .count();
        if open >= limits.max_streams_per_identity {
            return Err(Refused::new(
                "too_many_streams",
                tonic::Code::ResourceExhausted,
                format!(
                    "{}/{} already has {open} open streams (the limit)",
                    key.namespace, key.service
                ),
            ));
        }
    }
    if inner.groups.contains_key(group) || inner.filters.contains_key(group) {
        return Ok(());
    }
    let undeclared = || {
        inner
            .groups
            .keys()
            .filter(|g| !inner.filters.contains_key(*g))
    };
    let mine = undeclared()
        .filter(|g| same_identity(&g.namespace, &g.service))
        .count();
    if authenticated && mine >= limits.max_groups_per_identity {
        return Err(Refused::new(
            "too_many_groups",
            tonic::Code::ResourceExhausted,
            format!(
                "{}/{} already runs {mine} versions no policy declares (the limit); {group} refused",
                key.namespace, key.service
            ),
        ));
    }
    let total = undeclared().count();
    if total >= limits.max_undeclared_groups {
        return Err(Refused::new(
            "too_many_groups",
            tonic::Code::ResourceExhausted,
            format!("{total} sidecar groups no policy declares (the limit); {group} refused"),
        ));
    }
    Ok(())
}

/// (namespace, service) of every registered sidecar.
fn inner_identities(inner: &Inner) -> BTreeSet<IdentityKey> {
    debug_assert_eq!(
        inner.identities.keys().cloned().collect::<BTreeSet<_>>(),
        inner
            .sidecars
            .keys()
            .map(|k| (k.namespace.clone(), k.service.clone()))
            .collect::<BTreeSet<_>>(),
        "the identity counts follow the sidecars"
    );
    inner.identities.keys().cloned().collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

mod shared;
pub use shared::SharedSidecar;

#[cfg(test)]
mod tests;
