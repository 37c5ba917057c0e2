//! One root of the mesh CA: what is known about it, its certificate and its signing key,
//! shared by the CA's file and shared-state backends.

use std::path::Path;

use rcgen::{Issuer, KeyPair};
use serde::{Deserialize, Serialize};

use crate::kek::Sealed;
use crate::CaError;

/// What is known about one root, persisted in `roots.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    pub generation: u64,
    pub created_ms: u64,
    pub not_after_ms: u64,
    /// Signs from this time on (creation for the first root).
    pub active_from_ms: u64,
    /// A newer root took over at this time; the root stays trusted one SVID lifetime more.
    pub retired_at_ms: Option<u64>,
    /// Hex serial number of the root certificate.
    pub serial: String,
}

pub(crate) struct Root {
    pub(crate) info: RootInfo,
    pub(crate) cert_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    /// Its key sealed with the KEK, when the roots live in shared state.
    pub(crate) sealed: Option<Sealed>,
}

/// A root from its certificate and key PEM; `place` names them in errors.
pub(crate) fn root_from_pem(
    info: RootInfo,
    cert_pem: String,
    key_pem: &str,
    sealed: Option<Sealed>,
    place: &Path,
) -> Result<Root, CaError> {
    let corrupt = |e: rcgen::Error| CaError::Corrupt {
        path: place.to_path_buf(),
        reason: e.to_string(),
    };
    let key = KeyPair::from_pem(key_pem).map_err(corrupt)?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(corrupt)?;
    Ok(Root {
        info,
        cert_pem,
        issuer,
        sealed,
    })
}
