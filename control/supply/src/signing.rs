//! Module signatures: ed25519 over the module's bytes, a detached raw 64-byte signature in
//! `<module>.wasm.sig` (what `openssl pkeyutl -verify -rawin` checks too), and the trust
//! list of public keys `weft serve --module-signers` accepts signatures from.
//!
//! Keys are PEM: the private key PKCS#8 (`PRIVATE KEY`, as `openssl genpkey -algorithm
//! ed25519` writes it), the public key SPKI (`PUBLIC KEY`).

use std::path::Path;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use crate::SupplyError;

/// The detached signature's file name for `<module>.wasm`.
pub fn signature_file(module_file: &str) -> String {
    format!("{module_file}.sig")
}

pub const SIGNATURE_LEN: usize = 64;
/// Key and trust-list files are small; a larger one is refused unread.
const MAX_KEY_FILE: u64 = 64 << 10;
/// A trust list larger than this is a mistake (or an attack on start-up time).
const MAX_TRUSTED_KEYS: usize = 256;
/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

/// A public key, with its id: the first 16 hex digits of the SHA-256 of its 32 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
}

/// Who signed a module: the trusted key's id and the trust-list file it came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    pub key_id: String,
    pub source: String,
}

/// The public keys whose signatures `weft serve` accepts.
#[derive(Clone, Debug)]
pub struct TrustList {
    keys: Vec<(PublicKey, Signer)>,
}

/// Why a module's signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("unsigned: no {0}")]
    Missing(String),
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: not an ed25519 signature ({len} bytes, expected 64)")]
    Malformed { file: String, len: usize },
    #[error("signature {file} does not verify with any of the {keys} trusted key(s) (the module was changed after signing, or signed by an untrusted key)")]
    Untrusted { file: String, keys: usize },
}

// === impl SigningKey ===

