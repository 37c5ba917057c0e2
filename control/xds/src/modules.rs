//! The wasm modules the control plane serves to sidecars over HTTP, each with the SHA-256
//! Envoy checks before it runs it, and (with a trust list, `weft serve --module-signers`)
//! only when a trusted key signed its exact bytes: `SHA256SUMS` says which bytes the
//! sidecars must get, the signature says who made them. Someone who can write the modules
//! directory can rewrite the sums, not the signatures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use weft_supply::signing::{SignatureError, Signer, TrustList};

/// Why a modules directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `<sha256>  <file>.wasm`")]
    BadSumsLine { path: String, line: usize },
    #[error("{file}: sha256 is {actual}, SHA256SUMS says {declared}; refusing to serve it")]
    HashMismatch {
        file: String,
        declared: String,
        actual: String,
    },
    #[error("{file}: {reason}; refusing to serve it")]
    Signature {
        file: String,
        reason: SignatureError,
    },
}

/// One module: its bytes and the SHA-256 sidecars are told to verify.
#[derive(Clone, Debug)]
pub struct WasmModule {
    pub bytes: Arc<Vec<u8>>,
    /// Lower-case hex.
    pub sha256: String,
    /// The trusted key whose signature was checked; `None` when loaded without a trust list.
    pub signer: Option<Signer>,
}

/// Modules by name (`authz` for `authz.wasm`).
#[derive(Clone, Debug, Default)]
pub struct WasmModules {
    modules: BTreeMap<String, WasmModule>,
}

// === impl WasmModules ===

impl WasmModules {
    /// Reads `<dir>/SHA256SUMS` and every module it lists, refusing any whose bytes do not
    /// hash to the listed value. No signature is checked: see [`WasmModules::load_dir_signed`].
    pub fn load_dir(dir: &Path) -> Result<Self, ModuleError> {
        Self::load(dir, None)
    }

    /// [`WasmModules::load_dir`], and every module must carry `<file>.sig`, an ed25519
    /// signature of its bytes by a key of `signers`; one that does not refuses the whole
    /// directory (a partial set would serve sidecars a mix).
    pub fn load_dir_signed(dir: &Path, signers: &TrustList) -> Result<Self, ModuleError> {
        Self::load(dir, Some(signers))
    }

    fn load(dir: &Path, signers: Option<&TrustList>) -> Result<Self, ModuleError> {
        let sums_path = dir.join("SHA256SUMS");
        let sums = read(&sums_path)?;
        let sums = String::from_utf8_lossy(&sums).into_owned();
        let mut modules = BTreeMap::new();
        for (index, line) in sums.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || ModuleError::BadSumsLine {
                path: sums_path.display().to_string(),
                line: index + 1,
            };
            let (declared, file) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let file = file.trim().trim_start_matches('*');
            let name = file.strip_suffix(".wasm").ok_or_else(bad)?;
            let bytes = read(&dir.join(file))?;
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(declared) {
                return Err(ModuleError::HashMismatch {
                    file: file.to_string(),
                    declared: declared.to_string(),
                    actual,
                });
            }
            let signer = match signers {
                Some(signers) => Some(
                    signers
                        .verify_file(dir, file, &bytes)
                        .map_err(|reason| ModuleError::Signature {
                            file: file.to_string(),
                            reason,
                        })?
                        .clone(),
                ),
                None => None,
            };
            modules.insert(
                name.to_string(),
                WasmModule {
                    bytes: Arc::new(bytes),
                    sha256: actual,
                    signer,
                },
            );
        }
        Ok(Self { modules })
    }

    /// Adds a module with the hash sidecars will be told to expect. `load_dir` computes it;
    /// passing another value makes every sidecar refuse the module (tests use that).
    pub fn insert(&mut self, name: &str, bytes: Vec<u8>, declared_sha256: String) {
        self.modules.insert(
            name.to_string(),
            WasmModule {
                bytes: Arc::new(bytes),
                sha256: declared_sha256,
                signer: None,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&WasmModule> {
        self.modules.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Name, SHA-256 and signer of every module: what `weft status` shows as served.
    pub fn summary(&self) -> Vec<ServedModule> {
        self.modules
            .iter()
            .map(|(name, m)| ServedModule {
                name: name.clone(),
                sha256: m.sha256.clone(),
                signer: m.signer.as_ref().map(|s| s.key_id.clone()),
            })
            .collect()
    }
}

/// One served module as the sidecar view shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServedModule {
    pub name: String,
    pub sha256: String,
    /// Key id of the trusted signer (`None`: served without a trust list).
    pub signer: Option<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, ModuleError> {
    std::fs::read(path).map_err(|source| ModuleError::Io {
        path: path.display().to_string(),
        source,
    })
}
