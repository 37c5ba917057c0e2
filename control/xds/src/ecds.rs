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
use weft_filter_core::registry::{self, Side};

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

impl From<registry::Failure> for FailureMode {
    fn from(failure: registry::Failure) -> Self {
        match failure {
            registry::Failure::Closed => Self::FailClosed,
            registry::Failure::Open => Self::FailOpen,
        }
    }
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
    /// `weft.<module>`, with the failure mode the filter registry gives the module (closed
    /// for authz, open for the others).
    pub fn new(module: &str, configuration: String) -> Self {
        Self {
            name: format!("weft.{module}"),
            module: module.to_string(),
            configuration,
            failure: registry::failure_of_module(module).into(),
        }
    }
}

/// The suite-mode entries' names, from the filter registry.
pub use weft_filter_core::registry::{SUITE_INBOUND, SUITE_OUTBOUND};

// === impl FilterSpec (suite) ===

impl FilterSpec {
    /// [`SUITE_INBOUND`]: `suite.wasm`, failing closed as `weft.authz` does (it holds authz).
    /// Both suite entries use module `suite`, hence root id and VM id `suite`: Envoy runs
    /// plugins with the same VM id and code in one VM per worker.
    pub fn suite_inbound(configuration: String) -> Self {
        Self {
            name: SUITE_INBOUND.into(),
            module: registry::SUITE_MODULE.into(),
            configuration,
            failure: registry::suite_failure(Side::Inbound).into(),
        }
    }

    /// [`SUITE_OUTBOUND`]: `suite.wasm`, failing open as canary, fault and breaker do.
    pub fn suite_outbound(configuration: String) -> Self {
        Self {
            name: SUITE_OUTBOUND.into(),
            module: registry::SUITE_MODULE.into(),
            configuration,
            failure: registry::suite_failure(Side::Outbound).into(),
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
                // Generous: a loaded 2-core node fetching several modules at once took
                // over 5 s, and a failed fetch is not tried again for 10 s.
                timeout: Some(Duration {
                    seconds: 30,
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::sync::Arc;

    /// The plugin inside an ECDS resource.
    fn plugin(resource: &Resource) -> PluginConfig {
        let config = TypedExtensionConfig::decode(resource.body.value.as_slice()).unwrap();
        let wasm = Wasm::decode(config.typed_config.unwrap().value.as_slice()).unwrap();
        wasm.config.unwrap()
    }

    #[test]
    fn both_suite_entries_run_in_one_vm_and_fail_like_the_separate_filters() {
        let module = WasmModule {
            bytes: Arc::new(b"\0asm".to_vec()),
            sha256: "ab".repeat(32),
            signer: None,
        };
        let source = ModuleSource {
            cluster: "weft_xds".into(),
            base_url: "http://weft-control".into(),
        };
        let inbound = plugin(&extension_config(
            &FilterSpec::suite_inbound("{}".into()),
            &module,
            &source,
            3,
        ));
        let outbound = plugin(&extension_config(
            &FilterSpec::suite_outbound("{}".into()),
            &module,
            &source,
            3,
        ));
        assert_eq!(
            (inbound.name.as_str(), outbound.name.as_str()),
            (SUITE_INBOUND, SUITE_OUTBOUND)
        );
        // Envoy shares a VM between plugins with the same VM id, configuration and code.
        assert_eq!(inbound.vm, outbound.vm);
        let Some(plugin_config::Vm::VmConfig(vm)) = &inbound.vm else {
            unreachable!("a vm_config");
        };
        assert_eq!(vm.vm_id, "suite");
        assert_eq!(inbound.failure_policy, FailurePolicy::FailClosed as i32);
        assert_eq!(outbound.failure_policy, FailurePolicy::FailOpen as i32);
        assert_eq!(
            FilterSpec::new("authz", "{}".into()).failure,
            FailureMode::FailClosed
        );
    }
}
