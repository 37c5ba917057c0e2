//! xDS in the `weft` command: the xDS server next to the REST API in `weft serve`
//! (`--xds-listen`), fed every published policy version; `weft bootstrap`; and the sidecar
//! views of `weft status` and `weft apply` (waiting for acknowledgements).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_state::{ControlPlane, Snapshot};
use weft_translate::{sidecar_resources, Layout, Mode, SidecarResources};
use weft_xds::{
    bootstrap::{render, BootstrapParams, XdsUpstreamTls},
    MeshTls, ModuleSource, StaticService, WasmModules, XdsSettings, XdsState, XdsTls,
};

use crate::cli::Output;
use crate::client::{Client, Failure};
use crate::Exit;

/// `weft serve` options for xDS.
#[derive(Debug, Clone, clap::Args)]
pub struct XdsServeArgs {
    /// xDS (ADS gRPC) and wasm module listen address, e.g. `0.0.0.0:18000`; no xDS when absent.
    #[arg(long, env = "WEFT_XDS_LISTEN")]
    pub xds_listen: Option<String>,
    /// Directory with the filter modules and their `SHA256SUMS`; a module whose hash does not
    /// match is refused at start.
    #[arg(long, env = "WEFT_MODULES_DIR", default_value = "dist/filters")]
    pub modules_dir: PathBuf,
    /// URL prefix sidecars fetch modules from, through their `weft_xds` cluster.
    #[arg(
        long,
        env = "WEFT_MODULE_BASE_URL",
        default_value = "http://weft-control"
    )]
    pub module_base_url: String,
    /// How long a gone sidecar stays an endpoint (it may be reconnecting), in milliseconds.
    #[arg(long, env = "WEFT_XDS_GRACE_MS", default_value_t = 5000)]
    pub grace_ms: u64,
    /// After start, how long sidecars get to reconnect and register before CDS/EDS are
    /// served (so a restart does not briefly tell callers the mesh is empty), in milliseconds.
    #[arg(long, env = "WEFT_MESH_WARMUP_MS", default_value_t = 2000)]
    pub mesh_warmup_ms: u64,
    /// A service outside the mesh, `NAME=HOST:PORT` (repeatable): a DNS-resolved cluster
    /// `NAME` in every sidecar's CDS.
    #[arg(long = "static-service", value_parser = parse_static_service)]
    pub static_services: Vec<StaticService>,
    /// Mesh mTLS: where the sidecars hold `ca.pem`, `cert.pem` and `key.pem` (their bootstrap
    /// made with `weft bootstrap --mesh-tls-dir` and the same directory). Every mesh cluster
    /// then speaks TLS 1.3 with that certificate and accepts only a callee presenting the
    /// SPIFFE id of the destination service. Plaintext when absent.
    #[arg(long, env = "WEFT_MESH_TLS_DIR_IN_SIDECAR")]
    pub mesh_tls_dir_in_sidecar: Option<String>,
    /// Trust domain of the mesh SPIFFE ids (`spiffe://<domain>/ns/<namespace>/sa/<service>`),
    /// with `--mesh-tls-dir-in-sidecar`.
    #[arg(long, env = "WEFT_MESH_TRUST_DOMAIN", default_value = "cluster.local")]
    pub mesh_trust_domain: String,
    #[command(flatten)]
    pub identity: crate::identity::CaServeArgs,
    /// With `--ca`, the xDS listener speaks TLS 1.3 with a certificate from the mesh CA for
    /// the control plane's SPIFFE id (`spiffe://<domain>/ns/weft-system/sa/weft-control`,
    /// what sidecars check) and these DNS names / IP addresses (repeatable, or
    /// comma-separated in the environment variable).
    #[arg(
        long = "xds-tls-name",
        env = "WEFT_XDS_TLS_NAMES",
        value_delimiter = ',',
        default_values = ["weft-control", "localhost", "127.0.0.1"]
    )]
    pub xds_tls_names: Vec<String>,
    /// Suite mode: serve each sidecar group two `suite.wasm` entries instead of the five
    /// separate filters (`weft.suite.inbound`: telemetry + authz; `weft.suite.outbound`:
    /// telemetry + canary + fault + breaker), one VM per worker. Sidecars need a bootstrap
    /// made with `weft bootstrap --suite`.
    #[arg(long, env = "WEFT_SUITE")]
    pub suite: bool,
    /// With `--ca`: open xDS streams per identity (namespace, service), i.e. the most
    /// replicas one service may run; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "WEFT_XDS_MAX_STREAMS_PER_IDENTITY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub xds_max_streams_per_identity: u32,
    /// With `--ca`: versions per identity that no policy declares (each is a sidecar group
    /// with its own snapshot); more are refused.
    #[arg(long, env = "WEFT_XDS_MAX_GROUPS_PER_IDENTITY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub xds_max_groups_per_identity: u32,
    /// An xDS stream that sends no request within this time is closed: 10s, 1m (at most 1h).
    #[arg(long, env = "WEFT_XDS_FIRST_MESSAGE_TIMEOUT", default_value = "10s",
          value_parser = parse_first_message_timeout)]
    pub xds_first_message_timeout: Duration,
}

