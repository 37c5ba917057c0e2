//! The log's frames and how a log is read back.
//!
//! Frame: `len: u32 LE | sha256(payload): 32 bytes | payload`. The payload is a JSON
//! [`Record`] (`{"version": ...}`), or, as the first frame of a compacted log only, a snapshot
//! (`{"snapshot": ...}`, see [`crate::compact`]).
//!
//! Reading tells two failures apart. A frame cut short or failing its checksum *with nothing
//! valid after it* is the tail of an append a crash interrupted (never acknowledged): it may
//! be dropped. A bad frame *followed by a valid one* is damage to acknowledged history (a
//! disk, a copy, a hand edit): nothing is dropped, the record is named (index, byte offset,
//! version) and the operator decides (`weft store verify`, `weft store repair`).

use crate::compact::{Compacted, SnapshotFrame};
use crate::Record;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub(crate) const HEADER_LEN: usize = 4 + 32;
/// Refuse absurd frame lengths instead of allocating them.
pub(crate) const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

const RECORD_START: &[u8] = b"{\"version\":";
const SNAPSHOT_START: &[u8] = b"{\"snapshot\":";

/// One readable frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameInfo {
    /// Position in the log, from 0.
    pub index: usize,
    /// Byte offset of the frame's header.
    pub offset: u64,
    /// Header and payload.
    pub bytes: u64,
    /// `record` or `snapshot`.
    pub kind: &'static str,
    /// The versions the frame holds (one for a record).
    pub first_version: u64,
    pub last_version: u64,
}

/// The first frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BadFrame {
    pub index: usize,
    pub offset: u64,
    /// The version the frame should hold (the one after the last readable version).
    pub version: u64,
    pub reason: String,
    /// Whether the frame's bytes were written whole (the checksum matched) and still make
    /// no sense: never a torn write.
    pub checksum_ok: bool,
    /// The offset of the first valid frame after it, if any.
    pub valid_after: Option<u64>,
}

impl BadFrame {
    /// A torn tail: an interrupted final append, which may be dropped.
    pub fn is_torn_tail(&self) -> bool {
        !self.checksum_ok && self.valid_after.is_none()
    }
}

/// What reading a log found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scan {
    pub records: Vec<Record>,
    pub frames: Vec<FrameInfo>,
    /// Length of the readable prefix.
    pub good_len: u64,
    pub bad: Option<BadFrame>,
}

/// A frame around `payload`.
pub(crate) fn encode(payload: &[u8]) -> Result<Vec<u8>, String> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME_BYTES)
        .ok_or_else(|| format!("a frame of {} bytes is too large", payload.len()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload of the frame at `offset` when its header is whole, its length fits and its
/// checksum matches; else why not.
fn frame_at(bytes: &[u8], offset: usize) -> Result<&[u8], String> {
    let rest = bytes.get(offset..).unwrap_or_default();
    let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() else {
        return Err(format!(
            "frame header cut short ({} of {HEADER_LEN} bytes)",
            rest.len()
        ));
    };
    let (len, sum) = header.split_at(4);
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_FRAME_BYTES || len > after.len() {
        return Err(format!(
            "frame of {len} bytes cut short ({} bytes left)",
            after.len()
        ));
    }
    let payload = &after[..len];
    if Sha256::digest(payload).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// The offset of the first valid frame starting after `from`. Only offsets whose payload
/// would start like a record or a snapshot are hashed, so a long log is searched quickly.
fn next_valid_frame(bytes: &[u8], from: usize) -> Option<u64> {
    let last = bytes.len().checked_sub(HEADER_LEN + RECORD_START.len())?;
    (from..=last).find_map(|at| {
        let start = &bytes[at + HEADER_LEN..];
        let plausible = start.starts_with(RECORD_START) || start.starts_with(SNAPSHOT_START);
        (plausible && frame_at(bytes, at).is_ok()).then_some(at as u64)
    })
}

enum Payload {
    Record(Box<Record>),
    Snapshot(Vec<Record>),
}

fn decode(payload: &[u8]) -> Result<Payload, String> {
    if payload.starts_with(SNAPSHOT_START) {
        let frame: SnapshotFrame = serde_json::from_slice(payload)
            .map_err(|e| format!("snapshot does not decode: {e}"))?;
        return Compacted::into_records(frame.snapshot).map(Payload::Snapshot);
    }
    serde_json::from_slice(payload)
        .map(|r| Payload::Record(Box::new(r)))
        .map_err(|e| format!("record does not decode: {e}"))
}

/// Reads every frame of `bytes` up to the first that cannot be read.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan {
        records: Vec::new(),
        frames: Vec::new(),
        good_len: 0,
        bad: None,
    };
    let mut offset = 0usize;
    while offset < bytes.len() {
        let index = out.frames.len();
        let expected = out.records.last().map_or(1, |r| r.version + 1);
        let bad = |reason: String, checksum_ok: bool| BadFrame {
            index,
            offset: offset as u64,
            version: expected,
            reason,
            checksum_ok,
            valid_after: next_valid_frame(bytes, offset + 1),
        };
        let payload = match frame_at(bytes, offset) {
            Ok(p) => p,
            Err(reason) => {
                out.bad = Some(bad(reason, false));
                break;
            }
        };
        let (kind, records) = match decode(payload) {
            Ok(Payload::Record(r)) => ("record", vec![*r]),
            Ok(Payload::Snapshot(_)) if index > 0 => {
                out.bad = Some(bad("a snapshot after the first frame".into(), true));
                break;
            }
            Ok(Payload::Snapshot(rs)) => ("snapshot", rs),
            Err(reason) => {
                out.bad = Some(bad(reason, true));
                break;
            }
        };
        let mut next = expected;
        if let Some(r) = records.iter().find(|r| {
            let gap = r.version != next;
            next = r.version.saturating_add(1);
            gap
        }) {
            let reason = format!("version {} where {} was expected", r.version, expected);
            out.bad = Some(bad(reason, true));
            break;
        }
        let len = HEADER_LEN + payload.len();
        out.frames.push(FrameInfo {
            index,
            offset: offset as u64,
            bytes: len as u64,
            kind,
            first_version: records.first().map_or(0, |r| r.version),
            last_version: records.last().map_or(0, |r| r.version),
        });
        out.records.extend(records);
        offset += len;
        out.good_len = offset as u64;
    }
    out
}

/// The readable frames from `offset` on (after a bad frame: what a repair would lose),
/// numbered from `index`.
pub(crate) fn frames_from(bytes: &[u8], offset: u64, index: usize) -> Vec<FrameInfo> {
    let Some(rest) = usize::try_from(offset).ok().and_then(|o| bytes.get(o..)) else {
        return Vec::new();
    };
    let mut scan = scan_loose(rest);
    for f in &mut scan {
        f.offset += offset;
        f.index += index;
    }
    scan
}

/// Frames read one after another without version checks, stopping at the first bad one.
fn scan_loose(bytes: &[u8]) -> Vec<FrameInfo> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while let Ok(payload) = frame_at(bytes, offset) {
        let (kind, first, last) = match decode(payload) {
            Ok(Payload::Record(r)) => ("record", r.version, r.version),
            Ok(Payload::Snapshot(rs)) => (
                "snapshot",
                rs.first().map_or(0, |r| r.version),
                rs.last().map_or(0, |r| r.version),
            ),
            Err(_) => break,
        };
        let len = HEADER_LEN + payload.len();
        out.push(FrameInfo {
            index: out.len(),
            offset: offset as u64,
            bytes: len as u64,
            kind,
            first_version: first,
            last_version: last,
        });
        offset += len;
    }
    out
}
