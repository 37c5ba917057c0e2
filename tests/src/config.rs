//! Bootstrap builders. Output is JSON, which is YAML too, so escaping is never a question.

use serde_json::{json, Value};

use crate::envoy::{ADMIN_SOCKET, FILTERS_DIR};

/// What a wasm filter does when its VM has failed (Envoy's `failure_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Answer 503 (Envoy's default).
    #[default]
    FailClosed,
    /// Skip the filter.
    FailOpen,
    /// Make a new VM after a back-off.
    FailReload,
}

/// What runs a weft filter in Envoy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// `dist/filters/<artifact>.wasm` in V8 (`envoy.filters.http.wasm`).
    #[default]
    Wasm,
    /// The native dynamic module `dist/filters/libweft_suite.so`
    /// (`envoy.filters.http.dynamic_modules`): the suite, with this filter's configuration as
    /// its section (the suite's own configuration as is).
    Native,
}

impl Runtime {
    /// The prefix Envoy gives the filters' own stats (`<prefix>weft.authz.allowed`).
    pub fn stat_prefix(self) -> &'static str {
        match self {
            Self::Wasm => "wasmcustom.",
            Self::Native => "dynamicmodulescustom.",
        }
    }

    /// The module name in the filters' log lines (`weft-authz: invalid configuration`).
    pub fn log_name(self, artifact: &str) -> String {
        match self {
            Self::Wasm => format!("weft-{artifact}"),
            Self::Native => "weft-suite".into(),
        }
    }

    /// The artifact a test needs built (`dist/filters/...`), or an error naming the script.
    pub fn artifact(self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        match self {
            Self::Wasm => crate::artifact(name),
            Self::Native => crate::native_artifact(),
        }
    }
}

/// One `envoy.extensions.filters.http.wasm.v3.Wasm` entry of the HTTP filter chain (or, with
/// [`Runtime::Native`], the same filter in the native module).
#[derive(Clone, Debug)]
pub struct WasmFilter {
    /// The filter's name in the chain (and its stats prefix).
    pub name: String,
    /// `dist/filters/<artifact>.wasm`, loaded from [`FILTERS_DIR`].
    pub artifact: String,
    pub root_id: String,
    pub vm_id: String,
    /// Passed to the filter as the `StringValue` plugin configuration.
    pub configuration: Value,
    pub failure_policy: FailurePolicy,
    pub runtime: Runtime,
}

impl WasmFilter {
    /// Filter `weft.<artifact>` with root and VM id `<artifact>`, failing closed.
    pub fn new(artifact: &str, configuration: Value) -> Self {
        Self {
            name: format!("weft.{artifact}"),
            artifact: artifact.into(),
            root_id: artifact.into(),
            vm_id: artifact.into(),
            configuration,
            failure_policy: FailurePolicy::FailClosed,
            runtime: Runtime::Wasm,
        }
    }

    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.into();
        self
    }

    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.into();
        self
    }

    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Shorthand for `failure_policy(FailOpen)` or `(FailClosed)`.
    pub fn fail_open(self, open: bool) -> Self {
        self.failure_policy(if open {
            FailurePolicy::FailOpen
        } else {
            FailurePolicy::FailClosed
        })
    }

    fn to_json(&self) -> Value {
        if self.runtime == Runtime::Native {
            return self.native_json();
        }
        let policy = match self.failure_policy {
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailOpen => "FAIL_OPEN",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        };
        json!({
            "name": self.name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": self.name,
                    "root_id": self.root_id,
                    "failure_policy": policy,
                    "vm_config": {
                        "vm_id": self.vm_id,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": format!("{FILTERS_DIR}/{}.wasm", self.artifact)}},
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.configuration.to_string(),
                    },
                },
            },
        })
    }
}

impl WasmFilter {
    /// The native module's filter entry: loaded by name (`libweft_suite.so` from
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, which the harness points at [`FILTERS_DIR`]); a
    /// single filter's configuration becomes its section of the suite's.
    fn native_json(&self) -> Value {
        let configuration = if self.artifact == "suite" {
            self.configuration.clone()
        } else {
            json!({ self.artifact.as_str(): self.configuration })
        };
        json!({
            "name": self.name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": "weft_suite", "do_not_close": true},
                "filter_name": self.name,
                "filter_config": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration.to_string(),
                },
            },
        })
    }
}

/// Downstream TLS on the listener; paths are inside the container (mount them with
/// [`crate::EnvoyOptions::extra_file`]).
#[derive(Clone, Debug)]
pub struct DownstreamTls {
    pub cert_chain: String,
    pub private_key: String,
    /// CA that client certificates must chain to.
    pub trusted_ca: Option<String>,
    pub require_client_certificate: bool,
}

impl DownstreamTls {
    /// mTLS: a client certificate signed by `trusted_ca` is required.
    pub fn mtls(cert_chain: &str, private_key: &str, trusted_ca: &str) -> Self {
        Self {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            trusted_ca: Some(trusted_ca.into()),
            require_client_certificate: true,
        }
    }

