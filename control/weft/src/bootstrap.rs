//! `weft bootstrap`: a sidecar's (or edge gateway's) Envoy bootstrap.

use std::path::PathBuf;

use weft_xds::bootstrap::{render, BootstrapParams, XdsUpstreamTls};

use crate::Exit;

/// `weft bootstrap`: print a sidecar's Envoy bootstrap.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    #[arg(long)]
    pub service: String,
    #[arg(long)]
    pub version: String,
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Unique per running sidecar; default `<service>-<version>`.
    #[arg(long)]
    pub node_id: Option<String>,
    /// Control plane host (xDS and modules) as the sidecar reaches it.
    #[arg(long, default_value = "weft-control")]
    pub xds_host: String,
    #[arg(long, default_value_t = 18000)]
    pub xds_port: u16,
    /// More control-plane replicas, `HOST:PORT` (repeatable, or comma-separated): the xDS
    /// stream moves to another one within about a second when its replica goes away.
    #[arg(long = "xds-replica", value_delimiter = ',', value_parser = parse_host_port)]
    pub xds_replicas: Vec<(String, u16)>,
    /// The application behind the sidecar.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_host: String,
    #[arg(long, default_value_t = 8080)]
    pub app_port: u16,
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// The address the outbound listener binds. Loopback by default: only the app in the
    /// sidecar's network namespace (its pod) may send through the sidecar.
    #[arg(long, default_value = "127.0.0.1")]
    pub outbound_bind: std::net::IpAddr,
    /// Envoy's admin interface on 127.0.0.1:PORT (never on a routable address).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Envoy's admin interface on this unix socket (mode 0600) instead of 127.0.0.1: the
    /// recommended setting, since an app in the same pod shares the loopback and config_dump
    /// shows the join token.
    #[arg(long, conflicts_with = "admin_port")]
    pub admin_socket: Option<String>,
    /// `ip:port` other sidecars reach this one at; default: the IP of its xDS connection.
    #[arg(long)]
    pub inbound_address: Option<String>,
    /// Incremental xDS (DELTA_GRPC).
    #[arg(long)]
    pub delta: bool,
    /// Mesh mTLS: directory inside the sidecar with `ca.pem` (mesh CA), `cert.pem` and
    /// `key.pem` (this sidecar's SPIFFE certificate). The inbound listener then requires
    /// TLS 1.3 and a client certificate from the mesh CA. Pair with
    /// `weft serve --mesh-tls-dir-in-sidecar` (the same directory).
    #[arg(long)]
    pub mesh_tls_dir: Option<String>,
    /// Mesh mTLS with certificates from the control plane's CA over SDS (`weft serve --ca`):
    /// the inbound listener requires TLS 1.3 and a client certificate from the mesh roots.
    #[arg(long, conflicts_with = "mesh_tls_dir", requires = "token")]
    pub sds: bool,
    /// Join token from `weft token create --service S`: sent on the xDS stream; the control
    /// plane serves certificates and configuration only for the identity it names. Only over
    /// TLS: needs `--xds-ca-file`.
    #[arg(
        long,
        env = "WEFT_JOIN_TOKEN",
        hide_env_values = true,
        requires = "xds_ca_file"
    )]
    pub token: Option<String>,
    /// The control plane's trust bundle (PEM, `weft ca show --bundle > FILE`), inlined in the
    /// bootstrap: the sidecar reaches xDS over TLS 1.3 and accepts only a server certificate
    /// chained to it that carries the control plane's SPIFFE id
    /// (`spiffe://<domain>/ns/weft-system/sa/weft-control`). Needed with `weft serve --ca`.
    #[arg(long, env = "WEFT_XDS_CA_FILE")]
    pub xds_ca_file: Option<PathBuf>,
    /// Trust domain of the control plane's SPIFFE id, with `--xds-ca-file`.
    #[arg(long, env = "WEFT_MESH_TRUST_DOMAIN", default_value = "cluster.local")]
    pub mesh_trust_domain: String,
    /// An edge gateway instead of a sidecar: no mesh-facing inbound listener; a public HTTPS
    /// listener (`--gateway-port`, certificate from `--gateway-tls-dir`) runs the authz filter
    /// (AuthorizationPolicies targeting this service, e.g. JWT rules) and routes by `Host` into
    /// the mesh, with mesh mTLS on the way in.
    #[arg(long, requires = "gateway_tls_dir")]
    pub gateway: bool,
    #[arg(long, default_value_t = 8443)]
    pub gateway_port: u16,
    /// Directory inside the gateway with `cert.pem` and `key.pem`: the certificate outside
    /// clients see (not a mesh certificate).
    #[arg(long)]
    pub gateway_tls_dir: Option<String>,
    /// How many proxies in front of the gateway (load balancers) append to X-Forwarded-For and
    /// are trusted to: the client address authz's `ipBlocks` sees is the N-th address from the
    /// right of X-Forwarded-For. 0 (the default): the TCP peer, X-Forwarded-For is not believed.
    #[arg(long, default_value_t = 0, requires = "gateway")]
    pub gateway_trusted_hops: u32,
    /// The two `weft.suite.{inbound,outbound}` filter entries, one `suite.wasm` VM per
    /// worker: the default (except for `--gateway`); kept so older scripts still parse.
    #[arg(long, conflicts_with_all = ["gateway", "modules"])]
    pub suite: bool,
    /// The separate filters' entries (`weft.authz`, `weft.canary`, ...) instead of the suite,
    /// for a control plane run with `weft serve --modules` or a chain you assemble yourself.
    /// A gateway always uses them.
    #[arg(long)]
    pub modules: bool,
}

