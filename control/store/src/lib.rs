//! Versioned storage of policy sets.
//!
//! Every change (apply, delete, rollback) appends a [`Record`] holding the *full* document set
//! after the change, its author, time and a summary of what changed; versions count up from 1
//! without gaps. [`Store`] is the seam for a distributed implementation (etcd: a transaction
//! comparing the latest version key, which is what [`NewRecord::parent`] is for);
//! `weft-etcd`'s `EtcdStore` is that distributed implementation, for replicas;
//! [`FileStore`] is the embedded default (compacted into a snapshot record plus the tail;
//! [`verify`] and [`repair`] are the operator's offline tools) and [`MemoryStore`] serves tests.
#![forbid(unsafe_code)]

mod compact;
mod file;
mod log;
mod memory;
mod offline;
pub mod private;
pub mod shared;
pub mod time;

pub use file::{CompactReport, Compaction, FileStore, Recovery};
pub use log::{BadFrame, FrameInfo};
pub use memory::MemoryStore;
pub use offline::{repair, verify, Repair, Verification};
pub use shared::{MemoryShared, SharedState, Versioned};

use serde::{Deserialize, Serialize};
use weft_policy::set::DocDiff;
use weft_policy::PolicySet;

/// What produced a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Operation {
    Apply,
    Delete { document: String },
    Rollback { to: u64 },
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u64,
    pub author: String,
    pub time_unix_ms: u64,
    pub operation: Operation,
    pub diff: DocDiff,
    /// The whole set after this change.
    pub documents: PolicySet,
}

/// A record's metadata, for history listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSummary {
    pub version: u64,
    pub author: String,
    pub time_unix_ms: u64,
    pub operation: Operation,
    pub diff: DocDiff,
    pub documents: usize,
}

impl From<&Record> for RecordSummary {
    fn from(r: &Record) -> Self {
        Self {
            version: r.version,
            author: r.author.clone(),
            time_unix_ms: r.time_unix_ms,
            operation: r.operation.clone(),
            diff: r.diff.clone(),
            documents: r.documents.len(),
        }
    }
}

/// A change to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The version this change was computed from (0 = empty store). The append fails with
    /// [`StoreError::Conflict`] when the store has moved on, so no change is lost.
    pub parent: u64,
    pub author: String,
    pub operation: Operation,
    pub diff: DocDiff,
    pub documents: PolicySet,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another process")]
    Locked(String),
    #[error("corrupt store {path}: record #{index} (version {version}) at byte {offset}: {reason}; {}. \
             Nothing was dropped: see `weft store verify`, and `weft store repair --truncate-at {offset}` \
             to drop this record and every one after it", after_text(.valid_after))]
    CorruptRecord {
        path: String,
        index: usize,
        offset: u64,
        version: u64,
        reason: String,
        valid_after: Option<u64>,
    },
    #[error("repair refused: {0}")]
    Repair(String),
    #[error("version conflict: change computed from version {parent}, store is at {latest}")]
    Conflict { parent: u64, latest: u64 },
    #[error("store unusable after a failed write; restart to recover: {0}")]
    Poisoned(String),
    #[error("record encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// A shared store (etcd) cannot be reached: nothing was written, and the last version
    /// read keeps being served.
    #[error("store unavailable: {0}; changes are refused until it is reachable again, the last version keeps being served")]
    Unavailable(String),
    /// A shared store did not confirm a change in time: it may still commit it (etcd keeps
    /// a proposal it accepted), so the change is neither acknowledged nor known refused.
    #[error("store did not confirm the change: {0}; it may still be committed once the store recovers: check the history before retrying")]
    Unconfirmed(String),
    /// A record read from a shared store does not decode (or is not the version its key says).
    #[error("bad record {key} in the store: {reason}")]
    BadRecord { key: String, reason: String },
}

fn after_text(valid_after: &Option<u64>) -> String {
    match valid_after {
        Some(at) => format!("a valid record follows at byte {at}, so this is not a torn tail"),
        None => {
            "its bytes were written whole (the checksum matches), so this is not a torn tail".into()
        }
    }
}

/// Versioned storage. `append` returns only once the record is durable.
pub trait Store: Send + Sync {
    fn append(&self, record: NewRecord) -> Result<Record, StoreError>;
    fn latest(&self) -> Result<Option<Record>, StoreError>;
    fn get(&self, version: u64) -> Result<Option<Record>, StoreError>;
    fn history(&self) -> Result<Vec<RecordSummary>, StoreError>;

    /// The latest version as the store holds it *now*, for a store other processes append
    /// to too (etcd replicas); `None` (the default) for a store only this process writes,
    /// whose latest version is always the one it appended last.
    fn head(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// `Err(reason)` while the store has been unreachable for longer than its bound (the
    /// server's `/healthz` answers 503 with it); always `Ok` for a local store.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Builds the record `new` becomes on top of `latest` ([`StoreError::Conflict`] unless
/// `new.parent` is `latest`); every [`Store`] implementation appends through it.
pub fn next_record(latest: u64, new: NewRecord) -> Result<Record, StoreError> {
    if new.parent != latest {
        return Err(StoreError::Conflict {
            parent: new.parent,
            latest,
        });
    }
    Ok(Record {
        version: latest + 1,
        author: new.author,
        time_unix_ms: now_unix_ms(),
        operation: new.operation,
        diff: new.diff,
        documents: new.documents,
    })
}

#[cfg(test)]
mod tests;
