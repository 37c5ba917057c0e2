//! Envoy shared data as compare-and-swap records shared by every worker thread of a `vm_id`.
//!
//! Each worker runs its own VM; shared data (per `vm_id`) is the only state they all see.
//! A record is changed by read-modify-write: read `(bytes, cas)`, compute the new bytes,
//! write them with that `cas`; `CasMismatch` means another worker wrote in between, so read
//! again and recompute ([`update`], bounded retries, retry count returned for a stat).
//!
//! # Creating a key safely
//!
//! Envoy answers a missing key with `(None, None)` and treats a write with no CAS as
//! unconditional, so two workers that both see "missing" and both create the key would lose
//! whatever the first one wrote in between. The data path therefore never creates keys:
//! [`update`] refuses a missing key with [`SharedError::Missing`]. Keys are created only by
//! [`seed`], called from the root context's `on_configure`. Envoy runs `on_configure` of a new
//! plugin configuration on the main thread first (it is how Envoy checks the configuration)
//! and only then hands the configuration to the workers, so the single unprotected write
//! happens while no worker can be using the key; the workers' own `on_configure` runs find
//! the key and write nothing. A key that already exists (a configuration update, a new VM
//! next to a live one) keeps its value. The e2e test checks there is exactly one seeding
//! write per key, from Envoy's main thread.

use super::{Host, HostError};

/// Why a shared record could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedError {
    /// The key was never seeded: nothing was written.
    Missing,
    /// Every attempt lost the race to another worker.
    Contended { attempts: u32 },
    /// The host refused the call.
    Host(HostError),
}

/// The result of a successful [`update`] and how many CAS mismatches it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated<R> {
    pub value: R,
    pub cas_retries: u32,
}

/// Create `key` holding `initial` unless it exists. Call only from `on_configure`. Returns
/// whether this call created it.
pub fn seed(host: &impl Host, key: &str, initial: &[u8]) -> Result<bool, SharedError> {
    match host.shared_get(key).map_err(SharedError::Host)? {
        (Some(_), _) | (None, Some(_)) => Ok(false),
        (None, None) => {
            host.shared_set(key, initial, None)
                .map_err(SharedError::Host)?;
            Ok(true)
        }
    }
}

/// The current bytes of `key` (`None` when it was never seeded).
pub fn read(host: &impl Host, key: &str) -> Result<Option<Vec<u8>>, SharedError> {
    Ok(host.shared_get(key).map_err(SharedError::Host)?.0)
}

/// Read-modify-write `key` with compare-and-swap, up to `max_attempts` times.
///
/// `step` gets the current bytes and returns the bytes to write (`None`: leave the record as
/// it is) and a value for the caller. It runs again on every retry, on the fresh bytes, so it
/// must not have effects beyond its result.
pub fn update<R, B: AsRef<[u8]>>(
    host: &impl Host,
    key: &str,
    max_attempts: u32,
    mut step: impl FnMut(&[u8]) -> (Option<B>, R),
) -> Result<Updated<R>, SharedError> {
    for attempt in 0..max_attempts {
        let (bytes, cas) = match host.shared_get(key).map_err(SharedError::Host)? {
            (Some(bytes), Some(cas)) => (bytes, cas),
            // A present key always has a non-zero CAS; without one, a write would be
            // unconditional, which is exactly what must not happen here.
            _ => return Err(SharedError::Missing),
        };
        let (new_bytes, value) = step(&bytes);
        let Some(new_bytes) = new_bytes else {
            return Ok(Updated {
                value,
                cas_retries: attempt,
            });
        };
        match host.shared_set(key, new_bytes.as_ref(), Some(cas)) {
            Ok(()) => {
                return Ok(Updated {
                    value,
                    cas_retries: attempt,
                })
            }
            Err(HostError::CasMismatch) => continue,
            Err(err) => return Err(SharedError::Host(err)),
        }
    }
    Err(SharedError::Contended {
        attempts: max_attempts,
    })
}
