use super::*;
use crate::sbom::{Bom, ModuleFacts};
use crate::section;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// A module `weft-x` using `serde` (which uses the proc-macro `serde_derive`, which uses
/// `syn`), `sha2` at runtime and `cc` as a build dependency, with a dev-dependency that
/// must not appear.
fn mk_metadata() -> Vec<u8> {
    let pkg = |id: &str, name: &str, version: &str, source: Option<&str>, proc_macro: bool| {
        serde_json::json!({
            "id": id, "name": name, "version": version, "source": source,
            "license": "MIT OR Apache-2.0",
            "targets": [{"kind": [if proc_macro { "proc-macro" } else { "lib" }]}],
        })
    };
    let dep = |pkg: &str, kind: Option<&str>| serde_json::json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]});
    serde_json::to_vec(&serde_json::json!({
        "packages": [
            pkg("x", "weft-x", "0.1.0", None, false),
            pkg("serde", "serde", "1.0.200", Some(CRATES_IO), false),
            pkg("derive", "serde_derive", "1.0.200", Some(CRATES_IO), true),
            pkg("syn", "syn", "2.0.1", Some(CRATES_IO), false),
            pkg("sha2", "sha2", "0.10.8", Some(CRATES_IO), false),
            pkg("cc", "cc", "1.1.0", Some(CRATES_IO), false),
            pkg("tempfile", "tempfile", "3.0.0", Some(CRATES_IO), false),
        ],
        "resolve": {"nodes": [
            {"id": "x", "deps": [dep("serde", None), dep("sha2", None), dep("cc", Some("build")), dep("tempfile", Some("dev"))]},
            {"id": "serde", "deps": [dep("derive", None)]},
            {"id": "derive", "deps": [dep("syn", None)]},
            {"id": "syn", "deps": []},
            {"id": "sha2", "deps": []},
            {"id": "cc", "deps": []},
            {"id": "tempfile", "deps": []},
        ]},
    }))
    .unwrap()
}

fn kinds(list: &DependencyList) -> Vec<(&str, Kind)> {
    list.packages
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect()
}

#[test]
fn runtime_and_build_time_packages_from_metadata() {
    let list = DependencyList::from_metadata(&mk_metadata(), "weft-x").unwrap();
    assert_eq!(
        kinds(&list),
        [
            ("cc", Kind::Build),
            ("serde", Kind::Runtime),
            ("serde_derive", Kind::Build),
            ("sha2", Kind::Runtime),
            ("syn", Kind::Build),
            ("weft-x", Kind::Runtime),
        ],
        "dev-dependencies are left out; a proc-macro and what it uses are build time"
    );
    let root = list.root().unwrap();
    assert_eq!(
        (root.name.as_str(), &root.source),
        ("weft-x", &Source::Local)
    );
    assert_eq!(root.dependencies.len(), 3);
}

#[test]
fn metadata_errors_name_the_problem() {
    let error = DependencyList::from_metadata(&mk_metadata(), "weft-y").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no workspace package \"weft-y\""),
        "{error}"
    );
    let error = DependencyList::from_metadata(b"{\"packages\": []}", "weft-x").unwrap_err();
    assert!(error.to_string().contains("resolve"), "{error}");
    assert!(DependencyList::from_metadata(b"not json", "weft-x").is_err());
}

/// A minimal valid module: the header and one empty type section.
fn mk_wasm() -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend_from_slice(&[1, 1, 0]);
    wasm
}

