//! The driver inside `weft serve`: every tick, one [`Controller`] per Rollout document of the
//! current policy version is fed the versions' telemetry, and its transitions are applied as
//! new policy versions authored `rollout/<name>` (through the same validation, compilation and
//! filter-parser checks as any `weft apply`, so a rollout can never leave a split the filter
//! would refuse).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_policy::Kind;
use weft_state::ControlPlane;
use weft_telemetry_plane::Telemetry;

use crate::events::EventLog;
use crate::machine::{
    Action, Command, CommandError, Controller, EventKind, Observation, Plan, Status,
};
use crate::split::{documents_for, stored_progress};

/// How often controllers are stepped (checks still happen once per rollout interval).
pub const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no rollout {0}")]
    NotFound(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot write the transition: {0}")]
    Write(String),
}

pub struct Rollouts {
    plane: Arc<ControlPlane>,
    telemetry: Arc<Telemetry>,
    controllers: Mutex<BTreeMap<String, Controller>>,
    /// After a refused write, a rollout waits one interval before trying again (no event
    /// storm from a rollout that cannot write).
    backoff: Mutex<BTreeMap<String, u64>>,
    pub events: EventLog,
}

// === impl Rollouts ===

impl Rollouts {
    pub fn new(plane: Arc<ControlPlane>, telemetry: Arc<Telemetry>, events: EventLog) -> Arc<Self> {
        Arc::new(Self {
            plane,
            telemetry,
            controllers: Mutex::new(BTreeMap::new()),
            backoff: Mutex::new(BTreeMap::new()),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Controller>> {
        self.controllers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Steps every rollout once (blocking: writes go to the store).
    pub fn tick(&self, now_ms: u64) {
        let mut controllers = self.lock();
        self.sync(&mut controllers, now_ms);
        let ids: Vec<String> = controllers.keys().cloned().collect();
        for id in ids {
            let Some(controller) = controllers.get_mut(&id) else {
                continue;
            };
            let plan = controller.plan().clone();
            let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            if backoff.get(&id).is_some_and(|until| now_ms < *until) {
                continue;
            }
            backoff.remove(&id);
            drop(backoff);
            let observation = self.observe(&plan);
            let actions = controller.step(now_ms, &observation);
            if !self.act(&plan, actions) {
                self.backoff
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, now_ms.saturating_add(plan.interval_ms));
            }
        }
    }

    /// Controllers follow the documents (a changed spec is a new generation) and adopt the
    /// progress the store holds.
    fn sync(&self, controllers: &mut BTreeMap<String, Controller>, now_ms: u64) {
        let snapshot = self.plane.snapshot();
        let plans: BTreeMap<String, Plan> = snapshot
            .documents
            .of_kind(Kind::Rollout)
            .filter_map(Plan::from_document)
            .map(|p| (p.id(), p))
            .collect();
        controllers.retain(|id, c| plans.get(id).is_some_and(|p| p == c.plan()));
        for (id, plan) in plans {
            let controller = controllers
                .entry(id)
                .or_insert_with(|| Controller::new(plan.clone()));
            controller.adopt(stored_progress(&snapshot.documents, &plan), now_ms);
        }
    }

    fn observe(&self, plan: &Plan) -> Observation {
        let mut totals = self
            .telemetry
            .version_totals(&plan.namespace, &plan.service);
        Observation {
            canary: totals.remove(&plan.canary).unwrap_or_default(),
            stable: totals.remove(&plan.stable).unwrap_or_default(),
        }
    }

    /// Writes transitions and records events; a refused write is recorded and the controller
    /// adopts the store's progress on the next tick. False when a write was refused.
    fn act(&self, plan: &Plan, actions: Vec<Action>) -> bool {
        let mut written = true;
        for action in actions {
            match action {
                Action::Record(event) => self.events.push(event),
                Action::Transition {
                    progress,
                    mut event,
                } => match self.write(plan, progress) {
                    Ok(version) => {
                        tracing::info!(rollout = %plan.id(), kind = ?event.kind, weight_bp = progress.weight_bp, version, "rollout transition");
                        event.version = Some(version);
                        self.events.push(event);
                    }
                    Err(reason) => {
                        tracing::warn!(rollout = %plan.id(), %reason, "rollout transition refused");
                        event.kind = EventKind::WriteFailed;
                        event.message = format!("{} (not written: {reason})", event.message);
                        self.events.push(event);
                        written = false;
                    }
                },
            }
        }
        written
    }

    fn write(&self, plan: &Plan, progress: crate::machine::Progress) -> Result<u64, String> {
        let snapshot = self.plane.snapshot();
        let docs = documents_for(&snapshot.documents, plan, progress).map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(&docs).map_err(|e| e.to_string())?;
        let author = format!("rollout/{}", plan.name);
        let outcome = self
            .plane
            .apply(&body, &author, false, Some(snapshot.version))
            .map_err(|e| match e {
                weft_state::StateError::Invalid(list) => list
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                e => e.to_string(),
            })?;
        Ok(outcome.version)
    }

    /// Every rollout's status.
    pub fn statuses(&self, now_ms: u64) -> Vec<Status> {
        let mut controllers = self.lock();
        self.sync(&mut controllers, now_ms);
        controllers.values().map(|c| c.status(now_ms)).collect()
    }

    /// An operator's command on `namespace/name`, written before this returns.
    pub fn command(&self, id: &str, command: Command, now_ms: u64) -> Result<Status, RuntimeError> {
        let mut controllers = self.lock();
        self.sync(&mut controllers, now_ms);
        let controller = controllers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let plan = controller.plan().clone();
        let actions = controller.command(now_ms, command)?;
        for action in &actions {
            if let Action::Transition { progress, .. } = action {
                if let Err(reason) = self.write(&plan, *progress) {
                    controller.adopt(
                        stored_progress(&self.plane.snapshot().documents, &plan),
                        now_ms,
                    );
                    return Err(RuntimeError::Write(reason));
                }
            }
        }
        for action in actions {
            let (Action::Transition { mut event, .. } | Action::Record(mut event)) = action;
            event.version = Some(self.plane.snapshot().version);
            self.events.push(event);
        }
        Ok(controller.status(now_ms))
    }

    /// Ticks until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {
                    let me = Arc::clone(&self);
                    if let Err(e) = tokio::task::spawn_blocking(move || me.tick(now_ms())).await {
                        tracing::error!(error = %e, "rollout tick failed");
                    }
                }
            }
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
