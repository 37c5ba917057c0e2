//! The embedded store: one append-only log file of checksummed frames ([`crate::log`]).
//!
//! An append writes the whole frame and `fsync`s the file before it returns; the directory is
//! `fsync`ed when the log is created or replaced, so the file itself survives a crash. On open
//! the log is replayed: a torn tail (an interrupted final append) is truncated and reported
//! in [`FileStore::recovery`]; damage with valid records after it refuses the open, naming
//! the record ([`StoreError::CorruptRecord`]). Versions must follow each other without gaps.
//!
//! Compaction rewrites the log as one snapshot frame (every version, each distinct document
//! once) through a temporary file, `fsync` and rename, so a crash leaves the old log or the
//! new one. It runs when the records appended since the last snapshot pass
//! [`Compaction::after_records`] or their bytes pass [`Compaction::after_bytes`], and on
//! demand ([`FileStore::compact`], `weft store compact`).

use crate::compact::{Compacted, SnapshotFrame};
use crate::log::{self, FrameInfo};
use crate::private::{create_file, open_append, private_dir, sync_parent};
use crate::{next_record, NewRecord, Record, RecordSummary, Store, StoreError};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(crate) const LOG_FILE: &str = "policy.log";
const LOCK_FILE: &str = "LOCK";
const COMPACT_FILE: &str = "policy.log.compact";

/// What opening the store had to repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Byte offset the log was truncated at.
    pub offset: u64,
    /// Bytes of the torn tail that were dropped.
    pub dropped_bytes: u64,
    pub reason: String,
}

/// When the log is compacted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Records appended since the last snapshot (or since the log began).
    pub after_records: usize,
    /// Bytes of those records.
    pub after_bytes: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            after_records: 1000,
            after_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactReport {
    pub versions: usize,
    pub documents: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    recovery: Option<Recovery>,
    warnings: Vec<String>,
    compaction: Compaction,
    /// Held for the store's lifetime: a second server on the same directory is refused.
    _lock: File,
}

#[derive(Debug)]
struct Inner {
    file: File,
    len: u64,
    records: Vec<Record>,
    /// Records and bytes appended after the snapshot (or since the log began).
    tail_records: usize,
    tail_bytes: u64,
    poisoned: Option<String>,
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Takes the directory's lock (mode 0600), refusing when another process holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::private::FILE_MODE)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.try_lock()
        .map_err(|_| StoreError::Locked(dir.display().to_string()))?;
    Ok(lock)
}

