//! The embedded store: one append-only log file of checksummed records.
//!
//! Frame: `len: u32 LE | sha256(payload): 32 bytes | payload: JSON Record`. An append writes
//! the whole frame and `fsync`s the file before it returns; the directory is `fsync`ed when
//! the log is created, so the file itself survives a crash. On open the log is replayed; a
//! frame cut short or failing its checksum can only be the tail a crash interrupted (an
//! append that was never acknowledged), so the file is truncated there and the store
//! reports it in [`FileStore::recovery`]. Versions must follow each other without gaps.
//!
//! Every record holds the full set, which keeps replay and rollback trivial; compaction
//! (snapshot + truncate) is left for when sets grow large.

use crate::{next_record, NewRecord, Record, RecordSummary, Store, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const LOG_FILE: &str = "policy.log";
const LOCK_FILE: &str = "LOCK";
const HEADER_LEN: usize = 4 + 32;
/// Refuse absurd frame lengths instead of allocating them.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// What opening the store had to repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Byte offset the log was truncated at.
    pub offset: u64,
    /// Bytes of the torn tail that were dropped.
    pub dropped_bytes: u64,
    pub reason: String,
}

#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    recovery: Option<Recovery>,
    /// Held for the store's lifetime: a second server on the same directory is refused.
    _lock: File,
}

#[derive(Debug)]
struct Inner {
    file: File,
    len: u64,
    records: Vec<Record>,
    poisoned: Option<String>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

// === impl FileStore ===

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, replaying the log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(dir.display().to_string()))?;
        let path = dir.join(LOG_FILE);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if created {
            file.sync_all().map_err(io(&path))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let (records, good_len, tail) = replay(&path, &bytes)?;
        let recovery = match tail {
            None => None,
            Some(reason) => {
                file.set_len(good_len).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                Some(Recovery {
                    offset: good_len,
                    dropped_bytes: bytes.len() as u64 - good_len,
                    reason,
                })
            }
        };
        let inner = Inner {
            file,
            len: good_len,
            records,
            poisoned: None,
        };
        Ok(Self {
            path,
            inner: Mutex::new(inner),
            recovery,
            _lock: lock,
        })
    }

    /// The torn tail dropped on open, if any.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Records, the length of the valid prefix, and why the rest (if any) was dropped.
fn replay(path: &Path, bytes: &[u8]) -> Result<(Vec<Record>, u64, Option<String>), StoreError> {
    let mut records: Vec<Record> = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return Ok((
                records,
                offset as u64,
                Some("frame header cut short".into()),
            ));
        };
        let (len, sum) = header.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_RECORD_BYTES || len > after.len() {
            return Ok((
                records,
                offset as u64,
                Some(format!("frame of {len} bytes cut short")),
            ));
        }
        let payload = &after[..len];
        if Sha256::digest(payload).as_slice() != sum {
            return Ok((records, offset as u64, Some("checksum mismatch".into())));
        }
        let record: Record = serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            offset: offset as u64,
            reason: format!("record does not decode: {e}"),
        })?;
        let expected = records.last().map_or(1, |r| r.version + 1);
        if record.version != expected {
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                offset: offset as u64,
                reason: format!("version {} follows {}", record.version, expected - 1),
            });
        }
        records.push(record);
        offset += HEADER_LEN + len;
    }
    Ok((records, offset as u64, None))
}

fn frame(record: &Record) -> Result<Vec<u8>, StoreError> {
    let payload = serde_json::to_vec(record)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_RECORD_BYTES)
        .ok_or_else(|| {
            StoreError::Encode(serde::ser::Error::custom(format!(
                "record of {} bytes is too large",
                payload.len()
            )))
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

impl Store for FileStore {
    fn append(&self, new: NewRecord) -> Result<Record, StoreError> {
        let mut inner = self.lock();
        if let Some(why) = &inner.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let record = next_record(inner.records.last().map_or(0, |r| r.version), new)?;
        let bytes = frame(&record)?;
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
        inner.records.push(record.clone());
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
