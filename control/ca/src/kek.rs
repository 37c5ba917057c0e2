//! The key-encryption key (KEK) of replicas: private keys kept in shared state (etcd) are
//! sealed with ChaCha20-Poly1305 (ring's AEAD) under a 32-byte key every replica reads from a
//! file (`weft serve --etcd-kek FILE`), never stored beside them. Each sealed value names the
//! KEK that sealed it (`kekId`, a hash of the key, which reveals nothing of it), so a later
//! KEK rotation can tell old from new, and is bound to where it is stored (the AEAD's
//! associated data): a sealed key copied to another place does not open.
//!
//! During a KEK rotation a replica holds the new KEK and the previous one
//! ([`Kek::with_previous`]): it seals with the new one and opens values sealed with either,
//! until `weft etcd rekey` has re-sealed every value with the new one ([`crate::rekey`]).

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::CaError;

/// The only algorithm sealed values use today.
const ALGORITHM: &str = "chacha20-poly1305";

/// A private key as shared state holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    pub kek_id: String,
    pub alg: String,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the ciphertext and its tag.
    pub ciphertext: String,
}

/// The key-encryption key, and the previous ones it still opens (never seals with) during a
/// rotation.
pub struct Kek {
    key: LessSafeKey,
    id: String,
    previous: Vec<Kek>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("previous", &self.previous_ids())
            .finish()
    }
}

// === impl Kek ===

