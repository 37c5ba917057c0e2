//! Shared data across worker threads as ordinary process memory.
//!
//! proxy-wasm gives each worker its own VM, so the breaker's state crosses workers through the
//! host's shared-data records. In a native module every worker runs in one address space: the
//! same records (bytes + a CAS number, the semantics `weft_filter_core::host::shared` is
//! written against) live in one map behind a mutex, held for a few microseconds per access.

use crate::hash::IdHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Mutex, MutexGuard, OnceLock};
use weft_filter_core::host::{HostError, SharedRecord};

/// Key → (bytes, CAS of the last write). The keys are the configuration's (breaker records),
/// not a request's, so a multiply-and-rotate hash replaces SipHash on this per-request path.
type Records = HashMap<String, (Vec<u8>, u32), BuildHasherDefault<IdHasher>>;

fn records() -> MutexGuard<'static, Records> {
    static RECORDS: OnceLock<Mutex<Records>> = OnceLock::new();
    let lock = RECORDS.get_or_init(|| Mutex::new(Records::default()));
    // A panic while holding the lock cannot leave a record half-written (each write replaces
    // a whole entry), so a poisoned lock is still consistent.
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The record under `key`: `(None, None)` when it was never written.
pub fn get(key: &str) -> SharedRecord {
    match records().get(key) {
        Some((bytes, cas)) => (Some(bytes.clone()), Some(*cas)),
        None => (None, None),
    }
}

/// Writes `value` under `key`; with `cas`, only if it is still the record's CAS.
pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    let mut records = records();
    let current = records.get(key).map(|(_, c)| *c);
    if let Some(expected) = cas {
        if current != Some(expected) {
            return Err(HostError::CasMismatch);
        }
    }
    let next = current.map_or(1, |c| c.wrapping_add(1).max(1));
    records.insert(key.to_string(), (value.to_vec(), next));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_writes_and_counts_up() {
        let key = "weft-native-test/cas";
        assert_eq!(get(key), (None, None));
        set(key, b"a", None).unwrap();
        let (bytes, cas) = get(key);
        assert_eq!(bytes.as_deref(), Some(&b"a"[..]));
        let cas = cas.unwrap();
        assert_eq!(set(key, b"b", Some(cas + 7)), Err(HostError::CasMismatch));
        set(key, b"b", Some(cas)).unwrap();
        assert_eq!(set(key, b"c", Some(cas)), Err(HostError::CasMismatch));
        assert_eq!(get(key), (Some(b"b".to_vec()), Some(cas + 1)));
    }

    #[test]
    fn racing_writers_lose_no_update() {
        let key = "weft-native-test/race";
        set(key, &0u64.to_le_bytes(), None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (bytes, cas) = get(key);
                            let n = u64::from_le_bytes(bytes.unwrap().try_into().unwrap());
                            if set(key, &(n + 1).to_le_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = u64::from_le_bytes(get(key).0.unwrap().try_into().unwrap());
        assert_eq!(n, 2000);
    }
}
