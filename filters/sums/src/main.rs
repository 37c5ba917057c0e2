//! `weft-sums DIR`: write `DIR/SHA256SUMS` for every `*.wasm` in DIR (sha256sum format, so
//! `sha256sum -c` and the control plane's remote-code references read the same file) and
//! print one size line per artifact.
//!
//! `weft-sums sbom ...` (the dependency section and SBOM of each module) and `weft-sums sign
//! ...` (detached signatures) are the other steps of `scripts/build-filters`: see
//! [`supply`]. `weft-sums drop-exports FILE...` removes the SDK callbacks no weft module
//! uses ([`UNUSED_CALLBACKS`]) before `wasm-opt`.
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
        Some("drop-exports") if args.len() > 1 => drop_exports(args.get(1..).unwrap_or_default()),
        Some(dir) if args.len() == 1 && !dir.starts_with('-') => run(&PathBuf::from(dir)),
        _ => {
            eprintln!(
                "usage: weft-sums DIR\n       weft-sums drop-exports FILE...\n       {}\n       {}",
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

/// proxy-wasm callbacks the Rust SDK exports from every module and no weft module overrides
/// (the SDK's default answers `Continue` or does nothing). Envoy enters the VM for a callback
/// only when the module exports it (proxy-wasm-cpp-host: `if (!wasm_->on_response_body_)
/// return Continue;`), and each entry is one of the few microseconds every wasm filter pays
/// per request (docs/wasm-floor.md): without `proxy_on_response_body` a response's body chunks
/// no longer enter the VM at all. A module that starts overriding one of these must leave
/// this list; `no_weft_module_overrides_a_dropped_callback` checks the sources.
pub const UNUSED_CALLBACKS: [&str; 13] = [
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_queue_ready",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_data",
    "proxy_on_upstream_connection_close",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_foreign_function",
];

/// Rewrites each module without [`UNUSED_CALLBACKS`], printing what it dropped.
fn drop_exports(files: &[String]) -> Result<(), String> {
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let (out, dropped) = weft_supply::section::drop_exports(&bytes, &UNUSED_CALLBACKS)
            .map_err(|e| format!("{file}: {e}"))?;
        std::fs::write(file, out).map_err(|e| format!("cannot write {file}: {e}"))?;
        println!(
            "{file}: dropped {} unused SDK callback exports",
            dropped.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::UNUSED_CALLBACKS;
    use std::path::Path;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// What would make a dropped callback matter: the SDK method behind it (`on_` + the
    /// export's name after `proxy_on_`, with `http_` for the HTTP ones), or the SDK feature
    /// whose answers arrive through it (gRPC calls, shared queues, stream contexts, foreign
    /// functions). No filter source may use one.
    #[test]
    fn no_weft_module_overrides_a_dropped_callback() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let filters = here.parent().unwrap();
        let mut files = Vec::new();
        rust_files(filters, &mut files);
        // This crate names them to list them.
        files.retain(|f| !f.starts_with(here));
        assert!(files.len() > 20, "{}", filters.display());
        let mut uses: Vec<String> = [
            "dispatch_grpc_call",
            "open_grpc_stream",
            "register_shared_queue",
            "resolve_shared_queue",
            "impl StreamContext",
            "call_foreign_function",
            "fn on_grpc_",
        ]
        .map(String::from)
        .to_vec();
        for callback in UNUSED_CALLBACKS {
            let base = callback.trim_start_matches("proxy_");
            uses.push(format!("fn {base}("));
            uses.push(format!("fn on_http_{}(", base.trim_start_matches("on_")));
        }
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for used in &uses {
                assert!(
                    !text.contains(used.as_str()),
                    "{} uses `{used}`: take its callback out of UNUSED_CALLBACKS",
                    file.display()
                );
            }
        }
    }
}
