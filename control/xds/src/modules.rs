//! The wasm modules the control plane serves to sidecars over HTTP, each with the SHA-256
//! Envoy checks before it runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

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
}

/// One module: its bytes and the SHA-256 sidecars are told to verify.
#[derive(Clone, Debug)]
pub struct WasmModule {
    pub bytes: Arc<Vec<u8>>,
    /// Lower-case hex.
    pub sha256: String,
}

/// Modules by name (`authz` for `authz.wasm`).
#[derive(Clone, Debug, Default)]
pub struct WasmModules {
    modules: BTreeMap<String, WasmModule>,
}

// === impl WasmModules ===

impl WasmModules {
    /// Reads `<dir>/SHA256SUMS` and every module it lists, refusing any whose bytes do not
    /// hash to the listed value.
    pub fn load_dir(dir: &Path) -> Result<Self, ModuleError> {
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
            modules.insert(
                name.to_string(),
                WasmModule {
                    bytes: Arc::new(bytes),
                    sha256: actual,
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
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&WasmModule> {
        self.modules.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }
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
