//! RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`) verification.
//!
//! Only the public operation `s^e mod n` is needed, so instead of the `rsa` crate (large,
//! and carrying the private-key machinery) this uses the Montgomery arithmetic of
//! `crypto-bigint`, which `p256` already brings in. Public data only: no constant-time needs.

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U4096, U64};
use sha2::{Digest, Sha256};

const MAX_BYTES: usize = 512;
const LIMBS: usize = U4096::LIMBS;

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// A 2048..=4096-bit RSA public key with its Montgomery parameters precomputed.
#[derive(Clone)]
pub(crate) struct RsaPublicKey {
    /// Length of the modulus in bytes (`k` in RFC 8017).
    len: usize,
    n: U4096,
    e: U64,
    e_bits: usize,
    params: DynResidueParams<LIMBS>,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.len * 8)
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
        let n_int = U4096::from_be_slice(&left_pad::<MAX_BYTES>(n));
        let e_int = U64::from_be_slice(&left_pad::<8>(e));
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err("RSA modulus must be odd".into());
        }
        // Cannot panic: the modulus was just checked to be odd.
        let params = DynResidueParams::new(&n_int);
        let e_bits = 64 - e_int.leading_zeros();
        Ok(Self {
            len: n.len(),
            n: n_int,
            e: e_int,
            e_bits,
            params,
        })
    }

    /// Verifies a signature over `msg`; any malformed input is simply `false`.
    pub(crate) fn verify_sha256(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != self.len {
            return false;
        }
        let s = U4096::from_be_slice(&left_pad::<MAX_BYTES>(sig));
        if s >= self.n {
            return false;
        }
        let m = DynResidue::new(&s, self.params)
            .pow_bounded_exp(&self.e, self.e_bits)
            .retrieve();
        let em = m.to_be_bytes();
        let Some((zeros, em)) = em.split_at_checked(MAX_BYTES - self.len) else {
            return false;
        };
        zeros.iter().all(|&b| b == 0) && em == expected_encoding(self.len, msg).as_slice()
    }
}

/// EMSA-PKCS1-v1_5: `00 01 FF..FF 00 DigestInfo H`, `len` bytes (len >= 256 here).
fn expected_encoding(len: usize, msg: &[u8]) -> Vec<u8> {
    let hash = Sha256::digest(msg);
    let tail = SHA256_DIGEST_INFO.len() + hash.len();
    let mut em = Vec::with_capacity(len);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(len.saturating_sub(tail + 1), 0xff);
    em.push(0x00);
    em.extend_from_slice(&SHA256_DIGEST_INFO);
    em.extend_from_slice(&hash);
    em
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Callers guarantee `b.len() <= N`; anything longer yields all zeros (an invalid value).
fn left_pad<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(dst) = N
        .checked_sub(b.len())
        .and_then(|start| out.get_mut(start..))
    {
        dst.copy_from_slice(b);
    }
    out
}
