use super::*;

fn mk_advisory(json: serde_json::Value) -> Advisory {
    let mut advisory: Advisory = serde_json::from_value(json).unwrap();
    advisory.file = "a.json".into();
    advisory.check().unwrap();
    advisory
}

fn semver(name: &str, events: serde_json::Value) -> Advisory {
    mk_advisory(serde_json::json!({
        "id": "RUSTSEC-0000-0001",
        "summary": "s",
        "affected": [{"package": {"ecosystem": "crates.io", "name": name},
                      "ranges": [{"type": "SEMVER", "events": events}]}],
    }))
}

#[test]
fn ranges_follow_the_osv_evaluation() {
    let a = semver(
        "base64",
        serde_json::json!([{"introduced": "0"}, {"fixed": "0.21.0"}, {"introduced": "0.22.0"}, {"fixed": "0.22.2"}]),
    );
    assert_eq!(a.affects("base64", "0.13.1"), Some(Some("0.21.0".into())));
    assert_eq!(a.affects("base64", "0.21.0"), None);
    assert_eq!(a.affects("base64", "0.21.7"), None);
    assert_eq!(a.affects("base64", "0.22.1"), Some(Some("0.22.2".into())));
    assert_eq!(a.affects("base64", "0.22.2"), None);
    assert_eq!(a.affects("base65", "0.13.1"), None, "another crate");
    assert_eq!(a.affects("base64", "not a version"), None);

    let last = semver(
        "x",
        serde_json::json!([{"introduced": "1.0.0"}, {"last_affected": "1.2.0"}]),
    );
    assert_eq!(last.affects("x", "0.9.0"), None);
    assert_eq!(
        last.affects("x", "1.2.0"),
        Some(None),
        "affected, no fix known"
    );
    assert_eq!(last.affects("x", "1.2.1"), None);
}

#[test]
fn listed_versions_other_ecosystems_and_withdrawn_advisories() {
    let a = mk_advisory(serde_json::json!({
        "id": "A", "affected": [
            {"package": {"ecosystem": "crates.io", "name": "x"}, "versions": ["1.0.0"]},
            {"package": {"ecosystem": "PyPI", "name": "x"}, "versions": ["not semver"],
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]},
        ],
    }));
    assert_eq!(a.affects("x", "1.0.0"), Some(None));
    assert_eq!(a.affects("x", "1.0.1"), None);
    let withdrawn = mk_advisory(serde_json::json!({
        "id": "W", "withdrawn": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "crates.io", "name": "x"}, "versions": ["1.0.0"]}],
    }));
    assert_eq!(withdrawn.affects("x", "1.0.0"), None);
}

#[test]
fn a_malformed_advisory_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("crates")).unwrap();
    std::fs::write(
        dir.path().join("crates/bad.json"),
        r#"{"id": "B", "affected": [{"package": {"ecosystem": "crates.io", "name": "x"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.x"}]}]}]}"#,
    )
    .unwrap();
    let error = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("bad.json") && error.contains("affected[0].ranges[0].events[1].fixed"),
        "{error}"
    );
    std::fs::write(dir.path().join("crates/bad.json"), "{").unwrap();
    assert!(load_dir(dir.path())
        .unwrap_err()
        .to_string()
        .contains("bad.json"));
    std::fs::write(
        dir.path().join("crates/bad.json"),
        r#"{"id": "G", "affected": []}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not an advisory").unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
}
