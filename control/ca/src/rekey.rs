//! KEK rotation: re-seals every sealed value of shared state with the current KEK
//! (`weft etcd rekey`). The values: the roots documents `ca/mesh` and `ca/operator` (each
//! root's key), the join-token secret `ca/token-secret` and every `secrets/<name>`.
//!
//! Each value is rewritten by compare-and-swap on the revision it was read at: a value
//! another replica changed meanwhile (a root rotation) is read again and re-sealed again,
//! never overwritten. A value already sealed with the current KEK is left as it is, so a
//! second run changes nothing. A value the KEK (or its previous one) does not open stops the
//! run with the error naming the value and both key ids.

use serde::Serialize;
use weft_store::SharedState;

use crate::kek::{Kek, Sealed};
use crate::secrets::SECRETS_DIR;
use crate::shared_roots::{place, shared, Document};
use crate::CaError;

/// The roots documents of shared state.
pub const ROOT_DOCUMENTS: [&str; 2] = ["ca/mesh", "ca/operator"];
/// The sealed values that are a document of their own, besides `secrets/<name>`.
const SEALED_VALUES: [&str; 1] = [crate::token::SHARED_SECRET];
/// How many times a value another writer keeps changing is read again.
const ATTEMPTS: usize = 10;
/// More named secrets than this is not something weft makes.
const MAX_SECRETS: usize = 1000;

/// What a rekey did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RekeyReport {
    /// The KEK every value is sealed with now.
    pub kek_id: String,
    /// Sealed values re-sealed by this run.
    pub resealed: usize,
    /// Sealed values that already were sealed with the current KEK.
    pub current: usize,
    /// The documents read (those that exist), in order.
    pub documents: Vec<String>,
}

/// Re-seals every sealed value of `state` with `kek` (see the module documentation).
pub fn rekey(state: &dyn SharedState, kek: &Kek) -> Result<RekeyReport, CaError> {
    let mut report = RekeyReport {
        kek_id: kek.id().to_string(),
        ..RekeyReport::default()
    };
    for name in ROOT_DOCUMENTS {
        rekey_roots(state, kek, name, &mut report)?;
    }
    let mut values: Vec<String> = SEALED_VALUES.iter().map(|s| s.to_string()).collect();
    for (name, _) in state.list(SECRETS_DIR, MAX_SECRETS).map_err(shared)? {
        values.push(format!("{SECRETS_DIR}/{name}"));
    }
    for name in &values {
        rekey_value(state, kek, name, &mut report)?;
    }
    Ok(report)
}

/// One value that is a [`Sealed`] bound to its own name.
fn rekey_value(
    state: &dyn SharedState,
    kek: &Kek,
    name: &str,
    report: &mut RekeyReport,
) -> Result<(), CaError> {
    reseal_document(state, name, report, |bytes| {
        let sealed: Sealed = serde_json::from_slice(bytes).map_err(|e| CaError::Sealed {
            place: state.describe(name),
            reason: format!("not a sealed value: {e}"),
        })?;
        if kek.is_current(&sealed) {
            return Ok(Resealed {
                bytes: None,
                resealed: 0,
                current: 1,
            });
        }
        let plain = kek.open(&sealed, name)?;
        let bytes = serde_json::to_vec(&kek.seal(&plain, name)?)
            .map_err(|e| CaError::Shared(e.to_string()))?;
        Ok(Resealed {
            bytes: Some(bytes),
            resealed: 1,
            current: 0,
        })
    })
}

/// A roots document: every root's key.
fn rekey_roots(
    state: &dyn SharedState,
    kek: &Kek,
    name: &str,
    report: &mut RekeyReport,
) -> Result<(), CaError> {
    reseal_document(state, name, report, |bytes| {
        let mut document: Document =
            serde_json::from_slice(bytes).map_err(|e| CaError::Sealed {
                place: state.describe(name),
                reason: format!("not a roots document: {e}"),
            })?;
        let (mut resealed, mut current) = (0, 0);
        for root in &mut document.roots {
            if kek.is_current(&root.key) {
                current += 1;
                continue;
            }
            let place = place(name, root.info.generation);
            let plain = kek.open(&root.key, &place)?;
            root.key = kek.seal(&plain, &place)?;
            resealed += 1;
        }
        let bytes = if resealed == 0 {
            None
        } else {
            Some(serde_json::to_vec(&document).map_err(|e| CaError::Shared(e.to_string()))?)
        };
        Ok(Resealed {
            bytes,
            resealed,
            current,
        })
    })
}

/// What re-sealing one document's bytes made: the bytes to write (`None`: every key in it
/// is sealed with the current KEK already) and the keys re-sealed and found current.
struct Resealed {
    bytes: Option<Vec<u8>>,
    resealed: usize,
    current: usize,
}

/// Reads `name` (absent: nothing to do), re-seals it with `reseal` and writes the result by
/// compare-and-swap on the revision read; a document another writer changed meanwhile is read
/// and re-sealed again, up to [`ATTEMPTS`] times. Counts what was re-sealed once written.
fn reseal_document(
    state: &dyn SharedState,
    name: &str,
    report: &mut RekeyReport,
    reseal: impl Fn(&[u8]) -> Result<Resealed, CaError>,
) -> Result<(), CaError> {
    for _ in 0..ATTEMPTS {
        let Some(doc) = state.read(name).map_err(shared)? else {
            return Ok(());
        };
        let made = reseal(&doc.bytes)?;
        let written = match made.bytes {
            None => true,
            Some(bytes) => state
                .write(name, bytes, doc.revision)
                .map_err(shared)?
                .is_some(),
        };
        if written {
            report.resealed += made.resealed;
            report.current += made.current;
            report.documents.push(name.to_string());
            return Ok(());
        }
    }
    Err(CaError::Contended(state.describe(name)))
}
