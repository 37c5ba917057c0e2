//! `weft module audit`: every module's SBOM against a set of OSV advisories, and the
//! sidecars running each affected module (by the module hashes they acknowledged).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::osv::{findings, Advisory, Finding};
use crate::sbom::Bom;
use crate::SupplyError;

/// One module's SBOM, checked against the module beside it.
#[derive(Debug)]
pub struct ModuleSbom {
    pub module: String,
    /// SHA-256 of the module the SBOM describes.
    pub sha256: String,
    pub bom: Bom,
}

/// A sidecar and the modules it runs (name -> SHA-256).
#[derive(Debug)]
pub struct SidecarModules {
    /// `<namespace>/<service>/<version> <node id>`.
    pub sidecar: String,
    pub modules: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleReport {
    pub module: String,
    pub sha256: String,
    pub findings: Vec<Finding>,
    /// The sidecars running exactly this module.
    pub sidecars: Vec<String>,
}

/// A module hash a sidecar runs that no SBOM describes (an older build): not audited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unaudited {
    pub sidecar: String,
    pub module: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub advisories: usize,
    /// Only the affected modules.
    pub affected: Vec<ModuleReport>,
    pub audited_modules: Vec<String>,
    pub unaudited: Vec<Unaudited>,
}

/// Every `<module>.cdx.json` of `dir`; each must describe the `<module>.wasm` beside it
/// (its recorded SHA-256), so a stale or swapped SBOM is an error, not a clean audit.
pub fn load_sboms(dir: &Path) -> Result<Vec<ModuleSbom>, SupplyError> {
    let io = |source| SupplyError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".cdx.json"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let bom = Bom::parse(
            &crate::read_limited(&file, crate::sbom::MAX_SBOM_BYTES)?,
            &origin,
        )?;
        let module = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".cdx.json"))
            .unwrap_or_default()
            .to_string();
        let recorded = bom.module_sha256().map(str::to_string).ok_or_else(|| {
            SupplyError::invalid(&origin, "field `metadata.component.hashes`: no SHA-256")
        })?;
        let wasm = dir.join(format!("{module}.wasm"));
        let bytes = std::fs::read(&wasm).map_err(|source| SupplyError::Io {
            path: wasm.display().to_string(),
            source,
        })?;
        let actual = crate::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&recorded) {
            return Err(SupplyError::invalid(
                &origin,
                format!("describes a module with sha256 {recorded}, but {} has {actual} (a stale or swapped SBOM: rebuild with scripts/build-filters)", wasm.display()),
            ));
        }
        out.push(ModuleSbom {
            module,
            sha256: actual,
            bom,
        });
    }
    if out.is_empty() {
        return Err(SupplyError::invalid(
            dir.display().to_string(),
            "no <module>.cdx.json SBOM (build the modules with scripts/build-filters)",
        ));
    }
    Ok(out)
}

pub fn audit(sboms: &[ModuleSbom], advisories: &[Advisory], sidecars: &[SidecarModules]) -> Report {
    let mut affected = Vec::new();
    for sbom in sboms {
        let findings = findings(&sbom.bom, advisories);
        if findings.is_empty() {
            continue;
        }
        let mut running: Vec<String> = sidecars
            .iter()
            .filter(|s| {
                s.modules
                    .values()
                    .any(|h| h.eq_ignore_ascii_case(&sbom.sha256))
            })
            .map(|s| s.sidecar.clone())
            .collect();
        running.sort();
        affected.push(ModuleReport {
            module: sbom.module.clone(),
            sha256: sbom.sha256.clone(),
            findings,
            sidecars: running,
        });
    }
    let mut unaudited = Vec::new();
    for sidecar in sidecars {
        for (module, sha256) in &sidecar.modules {
            if !sboms.iter().any(|s| s.sha256.eq_ignore_ascii_case(sha256)) {
                unaudited.push(Unaudited {
                    sidecar: sidecar.sidecar.clone(),
                    module: module.clone(),
                    sha256: sha256.clone(),
                });
            }
        }
    }
    Report {
        advisories: advisories.len(),
        affected,
        audited_modules: sboms.iter().map(|s| s.module.clone()).collect(),
        unaudited,
    }
}

#[cfg(test)]
mod tests;
