//! Shared state beside the policy log: small documents replaced by compare-and-swap (the CA's
//! roots, the operators) and append-only directories of entries (join tokens, the audit log),
//! which every replica of a replicated store reads and writes (`weft-etcd` keeps them under
//! `<prefix>/state/`). The file store keeps these in files of its own (`weft-ca`,
//! `weft-api`); [`MemoryShared`] serves unit tests of the shared modes.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::StoreError;

/// One segment of a shared row's or document's name, escaped so that no `/` (or anything but
/// `[A-Za-z0-9._-]`) in a node id, service or version makes another path: each other byte as
/// `%XX`.
pub fn key_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One document as read: its bytes and the revision a later [`SharedState::write`] compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub bytes: Vec<u8>,
    /// Changes on every write of this document; never 0 for a present one.
    pub revision: i64,
}

/// Documents and entry directories every replica shares. Names are relative (`ca/mesh`,
/// `tokens/<id>`); an implementation puts them under its own prefix.
pub trait SharedState: Send + Sync {
    /// `name`, or `None` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `name` if its revision is still `expected` (0: it must not exist yet);
    /// `Ok(Some(new revision))` when written, `Ok(None)` when another writer moved it first.
    fn write(&self, name: &str, bytes: Vec<u8>, expected: i64) -> Result<Option<i64>, StoreError>;
    /// The newest `limit` entries of directory `dir` (`dir/<key>`), as (key, bytes), in key
    /// order.
    fn list(&self, dir: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Adds an entry to `dir` under a new key that sorts after the entries already there
    /// (time first, so entries of several replicas interleave by time).
    fn append(&self, dir: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Where `name` lives, for messages (`etcd key /weft/state/ca/mesh`).
    fn describe(&self, name: &str) -> String;
}

/// [`SharedState`] in memory, for tests.
#[derive(Default)]
pub struct MemoryShared {
    inner: Mutex<(i64, BTreeMap<String, Versioned>)>,
    /// Appends refused, as etcd refuses them without a quorum.
    refusing_appends: std::sync::atomic::AtomicBool,
}

impl MemoryShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, BTreeMap<String, Versioned>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuse appends from now on (`true`) with [`StoreError::Unavailable`], or take them
    /// again (`false`): a shared store that lost its quorum.
    pub fn refuse_appends(&self, refuse: bool) {
        self.refusing_appends
            .store(refuse, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every document and entry as stored (what a reader of the raw store would see).
    pub fn raw(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .1
            .iter()
            .map(|(k, v)| (k.clone(), v.bytes.clone()))
            .collect()
    }
}

impl SharedState for MemoryShared {
    fn read(&self, name: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().1.get(name).cloned())
    }

    fn write(&self, name: &str, bytes: Vec<u8>, expected: i64) -> Result<Option<i64>, StoreError> {
        let mut inner = self.lock();
        let current = inner.1.get(name).map_or(0, |v| v.revision);
        if current != expected {
            return Ok(None);
        }
        inner.0 += 1;
        let revision = inner.0;
        inner
            .1
            .insert(name.to_string(), Versioned { bytes, revision });
        Ok(Some(revision))
    }

    fn list(&self, dir: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = format!("{dir}/");
        let inner = self.lock();
        let all: Vec<(String, Vec<u8>)> = inner
            .1
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_string(), v.bytes.clone()))
            .collect();
        let skip = all.len().saturating_sub(limit);
        Ok(all.into_iter().skip(skip).collect())
    }

    fn append(&self, dir: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if self
            .refusing_appends
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Unavailable(
                "appends refused (no quorum)".into(),
            ));
        }
        let mut inner = self.lock();
        inner.0 += 1;
        let revision = inner.0;
        let key = format!("{dir}/{:020}-{revision:08}", crate::now_unix_ms());
        inner.1.insert(key, Versioned { bytes, revision });
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("shared document {name}")
    }
}