impl Kek {
    /// Reads a KEK file: exactly 32 bytes, or their 64 hex digits (a final newline allowed).
    /// A file other users may read is refused: whoever reads it opens every sealed key.
    pub fn from_file(path: &Path) -> Result<Self, CaError> {
        use std::os::unix::fs::PermissionsExt;
        let bad = |reason: String| CaError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| CaError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "the key-encryption key file has mode {mode:o}: make it readable by its owner only (chmod 600)"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| CaError::io(path, e))?;
        let key: [u8; 32] = match bytes.len() {
            32 => bytes.as_slice().try_into().map_err(|_| bad("expected 32 bytes".into()))?,
            _ => parse_hex(std::str::from_utf8(&bytes).unwrap_or("").trim()).ok_or_else(|| {
                bad(format!(
                    "expected 32 random bytes or their 64 hex digits, found {} bytes (make one with `head -c 32 /dev/urandom > FILE`)",
                    bytes.len()
                ))
            })?,
        };
        Self::from_bytes(&key)
    }

    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, CaError> {
        if key.iter().all(|b| *b == 0) {
            return Err(CaError::Certificate(
                "the key-encryption key is all zeros: use 32 random bytes".into(),
            ));
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| CaError::Random)?;
        let digest = Sha256::digest([b"weft-kek-id:".as_slice(), key].concat());
        Ok(Self {
            key: LessSafeKey::new(unbound),
            id: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            previous: Vec::new(),
        })
    }

    /// This KEK, also opening values sealed with `previous` (a rotation in progress); it
    /// still seals with itself only. Refused when both are the same key.
    pub fn with_previous(mut self, previous: Kek) -> Result<Self, CaError> {
        if previous.id == self.id || self.previous.iter().any(|p| p.id == previous.id) {
            return Err(CaError::Certificate(format!(
                "the previous key-encryption key is the current one ({}): give the old key as previous, the new one as current",
                previous.id
            )));
        }
        self.previous.push(Kek {
            previous: Vec::new(),
            ..previous
        });
        Ok(self)
    }

    /// A short id naming this KEK in every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The ids of the previous KEKs it opens values of.
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|p| p.id.as_str()).collect()
    }

    /// Whether `sealed` is sealed with this (current) KEK: a rekey leaves it as it is.
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.kek_id == self.id
    }

    /// Seals `plain`, bound to `place` (where the value is stored).
    pub fn seal(&self, plain: &[u8], place: &str) -> Result<Sealed, CaError> {
        let nonce = crate::files::random::<NONCE_LEN>()?;
        let mut buffer = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| CaError::Certificate(format!("{place}: sealing failed")))?;
        Ok(Sealed {
            kek_id: self.id.clone(),
            alg: ALGORITHM.into(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(buffer),
        })
    }

    /// Opens a value [`Kek::seal`]ed for `place`; errors name the place and the KEK.
    pub fn open(&self, sealed: &Sealed, place: &str) -> Result<Vec<u8>, CaError> {
        let refuse = |reason: String| CaError::Sealed {
            place: place.to_string(),
            reason,
        };
        if sealed.alg != ALGORITHM {
            return Err(refuse(format!("unknown algorithm {:?}", sealed.alg)));
        }
        let Some(kek) = std::iter::once(self)
            .chain(&self.previous)
            .find(|k| k.id == sealed.kek_id)
        else {
            let held = match self.previous_ids().as_slice() {
                [] => self.id.clone(),
                previous => format!("{} (and previous {})", self.id, previous.join(", ")),
            };
            return Err(refuse(format!(
                "sealed with key-encryption key {}, but the key given is {held} (every replica and `weft etcd rekey` need the same --etcd-kek; during a rotation, the old one as --etcd-kek-previous)",
                sealed.kek_id
            )));
        };
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| refuse("nonce is not 12 bytes of base64".into()))?;
        let mut buffer = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| refuse("ciphertext is not base64".into()))?;
        let plain = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| {
                refuse("does not open: tampered with, or moved from another place".into())
            })?;
        Ok(plain.to_vec())
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place_with_their_kek() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let sealed = kek
            .seal(b"-----BEGIN PRIVATE KEY-----", "ca/mesh/root-1")
            .unwrap();
        assert!(!sealed.ciphertext.contains("BEGIN"));
        assert_eq!(
            kek.open(&sealed, "ca/mesh/root-1").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        let moved = kek.open(&sealed, "ca/mesh/root-2").unwrap_err().to_string();
        assert!(
            moved.contains("ca/mesh/root-2") && moved.contains("does not open"),
            "{moved}"
        );
        let other = Kek::from_bytes(&[8u8; 32]).unwrap();
        let wrong = other
            .open(&sealed, "ca/mesh/root-1")
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains(kek.id()) && wrong.contains(other.id()),
            "{wrong}"
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext = STANDARD.encode(b"garbage garbage garbage");
        assert!(kek.open(&tampered, "ca/mesh/root-1").is_err());
        assert!(Kek::from_bytes(&[0u8; 32]).is_err());
    }

    #[test]
    fn during_a_rotation_values_of_either_key_open_and_new_ones_are_sealed_with_the_new() {
        let old = Kek::from_bytes(&[1u8; 32]).unwrap();
        let sealed_old = old.seal(b"secret", "secrets/telemetry").unwrap();
        let old_id = old.id().to_string();
        let both = Kek::from_bytes(&[2u8; 32])
            .unwrap()
            .with_previous(old)
            .unwrap();
        assert_eq!(both.previous_ids(), vec![old_id.as_str()]);
        assert!(!both.is_current(&sealed_old));
        assert_eq!(
            both.open(&sealed_old, "secrets/telemetry").unwrap(),
            b"secret"
        );
        let sealed_new = both.seal(b"secret", "secrets/telemetry").unwrap();
        assert!(both.is_current(&sealed_new));
        // A third key opens neither; the error names every key held.
        let third = Kek::from_bytes(&[3u8; 32]).unwrap();
        let error = Kek::from_bytes(&[4u8; 32])
            .unwrap()
            .with_previous(Kek::from_bytes(&[5u8; 32]).unwrap())
            .unwrap()
            .open(&third.seal(b"x", "p").unwrap(), "p")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(third.id()) && error.contains("and previous"),
            "{error}"
        );
        let same = Kek::from_bytes(&[2u8; 32])
            .unwrap()
            .with_previous(Kek::from_bytes(&[2u8; 32]).unwrap());
        assert!(same.is_err());
    }

    #[test]
    fn kek_files_are_32_bytes_or_64_hex_digits_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let raw = Kek::from_file(&write("raw", &[9u8; 32], 0o600)).unwrap();
        let hex = Kek::from_file(&write(
            "hex",
            format!("{}\n", "09".repeat(32)).as_bytes(),
            0o400,
        ))
        .unwrap();
        assert_eq!(raw.id(), hex.id());
        let loose = Kek::from_file(&write("loose", &[9u8; 32], 0o644)).unwrap_err();
        assert!(loose.to_string().contains("chmod 600"), "{loose}");
        let short = Kek::from_file(&write("short", b"tooshort", 0o600)).unwrap_err();
        assert!(short.to_string().contains("32 random bytes"), "{short}");
        assert!(Kek::from_file(&dir.path().join("absent")).is_err());
    }
}