impl SigningKey {
    /// A fresh key pair, as PKCS#8 PEM.
    pub fn generate() -> Result<(Self, String), SupplyError> {
        let rng = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SupplyError::invalid("key generation", "the system RNG failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
            .map_err(|e| SupplyError::invalid("key generation", e.to_string()))?;
        Ok((Self { pair }, pem("PRIVATE KEY", document.as_ref())))
    }

    pub fn from_pem(text: &str, origin: &str) -> Result<Self, SupplyError> {
        let der = unpem(text, "PRIVATE KEY").ok_or_else(|| {
            SupplyError::invalid(
                origin,
                "expected a PEM `PRIVATE KEY` block (PKCS#8 ed25519)",
            )
        })?;
        // OpenSSL writes PKCS#8 v1 (no public key inside); ring derives it.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| SupplyError::invalid(origin, format!("not an ed25519 key: {e}")))?;
        Ok(Self { pair })
    }

    pub fn load(path: &Path) -> Result<Self, SupplyError> {
        let bytes = crate::read_limited(path, MAX_KEY_FILE)?;
        Self::from_pem(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
        )
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey { bytes }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

// === impl PublicKey ===

impl PublicKey {
    pub fn from_pem(text: &str, origin: &str) -> Result<Self, SupplyError> {
        let der = unpem(text, "PUBLIC KEY").ok_or_else(|| {
            SupplyError::invalid(origin, "expected a PEM `PUBLIC KEY` block (ed25519 SPKI)")
        })?;
        Self::from_spki(&der).ok_or_else(|| {
            SupplyError::invalid(origin, "not an ed25519 public key (RFC 8410 SPKI)")
        })
    }

    fn from_spki(der: &[u8]) -> Option<Self> {
        let key = der.strip_prefix(SPKI_PREFIX.as_slice())?;
        let bytes: [u8; 32] = key.try_into().ok()?;
        Some(Self { bytes })
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.bytes);
        pem("PUBLIC KEY", &der)
    }

    pub fn key_id(&self) -> String {
        let mut id = crate::sha256_hex(&self.bytes);
        id.truncate(16);
        id
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

// === impl TrustList ===

impl TrustList {
    /// A PEM file of one or more `PUBLIC KEY` blocks, or a directory whose `*.pub` and `*.pem`
    /// files are each such a file. Refused when empty, unreadable or holding anything else:
    /// a typo must not quietly trust nobody (or everybody).
    pub fn load(path: &Path) -> Result<Self, SupplyError> {
        let origin = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SupplyError::Io {
            path: origin.clone(),
            source,
        })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| SupplyError::Io {
                path: origin.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| SupplyError::Io {
                    path: origin.clone(),
                    source,
                })?;
                let file = entry.path();
                if file.extension().is_some_and(|e| e == "pub" || e == "pem") {
                    files.push(file);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut keys: Vec<(PublicKey, Signer)> = Vec::new();
        for file in &files {
            let file_origin = file.display().to_string();
            let text =
                String::from_utf8_lossy(&crate::read_limited(file, MAX_KEY_FILE)?).into_owned();
            let blocks = pem_blocks(&text);
            if blocks.is_empty() {
                return Err(SupplyError::invalid(
                    file_origin,
                    "no PEM `PUBLIC KEY` block",
                ));
            }
            for (index, block) in blocks.into_iter().enumerate() {
                let key = PublicKey::from_pem(block, &format!("{file_origin}: key {}", index + 1))?;
                if keys.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                let signer = Signer {
                    key_id: key.key_id(),
                    source: file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                keys.push((key, signer));
            }
            if keys.len() > MAX_TRUSTED_KEYS {
                return Err(SupplyError::invalid(
                    origin,
                    format!("more than {MAX_TRUSTED_KEYS} trusted keys"),
                ));
            }
        }
        if keys.is_empty() {
            return Err(SupplyError::invalid(
                origin,
                "no trusted key (expected *.pub or *.pem files holding ed25519 `PUBLIC KEY` blocks)",
            ));
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|(_, s)| s.key_id.clone()).collect()
    }

    /// The trusted key that signed `module` (`signature`, read from `signature_file`).
    pub fn verify(
        &self,
        module: &[u8],
        signature: &[u8],
        signature_file: &str,
    ) -> Result<&Signer, SignatureError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(SignatureError::Malformed {
                file: signature_file.to_string(),
                len: signature.len(),
            });
        }
        self.keys
            .iter()
            .find(|(key, _)| key.verify(module, signature))
            .map(|(_, signer)| signer)
            .ok_or_else(|| SignatureError::Untrusted {
                file: signature_file.to_string(),
                keys: self.keys.len(),
            })
    }

    /// Reads `<dir>/<file>.sig` and verifies `module` with it.
    pub fn verify_file(
        &self,
        dir: &Path,
        file: &str,
        module: &[u8],
    ) -> Result<&Signer, SignatureError> {
        let name = signature_file(file);
        let path = dir.join(&name);
        let signature = match crate::read_limited(&path, 1024) {
            Ok(bytes) => bytes,
            Err(SupplyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(SignatureError::Missing(name));
            }
            Err(error) => {
                return Err(SignatureError::Unreadable {
                    file: name,
                    reason: error.to_string(),
                })
            }
        };
        self.verify(module, &signature, &name)
    }
}

/// Signs each module file, writing `<file>.sig` beside it; returns the signature files.
pub fn sign_files(
    key: &SigningKey,
    modules: &[std::path::PathBuf],
) -> Result<Vec<std::path::PathBuf>, SupplyError> {
    let mut written = Vec::with_capacity(modules.len());
    for module in modules {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SupplyError::Io { path, source }
        };
        let bytes = std::fs::read(module).map_err(io(module))?;
        let mut name = module.as_os_str().to_os_string();
        name.push(".sig");
        let out = std::path::PathBuf::from(name);
        std::fs::write(&out, key.sign(&bytes)).map_err(io(&out))?;
        written.push(out);
    }
    Ok(written)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first `label` block.
fn unpem(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text.get(start..)?.find(&end)?;
    let body: String = text
        .get(start..stop)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Every `PUBLIC KEY` block of a file, each as its own text.
fn pem_blocks(text: &str) -> Vec<&str> {
    const END: &str = "-----END PUBLIC KEY-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN PUBLIC KEY-----") {
        let Some(stop) = rest.get(start..).and_then(|r| r.find(END)) else {
            // An unterminated block: handed over whole, so from_pem names the problem.
            blocks.push(rest.get(start..).unwrap_or_default());
            break;
        };
        let stop = start + stop + END.len();
        blocks.push(rest.get(start..stop).unwrap_or_default());
        rest = rest.get(stop..).unwrap_or_default();
    }
    blocks
}

#[cfg(test)]
mod tests;
