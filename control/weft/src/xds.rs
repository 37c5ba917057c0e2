//! The xDS server in `weft serve` (`--xds-listen`): its options, its state, and the wiring
//! that feeds it every published policy version through `weft-translate`. `weft bootstrap`
//! is in `bootstrap.rs`, the sidecar views of `weft status` / `weft apply` in
//! `sidecars.rs`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weft_filter_core::registry::{Filter, SUITE_MODULE};
use weft_state::{ControlPlane, Snapshot};
use weft_translate::{sidecar_resources, Layout, Mode, SidecarResources};
use weft_xds::{MeshTls, ModuleSource, StaticService, WasmModules, XdsSettings, XdsState, XdsTls};

/// `weft serve` options for xDS.
#[derive(Debug, Clone, clap::Args)]
pub struct XdsServeArgs {
    /// xDS (ADS gRPC) and wasm module listen address, e.g. `0.0.0.0:18000`; no xDS when absent.
    #[arg(long, env = "WEFT_XDS_LISTEN")]
    pub xds_listen: Option<String>,
    /// The address the xDS listener bound (set by `serve`; the replica registration shows it).
    #[arg(skip)]
    pub bound: Arc<std::sync::OnceLock<String>>,
    /// Directory with the filter modules and their `SHA256SUMS`; a module whose hash does not
    /// match is refused at start. Read again on SIGHUP: a set that fails any check is refused
    /// and the modules served stay as they were.
    #[arg(long, env = "WEFT_MODULES_DIR", default_value = "dist/filters")]
    pub modules_dir: PathBuf,
    /// The trust list: a PEM file of ed25519 public keys, or a directory of `*.pub` / `*.pem`
    /// files. Every module must carry `<module>.wasm.sig`, a signature of its bytes by one of
    /// these keys (`weft module sign`), or nothing is served. Required with `--xds-listen`
    /// unless `--allow-unsigned-modules`.
    #[arg(long, env = "WEFT_MODULE_SIGNERS")]
    pub module_signers: Option<PathBuf>,
    /// Serve modules without checking signatures (development only; logged at start).
    #[arg(
        long,
        env = "WEFT_ALLOW_UNSIGNED_MODULES",
        conflicts_with = "module_signers"
    )]
    pub allow_unsigned_modules: bool,
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
    /// Serve only the two `suite.wasm` entries per sidecar group (`weft.suite.inbound`:
    /// telemetry + authz; `weft.suite.outbound`: telemetry + canary + fault + breaker). By
    /// default each group gets both these and the separate filters' entries, and every
    /// sidecar receives the ones its bootstrap names (`weft bootstrap` makes suite
    /// bootstraps; `--modules` and gateways separate ones).
    #[arg(long, env = "WEFT_SUITE", conflicts_with = "modules")]
    pub suite: bool,
    /// Serve only the separate filters' entries (`weft.authz`, `weft.canary`, ...), as
    /// before suite mode was the default; suite bootstraps then get no configuration, which
    /// `weft status` reports.
    #[arg(long, env = "WEFT_MODULES")]
    pub modules: bool,
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

