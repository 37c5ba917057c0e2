//! `weft module keygen|sign|verify|audit`: the trusted build chain of the filter modules on
//! the operator's machine. `keygen` and `sign` make and use an ed25519 key, `verify` checks a
//! modules directory exactly as `weft serve --module-signers` does, `audit` compares each
//! module's SBOM with OSV advisories and names the sidecars running an affected module.
//!
//! Under `weft module`, not `weft audit` (the API's audit log): the two audits share a word,
//! not a subject.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::Value;
use weft_supply::audit::{Report, SidecarModules};
use weft_supply::signing::{SigningKey, TrustList};

use crate::client::{Client, Failure};
use crate::output::{print, table, Output};
use crate::Exit;

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Create an ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key (PEM, for
    /// trust lists); refuses to overwrite a key.
    Keygen {
        /// The private key file to create.
        #[arg(long)]
        key: PathBuf,
        /// The public key file (default: the key's path with `.pub`).
        #[arg(long)]
        public: Option<PathBuf>,
    },
    /// Sign modules: writes `<module>.wasm.sig` beside each (a directory: every `*.wasm` in it).
    Sign {
        #[arg(long)]
        key: PathBuf,
        #[arg(required = true)]
        modules: Vec<PathBuf>,
    },
    /// Check a modules directory as `weft serve --module-signers` does (SHA256SUMS and a
    /// trusted signature for every module); exit 3 when any check fails.
    Verify {
        #[arg(long, env = "WEFT_MODULE_SIGNERS")]
        module_signers: PathBuf,
        #[arg(long, env = "WEFT_MODULES_DIR", default_value = "dist/filters")]
        modules_dir: PathBuf,
    },
    /// Compare every module's SBOM (`<module>.cdx.json`) with the OSV advisories in a
    /// directory; print the affected modules, the fixed versions and the sidecars running
    /// them (from the module hashes they acknowledged). Exit 8 when anything is affected.
    Audit {
        /// A directory of OSV JSON advisories (e.g. RustSec's crates/ export).
        #[arg(long)]
        advisories: PathBuf,
        #[arg(long, env = "WEFT_MODULES_DIR", default_value = "dist/filters")]
        modules_dir: PathBuf,
        /// Do not ask the server which sidecars run which module.
        #[arg(long)]
        offline: bool,
    },
}

/// Runs a module command; `client` is asked for sidecars by `audit` (absent: not connected).
pub fn run(
    command: ModuleCommand,
    client: impl FnOnce() -> Result<Client, Failure>,
    format: Output,
) -> Result<(), Failure> {
    match command {
        ModuleCommand::Keygen { key, public } => keygen(&key, public),
        ModuleCommand::Sign { key, modules } => sign(&key, &modules),
        ModuleCommand::Verify {
            module_signers,
            modules_dir,
        } => verify(&module_signers, &modules_dir, format),
        ModuleCommand::Audit {
            advisories,
            modules_dir,
            offline,
        } => {
            let sidecars = if offline {
                Vec::new()
            } else {
                match client().and_then(|c| c.get("/api/v1/xds/sidecars")) {
                    Ok(body) => sidecar_modules(&body),
                    Err(failure) => {
                        eprintln!("sidecars: unavailable ({}); modules only", failure.message);
                        Vec::new()
                    }
                }
            };
            audit(&advisories, &modules_dir, &sidecars, format)
        }
    }
}

fn usage(error: impl std::fmt::Display) -> Failure {
    Failure::new(Exit::Usage, error.to_string())
}

fn keygen(key: &Path, public: Option<PathBuf>) -> Result<(), Failure> {
    if key.exists() {
        return Err(usage(format!(
            "{} exists; refusing to overwrite a signing key",
            key.display()
        )));
    }
    let public = public.unwrap_or_else(|| key.with_extension("pub"));
    let (signing, pem) = SigningKey::generate().map_err(usage)?;
    weft_store::private::write_atomic(key, pem.as_bytes())
        .map_err(|e| usage(format!("{}: {e}", key.display())))?;
    std::fs::write(&public, signing.public_key().to_pem())
        .map_err(|e| usage(format!("{}: {e}", public.display())))?;
    println!(
        "key {} (0600), public key {} (id {})",
        key.display(),
        public.display(),
        signing.public_key().key_id()
    );
    Ok(())
}

fn sign(key: &Path, paths: &[PathBuf]) -> Result<(), Failure> {
    let signing = SigningKey::load(key).map_err(usage)?;
    let mut modules = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            found.sort();
            modules.extend(found);
        } else {
            modules.push(path.clone());
        }
    }
    let written = weft_supply::signing::sign_files(&signing, &modules).map_err(usage)?;
    for file in &written {
        println!("{}", file.display());
    }
    println!(
        "signed {} module(s) with key {}",
        written.len(),
        signing.public_key().key_id()
    );
    Ok(())
}

