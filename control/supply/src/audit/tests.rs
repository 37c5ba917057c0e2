use super::*;
use crate::deps::{DependencyList, Kind, Package, Source};
use crate::sbom::ModuleFacts;

fn mk_list(p256: &str) -> DependencyList {
    let package = |name: &str, version: &str, source: Source, dependencies: Vec<usize>| Package {
        name: name.into(),
        version: version.into(),
        source,
        kind: Kind::Runtime,
        license: None,
        dependencies,
    };
    DependencyList {
        packages: vec![
            package("p256", p256, Source::CratesIo, vec![]),
            package("weft-authz", "0.1.0", Source::Local, vec![0]),
        ],
        root: 1,
    }
}

/// `<module>.wasm` and its SBOM in `dir`; returns the module's hash.
fn mk_module(dir: &Path, module: &str, bytes: &[u8], p256: &str) -> String {
    std::fs::write(dir.join(format!("{module}.wasm")), bytes).unwrap();
    let sha256 = crate::sha256_hex(bytes);
    let facts = ModuleFacts {
        module,
        sha256: &sha256,
        target: "wasm32-wasip1",
        profile: "wasm",
    };
    let bom = Bom::new(&mk_list(p256), &facts).unwrap();
    std::fs::write(
        dir.join(crate::sbom::file_name(module)),
        bom.to_json().unwrap(),
    )
    .unwrap();
    sha256
}

fn mk_advisory() -> Advisory {
    serde_json::from_value(serde_json::json!({
        "id": "A-1", "summary": "s",
        "affected": [{"package": {"ecosystem": "crates.io", "name": "p256"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.13.2"}]}]}],
    }))
    .unwrap()
}

#[test]
fn affected_modules_name_the_sidecars_running_their_exact_hash() {
    let dir = tempfile::tempdir().unwrap();
    let old = mk_module(dir.path(), "authz", b"\0asm old", "0.13.1");
    let new = mk_module(dir.path(), "canary", b"\0asm new", "0.13.2");
    let sboms = load_sboms(dir.path()).unwrap();
    let sidecars = [
        SidecarModules {
            sidecar: "shop/reviews/v1 r-1".into(),
            modules: BTreeMap::from([("authz".into(), old.clone()), ("canary".into(), new)]),
        },
        SidecarModules {
            sidecar: "shop/cart/v1 c-1".into(),
            modules: BTreeMap::from([("authz".into(), "ff".repeat(32))]),
        },
    ];
    let report = audit(&sboms, &[mk_advisory()], &sidecars);
    assert_eq!(report.affected.len(), 1, "{report:?}");
    let authz = &report.affected[0];
    assert_eq!(
        (authz.module.as_str(), authz.sha256.as_str()),
        ("authz", old.as_str())
    );
    assert_eq!(authz.findings[0].fixed.as_deref(), Some("0.13.2"));
    assert_eq!(authz.sidecars, ["shop/reviews/v1 r-1"]);
    assert_eq!(
        report.unaudited.len(),
        1,
        "a hash no SBOM describes is said, not guessed"
    );
    assert_eq!(report.unaudited[0].sidecar, "shop/cart/v1 c-1");
}

#[test]
fn a_stale_or_missing_sbom_is_an_error_not_a_clean_audit() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_sboms(dir.path()).unwrap_err().to_string();
    assert!(error.contains("no <module>.cdx.json"), "{error}");
    mk_module(dir.path(), "authz", b"\0asm old", "0.13.1");
    std::fs::write(dir.path().join("authz.wasm"), b"\0asm rebuilt").unwrap();
    let error = load_sboms(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("authz.cdx.json") && error.contains("stale or swapped"),
        "{error}"
    );
    std::fs::write(dir.path().join("authz.cdx.json"), b"{\"bomFormat\": 1}").unwrap();
    assert!(load_sboms(dir.path())
        .unwrap_err()
        .to_string()
        .contains("authz.cdx.json"));
}
