//! The audit log: `<data-dir>/audit.log`, one JSON object per line, appended and fsync'ed
//! before the answer leaves (for every non-GET call, allowed or refused). With replicas, one
//! shared log (`audit/<time>-<unique>` entries in etcd) that every replica appends to and any
//! replica lists.
//!
//! A call that passed the checks is written twice, under one `id`: a [`STARTED`] entry before
//! it runs (a call whose entry cannot be written does not run, D111) and its outcome after.
//! A listing shows one entry per call: the outcome, or the started entry of a call whose
//! outcome was never written (still running, or the server stopped or failed to write it).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use weft_store::SharedState;

/// The shared directory of audit entries.
pub const SHARED_AUDIT: &str = "audit";

pub const AUDIT_FILE: &str = "audit.log";
/// The outcome of the entry written before a call runs.
pub const STARTED: &str = "started";
/// A query returns at most this many entries (the newest).
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub time_unix_ms: u64,
    /// `operator:<name>`, or `anonymous` when no valid credential came.
    pub principal: String,
    pub source: String,
    /// `POST /api/v1/apply`.
    pub route: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// `allowed`, `refused` (401/403/415/421), `failed` (any other non-2xx), or [`STARTED`]
    /// (written before the call ran; listed only while no outcome follows it).
    pub outcome: String,
    /// The resulting policy version of a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The call's id, shared by its started entry and its outcome (refusals have none: they
    /// are written once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `entries` with each started entry left out when an outcome with its id follows it.
fn one_per_call(entries: Vec<AuditEntry>) -> Vec<AuditEntry> {
    let finished: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| e.outcome != STARTED)
        .filter_map(|e| e.id.clone())
        .collect();
    entries
        .into_iter()
        .filter(|e| e.outcome != STARTED || !e.id.as_ref().is_some_and(|id| finished.contains(id)))
        .collect()
}

pub struct AuditLog {
    path: PathBuf,
    sink: Sink,
}

enum Sink {
    File(Mutex<std::fs::File>),
    Shared(Arc<dyn SharedState>),
}

impl AuditLog {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(AUDIT_FILE);
        let (file, warning) = weft_store::private::open_append(&path)?;
        if let Some(warning) = warning {
            tracing::warn!(%warning, "the audit log was readable by others");
        }
        Ok(Self {
            path,
            sink: Sink::File(Mutex::new(file)),
        })
    }

    /// The audit log of every replica, in shared state.
    pub fn open_shared(state: Arc<dyn SharedState>) -> Self {
        Self {
            path: PathBuf::from(state.describe(SHARED_AUDIT)),
            sink: Sink::Shared(state),
        }
    }

    /// Appends `entry` and fsyncs (etcd: once a quorum has it).
    pub fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        let file = match &self.sink {
            Sink::Shared(state) => {
                return state
                    .append(SHARED_AUDIT, line)
                    .map_err(std::io::Error::other)
            }
            Sink::File(file) => file,
        };
        line.push(b'\n');
        let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Entries at or after `since_ms` by `principal` (either filter optional), the newest
    /// [`MAX_AUDIT_ENTRIES`], oldest first. A line that does not parse (a torn last write) is
    /// skipped.
    pub fn query(
        &self,
        since_ms: Option<u64>,
        principal: Option<&str>,
    ) -> std::io::Result<Vec<AuditEntry>> {
        let wanted = |entry: &AuditEntry| {
            !(since_ms.is_some_and(|s| entry.time_unix_ms < s)
                || principal.is_some_and(|p| {
                    entry.principal != p && entry.principal != format!("operator:{p}")
                }))
        };
        if let Sink::Shared(state) = &self.sink {
            // The newest entries of every replica, then the filters.
            let entries = state
                .list(SHARED_AUDIT, MAX_AUDIT_ENTRIES)
                .map_err(std::io::Error::other)?;
            return Ok(one_per_call(
                entries
                    .iter()
                    .filter_map(|(_, bytes)| serde_json::from_slice::<AuditEntry>(bytes).ok())
                    .filter(wanted)
                    .collect(),
            ));
        }
        let file = std::fs::File::open(&self.path)?;
        let mut out = std::collections::VecDeque::new();
        for line in std::io::BufReader::new(file).split(b'\n') {
            let Ok(entry) = serde_json::from_slice::<AuditEntry>(&line?) else {
                continue;
            };
            if !wanted(&entry) {
                continue;
            }
            if out.len() == MAX_AUDIT_ENTRIES {
                out.pop_front();
            }
            out.push_back(entry);
        }
        Ok(one_per_call(out.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for (t, who) in [(1, "operator:a"), (2, "anonymous"), (3, "operator:a")] {
            log.append(&AuditEntry {
                time_unix_ms: t,
                principal: who.into(),
                source: "127.0.0.1:1".into(),
                route: "POST /api/v1/apply".into(),
                status: 200,
                outcome: "allowed".into(),
                version: Some(t),
                reason: None,
                id: None,
            })
            .unwrap();
        }
        assert_eq!(log.query(None, None).unwrap().len(), 3);
        assert_eq!(log.query(Some(2), None).unwrap().len(), 2);
        assert_eq!(log.query(None, Some("a")).unwrap().len(), 2);
        assert_eq!(log.query(Some(2), Some("operator:a")).unwrap().len(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(AUDIT_FILE))
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        assert_eq!(log.query(None, None).unwrap().len(), 3);
    }

    #[test]
    fn a_call_is_listed_once_and_an_unfinished_one_as_started() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let entry = |id: &str, outcome: &str| AuditEntry {
            time_unix_ms: 1,
            principal: "operator:a".into(),
            source: String::new(),
            route: "POST /api/v1/apply".into(),
            status: if outcome == STARTED { 0 } else { 200 },
            outcome: outcome.into(),
            version: None,
            reason: None,
            id: Some(id.into()),
        };
        for e in [
            entry("a", STARTED),
            entry("b", STARTED),
            entry("a", "allowed"),
            entry("c", STARTED),
        ] {
            log.append(&e).unwrap();
        }
        let listed: Vec<(String, String)> = log
            .query(None, None)
            .unwrap()
            .into_iter()
            .map(|e| (e.id.unwrap_or_default(), e.outcome))
            .collect();
        let pair = |id: &str, outcome: &str| (id.to_string(), outcome.to_string());
        assert_eq!(
            listed,
            [pair("b", STARTED), pair("a", "allowed"), pair("c", STARTED)]
        );
        let raw = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(raw.lines().count(), 4, "every write is kept in the file");
    }
}