// === impl FileStore ===

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, replaying the log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Compaction::default())
    }

    /// [`FileStore::open`] with its own compaction thresholds.
    pub fn open_with(dir: &Path, compaction: Compaction) -> Result<Self, StoreError> {
        let mut warnings = Vec::new();
        warnings.extend(private_dir(dir).map_err(io(dir))?);
        let lock = lock_dir(dir)?;
        let path = dir.join(LOG_FILE);
        let created = !path.exists();
        let (mut file, warning) = open_append(&path).map_err(io(&path))?;
        warnings.extend(warning);
        if created {
            file.sync_all().map_err(io(&path))?;
            sync_parent(&path).map_err(io(dir))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let scan = log::scan(&bytes);
        let recovery = match scan.bad {
            None => None,
            Some(bad) if bad.is_torn_tail() => {
                file.set_len(scan.good_len).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                Some(Recovery {
                    offset: scan.good_len,
                    dropped_bytes: bytes.len() as u64 - scan.good_len,
                    reason: bad.reason,
                })
            }
            Some(bad) => {
                return Err(StoreError::CorruptRecord {
                    path: path.display().to_string(),
                    index: bad.index,
                    offset: bad.offset,
                    version: bad.version,
                    reason: bad.reason,
                    valid_after: bad.valid_after,
                })
            }
        };
        let (tail_records, tail_bytes) = tail_of(&scan.frames);
        let inner = Inner {
            file,
            len: scan.good_len,
            records: scan.records,
            tail_records,
            tail_bytes,
            poisoned: None,
        };
        Ok(Self {
            path,
            inner: Mutex::new(inner),
            recovery,
            warnings,
            compaction,
            _lock: lock,
        })
    }

    /// The torn tail dropped on open, if any.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// Permissions found too loose (and tightened) on open, one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rewrites the log as one snapshot frame holding every version.
    pub fn compact(&self) -> Result<CompactReport, StoreError> {
        let mut inner = self.lock();
        self.compact_locked(&mut inner)
    }

    fn compact_locked(&self, inner: &mut Inner) -> Result<CompactReport, StoreError> {
        if let Some(why) = &inner.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let snapshot = Compacted::from_records(&inner.records)?;
        let report = CompactReport {
            versions: snapshot.versions.len(),
            documents: snapshot.documents.len(),
            bytes_before: inner.len,
            bytes_after: 0,
        };
        let payload = serde_json::to_vec(&SnapshotFrame { snapshot })?;
        let bytes = log::encode(&payload).map_err(too_large)?;
        let tmp = self.path.with_file_name(COMPACT_FILE);
        let written = create_file(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        // From here the new log is the log: if it cannot be reopened, refuse writes.
        let reopened = sync_parent(&self.path).and_then(|()| open_append(&self.path));
        match reopened {
            Ok((file, _)) => inner.file = file,
            Err(e) => {
                inner.poisoned = Some(format!("reopening the compacted log: {e}"));
                return Err(io(&self.path)(e));
            }
        }
        inner.len = bytes.len() as u64;
        inner.tail_records = 0;
        inner.tail_bytes = 0;
        Ok(CompactReport {
            bytes_after: inner.len,
            ..report
        })
    }
}

/// Records and bytes after the snapshot frame (all of them when there is none).
fn tail_of(frames: &[FrameInfo]) -> (usize, u64) {
    let tail = match frames.first() {
        Some(f) if f.kind == "snapshot" => &frames[1..],
        _ => frames,
    };
    (tail.len(), tail.iter().map(|f| f.bytes).sum())
}

fn too_large(reason: String) -> StoreError {
    StoreError::Encode(serde::ser::Error::custom(reason))
}

impl Store for FileStore {
    fn append(&self, new: NewRecord) -> Result<Record, StoreError> {
        let mut inner = self.lock();
        if let Some(why) = &inner.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let record = next_record(inner.records.last().map_or(0, |r| r.version), new)?;
        let bytes = log::encode(&serde_json::to_vec(&record)?).map_err(too_large)?;
        let written = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            // Undo a partial frame so a later append does not land behind garbage; if even
            // that fails, refuse further writes until a restart replays the log.
            let len = inner.len;
            if let Err(e2) = inner.file.set_len(len).and_then(|()| inner.file.sync_all()) {
                inner.poisoned = Some(format!("{e}; truncating back failed: {e2}"));
            }
            return Err(io(&self.path)(e));
        }
        inner.len += bytes.len() as u64;
        inner.tail_records += 1;
        inner.tail_bytes += bytes.len() as u64;
        inner.records.push(record.clone());
        if inner.tail_records >= self.compaction.after_records
            || inner.tail_bytes >= self.compaction.after_bytes
        {
            // The record is durable already; a failed compaction leaves the log as it was.
            match self.compact_locked(&mut inner) {
                Ok(c) => tracing::info!(
                    versions = c.versions,
                    bytes_before = c.bytes_before,
                    bytes_after = c.bytes_after,
                    "compacted the policy log"
                ),
                Err(e) => tracing::warn!(error = %e, "compacting the policy log failed"),
            }
        }
        Ok(record)
    }

    fn latest(&self) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().records.last().cloned())
    }

    fn get(&self, version: u64) -> Result<Option<Record>, StoreError> {
        let inner = self.lock();
        let idx = usize::try_from(version).ok().and_then(|v| v.checked_sub(1));
        Ok(idx.and_then(|i| inner.records.get(i)).cloned())
    }

    fn history(&self) -> Result<Vec<RecordSummary>, StoreError> {
        Ok(self
            .lock()
            .records
            .iter()
            .map(RecordSummary::from)
            .collect())
    }
}