fn verify(signers: &Path, dir: &Path, format: Output) -> Result<(), Failure> {
    let trust = TrustList::load(signers).map_err(usage)?;
    let modules = weft_xds::WasmModules::load_dir_signed(dir, &trust)
        .map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
    let summary = serde_json::to_value(modules.summary()).unwrap_or_default();
    print(format, &summary, |value| {
        let rows: Vec<Vec<String>> = value
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                vec![
                    crate::output::text(&m["name"]),
                    crate::output::text(&m["sha256"]),
                    crate::output::text(&m["signer"]),
                ]
            })
            .collect();
        table(&["MODULE", "SHA256", "SIGNER"], &rows)
    });
    Ok(())
}

/// The modules each sidecar reported running, from `GET /api/v1/xds/sidecars`.
fn sidecar_modules(body: &Value) -> Vec<SidecarModules> {
    body["sidecars"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| SidecarModules {
            sidecar: format!(
                "{}/{}/{} {}",
                crate::output::text(&s["namespace"]),
                crate::output::text(&s["service"]),
                crate::output::text(&s["version"]),
                crate::output::text(&s["node_id"]),
            ),
            modules: s["modules"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(name, hash)| Some((name.clone(), hash.as_str()?.to_string())))
                .collect(),
        })
        .collect()
}

fn audit(
    advisories: &Path,
    modules_dir: &Path,
    sidecars: &[SidecarModules],
    format: Output,
) -> Result<(), Failure> {
    let advisories = weft_supply::osv::load_dir(advisories).map_err(usage)?;
    let sboms = weft_supply::audit::load_sboms(modules_dir)
        .map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
    let report = weft_supply::audit::audit(&sboms, &advisories, sidecars);
    let value = serde_json::to_value(&report).unwrap_or_default();
    print(format, &value, |_| audit_text(&report));
    if report.affected.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Affected,
            format!(
                "{} module(s) affected by known advisories",
                report.affected.len()
            ),
        ))
    }
}

fn audit_text(report: &Report) -> String {
    let mut out = String::new();
    if report.affected.is_empty() {
        out.push_str(&format!(
            "no module affected ({} advisories, modules: {})\n",
            report.advisories,
            report.audited_modules.join(", ")
        ));
    }
    for module in &report.affected {
        out.push_str(&format!(
            "AFFECTED {} (sha256 {})\n",
            module.module, module.sha256
        ));
        let rows: Vec<Vec<String>> = module
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.advisory.clone(),
                    format!(
                        "{}@{}{}",
                        f.package,
                        f.version,
                        if f.build_time { " (build time)" } else { "" }
                    ),
                    f.fixed
                        .clone()
                        .map_or("no fixed version".into(), |v| format!("fixed in {v}")),
                    f.summary.clone(),
                ]
            })
            .collect();
        for line in table(&["ADVISORY", "PACKAGE", "FIX", "SUMMARY"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
        if module.sidecars.is_empty() {
            out.push_str("  sidecars running it: none\n");
        } else {
            out.push_str("  sidecars running it:\n");
            for sidecar in &module.sidecars {
                out.push_str(&format!("    {sidecar}\n"));
            }
        }
    }
    for u in &report.unaudited {
        out.push_str(&format!(
            "not audited: {} runs {} sha256 {} (no SBOM for that build here)\n",
            u.sidecar, u.module, u.sha256
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_modules_read_only_well_formed_hashes() {
        let body = serde_json::json!({"sidecars": [
            {"namespace": "shop", "service": "reviews", "version": "v1", "node_id": "r-1",
             "modules": {"authz": "ab", "canary": 7, "fault": null}},
            {"namespace": "shop", "service": "cart", "version": "v2", "node_id": "c-1"},
            "not an object",
        ]});
        let sidecars = sidecar_modules(&body);
        assert_eq!(sidecars.len(), 3);
        assert_eq!(sidecars[0].sidecar, "shop/reviews/v1 r-1");
        assert_eq!(
            sidecars[0].modules,
            std::collections::BTreeMap::from([("authz".to_string(), "ab".to_string())])
        );
        assert!(sidecars[1].modules.is_empty() && sidecars[2].modules.is_empty());
        assert!(sidecar_modules(&serde_json::json!({"sidecars": 3})).is_empty());
    }

    #[test]
    fn the_report_names_fix_build_time_and_sidecars() {
        let report = Report {
            advisories: 2,
            affected: vec![weft_supply::audit::ModuleReport {
                module: "authz".into(),
                sha256: "ab".into(),
                findings: vec![weft_supply::osv::Finding {
                    advisory: "RUSTSEC-1".into(),
                    summary: "bad".into(),
                    package: "syn".into(),
                    version: "2.0.1".into(),
                    fixed: None,
                    build_time: true,
                }],
                sidecars: vec!["shop/reviews/v1 r-1".into()],
            }],
            audited_modules: vec!["authz".into()],
            unaudited: vec![weft_supply::audit::Unaudited {
                sidecar: "shop/cart/v2 c-1".into(),
                module: "authz".into(),
                sha256: "cd".into(),
            }],
        };
        let text = audit_text(&report);
        assert!(text.contains("AFFECTED authz (sha256 ab)"), "{text}");
        assert!(
            text.contains("syn@2.0.1 (build time)") && text.contains("no fixed version"),
            "{text}"
        );
        assert!(text.contains("    shop/reviews/v1 r-1"), "{text}");
        assert!(
            text.contains("not audited: shop/cart/v2 c-1 runs authz sha256 cd"),
            "{text}"
        );
    }
}