    fn to_json(&self) -> Value {
        let mut common = json!({
            "tls_certificates": [{
                "certificate_chain": {"filename": self.cert_chain},
                "private_key": {"filename": self.private_key},
            }],
        });
        if let Some(ca) = &self.trusted_ca {
            common["validation_context"] = json!({"trusted_ca": {"filename": ca}});
        }
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": self.require_client_certificate,
                "common_tls_context": common,
            },
        })
    }
}

/// Where the listener's single route sends requests.
#[derive(Clone, Debug)]
pub enum Route {
    Cluster(String),
    /// The cluster named by this request header (a filter may set it).
    ClusterHeader(String),
}

/// A static sidecar-inbound bootstrap: listener on 0.0.0.0, HTTP filters then the router, one
/// route to STRICT_DNS clusters, admin on the harness's unix socket ([`ADMIN_SOCKET`]), never
/// on a network address.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    pub listener_port: u16,
    /// `(name, DNS host, port)`.
    pub clusters: Vec<(String, String, u16)>,
    pub route: Route,
    pub filters: Vec<WasmFilter>,
    pub tls: Option<DownstreamTls>,
    /// Envoy's own path normalisation, header-name and source-address settings, as every
    /// listener weft generates has them. `false`: a bare listener, as in a user's own Envoy
    /// that sets none of them (what the filter alone must hold against).
    pub listener_hardening: bool,
}

// === impl EnvoyConfig ===

impl EnvoyConfig {
    /// Listener 10000 routing everything to cluster `upstream` = `upstream_host:8080`.
    pub fn sidecar_inbound(upstream_host: &str) -> Self {
        Self {
            listener_port: 10_000,
            clusters: vec![("upstream".into(), upstream_host.into(), 8080)],
            route: Route::Cluster("upstream".into()),
            filters: Vec::new(),
            tls: None,
            listener_hardening: true,
        }
    }

    /// A bare listener: no path normalisation, `X-Forwarded-For` believed (Envoy's defaults).
    pub fn without_listener_hardening(mut self) -> Self {
        self.listener_hardening = false;
        self
    }

    pub fn listener_port(mut self, port: u16) -> Self {
        self.listener_port = port;
        self
    }

    /// Adds a cluster (e.g. one per canary backend).
    pub fn cluster(mut self, name: &str, host: &str, port: u16) -> Self {
        self.clusters.push((name.into(), host.into(), port));
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    /// Appends a wasm filter; filters run in the order added, the router last.
    pub fn wasm_filter(mut self, filter: WasmFilter) -> Self {
        self.filters.push(filter);
        self
    }

    pub fn downstream_tls(mut self, tls: DownstreamTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn to_yaml(&self) -> String {
        // Pretty JSON is valid YAML and is what Envoy prints back in its errors.
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_default()
    }

    pub fn to_json(&self) -> Value {
        let mut http_filters: Vec<Value> = self.filters.iter().map(WasmFilter::to_json).collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        let action = match &self.route {
            Route::Cluster(name) => json!({"cluster": name}),
            Route::ClusterHeader(header) => json!({"cluster_header": header}),
        };
        let mut hcm = json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "inbound",
                // The listener settings every generated listener has (paths normalized, `_`
                // header names refused, source = TCP peer), so static configs behave alike.
                "normalize_path": true,
                "merge_slashes": true,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
                "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
                "use_remote_address": true,
                "xff_num_trusted_hops": 0,
                "route_config": {
                    "name": "inbound",
                    "virtual_hosts": [{
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": action}],
                    }],
                },
                "http_filters": http_filters,
            },
        });
        if !self.listener_hardening {
            if let Some(config) = hcm["typed_config"].as_object_mut() {
                for key in [
                    "normalize_path",
                    "merge_slashes",
                    "path_with_escaped_slashes_action",
                    "common_http_protocol_options",
                    "use_remote_address",
                    "xff_num_trusted_hops",
                ] {
                    config.remove(key);
                }
            }
        }
        let mut chain = json!({"filters": [hcm]});
        if let Some(tls) = &self.tls {
            chain["transport_socket"] = tls.to_json();
        }
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, host, port)| strict_dns_cluster(name, host, *port))
            .collect();
        json!({
            "admin": {"address": {"pipe": {"path": ADMIN_SOCKET, "mode": 0o600}}},
            "static_resources": {
                "listeners": [{
                    "name": "inbound",
                    "address": socket_address(self.listener_port),
                    "filter_chains": [chain],
                }],
                "clusters": clusters,
            },
        })
    }
}

fn socket_address(port: u16) -> Value {
    json!({"socket_address": {"address": "0.0.0.0", "port_value": port}})
}

fn strict_dns_cluster(name: &str, host: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        // Upstreams may start after Envoy; re-resolve quickly.
        "dns_refresh_rate": "1s",
        "dns_lookup_family": "V4_ONLY",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": port},
            }}}]}],
        },
    })
}
