//! Secrets every replica shares (the join-token secret `ca/token-secret`, and
//! `secrets/<name>`: the telemetry secret, the explain master key): 32 random bytes kept in
//! shared state sealed with the KEK (bound to their name), made by whichever replica asks
//! first (a create-only compare-and-swap) and read by every other one, so what one replica
//! signs the others verify.

use std::path::PathBuf;

use weft_store::SharedState;

use crate::files::random;
use crate::kek::{Kek, Sealed};
use crate::shared_roots::shared;
use crate::CaError;

/// The directory of the named secrets in shared state (`secrets/<name>`).
pub const SECRETS_DIR: &str = "secrets";

/// How often a creation that lost a race is retried (reading the winner's value).
const ATTEMPTS: usize = 5;

/// The secret kept at `name` (opened with `kek`), or, when there is none yet, `seed` (a
/// value migrated from an older version) or 32 fresh random bytes, sealed and created there.
pub fn open_shared_secret(
    state: &dyn SharedState,
    kek: &Kek,
    name: &str,
    seed: Option<[u8; 32]>,
) -> Result<[u8; 32], CaError> {
    let place = state.describe(name);
    let corrupt = |reason: String| CaError::Corrupt {
        path: PathBuf::from(&place),
        reason,
    };
    for _ in 0..ATTEMPTS {
        if let Some(doc) = state.read(name).map_err(shared)? {
            let sealed: Sealed = serde_json::from_slice(&doc.bytes)
                .map_err(|e| corrupt(format!("not a sealed value: {e}")))?;
            let plain = kek.open(&sealed, name)?;
            return <[u8; 32]>::try_from(plain.as_slice())
                .map_err(|_| corrupt("expected 32 bytes".into()));
        }
        let fresh = match seed {
            Some(seed) => seed,
            None => random::<32>()?,
        };
        let sealed = kek.seal(&fresh, name)?;
        let bytes = serde_json::to_vec(&sealed).map_err(|e| corrupt(e.to_string()))?;
        if state.write(name, bytes, 0).map_err(shared)?.is_some() {
            return Ok(fresh);
        }
    }
    Err(CaError::Contended(place))
}

/// [`open_shared_secret`] of `secrets/<name>`.
pub fn open_named_secret(
    state: &dyn SharedState,
    kek: &Kek,
    name: &str,
    seed: Option<[u8; 32]>,
) -> Result<[u8; 32], CaError> {
    open_shared_secret(state, kek, &format!("{SECRETS_DIR}/{name}"), seed)
}
