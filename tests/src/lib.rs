//! `weft_e2e`: the harness for weft's end-to-end tests.
//!
//! Each test makes its own [`TestNet`] (a private Docker network with a unique name), starts
//! [`Upstream`]s (the `weft-test-service` image) and an [`Envoy`] on it, or [`Pod`]s (an app
//! and its sidecar in one network namespace), and talks to them through ports mapped to
//! 127.0.0.1. Envoy's admin interface is never on the network: the harness reads it over a
//! unix socket bind-mounted from a host temp dir ([`ADMIN_SOCKET`]). Everything is removed when the handles drop; an [`Envoy`] dropped
//! while its test panics prints its log first, so a failing test shows what Envoy saw.
//!
//! Readiness is always bounded polling ([`poll_until`]), never a fixed sleep. Tests run on a
//! multi-thread runtime (`#[tokio::test(flavor = "multi_thread")]`): container clean-up blocks in
//! `Drop`, and should fail by panicking (`unwrap`, `assert!`) so that the log dump fires.
#![forbid(unsafe_code)]

mod browser;
mod config;
mod envoy;
mod net;
mod pod;
mod poll;
mod raw;
mod stats;
mod upstream;
pub mod xds_support;

use std::path::PathBuf;

use anyhow::bail;

pub use browser::{artifacts_dir, chromium, label_boxes, overlapping, DrawnBox};
pub use config::{DownstreamTls, EnvoyConfig, FailurePolicy, Route, Runtime, WasmFilter};
pub use envoy::{
    envoy_image, unix_get, AdminAccess, Envoy, EnvoyOptions, ADMIN_PORT, ADMIN_SOCKET, FILTERS_DIR,
};
pub use net::TestNet;
pub use pod::Pod;
pub use poll::poll_until;
pub use raw::{raw_exchange, raw_get, raw_request, raw_request_to, raw_with_body, RawReply};
pub use reqwest;
pub use stats::{binomial_interval_999, within_binomial_999};
pub use upstream::{
    test_service_image, Upstream, UpstreamOptions, UpstreamStats, INSTRUMENT_PORT, SERVICE_PORT,
};

/// The workspace root (the parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The directory the filter builds land in: `dist/filters/` in the workspace.
pub fn filters_dir() -> PathBuf {
    workspace_root().join("dist").join("filters")
}

/// The trust list `scripts/build-filters` signs `dist/filters` for: the public key of the
/// development signing key (`.weft/module-signing/dev.key`), for `weft serve --module-signers`.
pub fn module_signers() -> PathBuf {
    workspace_root()
        .join(".weft")
        .join("module-signing")
        .join("signers")
}

/// The built filter `dist/filters/<name>.wasm`, or an error saying how to build it.
pub fn artifact(name: &str) -> anyhow::Result<PathBuf> {
    let path = filters_dir().join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "filter artifact {} is missing: run scripts/build-filters first",
            path.display()
        );
    }
    Ok(path)
}

/// The native dynamic module `dist/filters/libweft_suite.so`, or an error saying how to
/// build it.
pub fn native_artifact() -> anyhow::Result<PathBuf> {
    let path = filters_dir().join("libweft_suite.so");
    if !path.is_file() {
        bail!(
            "native module {} is missing: run scripts/build-filters first",
            path.display()
        );
    }
    Ok(path)
}

/// One HTTP client for everything the harness and tests send: short timeouts, no proxy.
/// A client of the weft REST API: `Authorization: Bearer <token>` on every request (none
/// when `token` is empty) and, for an https API, only `ca_pem` trusted.
pub fn api_client(ca_pem: Option<&[u8]>, token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if !token.is_empty() {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(15));
    if let Some(pem) = ca_pem {
        builder = builder.tls_built_in_root_certs(false);
        if let Ok(cert) = reqwest::Certificate::from_pem(pem) {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().unwrap_or_else(|_| reqwest::Client::new())
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(15))
        .build()
        // Only fails when the TLS backend cannot initialise; nothing to test without it.
        .unwrap_or_else(|_| reqwest::Client::new())
}
