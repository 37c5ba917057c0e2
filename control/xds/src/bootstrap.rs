//! `weft bootstrap`: a sidecar's Envoy bootstrap, made from the checked-in template
//! `envoy-configs/bootstrap/sidecar.yaml` (itself a valid config, validated by the e2e suite)
//! by filling in who the sidecar is and where things are.

use serde_json::{json, Value};

/// The template, compiled in so the binary needs no files at run time.
pub const SIDECAR_TEMPLATE: &str = include_str!("../../../envoy-configs/bootstrap/sidecar.yaml");

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the bootstrap template does not parse: {0}")]
    Parse(String),
    #[error("the bootstrap template has no {0}")]
    Missing(&'static str),
    #[error("printing the bootstrap: {0}")]
    Print(String),
    #[error("mesh mTLS from files (--mesh-tls-dir) and from SDS (--sds) exclude each other")]
    TlsSourceConflict,
    #[error("a join token is only sent over TLS: give the control plane's trust bundle (--xds-ca-file, from `weft ca show --bundle`)")]
    TokenInClear,
    #[error(
        "--xds-ca-file: no PEM certificate in it (expected the output of `weft ca show --bundle`)"
    )]
    EmptyTrustBundle,
}

/// Owner read/write only: the admin socket's mode (Envoy's `Pipe.mode`).
pub const ADMIN_SOCKET_MODE: u32 = 0o600;

/// The gRPC metadata key carrying a sidecar's join token to the control plane.
pub const TOKEN_METADATA_KEY: &str = "x-weft-token";

/// What differs between sidecars.
#[derive(Clone, Debug)]
pub struct BootstrapParams {
    pub namespace: String,
    pub service: String,
    pub version: String,
    /// Defaults to `<service>-<version>`; must be unique per running sidecar.
    pub node_id: Option<String>,
    /// Control plane (xDS and wasm modules), `host` may be a DNS name.
    pub xds_host: String,
    pub xds_port: u16,
    /// More control-plane replicas (`host`, `port`), endpoints of the same `weft_xds`
    /// cluster: when the stream to one breaks, the retry (0.1 s to 0.5 s back-off) connects
    /// to the next.
    pub xds_more: Vec<(String, u16)>,
    /// The application this sidecar fronts.
    pub app_host: String,
    pub app_port: u16,
    pub inbound_port: u16,
    pub outbound_port: u16,
    /// The address the outbound listener binds: loopback by default, so only the workload in
    /// the sidecar's network namespace (the pod) can send through it.
    pub outbound_bind: String,
    /// Envoy's admin interface on `127.0.0.1:admin_port` (never on a routable address), unless
    /// `admin_socket` is set.
    pub admin_port: u16,
    /// Envoy's admin interface on this unix socket (mode 0600) instead of loopback TCP: in a
    /// pod the app shares the loopback, but not the sidecar's file system.
    pub admin_socket: Option<String>,
    /// The address other sidecars reach this one at, `ip:port`; `None`: the IP the xDS
    /// stream comes from and `inbound_port`.
    pub inbound_address: Option<String>,
    /// Incremental xDS (`DELTA_GRPC`) instead of state of the world.
    pub delta: bool,
    /// Mesh mTLS: the directory (inside the sidecar) holding `ca.pem`, `cert.pem` and
    /// `key.pem`. The inbound listener then requires TLS 1.3 and a client certificate chained
    /// to `ca.pem`, and presents `cert.pem`. `None`: plaintext inbound.
    pub mesh_tls_dir: Option<String>,
    /// Mesh mTLS with certificates from the control plane's CA over SDS (secrets `default`
    /// and `ROOTCA`): the inbound listener requires TLS 1.3 and a client certificate chained
    /// to the mesh roots. Needs `token` (the control plane serves secrets only to the
    /// identity a token names).
    pub sds: bool,
    /// Join token (`weft token create`), sent as gRPC metadata `x-weft-token` on the ADS
    /// stream. Needs `xds_tls`: a token never travels in clear.
    pub token: Option<String>,
    /// TLS to the control plane (`weft serve --ca` serves xDS over TLS): ADS, SDS, module
    /// downloads and telemetry all go through cluster `weft_xds`. `None`: plaintext.
    pub xds_tls: Option<XdsUpstreamTls>,
}

