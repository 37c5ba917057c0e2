//! A small mesh run by the real `weft serve` (plain HTTP API with the admin token, no CA):
//! one pod per `(service, version)`, policies applied with the real CLI (which waits for
//! every sidecar's ACK), the operator API read with the admin token. Shared by the e2e
//! files that need compiled policies in real sidecars (fault_scope.rs, explain.rs).
#![cfg(test)]
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use weft_e2e::{poll_until, xds_support::network_gateway, Pod, TestNet, ADMIN_SOCKET};
use weft_xds::bootstrap::BootstrapParams;

use crate::weft_serve::{weft_bin, WeftServer};
use crate::xds_common::pod_from;

pub struct ServedMesh {
    pub bin: PathBuf,
    pub data: tempfile::TempDir,
    files: tempfile::TempDir,
    pub server: WeftServer,
    pub pods: Vec<(String, Pod)>,
}

/// The three services the served-mesh tests declare (ratings, reviews, productpage, v1 each).
pub const SHOP_SERVICES: &str = "apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: ratings}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec: {port: 9080, versions: [v1]}
---
apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {name: productpage}
spec: {port: 9080, versions: [v1]}
";

impl ServedMesh {
    /// `weft serve` with `services` (YAML of the `Service` documents) applied, and a pod per
    /// `(service, version)` of `pods`, each synced to the current version.
    pub async fn start(net: &TestNet, services: &str, pods: &[(&str, &str)]) -> Self {
        let bin = weft_bin();
        let data = tempfile::tempdir().unwrap();
        let server = WeftServer::start(&bin, data.path(), &["--xds-listen", "0.0.0.0:0"]);
        let mut mesh = Self {
            bin,
            data,
            files: tempfile::tempdir().unwrap(),
            server,
            pods: Vec::new(),
        };
        mesh.apply(services);
        let gateway = network_gateway(net).unwrap();
        for (service, version) in pods {
            let mut params = BootstrapParams::new(service, version, &gateway, mesh.server.xds_port);
            params.admin_socket = Some(ADMIN_SOCKET.into());
            mesh.pods
                .push((service.to_string(), pod_from(net, &params).await));
        }
        mesh.until_synced().await;
        mesh
    }

    /// The CLI with the admin token; panics with its output unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> String {
        let (code, out, err) = self.server.cli(&self.bin, args);
        assert_eq!(code, 0, "weft {args:?}\n{out}\n{err}");
        out
    }

    /// `weft apply -f` (waits for every sidecar's ACK).
    pub fn apply(&self, yaml: &str) {
        let path = self.files.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.cli(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// The pod of `service`.
    pub fn pod(&self, service: &str) -> &Pod {
        &self.pods.iter().find(|(n, _)| n == service).unwrap().1
    }

    /// GET on the operator API with the admin token.
    pub async fn get_api(&self, path: &str) -> Value {
        self.server.api_json(path).await
    }

    /// Polls until every pod's sidecar is connected and has acknowledged the current
    /// version (a module download can be retried on a loaded machine).
    pub async fn until_synced(&self) {
        let want = self.pods.len();
        poll_until(
            &format!("{want} sidecars synced"),
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async {
                let body = self.get_api("/api/v1/xds/sidecars").await;
                let revision = body["revision"].as_u64();
                let synced = body["sidecars"].as_array().is_some_and(|list| {
                    list.len() == want
                        && list.iter().all(|s| {
                            s["connected"] == true && s["synced_revision"].as_u64() == revision
                        })
                });
                Ok(synced.then_some(()))
            },
        )
        .await
        .unwrap();
    }
}

/// A counter of `pod`'s sidecar (0 while Envoy has not created it).
pub async fn counter(pod: &Pod, name: &str) -> u64 {
    pod.stat(name).await.unwrap().unwrap_or(0)
}