/// The xDS server's state (modules loaded, static services, mesh TLS, the CA), or `None`
/// without `--xds-listen`. Made before anything serves, so the REST API can show sidecars.
pub fn state(
    args: &XdsServeArgs,
    identity: Option<Arc<weft_ca::Identity>>,
) -> anyhow::Result<Option<Arc<XdsState>>> {
    if args.xds_listen.is_none() {
        return Ok(None);
    }
    let modules = load_modules(args)?;
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
    if layout(args, &state) == Layout::Separate && !args.modules {
        tracing::warn!(
            modules = %args.modules_dir.display(),
            "no suite.wasm: serving the separate filters only; suite bootstraps get no filter configuration"
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

/// The modules of `--modules-dir`, signature-checked against `--module-signers` (read again
/// each time: a key added or removed counts from the next reload).
pub fn load_modules(args: &XdsServeArgs) -> anyhow::Result<WasmModules> {
    let modules = match (&args.module_signers, args.allow_unsigned_modules) {
        (Some(path), _) => {
            let signers = weft_supply::signing::TrustList::load(path)?;
            let modules = WasmModules::load_dir_signed(&args.modules_dir, &signers)?;
            tracing::info!(dir = %args.modules_dir.display(), signers = ?signers.key_ids(), "modules signed by trusted keys");
            modules
        }
        (None, true) => {
            tracing::warn!(dir = %args.modules_dir.display(), "--allow-unsigned-modules: serving modules whose signatures are not checked");
            WasmModules::load_dir(&args.modules_dir)?
        }
        (None, false) => anyhow::bail!(
            "--xds-listen serves wasm modules that run in every sidecar: give --module-signers FILE|DIR, \
             the ed25519 public keys whose signatures are accepted (scripts/build-filters signs with \
             .weft/module-signing/dev.key, trusted by .weft/module-signing/signers), or \
             --allow-unsigned-modules to serve them unchecked"
        ),
    };
    if args.suite && modules.get(SUITE_MODULE).is_none() {
        anyhow::bail!(
            "--suite: no suite.wasm in {} (build it with scripts/build-filters)",
            args.modules_dir.display()
        );
    }
    Ok(modules)
}

/// On every SIGHUP: reads the modules directory and the trust list again; serves the new
/// set only when every check passes, else keeps the current one and records why (shown in
/// `weft status`).
pub async fn reload_on_hangup(args: XdsServeArgs, state: Arc<XdsState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: modules are read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match load_modules(&args) {
            Ok(modules) => match state.reload_modules(modules) {
                Ok(()) => {
                    tracing::info!(modules = ?state.served_modules().iter().map(|m| format!("{}={}", m.name, m.sha256)).collect::<Vec<_>>(), "modules reloaded")
                }
                Err(error) => {
                    tracing::error!(%error, "modules reload refused; serving the previous set")
                }
            },
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(%error, "modules reload refused; serving the previous set");
                state.module_reload_refused(error);
            }
        }
    }
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
    let _ = args.bound.set(addr.to_string());
    crate::telemetry::attach(&state, &telemetry);
    tokio::spawn(reload_on_hangup(args.clone(), Arc::clone(&state)));
    let ingest = weft_telemetry_plane::ingest_router(Arc::clone(&telemetry));
    let mut versions = plane.subscribe();
    let publisher = Arc::clone(&state);
    let layout = layout(&args, &state);
    tracing::info!(?layout, "filter entries per group");
    let publish = async move {
        loop {
            let snapshot = versions.borrow_and_update().clone();
            publish_version(&publisher, &telemetry, &snapshot, layout);
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
    layout: Layout,
) -> SidecarResources {
    let mode = Mode {
        layout,
        // Older artifact sets without telemetry.wasm keep working, without telemetry.
        telemetry: state.module(Filter::Telemetry.module()).is_some(),
    };
    sidecar_resources(snapshot, telemetry.keys(), mode)
}

/// The entries each group gets: `--suite` or `--modules` alone, both by default (the
/// separate ones only when there is no `suite.wasm` to serve).
pub fn layout(args: &XdsServeArgs, state: &XdsState) -> Layout {
    if args.suite {
        Layout::Suite
    } else if args.modules || state.module(SUITE_MODULE).is_none() {
        Layout::Separate
    } else {
        Layout::Both
    }
}

fn publish_version(
    state: &XdsState,
    telemetry: &weft_telemetry_plane::Telemetry,
    snapshot: &Snapshot,
    layout: Layout,
) {
    let resources = translate(state, telemetry, snapshot, layout);
    for error in &resources.errors {
        tracing::error!(version = snapshot.version, %error, "filter entry left out");
    }
    crate::telemetry::set_services(telemetry, &resources.services);
    match state.set_config(snapshot.version, resources.filters, resources.services) {
        Ok(()) => tracing::info!(version = snapshot.version, "published to sidecars"),
        Err(error) => tracing::error!(version = snapshot.version, %error, "not published"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
