//! weft's mesh identity.
//!
//! - [`Ca`]: ECDSA P-256 roots kept in the control plane's data directory, short-lived X.509
//!   SVIDs (`spiffe://<trust-domain>/ns/<ns>/sa/<service>`), a trust bundle holding every root
//!   a sidecar must accept, and planned root rotation;
//! - [`Tokens`]: join tokens binding a sidecar to one identity (HMAC-SHA256, expiring,
//!   durably revocable).
//!
//! The xDS server serves the SVIDs over SDS only to the identity a sidecar's token names.
#![forbid(unsafe_code)]

mod authority;
mod files;
pub mod kek;
pub mod rekey;
mod root;
pub mod secrets;
mod shared_roots;
mod token;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use authority::{Ca, CaSettings, Svid, MAX_ROOT_PROPAGATION, MAX_ROOT_TTL, MAX_SVID_TTL};
pub use kek::{Kek, Sealed};
pub use root::RootInfo;
pub use token::{Claims, TokenError, TokenRecord, Tokens, MAX_TOKEN_TTL};

/// The control plane's own namespace (`spiffe://<domain>/ns/weft-system/sa/weft-control` is
/// the xDS server's certificate): no join token and no sidecar SVID is ever made for it, so
/// no workload can present itself as the control plane.
pub const RESERVED_NAMESPACE: &str = "weft-system";

/// Errors of the CA and the token store.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{what} {value:?}: use letters, digits, '-', '.' or '_' (a SPIFFE path segment)")]
    BadName { what: &'static str, value: String },
    #[error("the operating system's random generator failed")]
    Random,
    #[error("the CA has no root")]
    NoRoot,
    #[error("server name {0:?}: neither an IP address nor a DNS name (letters, digits, '-', '.')")]
    BadServerName(String),
    #[error("{what} {value:?} is reserved for the control plane's own identity")]
    Reserved { what: &'static str, value: String },
    #[error("{what} of {seconds} s is out of range (at most {max} s)")]
    OutOfRange {
        what: &'static str,
        seconds: u64,
        max: u64,
    },
    #[error("{0}: a time out of the representable range")]
    Time(&'static str),
    #[error("sealed key {place}: {reason}")]
    Sealed { place: String, reason: String },
    /// Shared state (etcd) failed: unreachable, or a record that does not decode.
    #[error("{0}")]
    Shared(String),
    #[error("{0} was changed by other replicas at every attempt; try again")]
    Contended(String),
}

impl CaError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn rcgen(error: rcgen::Error) -> Self {
        Self::Certificate(error.to_string())
    }
}

/// The CA and the tokens of one control plane, both under one directory
/// (`<data-dir>/ca`).
pub struct Identity {
    pub ca: Ca,
    pub tokens: Tokens,
}

impl Identity {
    pub fn open(dir: &Path, settings: CaSettings) -> Result<Self, CaError> {
        Ok(Self {
            ca: Ca::open(dir, settings)?,
            tokens: Tokens::open(dir)?,
        })
    }

    /// The CA (document `ca/mesh`) and the tokens (`ca/token-secret`, `tokens/<id>`) in
    /// shared state, every private key and the token secret sealed with `kek`.
    pub fn open_shared(
        state: std::sync::Arc<dyn weft_store::SharedState>,
        kek: std::sync::Arc<Kek>,
        settings: CaSettings,
    ) -> Result<Self, CaError> {
        Ok(Self {
            ca: Ca::open_shared(
                std::sync::Arc::clone(&state),
                "ca/mesh",
                std::sync::Arc::clone(&kek),
                settings,
            )?,
            tokens: Tokens::open_shared(state, &kek)?,
        })
    }

    /// Reads what other replicas changed (a root rotation, tokens created or revoked);
    /// whether anything did.
    pub fn reload(&self) -> Result<bool, CaError> {
        let roots = self.ca.reload()?;
        let tokens = self.tokens.reload()?;
        Ok(roots || tokens)
    }
}
