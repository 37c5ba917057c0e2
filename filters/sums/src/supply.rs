//! The supply-chain steps of `scripts/build-filters`, after `wasm-opt`:
//!
//! - `sbom`: for each module, its dependency list from `cargo metadata` (for the module's
//!   target), embedded in the module as cargo-auditable's `.dep-v0` section, then the
//!   CycloneDX SBOM `<module>.cdx.json` with the final module's SHA-256;
//! - `sign`: an ed25519 signature `<module>.wasm.sig` of every module, with the key given
//!   (created 0600 when `--create` and absent) and its public key written for trust lists.

use std::path::{Path, PathBuf};

use weft_supply::deps::DependencyList;
use weft_supply::sbom::{Bom, ModuleFacts};
use weft_supply::section::{self, VersionInfo};
use weft_supply::signing::{self, SigningKey};

pub const SBOM_USAGE: &str =
    "weft-sums sbom --metadata FILE --target TRIPLE --profile NAME DIR MODULE...";
pub const SIGN_USAGE: &str = "weft-sums sign --key FILE [--create] [--public FILE] DIR";

/// `--flag VALUE` pairs and bare flags, then positional arguments.
struct Args {
    options: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], with_value: &[&str], usage: &str) -> Result<Self, String> {
        let mut options = Vec::new();
        let mut positional = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if !arg.starts_with("--") {
                positional.push(arg.clone());
            } else if with_value.contains(&arg.as_str()) {
                let value = iter
                    .next()
                    .ok_or(format!("{arg} needs a value; usage: {usage}"))?;
                options.push((arg.clone(), Some(value.clone())));
            } else {
                options.push((arg.clone(), None));
            }
        }
        Ok(Self {
            options,
            positional,
        })
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn required(&self, name: &str, usage: &str) -> Result<&str, String> {
        self.value(name)
            .ok_or_else(|| format!("{name} is required; usage: {usage}"))
    }

    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, v)| n == name && v.is_none())
    }
}

pub fn sbom(args: &[String]) -> Result<(), String> {
    let usage = SBOM_USAGE;
    let args = Args::parse(args, &["--metadata", "--target", "--profile"], usage)?;
    let metadata_path = args.required("--metadata", usage)?;
    let target = args.required("--target", usage)?;
    let profile = args.required("--profile", usage)?;
    let (dir, modules) = match args.positional.split_first() {
        Some((dir, modules)) if !modules.is_empty() => (PathBuf::from(dir), modules),
        _ => return Err(format!("usage: {usage}")),
    };
    let metadata =
        std::fs::read(metadata_path).map_err(|e| format!("cannot read {metadata_path}: {e}"))?;
    for module in modules {
        let list = DependencyList::from_metadata(&metadata, &format!("weft-{module}"))
            .map_err(|e| e.to_string())?;
        let path = dir.join(format!("{module}.wasm"));
        let wasm =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let wasm = section::embed(&wasm, &VersionInfo::from_list(&list))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        write(&path, &wasm)?;
        let sha256 = weft_supply::sha256_hex(&wasm);
        let facts = ModuleFacts {
            module,
            sha256: &sha256,
            target,
            profile,
        };
        let bom = Bom::new(&list, &facts).map_err(|e| e.to_string())?;
        let json = bom.to_json().map_err(|e| e.to_string())?;
        let out = dir.join(weft_supply::sbom::file_name(module));
        write(&out, &json)?;
        println!(
            "{module:<16} {} packages ({} compiled in)  sbom {}",
            list.packages.len(),
            list.packages
                .iter()
                .filter(|p| p.kind == weft_supply::deps::Kind::Runtime)
                .count(),
            out.display()
        );
    }
    Ok(())
}

pub fn sign(args: &[String]) -> Result<(), String> {
    let usage = SIGN_USAGE;
    let args = Args::parse(args, &["--key", "--public"], usage)?;
    let key_path = PathBuf::from(args.required("--key", usage)?);
    let [dir] = args.positional.as_slice() else {
        return Err(format!("usage: {usage}"));
    };
    let key = load_or_create(&key_path, args.flag("--create"))?;
    if let Some(public) = args.value("--public") {
        let public = PathBuf::from(public);
        if let Some(parent) = public.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        write(&public, key.public_key().to_pem().as_bytes())?;
    }
    let mut modules: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {dir}: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    modules.sort();
    let written = signing::sign_files(&key, &modules).map_err(|e| e.to_string())?;
    println!(
        "signed {} modules with key {} ({})",
        written.len(),
        key.public_key().key_id(),
        key_path.display()
    );
    Ok(())
}

/// The key at `path`; with `create`, a new one when there is none (created 0600 in a 0700
/// directory; two builds racing to create it both end up with the one that won).
fn load_or_create(path: &Path, create: bool) -> Result<SigningKey, String> {
    if create && !path.exists() {
        if let Some(parent) = path.parent() {
            weft_store::private::private_dir(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let (_, pem) = SigningKey::generate().map_err(|e| e.to_string())?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop);
        match created {
            Ok(()) => {
                // Created empty by this process: now written 0600 in full.
                weft_store::private::write_atomic(path, pem.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!(
                    "weft-sums: created the module signing key {}",
                    path.display()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    SigningKey::load(path).map_err(|e| e.to_string())
}

/// Replaces `path` atomically (a temporary file renamed over it): a reader never sees half.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
