//! The operator's tools for a stopped server's log: [`verify`] reads it and reports every
//! frame and the first one that cannot be read; [`repair`] drops everything from a frame
//! boundary on, knowingly: it names what is lost and keeps the removed bytes in a file beside
//! the log (mode 0600) rather than destroying them.

use crate::file::{io, lock_dir, LOG_FILE};
use crate::log::{self, BadFrame, FrameInfo};
use crate::private::{create_file, sync_parent};
use crate::StoreError;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub path: PathBuf,
    pub bytes: u64,
    /// The readable frames, in order.
    pub frames: Vec<FrameInfo>,
    /// The first frame that cannot be read.
    pub bad: Option<BadFrame>,
    /// Readable frames after the bad one (lost by a repair at or before it).
    pub after_bad: Vec<FrameInfo>,
}

impl Verification {
    /// True when every byte of the log was read.
    pub fn ok(&self) -> bool {
        self.bad.is_none()
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    pub path: PathBuf,
    pub truncated_at: u64,
    pub removed_bytes: u64,
    /// The last version kept (0: none).
    pub last_kept_version: u64,
    /// The readable frames removed (besides the unreadable bytes).
    pub lost: Vec<FrameInfo>,
    /// Where the removed bytes were saved.
    pub saved_to: PathBuf,
}

fn read(dir: &Path) -> Result<(PathBuf, Vec<u8>), StoreError> {
    let path = dir.join(LOG_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    Ok((path, bytes))
}

/// Reads the log in `dir` without changing it (and without its lock: it may run beside a
/// server, and then reports the log as of the read).
pub fn verify(dir: &Path) -> Result<Verification, StoreError> {
    let (path, bytes) = read(dir)?;
    let scan = log::scan(&bytes);
    // The unreadable frame counts as one: the frames after it are numbered from the next.
    let after_bad = scan
        .bad
        .as_ref()
        .and_then(|b| Some((b.valid_after?, b.index + 1)))
        .map(|(at, index)| log::frames_from(&bytes, at, index))
        .unwrap_or_default();
    Ok(Verification {
        path,
        bytes: bytes.len() as u64,
        frames: scan.frames,
        bad: scan.bad,
        after_bad,
    })
}

/// Truncates the log in `dir` at byte `at`, which must be the start of a readable frame or
/// the end of the readable prefix (where the first bad frame starts). The server must be
/// stopped (the directory's lock is taken). `dry_run` only reports.
pub fn repair(dir: &Path, at: u64, dry_run: bool) -> Result<Repair, StoreError> {
    let _lock = lock_dir(dir)?;
    let found = verify(dir)?;
    let good_len = found
        .frames
        .last()
        .map_or(0, |f| f.offset.saturating_add(f.bytes));
    let boundary = at == good_len || found.frames.iter().any(|f| f.offset == at);
    if !boundary {
        let starts: Vec<String> = found
            .frames
            .iter()
            .map(|f| f.offset.to_string())
            .chain(std::iter::once(good_len.to_string()))
            .collect();
        return Err(StoreError::Repair(format!(
            "byte {at} is not the start of a readable record; the boundaries are {}",
            starts.join(", ")
        )));
    }
    if at >= found.bytes {
        return Err(StoreError::Repair(format!(
            "the log is {} bytes long: nothing to remove at byte {at}",
            found.bytes
        )));
    }
    let mut lost: Vec<FrameInfo> = found
        .frames
        .iter()
        .filter(|f| f.offset >= at)
        .cloned()
        .collect();
    lost.extend(found.after_bad.iter().cloned());
    let last_kept_version = found
        .frames
        .iter()
        .filter(|f| f.offset < at)
        .map(|f| f.last_version)
        .max()
        .unwrap_or(0);
    let stamp = crate::now_unix_ms();
    let saved_to = found
        .path
        .with_file_name(format!("{LOG_FILE}.removed-{stamp}"));
    let report = Repair {
        path: found.path.clone(),
        truncated_at: at,
        removed_bytes: found.bytes - at,
        last_kept_version,
        lost,
        saved_to,
    };
    if dry_run {
        return Ok(report);
    }
    let (path, bytes) = read(dir)?;
    let cut = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
    let saved = create_file(&report.saved_to).and_then(|mut f| {
        f.write_all(&bytes[cut..])?;
        f.sync_all()
    });
    saved.map_err(io(&report.saved_to))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    file.set_len(at).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    sync_parent(&path).map_err(io(&path))?;
    Ok(report)
}