#[test]
fn the_section_round_trips_in_cargo_auditable_format() {
    let list = DependencyList::from_metadata(&mk_metadata(), "weft-x").unwrap();
    let info = section::VersionInfo::from_list(&list);
    let wasm = section::embed(&mk_wasm(), &info).unwrap();
    assert!(
        wasm.starts_with(&mk_wasm()),
        "the module's own sections are kept"
    );
    let read = section::read(&wasm).unwrap().unwrap();
    assert_eq!(read, info);
    // cargo-auditable's JSON: runtime is the default kind, the root is flagged.
    let json = serde_json::to_value(&read).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["packages"][0]["name"], "cc");
    assert_eq!(json["packages"][0]["kind"], "build");
    assert!(json["packages"][1].get("kind").is_none());
    assert_eq!(json["packages"][5]["root"], true);
    // Embedding twice replaces the section.
    let again = section::embed(&wasm, &info).unwrap();
    assert_eq!(again, wasm);
    assert_eq!(section::read(&mk_wasm()).unwrap(), None);
}

#[test]
fn hostile_modules_are_refused_not_panicked_on() {
    let info = section::VersionInfo::from_list(
        &DependencyList::from_metadata(&mk_metadata(), "weft-x").unwrap(),
    );
    let good = section::embed(&mk_wasm(), &info).unwrap();
    for bad in [
        b"".to_vec(),
        b"\0asm".to_vec(),
        b"\x7fELF\x01\0\0\0".to_vec(),
        [
            b"\0asm\x01\0\0\0".as_slice(),
            &[0, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ]
        .concat(),
        [b"\0asm\x01\0\0\0".as_slice(), &[0, 5, 9, b'a']].concat(),
        good[..good.len() - 3].to_vec(),
    ] {
        assert!(section::read(&bad).is_err(), "{bad:?}");
    }
    // Every truncation and every flipped byte of the section is an error or a different
    // list, never a panic.
    for cut in 8..good.len() {
        let _ = section::read(&good[..cut]);
    }
    for at in 8..good.len() {
        let mut flipped = good.clone();
        flipped[at] ^= 0x55;
        let _ = section::read(&flipped);
    }
}

#[test]
fn sbom_names_the_module_and_every_package() {
    let list = DependencyList::from_metadata(&mk_metadata(), "weft-x").unwrap();
    let facts = ModuleFacts {
        module: "x",
        sha256: &"ab".repeat(32),
        target: "wasm32-wasip1",
        profile: "wasm",
    };
    let bom = Bom::new(&list, &facts).unwrap();
    let json = bom.to_json().unwrap();
    assert_eq!(
        Bom::new(&list, &facts).unwrap().to_json().unwrap(),
        json,
        "reproducible"
    );
    let parsed = Bom::parse(&json, "x.cdx.json").unwrap();
    assert_eq!(parsed, bom);
    assert_eq!(parsed.module_sha256(), Some("ab".repeat(32).as_str()));
    assert_eq!(parsed.property("weft:target"), Some("wasm32-wasip1"));
    assert_eq!(parsed.metadata.component.name, "weft-x");
    let serde = parsed
        .components
        .iter()
        .find(|c| c.name == "serde")
        .unwrap();
    assert_eq!(serde.purl.as_deref(), Some("pkg:cargo/serde@1.0.200"));
    assert_eq!(serde.scope.as_deref(), Some("required"));
    assert_eq!(serde.crates_io(), Some(("serde", "1.0.200")));
    let syn = parsed.components.iter().find(|c| c.name == "syn").unwrap();
    assert!(syn.build_time());
    assert_eq!(
        parsed.components.len(),
        5,
        "the module is the metadata component"
    );
    let x = parsed
        .dependencies
        .iter()
        .find(|d| d.reference == "local:weft-x@0.1.0")
        .unwrap();
    assert_eq!(
        x.depends_on,
        [
            "pkg:cargo/cc@1.1.0",
            "pkg:cargo/serde@1.0.200",
            "pkg:cargo/sha2@0.10.8"
        ]
    );
    let error = Bom::parse(br#"{"bomFormat":"SPDX","specVersion":"1","version":1,"metadata":{"component":{"type":"a","bom-ref":"b","name":"c","version":"d"}}}"#, "f.json").unwrap_err();
    assert!(
        error.to_string().contains("f.json: field `bomFormat`"),
        "{error}"
    );
}