fn parse_first_message_timeout(text: &str) -> Result<Duration, String> {
    let timeout = crate::identity::parse_ttl(text)?;
    if timeout > Duration::from_secs(3600) {
        return Err(format!("{text:?} is longer than the maximum of 1h"));
    }
    Ok(timeout)
}

fn parse_static_service(text: &str) -> Result<StaticService, String> {
    let usage = || format!("{text:?}: expected NAME=HOST:PORT");
    let (name, address) = text.split_once('=').ok_or_else(usage)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(usage)?;
    let port: u32 = port.parse().map_err(|_| usage())?;
    if name.is_empty() || host.is_empty() || port == 0 || port > 65535 {
        return Err(usage());
    }
    Ok(StaticService {
        name: name.into(),
        host: host.into(),
        port,
    })
}

/// Client options for the xDS server's sidecar view (`weft status`, `weft apply`), read from
/// the REST API (`GET /api/v1/xds/sidecars` on `--server`).
#[derive(Debug, Clone, clap::Args)]
pub struct XdsClientArgs {
    /// Fallback only: the xDS listener's plain-HTTP address, asked for `GET /v1/sidecars`
    /// when the REST API has no sidecar view (an older server). Useless with `weft serve
    /// --ca`, whose xDS listener speaks TLS only.
    #[arg(long, global = true, env = "WEFT_XDS_SERVER")]
    pub xds_server: Option<String>,
    /// `weft apply`: seconds to wait for sidecars to acknowledge the new version (0: do not).
    #[arg(long, global = true, env = "WEFT_ACK_TIMEOUT", default_value_t = 30)]
    pub ack_timeout: u64,
    /// `weft apply`: how many sidecars must acknowledge (default: every connected one).
    #[arg(long, global = true)]
    pub ack_min: Option<usize>,
}

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
    /// For a control plane run with `weft serve --suite`: the two `weft.suite.{inbound,outbound}`
    /// filter entries (one `suite.wasm` VM per worker) instead of the five separate ones.
    #[arg(long, conflicts_with = "gateway")]
    pub suite: bool,
}