pub fn run(args: BootstrapArgs) -> Exit {
    let mut params =
        BootstrapParams::new(&args.service, &args.version, &args.xds_host, args.xds_port);
    params.namespace = args.namespace;
    params.xds_more = args.xds_replicas;
    params.node_id = args.node_id;
    params.app_host = args.app_host;
    params.app_port = args.app_port;
    params.inbound_port = args.inbound_port;
    params.outbound_port = args.outbound_port;
    params.outbound_bind = args.outbound_bind.to_string();
    params.admin_port = args.admin_port;
    params.admin_socket = args.admin_socket;
    params.inbound_address = args.inbound_address;
    params.delta = args.delta;
    params.mesh_tls_dir = args.mesh_tls_dir;
    params.sds = args.sds;
    params.token = args.token;
    if let Some(file) = &args.xds_ca_file {
        let tls = std::fs::read_to_string(file)
            .map_err(|e| format!("--xds-ca-file {}: {e}", file.display()))
            .and_then(|pem| {
                XdsUpstreamTls::new(&pem, &args.mesh_trust_domain, &args.xds_host)
                    .map_err(|e| format!("{} ({})", e, file.display()))
            });
        match tls {
            Ok(tls) => params.xds_tls = Some(tls),
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Usage;
            }
        }
    }
    let rendered = match (args.gateway, args.gateway_tls_dir) {
        (true, Some(tls_dir)) => weft_xds::gateway::render_gateway(
            &params,
            &weft_xds::gateway::GatewayParams {
                port: args.gateway_port,
                tls_dir,
                trusted_hops: args.gateway_trusted_hops,
            },
        ),
        _ if args.modules || args.gateway => render(&params),
        _ => weft_xds::suite_bootstrap::render_suite(&params),
    };
    match rendered {
        Ok(yaml) => {
            print!("{yaml}");
            Exit::Ok
        }
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Server
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_trusted_hops_default_to_zero_and_need_gateway() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["weft", "bootstrap", "--service", "gw", "--version", "v1"];
            argv.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(argv).map(|cli| match cli.command {
                crate::cli::Command::Bootstrap(args) => args.gateway_trusted_hops,
                _ => unreachable!("not a bootstrap command"),
            })
        };
        let gateway = ["--gateway", "--gateway-tls-dir", "/etc/weft/edge"];
        assert_eq!(parse(&gateway).ok(), Some(0));
        let mut two = gateway.to_vec();
        two.extend(["--gateway-trusted-hops", "2"]);
        assert_eq!(parse(&two).ok(), Some(2));
        assert!(
            parse(&["--gateway-trusted-hops", "1"]).is_err(),
            "sidecars trust no hop"
        );
        assert!(parse(&[&gateway[..], &["--gateway-trusted-hops", "-1"]].concat()).is_err());
    }
}

/// `HOST:PORT` (`[v6]:PORT` too).
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?}: the port is not 1-65535"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("{text:?}: no host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod replica_tests {
    #[test]
    fn replica_addresses_parse_or_are_refused_naming_the_value() {
        assert_eq!(
            super::parse_host_port("cp-2.mesh:18000"),
            Ok(("cp-2.mesh".into(), 18000))
        );
        assert_eq!(
            super::parse_host_port("[::1]:18001"),
            Ok(("::1".into(), 18001))
        );
        for bad in [
            "cp",
            "cp:0",
            "cp:65536",
            ":18000",
            "cp:x",
            "a b:1",
            "http://cp:1",
        ] {
            let e = super::parse_host_port(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
