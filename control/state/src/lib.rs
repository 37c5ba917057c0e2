//! The control plane's state: the one place policy changes go through.
//!
//! [`ControlPlane`] turns a request (documents to apply, a document to delete, a version to
//! roll back to) into a checked plan -- parse, validate each document, validate the resulting
//! set, compile it and run every filter's parser over the output -- and only then appends it
//! to the [`Store`]. Writers are serialised; each new version is published as a [`Snapshot`]
//! on a `tokio::sync::watch` channel, which is what the xDS server subscribes to.
//!
//! Everything here is synchronous (store appends `fsync`); async callers use
//! `spawn_blocking`.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use weft_compile::{Compiled, SidecarChange};
use weft_policy::set::DocDiff;
use weft_policy::{DocKey, Document, FieldError, Kind, Limits, PolicyError, PolicySet, References};
use weft_store::{NewRecord, Operation, Record, RecordSummary, Store, StoreError};

/// One published version: its documents and every sidecar's compiled configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// 0 before the first apply.
    pub version: u64,
    pub documents: PolicySet,
    pub compiled: Compiled,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("request is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{} validation error(s)", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller may not change a document the request touches (see [`Guard`]).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(StoreError),
}

/// Decides, under the writer lock, whether a change may touch these documents (an
/// apply's documents, the deleted one, or what a rollback would change); `Err` names the
/// refused document and why. The REST API passes the caller's namespaces here.
pub type Guard<'a> = &'a (dyn Fn(&[DocKey]) -> Result<(), String> + Sync);

/// The guard that allows everything.
pub fn unguarded(_: &[DocKey]) -> Result<(), String> {
    Ok(())
}

impl From<PolicyError> for StateError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::TooLarge { size, limit } => Self::TooLarge { size, limit },
            PolicyError::Invalid(list) => Self::Invalid(list),
        }
    }
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::Conflict(e.to_string()),
            e => Self::Store(e),
        }
    }
}

/// What a change did (or, for a dry run or diff, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The version now current (for a dry run: the version the change was planned on).
    pub version: u64,
    /// False when nothing changed (no version is created) or for a dry run.
    pub created: bool,
    pub documents: DocDiff,
    pub sidecars: Vec<SidecarChange>,
}

struct Plan {
    next: PolicySet,
    labels: std::collections::BTreeMap<DocKey, String>,
}

