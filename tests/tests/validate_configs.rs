//! Every checked-in Envoy config under `envoy-configs/` passes `envoy --mode validate` in the
//! Envoy image, with `dist/filters` mounted where the configs expect it.
#![cfg(test)]

use std::path::{Path, PathBuf};

use weft_e2e::{
    artifact, envoy_image, workspace_root, Envoy, EnvoyConfig, Route, WasmFilter, FILTERS_DIR,
};

const CONFIGS_IN_CONTAINER: &str = "/etc/weft/configs";
/// Configs with TLS (the demo sidecars) read their certificates here; validation gets
/// throwaway ones, as Envoy loads the files even in validate mode.
const TLS_DIR: &str = "/etc/weft/tls";

fn throwaway_tls() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    dir
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // `policies/` folders hold weft policy documents (input to `weft apply`), not Envoy configs.
        if path.is_dir() && path.file_name().is_some_and(|n| n == "policies") {
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, found);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
}

/// Names `X` of every `/etc/weft/filters/X.wasm` the config refers to.
fn referenced_filters(text: &str) -> Vec<String> {
    let prefix = format!("{FILTERS_DIR}/");
    text.match_indices(&prefix)
        .filter_map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            rest[name.len()..].starts_with(".wasm").then_some(name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_envoy_config_validates() {
    let root = workspace_root();
    let configs = root.join("envoy-configs");
    let mut files = Vec::new();
    yaml_files(&configs, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no configs under {}", configs.display());

    let tls = throwaway_tls();
    let mut failures = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&configs).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        // A missing artifact would fail validation with a confusing message; say how to build it.
        for name in referenced_filters(&text) {
            artifact(&name).unwrap();
        }
        let in_container = format!("{CONFIGS_IN_CONTAINER}/{}", relative.display());
        let (code, logs) = Envoy::validate(
            &configs,
            CONFIGS_IN_CONTAINER,
            &in_container,
            &[(tls.path(), TLS_DIR)],
        )
        .await
        .unwrap();
        println!(
            "checked envoy-configs/{} ({}): exit {code:?}",
            relative.display(),
            envoy_image()
        );
        if code != Some(0) {
            failures.push(format!("envoy-configs/{}:\n{logs}", relative.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "configs Envoy refuses:\n{}",
        failures.join("\n")
    );
}

/// The harness's own bootstrap builder emits configs Envoy accepts, with and without a filter.
#[tokio::test(flavor = "multi_thread")]
async fn harness_bootstraps_validate() {
    artifact("authz").unwrap();
    let configs = [
        ("router-only", EnvoyConfig::sidecar_inbound("reviews")),
        (
            "authz-fail-open",
            EnvoyConfig::sidecar_inbound("reviews")
                .wasm_filter(WasmFilter::new("authz", serde_json::json!({})).fail_open(true)),
        ),
        (
            "cluster-header",
            EnvoyConfig::sidecar_inbound("reviews-v1")
                .cluster("reviews-v2", "reviews-v2", 8080)
                .route(Route::ClusterHeader("x-weft-cluster".into())),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, config) in &configs {
        std::fs::write(dir.path().join(format!("{name}.yaml")), config.to_yaml()).unwrap();
    }
    for (name, _) in &configs {
        let (code, logs) = Envoy::validate(dir.path(), "/cfg", &format!("/cfg/{name}.yaml"), &[])
            .await
            .unwrap();
        println!("checked harness bootstrap {name}: exit {code:?}");
        assert_eq!(code, Some(0), "{name}:\n{logs}");
    }
}
