//! weft's module supply chain: what is inside every filter module, who built it, and whether
//! a known vulnerability reaches it.
//!
//! - [`deps`]: the module's dependency list, read from `cargo metadata` for its target, and
//!   written two ways: a CycloneDX SBOM beside the module ([`sbom`]) and a custom section
//!   inside it in cargo-auditable's format ([`section`]), so the list travels with the bytes
//!   the signature covers;
//! - [`signing`]: ed25519 keys, detached module signatures and the trust list `weft serve
//!   --module-signers` reads;
//! - [`osv`]: OSV advisories (a directory of JSON files) matched against SBOMs by crate name
//!   and SemVer range ([`version`]).
#![forbid(unsafe_code)]

pub mod audit;
pub mod deps;
pub mod osv;
pub mod sbom;
pub mod section;
pub mod signing;
pub mod version;

/// Why an input of the supply chain was refused: the file (and field) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

impl SupplyError {
    pub fn invalid(origin: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.into(),
            reason: reason.into(),
        }
    }
}

/// Reads a file of at most `limit` bytes: every file here is small (keys, signatures, SBOMs,
/// advisories), and one that is not is refused before it is read.
pub fn read_limited(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, SupplyError> {
    use std::io::Read as _;
    let io = |source| SupplyError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(SupplyError::invalid(
            path.display().to_string(),
            format!("larger than {limit} bytes; refused"),
        ));
    }
    Ok(bytes)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
