//! The rollout events (`weft rollout events`): newest kept in memory, every one appended to
//! `<data>/rollouts/events.jsonl` (rotated at 16 MiB) so they outlive a restart. The rollout's durable state is
//! the policy store; this log is its narrative, and a torn last line is skipped on load.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::machine::Event;

/// Events kept in memory.
pub const MAX_EVENTS: usize = 10_000;
/// Size at which the file is rotated (one previous file kept).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

pub struct EventLog {
    path: Option<PathBuf>,
    events: Mutex<VecDeque<Event>>,
}

// === impl EventLog ===

impl EventLog {
    /// In memory only (tests).
    pub fn memory() -> Self {
        Self {
            path: None,
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// Loads `<dir>/events.jsonl` (creating `dir`).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        // Inside the operator's data directory: 0700, files 0600 from creation (D43).
        if let Some(warning) = weft_store::private::private_dir(dir)? {
            tracing::warn!(%warning, "the rollout events directory was readable by others");
        }
        let path = dir.join("events.jsonl");
        let mut events = VecDeque::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Ok(event) = serde_json::from_str::<Event>(line) {
                        if events.len() == MAX_EVENTS {
                            events.pop_front();
                        }
                        events.push_back(event);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            path: Some(path),
            events: Mutex::new(events),
        })
    }

    pub fn push(&self, event: Event) {
        if let Some(path) = &self.path {
            // Bounded on disk: past MAX_FILE_BYTES the file becomes `events.jsonl.1` (the one
            // before it is dropped) and a new one starts.
            if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
                let _ = std::fs::rename(path, path.with_extension("jsonl.1"));
            }
            let line = serde_json::to_string(&event).unwrap_or_default();
            let written =
                weft_store::private::open_append(path).and_then(|(mut f, _)| writeln!(f, "{line}"));
            if let Err(e) = written {
                tracing::warn!(error = %e, path = %path.display(), "cannot append a rollout event");
            }
        }
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The events of `rollout` (`namespace/name`; all when `None`), oldest first, the last
    /// `limit`.
    pub fn list(&self, rollout: Option<&str>, limit: usize) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let matching: Vec<&Event> = events
            .iter()
            .filter(|e| rollout.is_none_or(|r| e.rollout == r))
            .collect();
        let skip = matching.len().saturating_sub(limit);
        matching.into_iter().skip(skip).cloned().collect()
    }
}
