//! `weft store verify|repair|compact`: the operator's tools for the policy log of a data
//! directory, run on the machine that holds it (no server; `repair` and `compact` need the
//! server stopped, as they take the directory's lock). And the log's compaction thresholds
//! of `weft serve`.

use crate::client::Failure;
use crate::output::{print, table, Output};
use crate::Exit;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use weft_store::{Compaction, FileStore, FrameInfo, StoreError};

/// `weft serve`'s compaction thresholds.
#[derive(Debug, Clone, Copy, Args)]
pub struct CompactionArgs {
    /// Compact the policy log (one snapshot record holding every version, each document
    /// once) when this many records were appended since the last snapshot.
    #[arg(long, env = "WEFT_COMPACT_AFTER_RECORDS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub compact_after_records: u32,
    /// ... or when those records hold this many MiB.
    #[arg(long, env = "WEFT_COMPACT_AFTER_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub compact_after_mib: u32,
}

impl CompactionArgs {
    pub fn compaction(&self) -> Compaction {
        Compaction {
            after_records: self.compact_after_records as usize,
            after_bytes: u64::from(self.compact_after_mib) * 1024 * 1024,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read the whole policy log and report each record and the first unreadable one
    /// (exit 1 when there is one).
    Verify {
        #[arg(long, env = "WEFT_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Drop the log from byte N on (a record boundary `verify` or `weft serve` named). Prints
    /// what is lost; the removed bytes are kept in `policy.log.removed-<ms>`.
    Repair {
        #[arg(long, env = "WEFT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "N")]
        truncate_at: u64,
        /// Only print what would be lost.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the log as one snapshot record holding every version.
    Compact {
        #[arg(long, env = "WEFT_DATA_DIR")]
        data_dir: PathBuf,
    },
}

fn failure(e: StoreError) -> Failure {
    let exit = match e {
        StoreError::Repair(_) => Exit::Usage,
        _ => Exit::Server,
    };
    Failure::new(exit, e.to_string())
}

fn frames_table(frames: &[FrameInfo]) -> String {
    let rows: Vec<Vec<String>> = frames
        .iter()
        .map(|f| {
            let versions = if f.first_version == f.last_version {
                f.first_version.to_string()
            } else {
                format!("{}-{}", f.first_version, f.last_version)
            };
            vec![
                f.index.to_string(),
                f.offset.to_string(),
                f.bytes.to_string(),
                f.kind.to_string(),
                versions,
            ]
        })
        .collect();
    table(&["RECORD", "OFFSET", "BYTES", "KIND", "VERSIONS"], &rows)
}

fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

pub fn run(command: StoreCommand, format: Output) -> Result<(), Failure> {
    match command {
        StoreCommand::Verify { data_dir } => {
            let report = weft_store::verify(&data_dir).map_err(failure)?;
            print(format, &json(&report), |_| {
                let mut out = frames_table(&report.frames);
                match &report.bad {
                    None => out.push_str(&format!(
                        "ok: {} bytes, {} record(s)\n",
                        report.bytes,
                        report.frames.len()
                    )),
                    Some(bad) => {
                        out.push_str(&format!(
                            "BAD record #{} (version {}) at byte {}: {}{}\n",
                            bad.index,
                            bad.version,
                            bad.offset,
                            bad.reason,
                            if bad.is_torn_tail() {
                                " (a torn tail: `weft serve` drops it)"
                            } else {
                                ""
                            }
                        ));
                        if !report.after_bad.is_empty() {
                            out.push_str("readable records after it:\n");
                            out.push_str(&frames_table(&report.after_bad));
                        }
                    }
                }
                out
            });
            match &report.bad {
                Some(bad) if !bad.is_torn_tail() => Err(Failure::new(
                    Exit::Server,
                    format!(
                        "the log is damaged at byte {}; `weft store repair --truncate-at {}` drops it and everything after",
                        bad.offset, bad.offset
                    ),
                )),
                _ => Ok(()),
            }
        }
        StoreCommand::Repair {
            data_dir,
            truncate_at,
            dry_run,
        } => {
            let report = weft_store::repair(&data_dir, truncate_at, dry_run).map_err(failure)?;
            print(format, &json(&report), |_| {
                let mut out = format!(
                    "{} {} byte(s) from byte {} of {}; the last version kept is {}\n",
                    if dry_run { "would remove" } else { "removed" },
                    report.removed_bytes,
                    report.truncated_at,
                    report.path.display(),
                    report.last_kept_version
                );
                if !report.lost.is_empty() {
                    out.push_str("readable records lost:\n");
                    out.push_str(&frames_table(&report.lost));
                }
                if !dry_run {
                    out.push_str(&format!(
                        "the removed bytes are in {}\n",
                        report.saved_to.display()
                    ));
                }
                out
            });
            Ok(())
        }
        StoreCommand::Compact { data_dir } => {
            let store = FileStore::open(&data_dir).map_err(failure)?;
            for warning in store.warnings() {
                eprintln!("warning: {warning}");
            }
            if let Some(r) = store.recovery() {
                eprintln!(
                    "warning: dropped a torn tail of {} byte(s) at byte {}: {}",
                    r.dropped_bytes, r.offset, r.reason
                );
            }
            let report = store.compact().map_err(failure)?;
            print(format, &json(&report), |_| {
                format!(
                    "compacted {} version(s), {} distinct document(s): {} -> {} bytes\n",
                    report.versions, report.documents, report.bytes_before, report.bytes_after
                )
            });
            Ok(())
        }
    }
}