pub fn bootstrap(args: BootstrapArgs) -> Exit {
    let mut params =
        BootstrapParams::new(&args.service, &args.version, &args.xds_host, args.xds_port);
    params.namespace = args.namespace;
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
        _ if args.suite => weft_xds::suite_bootstrap::render_suite(&params),
        _ => render(&params),
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

/// The xDS server's state (modules loaded, static services, mesh TLS, the CA), or `None`
/// without `--xds-listen`. Made before anything serves, so the REST API can show sidecars.
pub fn state(
    args: &XdsServeArgs,
    identity: Option<Arc<weft_ca::Identity>>,
) -> anyhow::Result<Option<Arc<XdsState>>> {
    if args.xds_listen.is_none() {
        return Ok(None);
    }
    let modules = WasmModules::load_dir(&args.modules_dir)?;
    let settings = XdsSettings {
        module_source: ModuleSource {
            cluster: "weft_xds".into(),
            base_url: args.module_base_url.trim_end_matches('/').to_string(),
        },
        grace: Duration::from_millis(args.grace_ms),
        mesh_warmup: Duration::from_millis(args.mesh_warmup_ms),
    };
    let state = XdsState::new(settings, modules);
    state.set_limits(weft_xds::StreamLimits {
        max_streams_per_identity: args.xds_max_streams_per_identity as usize,
        max_groups_per_identity: args.xds_max_groups_per_identity as usize,
        first_message_timeout: args.xds_first_message_timeout,
        ..weft_xds::StreamLimits::default()
    });
    if args.suite && state.module("suite").is_none() {
        anyhow::bail!(
            "--suite: no suite.wasm in {} (build it with scripts/build-filters)",
            args.modules_dir.display()
        );
    }
    state.set_static_services(args.static_services.clone())?;
    if let Some(dir) = &args.mesh_tls_dir_in_sidecar {
        let mut tls = MeshTls::new(dir);
        tls.trust_domain = args.mesh_trust_domain.clone();
        tracing::info!(dir = %dir, trust_domain = %tls.trust_domain, "mesh clusters use mTLS");
        state.set_mesh_tls(Some(tls))?;
    }
    if let Some(identity) = identity {
        state.set_identity(identity)?;
        state.set_mesh_tls(Some(MeshTls::sds(&args.mesh_trust_domain)))?;
    }
    Ok(Some(state))
}

/// Runs the xDS server on `--xds-listen` until `shutdown`, publishing every version `plane`
/// publishes; over TLS when the CA is on (`identity`).
pub async fn serve(
    args: XdsServeArgs,
    state: Arc<XdsState>,
    plane: Arc<ControlPlane>,
    telemetry: Arc<weft_telemetry_plane::Telemetry>,
    identity: Option<Arc<weft_ca::Identity>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Some(listen) = args.xds_listen.clone() else {
        return Ok(());
    };
    let tls = match identity {
        Some(identity) => {
            let tls = XdsTls::new(identity, args.xds_tls_names.clone())?;
            tracing::info!(spiffe_id = %tls.spiffe_id(), names = ?args.xds_tls_names, serial = %tls.serial(), root = tls.root_generation(), "xDS over TLS 1.3 (sidecars need `weft bootstrap --xds-ca-file`)");
            Some(tls)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, modules = %args.modules_dir.display(), "serving xDS");
    println!("xds listening on {addr}");
    crate::telemetry::attach(&state, &telemetry);
    let ingest = weft_telemetry_plane::ingest_router(Arc::clone(&telemetry));
    let mut versions = plane.subscribe();
    let publisher = Arc::clone(&state);
    let suite = args.suite;
    if suite {
        tracing::info!("suite mode: weft.suite.inbound and weft.suite.outbound per group");
    }
    let publish = async move {
        loop {
            let snapshot = versions.borrow_and_update().clone();
            publish_version(&publisher, &telemetry, &snapshot, suite);
            if versions.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        // Not graceful on purpose: sidecars keep their streams open.
        result = weft_xds::serve_with_tls(listener, state, ingest, tls, std::future::pending()) => result?,
        () = publish => {}
        () = shutdown => {}
    }
    Ok(())
}

/// The translation of `snapshot` as this server publishes it: the one call shared by the
/// xDS publisher and the sidecar-config API (`GET /api/v1/xds/sidecars/{ns}/{svc}/{ver}/resources`).
pub fn translate(
    state: &XdsState,
    telemetry: &weft_telemetry_plane::Telemetry,
    snapshot: &Snapshot,
    suite: bool,
) -> SidecarResources {
    let mode = Mode {
        layout: if suite {
            Layout::Suite
        } else {
            Layout::Separate
        },
        // Older artifact sets without telemetry.wasm keep working, without telemetry.
        telemetry: state.module("telemetry").is_some(),
    };
    sidecar_resources(snapshot, telemetry.keys(), mode)
}

fn publish_version(
    state: &XdsState,
    telemetry: &weft_telemetry_plane::Telemetry,
    snapshot: &Snapshot,
    suite: bool,
) {
    let resources = translate(state, telemetry, snapshot, suite);
    for error in &resources.errors {
        tracing::error!(version = snapshot.version, %error, "filter entry left out");
    }
    crate::telemetry::set_services(telemetry, &resources.services);
    match state.set_config(snapshot.version, resources.filters, resources.services) {
        Ok(()) => tracing::info!(version = snapshot.version, "published to sidecars"),
        Err(error) => tracing::error!(version = snapshot.version, %error, "not published"),
    }
}

/// The sidecar table of `weft status`; an unreachable xDS server is reported, not fatal.
pub fn print_sidecars(
    client: &Client,
    args: &XdsClientArgs,
    format: Output,
) -> Result<(), Failure> {
    let body = match SidecarView::new(client, args).get() {
        Ok(body) => body,
        Err(message) => {
            eprintln!("xds: sidecars unavailable: {message}");
            return Ok(());
        }
    };
    crate::output::print(format, &body, |body| {
        sidecar_table(body) + &crate::identity::refusal_lines(body)
    });
    Ok(())
}

/// Where `weft status` and `weft apply` read the sidecars: the REST API's
/// `GET /api/v1/xds/sidecars` (plain HTTP whatever the xDS listener speaks), else, when
/// `--xds-server` is set, the xDS listener's `GET /v1/sidecars` (servers without the route).
struct SidecarView<'a> {
    rest: &'a Client,
    fallback: Option<(Client, &'a str)>,
}

impl<'a> SidecarView<'a> {
    fn new(rest: &'a Client, args: &'a XdsClientArgs) -> Self {
        Self {
            rest,
            fallback: args
                .xds_server
                .as_deref()
                .map(|server| (Client::new(server), server)),
        }
    }

    fn get(&self) -> Result<Value, String> {
        let rest = match self.rest.get("/api/v1/xds/sidecars") {
            Ok(body) => return Ok(body),
            Err(failure) => failure.message,
        };
        match &self.fallback {
            Some((client, server)) => client
                .get("/v1/sidecars")
                .map_err(|f| format!("REST API: {rest}; xDS listener {server}: {}", f.message)),
            None => Err(rest),
        }
    }
}

fn sidecar_table(body: &Value) -> String {
    let mut out = format!("xds revision: {}\n", body["revision"]);
    let sidecars = body["sidecars"].as_array().cloned().unwrap_or_default();
    if sidecars.is_empty() {
        out.push_str("sidecars: none connected\n");
        return out;
    }
    out.push_str("NODE\tGROUP\tCONNECTED\tSYNCED\tNACK\n");
    for s in sidecars {
        let nack = match &s["current_nack"] {
            Value::Null => "-".to_string(),
            n => format!(
                "{} ({})",
                n["message"].as_str().unwrap_or(""),
                short_type(&n["type_url"])
            ),
        };
        out.push_str(&format!(
            "{}\t{}/{}/{}\t{}\t{}\t{}\n",
            s["node_id"].as_str().unwrap_or(""),
            s["namespace"].as_str().unwrap_or(""),
            s["service"].as_str().unwrap_or(""),
            s["version"].as_str().unwrap_or(""),
            s["connected"],
            s["synced_revision"],
            nack,
        ));
    }
    out
}

fn short_type(type_url: &Value) -> String {
    type_url
        .as_str()
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string()
}

const LASTING_REFUSAL: Duration = Duration::from_secs(3);

/// After `weft apply` created `version`: wait (with a progress line on stderr) until the
/// wanted number of sidecars acknowledged it, or report the sidecars that refused it.
pub fn wait_for_acks(
    client: &Client,
    args: &XdsClientArgs,
    outcome: &Value,
) -> Result<(), Failure> {
    let (Some(version), true) = (outcome["version"].as_u64(), outcome["created"] == true) else {
        return Ok(());
    };
    if args.ack_timeout == 0 {
        return Ok(());
    }
    let view = SidecarView::new(client, args);
    let now = Instant::now();
    // A timeout past the clock's range waits a year (for ever, in practice).
    let deadline = now
        .checked_add(Duration::from_secs(args.ack_timeout))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now);
    // A sidecar fetching a new module refuses once and accepts on the retry: only a refusal
    // that lasts counts.
    let mut refusing_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let body = match view.get() {
            Ok(body) => body,
            Err(message) => {
                eprintln!("xds: sidecars unavailable, not waiting for them: {message}");
                return Ok(());
            }
        };
        let sidecars = body["sidecars"].as_array().cloned().unwrap_or_default();
        let connected: Vec<&Value> = sidecars.iter().filter(|s| s["connected"] == true).collect();
        let acked = connected
            .iter()
            .filter(|s| s["synced_revision"].as_u64().is_some_and(|r| r >= version))
            .count();
        refusing_since.retain(|node, _| {
            connected
                .iter()
                .any(|s| s["node_id"] == node.as_str() && !s["current_nack"].is_null())
        });
        for s in &connected {
            if !s["current_nack"].is_null() {
                let node = s["node_id"].as_str().unwrap_or("").to_string();
                refusing_since.entry(node).or_insert_with(Instant::now);
            }
        }
        let refused: Vec<&&Value> = connected
            .iter()
            .filter(|s| {
                s["node_id"]
                    .as_str()
                    .and_then(|n| refusing_since.get(n))
                    .is_some_and(|t| t.elapsed() >= LASTING_REFUSAL || Instant::now() >= deadline)
            })
            .collect();
        let want = args.ack_min.unwrap_or(connected.len());
        eprint!(
            "\rversion {version}: {acked} of {} sidecar(s) acknowledged",
            connected.len()
        );
        if acked >= want && body["revision"].as_u64().is_some_and(|r| r >= version) {
            eprintln!();
            return Ok(());
        }
        if !refused.is_empty() {
            eprintln!();
            for s in &refused {
                eprintln!(
                    "  {} refused: {}",
                    s["node_id"].as_str().unwrap_or(""),
                    s["current_nack"]["message"].as_str().unwrap_or("")
                );
            }
            return Err(Failure::new(
                Exit::Server,
                format!("{} sidecar(s) refused version {version}; they keep running the last version they accepted", refused.len()),
            ));
        }
        if Instant::now() >= deadline {
            eprintln!();
            return Err(Failure::new(
                Exit::Server,
                format!("timed out: {acked} of {want} sidecar(s) acknowledged version {version}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn static_services_parse_name_host_port() {
        let s = parse_static_service("payments=api.example.com:443")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (s.name.as_str(), s.host.as_str(), s.port),
            ("payments", "api.example.com", 443)
        );
        for bad in ["payments", "=h:1", "p=h", "p=h:0", "p=:80", "p=h:99999"] {
            assert!(parse_static_service(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sidecar_table_shows_acks_and_nack_reasons() {
        let body = json!({"revision": 7, "sidecars": [
            {"node_id": "reviews-v1", "namespace": "shop", "service": "reviews", "version": "v1",
             "connected": true, "synced_revision": 7, "current_nack": null},
            {"node_id": "reviews-v2", "namespace": "shop", "service": "reviews", "version": "v2",
             "connected": true, "synced_revision": 6, "current_nack": {
                "type_url": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "message": "Unable to create Wasm plugin weft.authz"}},
        ]});
        let table = sidecar_table(&body);
        assert!(table.contains("xds revision: 7"), "{table}");
        assert!(
            table.contains("reviews-v1\tshop/reviews/v1\ttrue\t7\t-"),
            "{table}"
        );
        assert!(
            table.contains("reviews-v2\tshop/reviews/v2\ttrue\t6\tUnable to create Wasm plugin weft.authz (TypedExtensionConfig)"),
            "{table}"
        );
        assert!(sidecar_table(&json!({"revision": 0, "sidecars": []})).contains("none connected"));
    }
}