pub struct ControlPlane {
    store: Arc<dyn Store>,
    limits: Limits,
    writer: Mutex<()>,
    tx: watch::Sender<Arc<Snapshot>>,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Loads the latest stored version and compiles it.
    pub fn open(store: Arc<dyn Store>, limits: Limits) -> Result<Self, StateError> {
        let snapshot = match store.latest()? {
            Some(r) => Snapshot {
                version: r.version,
                compiled: weft_compile::compile(&r.documents).map_err(StateError::Invalid)?,
                documents: r.documents,
            },
            None => Snapshot {
                version: 0,
                documents: PolicySet::new(),
                compiled: Compiled::new(),
            },
        };
        let (tx, _) = watch::channel(Arc::new(snapshot));
        Ok(Self {
            store,
            limits,
            writer: Mutex::new(()),
            tx,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// The current snapshot (through `borrow`) and every one published after it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Parses and validates `input` against the current set without changing anything.
    pub fn validate(&self, input: &[u8]) -> Result<Vec<Document>, StateError> {
        let docs = self.load(input)?;
        let plan = self.plan_apply(&self.snapshot().documents, &docs);
        self.check(&plan)?;
        Ok(docs)
    }

    /// What applying `input` would change, per document and per sidecar.
    pub fn diff(&self, input: &[u8]) -> Result<Outcome, StateError> {
        self.apply(input, "", true, None)
    }

    /// Applies every document of `input` (create or replace), atomically: all or nothing.
    pub fn apply(
        &self,
        input: &[u8],
        author: &str,
        dry_run: bool,
        expect: Option<u64>,
    ) -> Result<Outcome, StateError> {
        self.apply_guarded(input, author, dry_run, expect, &unguarded)
    }

    /// [`ControlPlane::apply`], refused whole unless `guard` allows every document of `input`.
    pub fn apply_guarded(
        &self,
        input: &[u8],
        author: &str,
        dry_run: bool,
        expect: Option<u64>,
        guard: Guard<'_>,
    ) -> Result<Outcome, StateError> {
        let docs = self.load(input)?;
        let keys: Vec<DocKey> = docs.iter().map(Document::key).collect();
        guard(&keys).map_err(StateError::Forbidden)?;
        let _writer = self.lock();
        let current = self.current(dry_run)?;
        expect_version(expect, current.version)?;
        let plan = self.plan_apply(&current.documents, &docs);
        self.commit(&current, plan, author, Operation::Apply, dry_run)
    }

    pub fn delete(&self, key: &DocKey, author: &str, dry_run: bool) -> Result<Outcome, StateError> {
        self.delete_guarded(key, author, dry_run, &unguarded)
    }

    /// [`ControlPlane::delete`], refused unless `guard` allows `key`.
    pub fn delete_guarded(
        &self,
        key: &DocKey,
        author: &str,
        dry_run: bool,
        guard: Guard<'_>,
    ) -> Result<Outcome, StateError> {
        guard(std::slice::from_ref(key)).map_err(StateError::Forbidden)?;
        let _writer = self.lock();
        let current = self.current(dry_run)?;
        let mut next = current.documents.clone();
        if next.remove(key).is_none() {
            return Err(StateError::NotFound(key.to_string()));
        }
        let plan = Plan {
            next,
            labels: Default::default(),
        };
        self.commit(
            &current,
            plan,
            author,
            Operation::Delete {
                document: key.to_string(),
            },
            dry_run,
        )
    }

    /// A new version whose documents equal those of `version`.
    pub fn rollback(
        &self,
        version: u64,
        author: &str,
        dry_run: bool,
    ) -> Result<Outcome, StateError> {
        self.rollback_guarded(version, author, dry_run, &unguarded)
    }

    /// [`ControlPlane::rollback`], refused unless `guard` allows every document the rollback
    /// would add, change or remove (decided under the writer lock, against the current set).
    pub fn rollback_guarded(
        &self,
        version: u64,
        author: &str,
        dry_run: bool,
        guard: Guard<'_>,
    ) -> Result<Outcome, StateError> {
        let target = self
            .store
            .get(version)?
            .ok_or_else(|| StateError::NotFound(format!("version {version}")))?;
        let _writer = self.lock();
        let current = self.current(dry_run)?;
        guard(&changed_keys(&current.documents, &target.documents))
            .map_err(StateError::Forbidden)?;
        let plan = Plan {
            next: target.documents,
            labels: Default::default(),
        };
        self.commit(
            &current,
            plan,
            author,
            Operation::Rollback { to: version },
            dry_run,
        )
    }

    pub fn history(&self) -> Result<Vec<RecordSummary>, StateError> {
        Ok(self.store.history()?)
    }

    pub fn record(&self, version: u64) -> Result<Record, StateError> {
        self.store
            .get(version)?
            .ok_or_else(|| StateError::NotFound(format!("version {version}")))
    }

    /// Current documents, optionally of one kind and/or namespace.
    pub fn list(&self, kind: Option<Kind>, namespace: Option<&str>) -> Vec<Document> {
        self.snapshot()
            .documents
            .iter()
            .filter(|d| {
                kind.is_none_or(|k| d.kind() == k) && namespace.is_none_or(|n| d.namespace() == n)
            })
            .cloned()
            .collect()
    }

    pub fn get(&self, key: &DocKey) -> Result<Document, StateError> {
        self.snapshot()
            .documents
            .get(key)
            .cloned()
            .ok_or_else(|| StateError::NotFound(key.to_string()))
    }

    /// Catches up with a store other replicas append to: when its latest version is ahead
    /// of the published snapshot, loads and compiles that version and publishes it. Returns
    /// the version now published. A no-op for a store only this process writes.
    pub fn refresh(&self) -> Result<u64, StateError> {
        let _writer = self.lock();
        Ok(self.catch_up()?.version)
    }

    /// `Err(reason)` while the store has been unreachable for too long (`/healthz`).
    pub fn health(&self) -> Result<(), String> {
        self.store.health()
    }

    /// The snapshot a change is planned on (under the writer lock): caught up with the store
    /// for a real change, so a replica never plans on a version it has not seen yet; for a
    /// dry run, what is published (served even while the store is unreachable).
    fn current(&self, dry_run: bool) -> Result<Arc<Snapshot>, StateError> {
        if dry_run {
            return Ok(self.snapshot());
        }
        self.catch_up()
    }

    /// [`ControlPlane::refresh`] with the writer lock held.
    fn catch_up(&self) -> Result<Arc<Snapshot>, StateError> {
        let current = self.snapshot();
        match self.store.head()? {
            Some(head) if head > current.version => {}
            _ => return Ok(current),
        }
        let Some(record) = self.store.latest()? else {
            return Ok(current);
        };
        if record.version <= current.version {
            return Ok(current);
        }
        let compiled = weft_compile::compile(&record.documents).map_err(StateError::Invalid)?;
        let next = Arc::new(Snapshot {
            version: record.version,
            documents: record.documents,
            compiled,
        });
        self.tx.send_replace(Arc::clone(&next));
        Ok(next)
    }

    /// Parses `input`; a relative `expiry` becomes a time from now here, so the stored
    /// document (and a restarted control plane) keeps the same end.
    fn load(&self, input: &[u8]) -> Result<Vec<Document>, StateError> {
        let mut docs = weft_policy::load(input, &self.limits)?;
        weft_policy::expiry::resolve(&mut docs, weft_policy::expiry::now_unix_ms());
        Ok(docs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn plan_apply(&self, current: &PolicySet, docs: &[Document]) -> Plan {
        let mut next = current.clone();
        for d in docs {
            next.insert(d.clone());
        }
        Plan {
            next,
            labels: weft_policy::labels(docs),
        }
    }

    /// Set validation, then compilation and the filters' own parsers.
    fn check(&self, plan: &Plan) -> Result<Compiled, StateError> {
        let errors = weft_policy::validate_set(&plan.next, &plan.labels, References::Strict);
        if !errors.is_empty() {
            return Err(StateError::Invalid(errors));
        }
        let compiled = weft_compile::compile(&plan.next).map_err(StateError::Invalid)?;
        let errors = weft_compile::check(&compiled);
        if !errors.is_empty() {
            return Err(StateError::Invalid(errors));
        }
        Ok(compiled)
    }

    fn commit(
        &self,
        current: &Snapshot,
        plan: Plan,
        author: &str,
        operation: Operation,
        dry_run: bool,
    ) -> Result<Outcome, StateError> {
        let compiled = self.check(&plan)?;
        let documents = current.documents.diff(&plan.next);
        let sidecars = weft_compile::diff(&current.compiled, &compiled);
        if dry_run || documents.is_empty() {
            return Ok(Outcome {
                version: current.version,
                created: false,
                documents,
                sidecars,
            });
        }
        let record = self.store.append(NewRecord {
            parent: current.version,
            author: author.to_string(),
            operation,
            diff: documents.clone(),
            documents: plan.next.clone(),
        })?;
        self.tx.send_replace(Arc::new(Snapshot {
            version: record.version,
            documents: plan.next,
            compiled,
        }));
        Ok(Outcome {
            version: record.version,
            created: true,
            documents,
            sidecars,
        })
    }
}

/// The documents added, changed or removed going from `current` to `next`.
fn changed_keys(current: &PolicySet, next: &PolicySet) -> Vec<DocKey> {
    let mut keys: Vec<DocKey> = next
        .iter()
        .filter(|d| current.get(&d.key()) != Some(*d))
        .map(Document::key)
        .collect();
    keys.extend(current.keys().filter(|k| next.get(k).is_none()).cloned());
    keys
}

fn expect_version(expect: Option<u64>, current: u64) -> Result<(), StateError> {
    match expect {
        Some(v) if v != current => Err(StateError::Conflict(format!(
            "expected version {v}, current version is {current}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