/// How a sidecar checks the control plane it connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsUpstreamTls {
    /// PEM roots to trust (`weft ca show --bundle`), inlined in the bootstrap.
    pub trusted_ca_pem: String,
    /// The SPIFFE id (URI SAN) the server certificate must carry
    /// ([`crate::tls::control_plane_spiffe_id`]).
    pub spiffe_id: String,
    /// SNI sent in the handshake; `None` when the control plane is addressed by IP.
    pub sni: Option<String>,
}

impl XdsUpstreamTls {
    /// Trust `trusted_ca_pem`, expect the control plane of `trust_domain`, send `xds_host` as
    /// SNI unless it is an IP address.
    pub fn new(
        trusted_ca_pem: &str,
        trust_domain: &str,
        xds_host: &str,
    ) -> Result<Self, BootstrapError> {
        if !trusted_ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(BootstrapError::EmptyTrustBundle);
        }
        Ok(Self {
            trusted_ca_pem: trusted_ca_pem.to_string(),
            spiffe_id: crate::tls::control_plane_spiffe_id(trust_domain),
            sni: xds_host
                .parse::<std::net::IpAddr>()
                .is_err()
                .then(|| xds_host.to_string()),
        })
    }

    /// The `weft_xds` cluster's UpstreamTlsContext (bootstrap JSON): TLS 1.3, ALPN h2 (ADS is
    /// gRPC), the server certificate chained to the pinned roots and carrying the control
    /// plane's SPIFFE id.
    fn transport_socket(&self) -> Value {
        let mut context = json!({
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_3",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "alpn_protocols": ["h2"],
                "validation_context": {
                    "trusted_ca": {"inline_string": self.trusted_ca_pem},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": self.spiffe_id}},
                    ],
                },
            },
        });
        if let Some(sni) = &self.sni {
            context["sni"] = json!(sni);
        }
        json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
    }
}

impl BootstrapParams {
    pub fn new(service: &str, version: &str, xds_host: &str, xds_port: u16) -> Self {
        Self {
            namespace: "default".into(),
            service: service.into(),
            version: version.into(),
            node_id: None,
            xds_host: xds_host.into(),
            xds_port,
            xds_more: Vec::new(),
            app_host: "127.0.0.1".into(),
            app_port: 8080,
            inbound_port: 15006,
            outbound_port: 15001,
            outbound_bind: "127.0.0.1".into(),
            admin_port: 9901,
            admin_socket: None,
            inbound_address: None,
            delta: false,
            mesh_tls_dir: None,
            sds: false,
            token: None,
            xds_tls: None,
        }
    }
}

/// The bootstrap as YAML.
pub fn render(params: &BootstrapParams) -> Result<String, BootstrapError> {
    let value = render_value(params)?;
    serde_norway::to_string(&value).map_err(|e| BootstrapError::Print(e.to_string()))
}

