//! Shared by the xds_*.rs tests: the weft xDS server running in the test process, reached by
//! the Envoy containers through the test network's gateway IP.
//!
//! Why in-process rather than a `weft serve` container: the test drives the server's state
//! directly (publish revision N, swap modules, read NACK records) with no REST layer in
//! between, and the server binds 0.0.0.0:0, so runs never collide on ports.
#![cfg(test)]
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use weft_e2e::{
    filters_dir, http_client, poll_until, EnvoyOptions, Pod, TestNet, UpstreamOptions, ADMIN_SOCKET,
};
use weft_xds::{
    bootstrap::{self, BootstrapParams},
    FilterSpec, ModuleSource, SidecarGroup, WasmModules, XdsSettings, XdsState,
};

/// The sidecar bootstrap's inbound and outbound listener ports.
pub const INBOUND: u16 = 15006;
pub const OUTBOUND: u16 = 15001;

/// `GET path` with `Host: host` through `caller`'s outbound listener (from inside its pod, as
/// its app would call); 0 when no answer came in 5 s.
pub async fn call_outbound(caller: &Pod, host: &str, path: &str) -> u16 {
    match http_client()
        .get(format!("{}{path}", caller.local_url(OUTBOUND)))
        .header("host", host)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

pub struct ControlPlane {
    pub state: Arc<XdsState>,
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    pub fn settings() -> XdsSettings {
        XdsSettings {
            module_source: ModuleSource {
                cluster: "weft_xds".into(),
                base_url: "http://weft-control".into(),
            },
            grace: Duration::from_secs(2),
            mesh_warmup: Duration::ZERO,
        }
    }

    pub fn modules() -> WasmModules {
        weft_e2e::artifact("authz").unwrap();
        WasmModules::load_dir(&filters_dir()).unwrap()
    }

    /// A fresh state served on 0.0.0.0:`port` (0: any).
    pub async fn start(port: u16) -> Self {
        Self::serve(XdsState::new(Self::settings(), Self::modules()), port).await
    }

    pub async fn serve(state: Arc<XdsState>, port: u16) -> Self {
        Self::serve_tls(state, port, None).await
    }

    /// [`Self::serve`], over TLS with `tls` when given (the CA's xDS listener).
    pub async fn serve_tls(
        state: Arc<XdsState>,
        port: u16,
        tls: Option<Arc<weft_xds::XdsTls>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            weft_xds::serve_with_tls(listener, serving, axum::Router::new(), tls, stopped)
                .await
                .unwrap();
        });
        Self {
            state,
            port,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving: open streams are cut, the listener closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Streams are long-lived; graceful shutdown would wait for Envoy to hang up.
            task.abort();
            let _ = task.await;
        }
    }

    /// `weft bootstrap` parameters for `service/version` reaching this control plane at
    /// `gateway`: the app at 127.0.0.1:8080 (its pod's loopback), admin on the harness's
    /// socket (`--admin-socket`).
    pub fn bootstrap(&self, gateway: &str, service: &str, version: &str) -> BootstrapParams {
        let mut params = BootstrapParams::new(service, version, gateway, self.port);
        params.admin_socket = Some(ADMIN_SOCKET.into());
        params
    }

    /// Starts a pod for `service/version`: its sidecar (inbound listener mapped) and app.
    pub async fn sidecar(&self, net: &TestNet, gateway: &str, service: &str, version: &str) -> Pod {
        self.sidecar_from(net, &self.bootstrap(gateway, service, version))
            .await
    }

    /// Starts a pod from `params` (with `sds` or `token` set, say), the inbound listener
    /// mapped; the sidecar's hostname is `<service>-<version>-sidecar` unless `node_id` is set.
    pub async fn sidecar_from(&self, net: &TestNet, params: &BootstrapParams) -> Pod {
        pod_from(net, params).await
    }

    /// Publishes authz `config` for `service/version` at `revision`.
    pub fn apply_authz(&self, revision: u64, group: (&str, &str), config: &serde_json::Value) {
        let filters = BTreeMap::from([(
            SidecarGroup::new("default", group.0, group.1),
            vec![FilterSpec::new("authz", config.to_string())],
        )]);
        self.state
            .set_config(revision, filters, Vec::new())
            .unwrap();
    }
}

/// Starts a pod from `params` (with `sds` or `token` set, say), the inbound listener
/// mapped; the sidecar's hostname is `<service>-<version>-sidecar` unless `node_id` is set.
/// For any control plane: this in-process one, or a `weft serve` (`params.xds_port`).
pub async fn pod_from(net: &TestNet, params: &BootstrapParams) -> Pod {
    let mut options = EnvoyOptions::new(bootstrap::render(params).unwrap()).ports([INBOUND]);
    options.hostname = params
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}-sidecar", params.service, params.version));
    Pod::start(
        net,
        options,
        UpstreamOptions::new(&params.service, &params.version),
    )
    .await
    .unwrap()
}

/// The mesh's one service: `reviews` on port 9080, stable version v1.
pub fn reviews_services() -> Vec<weft_xds::MeshService> {
    vec![weft_xds::MeshService::new("default", "reviews", 9080, "v1")]
}

/// The status of `GET url`.
pub async fn status_of(url: &str) -> u16 {
    match http_client()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls until every `(url, status)` holds; returns how long that took.
pub async fn until_statuses(what: &str, expect: &[(String, u16)], timeout: Duration) -> Duration {
    let start = Instant::now();
    poll_until(what, timeout, Duration::from_millis(5), || async {
        for (url, status) in expect {
            if status_of(url).await != *status {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
    .unwrap();
    start.elapsed()
}
