//! RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`) verification, by RustCrypto's `rsa` crate
//! (maintained and reviewed) rather than hand-written modular arithmetic. Only the public
//! operation is used: the crate's RUSTSEC-2023-0071 timing issue concerns private-key
//! operations, which a verifier never performs.

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::BigUint;
use sha2::Sha256;

/// A 2048..=4096-bit RSA public key, ready to verify RS256 signatures.
#[derive(Clone)]
pub(crate) struct RsaPublicKey {
    bits: usize,
    key: VerifyingKey<Sha256>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.bits)
    }
}

// === impl RsaPublicKey ===

impl RsaPublicKey {
    /// `n` and `e` as unsigned big-endian bytes (JWK `n`, `e` after base64url).
    pub(crate) fn new(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        // After stripping, the first byte (if any) is non-zero.
        let bits = n
            .first()
            .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
        if !(2048..=4096).contains(&bits) {
            return Err(format!("RSA modulus has {bits} bits, expected 2048..=4096"));
        }
        if e.len() > 8 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
            return Err("RSA exponent must be odd, greater than 1 and at most 64 bits".into());
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err("RSA modulus must be odd".into());
        }
        let key = rsa::RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
            .map_err(|err| format!("invalid RSA public key: {err}"))?;
        Ok(Self {
            bits,
            key: VerifyingKey::new(key),
        })
    }

    /// Verifies a signature over `msg`; any malformed input is simply `false`.
    pub(crate) fn verify_sha256(&self, msg: &[u8], sig: &[u8]) -> bool {
        Signature::try_from(sig).is_ok_and(|sig| self.key.verify(msg, &sig).is_ok())
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}