/// The bootstrap as a JSON value (JSON is YAML too).
pub fn render_value(params: &BootstrapParams) -> Result<Value, BootstrapError> {
    let mut root: Value = serde_norway::from_str(SIDECAR_TEMPLATE)
        .map_err(|e| BootstrapError::Parse(e.to_string()))?;
    let node_id = params
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", params.service, params.version));
    let inbound_address = params
        .inbound_address
        .clone()
        .unwrap_or_else(|| format!(":{}", params.inbound_port));
    root["node"] = json!({
        "id": node_id,
        "cluster": params.service,
        "metadata": {
            "namespace": params.namespace,
            "version": params.version,
            "inbound_address": inbound_address,
            // Which filter entries the chains name (`suite` after `to_suite`), so the
            // server can tell a sidecar it does not serve (`weft status`).
            "weft_filters": "modules",
        },
    });
    let ads = root
        .pointer_mut("/dynamic_resources/ads_config/api_type")
        .ok_or(BootstrapError::Missing(
            "dynamic_resources.ads_config.api_type",
        ))?;
    *ads = json!(if params.delta { "DELTA_GRPC" } else { "GRPC" });
    for (listener, port) in [
        ("inbound", params.inbound_port),
        ("outbound", params.outbound_port),
    ] {
        let address = named(&mut root, "/static_resources/listeners", listener)?
            .pointer_mut("/address/socket_address/port_value")
            .ok_or(BootstrapError::Missing("listener port"))?;
        *address = json!(port);
    }
    *named(&mut root, "/static_resources/listeners", "outbound")?
        .pointer_mut("/address/socket_address/address")
        .ok_or(BootstrapError::Missing("outbound listener address"))? = json!(params.outbound_bind);
    root["admin"] = admin(params);
    let inbound_socket = match (&params.mesh_tls_dir, params.sds) {
        (Some(_), true) => return Err(BootstrapError::TlsSourceConflict),
        (Some(dir), false) => Some(inbound_tls(dir)),
        (None, true) => Some(crate::sds::inbound_transport_socket()),
        (None, false) => None,
    };
    if let Some(socket) = inbound_socket {
        let chain = named(&mut root, "/static_resources/listeners", "inbound")?
            .pointer_mut("/filter_chains/0")
            .and_then(Value::as_object_mut)
            .ok_or(BootstrapError::Missing("inbound filter chain"))?;
        chain.insert("transport_socket".into(), socket);
    }
    if params.token.is_some() && params.xds_tls.is_none() {
        return Err(BootstrapError::TokenInClear);
    }
    if let Some(tls) = &params.xds_tls {
        let cluster = named(&mut root, "/static_resources/clusters", "weft_xds")?
            .as_object_mut()
            .ok_or(BootstrapError::Missing("cluster weft_xds"))?;
        cluster.insert("transport_socket".into(), tls.transport_socket());
    }
    if let Some(token) = &params.token {
        let grpc = root
            .pointer_mut("/dynamic_resources/ads_config/grpc_services/0")
            .and_then(Value::as_object_mut)
            .ok_or(BootstrapError::Missing(
                "dynamic_resources.ads_config.grpc_services[0]",
            ))?;
        grpc.insert(
            "initial_metadata".into(),
            json!([{"key": TOKEN_METADATA_KEY, "value": token}]),
        );
    }
    for (cluster, host, port) in [
        ("weft_xds", &params.xds_host, params.xds_port),
        ("local_app", &params.app_host, params.app_port),
    ] {
        let address = named(&mut root, "/static_resources/clusters", cluster)?
            .pointer_mut(
                "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address",
            )
            .ok_or(BootstrapError::Missing("cluster address"))?;
        *address = json!({"address": host, "port_value": port});
    }
    if !params.xds_more.is_empty() {
        let endpoints = named(&mut root, "/static_resources/clusters", "weft_xds")?
            .pointer_mut("/load_assignment/endpoints/0/lb_endpoints")
            .and_then(Value::as_array_mut)
            .ok_or(BootstrapError::Missing("cluster weft_xds endpoints"))?;
        for (host, port) in &params.xds_more {
            endpoints.push(json!({"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}));
        }
    }
    Ok(root)
}

/// Envoy's admin interface: a unix socket readable by the sidecar's user only, or loopback TCP.
fn admin(params: &BootstrapParams) -> Value {
    let address = match &params.admin_socket {
        Some(path) => json!({"pipe": {"path": path, "mode": ADMIN_SOCKET_MODE}}),
        None => {
            json!({"socket_address": {"address": "127.0.0.1", "port_value": params.admin_port}})
        }
    };
    json!({"address": address})
}

/// The inbound listener's mTLS: TLS 1.3, our certificate, a client certificate chained to the
/// mesh CA required. Who the peer is (its SPIFFE id) is authz's business.
fn inbound_tls(dir: &str) -> Value {
    let dir = dir.trim_end_matches('/');
    crate::sds::inbound_mtls(json!({
        "tls_certificates": [{
            "certificate_chain": {"filename": format!("{dir}/cert.pem")},
            "private_key": {"filename": format!("{dir}/key.pem")},
        }],
        "validation_context": {"trusted_ca": {"filename": format!("{dir}/ca.pem")}},
    }))
}

pub(crate) fn named<'a>(
    root: &'a mut Value,
    list: &str,
    name: &str,
) -> Result<&'a mut Value, BootstrapError> {
    root.pointer_mut(list)
        .and_then(Value::as_array_mut)
        .and_then(|items| items.iter_mut().find(|item| item["name"] == name))
        .ok_or(BootstrapError::Missing(
            "a listener or cluster the template should have",
        ))
}

#[cfg(test)]
mod tests;
