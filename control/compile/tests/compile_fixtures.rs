//! Fixture tests: each `fixtures/<name>.yaml` compiles to exactly `fixtures/<name>.json`.
//! `WEFT_BLESS=1 cargo test -p weft-compile` rewrites the expected files after a deliberate
//! change (review the diff).
#![cfg(test)]

use std::path::Path;
use weft_compile::{check, compile, Compiled};
use weft_policy::{labels, load, validate_set, Limits, PolicySet, References};

fn to_json(compiled: &Compiled) -> serde_json::Value {
    compiled
        .iter()
        .map(|(id, f)| serde_json::json!({"sidecar": id, "filters": f}))
        .collect()
}

fn compile_fixture(path: &Path) -> Compiled {
    let input = std::fs::read(path).unwrap();
    let docs =
        load(&input, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let set = PolicySet::from_documents(docs.clone());
    let errors = validate_set(&set, &labels(&docs), References::Strict);
    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    compile(&set).unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()))
}

#[test]
fn fixtures_compile_to_expected_configs_that_every_filter_accepts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        seen += 1;
        let compiled = compile_fixture(&path);
        // The filters' own parsers accept every configuration (`from_json` of each filter).
        assert_eq!(check(&compiled), vec![], "{}", path.display());
        let actual = to_json(&compiled);
        let expected_path = path.with_extension("json");
        if std::env::var_os("WEFT_BLESS").is_some() {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&actual).unwrap() + "\n",
            )
            .unwrap();
        }
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&expected_path).unwrap_or_else(|_| {
                panic!(
                    "{} missing: run WEFT_BLESS=1 cargo test -p weft-compile",
                    expected_path.display()
                )
            }))
            .unwrap();
        assert_eq!(
            actual,
            expected,
            "{} differs from {}",
            path.display(),
            expected_path.display()
        );
        // Pure: compiling again gives the same output.
        assert_eq!(compile_fixture(&path), compiled);
    }
    assert!(seen >= 3, "fixtures not found in {}", dir.display());
}

#[test]
fn example_policies_validate_and_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../envoy-configs/examples/policies");
    let mut input = String::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        input.push_str(&std::fs::read_to_string(path).unwrap());
        input.push_str("\n---\n");
    }
    let docs = load(input.as_bytes(), &Limits::default()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(docs.len() >= 10, "examples not found in {}", dir.display());
    let set = PolicySet::from_documents(docs.clone());
    assert_eq!(
        validate_set(&set, &labels(&docs), References::Strict),
        vec![]
    );
    assert_eq!(check(&compile(&set).unwrap()), vec![]);
}
