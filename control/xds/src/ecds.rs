//! ECDS resources: one `TypedExtensionConfig` per wasm filter entry of a sidecar, carrying
//! the compiled filter configuration and a reference to the module by URL and SHA-256.

use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, http_uri::HttpUpstreamType, AsyncDataSource, HttpUri, RemoteDataSource,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{Duration, StringValue};
use envoy_types::util::pack_any;

use crate::modules::WasmModule;
use crate::resource::Resource;

/// What a sidecar does when a filter's VM has failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureMode {
    /// Answer 503: for filters that guard (authz).
    FailClosed,
    /// Skip the filter: for filters whose absence is safe (canary: the route falls back to
    /// the stable cluster; fault: no fault; breaker: no breaking).
    FailOpen,
}

/// One wasm filter entry for one sidecar group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// The HTTP filter entry name in the bootstrap, e.g. `weft.authz`.
    pub name: String,
    /// The module (`authz` for `authz.wasm`); also the root id and VM id.
    pub module: String,
    /// The JSON the filter parses in `on_configure`.
    pub configuration: String,
    pub failure: FailureMode,
}

impl FilterSpec {
    /// `weft.<module>`, failing closed for authz and open for the others.
    pub fn new(module: &str, configuration: String) -> Self {
        Self {
            name: format!("weft.{module}"),
            module: module.to_string(),
            configuration,
            failure: if module == "authz" {
                FailureMode::FailClosed
            } else {
                FailureMode::FailOpen
            },
        }
    }
}

/// Where sidecars fetch modules: `<base_url>/wasm/<module>.wasm` through `cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSource {
    pub cluster: String,
    pub base_url: String,
}

/// The ECDS resource for `spec`.
///
/// `refresh` > 0 is added to the module URL as `?refresh=N`. Envoy remembers the hash of an
/// ECDS config even when creating it failed, so after a NACK for a module still being fetched
/// the very same config would be "accepted" and silently not applied; a changed URL makes it
/// a new config. The module is cached by SHA-256, so the URL change costs no download.
pub fn extension_config(
    spec: &FilterSpec,
    module: &WasmModule,
    source: &ModuleSource,
    refresh: u64,
) -> Resource {
    let query = if refresh > 0 {
        format!("?refresh={refresh}")
    } else {
        String::new()
    };
    let code = AsyncDataSource {
        specifier: Some(async_data_source::Specifier::Remote(RemoteDataSource {
            http_uri: Some(HttpUri {
                uri: format!("{}/wasm/{}.wasm{query}", source.base_url, spec.module),
                timeout: Some(Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                http_upstream_type: Some(HttpUpstreamType::Cluster(source.cluster.clone())),
            }),
            sha256: module.sha256.clone(),
            retry_policy: None,
        })),
    };
    let plugin = PluginConfig {
        name: spec.name.clone(),
        root_id: spec.module.clone(),
        configuration: Some(pack_any(StringValue {
            value: spec.configuration.clone(),
        })),
        failure_policy: match spec.failure {
            FailureMode::FailClosed => FailurePolicy::FailClosed,
            FailureMode::FailOpen => FailurePolicy::FailOpen,
        } as i32,
        vm: Some(plugin_config::Vm::VmConfig(VmConfig {
            vm_id: spec.module.clone(),
            runtime: "envoy.wasm.runtime.v8".into(),
            code: Some(code),
            // Without it Envoy 1.40 parks an ECDS update with remote code in an init manager
            // that never runs (the module is never fetched). With it, a cache miss is NACKed
            // while the module is fetched in the background, and the server's NACK retry
            // sends the config again once the code is cached.
            nack_on_code_cache_miss: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    let config = TypedExtensionConfig {
        name: spec.name.clone(),
        typed_config: Some(pack_any(Wasm {
            config: Some(plugin),
        })),
    };
    Resource::new(spec.name.clone(), pack_any(config))
}
