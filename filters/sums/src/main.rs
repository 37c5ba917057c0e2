//! `weft-sums DIR`: write `DIR/SHA256SUMS` for every `*.wasm` in DIR (sha256sum format, so
//! `sha256sum -c` and the control plane's remote-code references read the same file) and
//! print one size line per artifact.
//!
//! `weft-sums sbom ...` (the dependency section and SBOM of each module) and `weft-sums sign
//! ...` (detached signatures) are the other steps of `scripts/build-filters`: see
//! [`supply`].
#![forbid(unsafe_code)]

mod supply;

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sbom") => supply::sbom(args.get(1..).unwrap_or_default()),
        Some("sign") => supply::sign(args.get(1..).unwrap_or_default()),
        Some(dir) if args.len() == 1 && !dir.starts_with('-') => run(&PathBuf::from(dir)),
        _ => {
            eprintln!(
                "usage: weft-sums DIR\n       {}\n       {}",
                supply::SBOM_USAGE,
                supply::SIGN_USAGE
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weft-sums: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let mut artifacts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    artifacts.sort();
    if artifacts.is_empty() {
        return Err(format!("no .wasm artifacts in {}", dir.display()));
    }
    let mut sums = String::new();
    for path in &artifacts {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let digest = Sha256::digest(&bytes);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hex = digest.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let _ = writeln!(sums, "{hex}  {name}");
        println!(
            "{name:<16} {:>8} bytes  {:>7.1} KiB  sha256 {}",
            bytes.len(),
            bytes.len() as f64 / 1024.0,
            &hex[..16]
        );
    }
    let out = dir.join("SHA256SUMS");
    std::fs::write(&out, sums).map_err(|e| format!("cannot write {}: {e}", out.display()))
}
