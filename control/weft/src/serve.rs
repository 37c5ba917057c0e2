//! `weft serve`: opens the store, serves the API, stops cleanly on SIGTERM or SIGINT.

use crate::Exit;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::{FileStore, Store};

/// `weft serve` options for the REST API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiServeArgs {
    /// REST API address, over TLS with a certificate from the mesh CA (needs `--ca`);
    /// `127.0.0.1:0` picks a free port (the address is printed).
    #[arg(long, env = "WEFT_LISTEN", conflicts_with = "insecure_listen")]
    pub listen: Option<String>,
    /// Plain-HTTP REST API instead, for development: loopback addresses only.
    #[arg(long, env = "WEFT_INSECURE_LISTEN")]
    pub insecure_listen: Option<String>,
    /// The names clients reach the API by (repeatable, or comma-separated in the environment
    /// variable): the certificate's DNS names / IP addresses, and the only `Host` values
    /// accepted (a foreign `Host` gets 421).
    #[arg(
        long = "api-name",
        env = "WEFT_API_NAMES",
        value_delimiter = ',',
        default_values = ["localhost", "127.0.0.1", "::1"]
    )]
    pub api_names: Vec<String>,
    /// Serve `/metrics` (Prometheus text, no credential) on this separate address; off when
    /// absent (then `/metrics` is on the API, for viewers).
    #[arg(long, env = "WEFT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Set by `weft serve`: `<data-dir>/ca-bundle.pem`.
    #[arg(skip)]
    pub data_dir_bundle: std::path::PathBuf,
}

/// The trust bundle written beside the data for API clients (`--ca-file`).
pub const API_BUNDLE_FILE: &str = "ca-bundle.pem";

pub fn run(
    data_dir: &Path,
    api: ApiServeArgs,
    level: tracing::Level,
    workers: Option<u16>,
    xds: crate::xds::XdsServeArgs,
    store: crate::store_cmd::CompactionArgs,
    replica: crate::replica::ReplicaArgs,
) -> Exit {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(usize::from(workers));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return Exit::Server;
        }
    };
    match runtime.block_on(serve(data_dir, api, xds, store, replica)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            Exit::Server
        }
    }
}

/// The API's listener: TLS from the mesh CA, or plain HTTP on loopback when asked for.
async fn api_listener(
    args: &ApiServeArgs,
    identity: Option<&Arc<weft_ca::Identity>>,
    operator_ca: Option<&Arc<weft_ca::Ca>>,
) -> anyhow::Result<(weft_api::ApiListener, String)> {
    if let Some(address) = &args.insecure_listen {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            anyhow::bail!("--insecure-listen {address}: plain HTTP is only served on a loopback address; use --listen (TLS) for {addr}");
        }
        tracing::warn!(%addr, "the REST API speaks plain HTTP (--insecure-listen): tokens cross in clear; for development only");
        return Ok((
            weft_api::ApiListener::Plain(listener),
            format!("http://{addr}"),
        ));
    }
    let Some(identity) = identity else {
        anyhow::bail!("the REST API is served over TLS with a certificate from the mesh CA: start with --ca, or use --insecure-listen 127.0.0.1:PORT for development");
    };
    let address = args.listen.as_deref().unwrap_or("127.0.0.1:7070");
    // What clients verify the API with (public; the CLI's --ca-file).
    let bundle = args.data_dir_bundle.clone();
    weft_store::private::write_atomic(&bundle, identity.ca.trust_bundle().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
    // Client certificates are optional and must chain to the operator CA (never the mesh's).
    let operator_roots = operator_ca.map(|ca| ca.trust_bundle());
    let tls = weft_xds::tls::XdsTls::with_client_roots(
        Arc::clone(identity),
        args.api_names.clone(),
        &[b"http/1.1"],
        operator_roots.as_deref(),
    )?;
    let operator_prefix = format!(
        "spiffe://{}/ns/{}/operator/",
        identity.ca.settings().trust_domain,
        weft_ca::RESERVED_NAMESPACE
    );
    let listener = tokio::net::TcpListener::bind(address).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, names = ?args.api_names, serial = %tls.serial(), "REST API over TLS 1.3 (clients trust `weft ca show --bundle`)");
    Ok((
        weft_api::ApiListener::Tls(weft_api::tls::TlsListener::new(
            listener,
            tls,
            operator_prefix,
        )?),
        format!("https://{addr}"),
    ))
}

/// Operators, the audit log and the accepted `Host` names; the first admin's token on
/// first start.
fn access(
    data_dir: &Path,
    args: &ApiServeArgs,
    xds: &crate::xds::XdsServeArgs,
    shared: Option<&crate::replica::Shared>,
) -> anyhow::Result<Arc<weft_api::access::Access>> {
    // Operator client certificates come from a CA of their own: no sidecar trusts its root,
    // so an operator certificate is never a workload identity.
    let operator_ca = if xds.identity.ca {
        let settings = weft_ca::CaSettings {
            trust_domain: xds.mesh_trust_domain.clone(),
            svid_ttl: weft_ca::MAX_SVID_TTL,
            ..weft_ca::CaSettings::default()
        };
        Some(Arc::new(match shared {
            Some(shared) => weft_ca::Ca::open_shared(
                Arc::clone(&shared.state),
                "ca/operator",
                Arc::clone(&shared.kek),
                settings,
            )?,
            None => weft_ca::Ca::open(&data_dir.join("operator-ca"), settings)?,
        }))
    } else {
        None
    };
    // With replicas, operators and the audit log are etcd's, shared by every replica.
    let (operators, admin_token) = match shared {
        Some(shared) => {
            weft_api::access::Operators::open_shared(Arc::clone(&shared.state), data_dir)?
        }
        None => weft_api::access::Operators::open(data_dir)?,
    };
    if let Some(path) = admin_token {
        tracing::warn!(path = %path.display(), "first start: wrote the admin operator's token (mode 0600); use it with WEFT_TOKEN_FILE, create operators with `weft operator create`");
    }
    let audit = match shared {
        Some(shared) => weft_api::access::AuditLog::open_shared(Arc::clone(&shared.state)),
        None => weft_api::access::AuditLog::open(data_dir)?,
    };
    let mut hosts: Vec<String> = args
        .api_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for address in [&args.listen, &args.insecure_listen].into_iter().flatten() {
        if let Ok(addr) = address.parse::<std::net::SocketAddr>() {
            if !addr.ip().is_unspecified() {
                hosts.push(addr.ip().to_string());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    Ok(Arc::new(weft_api::access::Access {
        operators,
        audit,
        hosts,
        operator_ca,
    }))
}

async fn serve(
    data_dir: &Path,
    mut api: ApiServeArgs,
    xds: crate::xds::XdsServeArgs,
    compaction: crate::store_cmd::CompactionArgs,
    replica: crate::replica::ReplicaArgs,
) -> anyhow::Result<()> {
    api.data_dir_bundle = data_dir.join(API_BUNDLE_FILE);
    let (store, etcd) = open_store(data_dir, compaction, &replica).await?;
    let plane = Arc::new(ControlPlane::open(store, Limits::default())?);
    tracing::info!(data_dir = %data_dir.display(), version = plane.snapshot().version, "store opened");
    if let Some(etcd) = &etcd {
        tokio::spawn(crate::replica::follow(Arc::clone(&plane), etcd.versions()));
    }
    let shared = crate::replica::shared(etcd.as_ref(), &replica)?;
    let access = access(data_dir, &api, &xds, shared.as_ref())?;
    // One signal stops both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_on = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Telemetry: batches arrive on the xDS listener, the views are on the API's.
    // The explain master key outlives restarts (tokens stay valid); telemetry keys do not.
    // Replicas share one telemetry secret and one explain master key (sealed in etcd): a
    // sidecar's batches reach any of them through its `weft_xds` cluster, and each must
    // verify them; an explain token minted through one is honoured by the sidecars of all.
    let keys = match (&etcd, &shared) {
        (Some(etcd), Some(shared)) => weft_telemetry_plane::GroupKeys::new(
            crate::replica::shared_secret(etcd, shared, "telemetry")
                .await?
                .to_vec(),
        )
        .with_explain_master(
            crate::replica::shared_secret(etcd, shared, "explain")
                .await?
                .to_vec(),
        ),
        _ => weft_telemetry_plane::GroupKeys::random()?
            .with_explain_master(crate::explain::open_master(data_dir)?),
    };
    let explain_keys: weft_api::ExplainKeys = {
        let keys = keys.clone();
        Arc::new(move |namespace, service| keys.explain_key_hex(namespace, service))
    };
    let telemetry = weft_telemetry_plane::Telemetry::new(keys);
    let identity = crate::identity::open(
        data_dir,
        &xds.identity,
        &xds.mesh_trust_domain,
        shared.as_ref(),
    )?;
    if let Some(etcd) = &etcd {
        tokio::spawn(crate::replica::reload_shared(
            etcd.state_changes(),
            identity.clone(),
            Arc::clone(&access),
        ));
    }
    let (listener, url) =
        api_listener(&api, identity.as_ref(), access.operator_ca.as_ref()).await?;
    tracing::info!(%url, "serving the REST API");
    // The one line on stdout: tests and scripts read the chosen port from it.
    println!("listening on {url}");
    if let Some(address) = &api.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address).await?;
        let addr = metrics.local_addr()?;
        tracing::info!(%addr, "serving /metrics without a credential (--metrics-listen)");
        println!("metrics listening on http://{addr}");
        let app = weft_telemetry_plane::metrics_router(Arc::clone(&telemetry));
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics, app)
                .with_graceful_shutdown(stop_on(stopped))
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the metrics listener failed");
            }
        });
    }
    let identity_routes = weft_api::identity_router(identity.clone());
    let xds_state = crate::xds::state(&xds, identity.clone())?;
    let replicas_view = etcd.map(|etcd| {
        crate::replica::share_telemetry(&etcd, &replica, &telemetry);
        telemetry.set_more_metrics(crate::replica::etcd_metrics(&etcd));
        crate::replica::register(
            &etcd,
            &replica,
            &plane,
            &url,
            crate::replica::XdsAddress {
                bound: Arc::clone(&xds.bound),
                listen: xds.xds_listen.clone(),
                grace_ms: xds.grace_ms,
            },
            xds_state.clone(),
        )
    });
    // `weft status` / `weft apply` read the sidecars here, in plain HTTP, whatever the xDS
    // listener speaks.
    let sidecar_view = xds_state.clone().map(|state| -> weft_api::SidecarView {
        Arc::new(move || weft_xds::server::sidecars_json(&state))
    });
    // What one group is served: the same translation the xDS publisher runs.
    let resources_view = xds_state
        .clone()
        .map(|state| -> weft_api::SidecarResourcesView {
            let plane = Arc::clone(&plane);
            let telemetry = Arc::clone(&telemetry);
            let layout = crate::xds::layout(&xds, &state);
            Arc::new(move |namespace, service, version| {
                let resources =
                    crate::xds::translate(&state, &telemetry, &plane.snapshot(), layout);
                let group = weft_xds::SidecarGroup::new(namespace, service, version);
                let view = resources.group_view(&group)?;
                serde_json::to_value(view).ok()
            })
        });
    let xds = {
        let plane = Arc::clone(&plane);
        let stopped = stopped.clone();
        let telemetry = Arc::clone(&telemetry);
        async move {
            match xds_state {
                Some(state) => {
                    crate::xds::serve(xds, state, plane, telemetry, identity, stop_on(stopped))
                        .await
                }
                None => std::future::pending().await,
            }
        }
    };
    // Rollouts: stepped from the telemetry above, their transitions written to the store.
    let rollouts = weft_rollout::Rollouts::new(
        Arc::clone(&plane),
        Arc::clone(&telemetry),
        weft_rollout::EventLog::open(&data_dir.join("rollouts"))?,
    );
    tokio::spawn(Arc::clone(&rollouts).run(stop_on(stopped.clone())));
    // `weft check`: the current snapshot through the filters' cores; breaker state from the
    // telemetry the server holds.
    let breakers: Arc<dyn weft_check::BreakerView> = Arc::new(
        weft_check::routes::TelemetryBreakers(Arc::clone(&telemetry)),
    );
    let check_routes = weft_check::routes::router(Arc::clone(&plane), Some(breakers));
    // The graph's service boxes show each running rollout's progress (weakly held: the
    // rollouts hold the telemetry).
    let weak = Arc::downgrade(&rollouts);
    telemetry.set_badges(Arc::new(move || {
        weak.upgrade()
            .map(|r| rollout_badges(&r.statuses(weft_rollout::runtime::now_ms())))
            .unwrap_or_default()
    }));
    let views = weft_telemetry_plane::api_router(telemetry)
        .merge(check_routes)
        .merge(weft_rollout::routes::router(rollouts))
        .merge(identity_routes)
        .merge(weft_api::xds_router(sidecar_view))
        .merge(weft_api::replicas_router(replicas_view))
        .merge(weft_api::xds_resources_router(resources_view))
        .merge(weft_api::explain_router(
            Arc::clone(&plane),
            Some(explain_keys),
        ));
    let api = weft_api::serve_protected(listener, plane, views, access, stop_on(stopped));
    tokio::pin!(api);
    tokio::select! {
        () = shutdown_signal() => {
            let _ = stop.send(true);
            api.await?;
        }
        result = &mut api => result?,
        // Returns only on failure (or after the stop signal, handled above).
        result = xds => result?,
    }
    tracing::info!("shut down");
    Ok(())
}

/// The store, and the same store as etcd's when it is.
type OpenedStore = (Arc<dyn Store>, Option<Arc<weft_etcd::EtcdStore>>);

/// The file store in `data_dir` (default), or etcd.
async fn open_store(
    data_dir: &Path,
    compaction: crate::store_cmd::CompactionArgs,
    replica: &crate::replica::ReplicaArgs,
) -> anyhow::Result<OpenedStore> {
    match replica.kind {
        crate::replica::StoreKind::File => {
            let store = FileStore::open_with(data_dir, compaction.compaction())?;
            for warning in store.warnings() {
                tracing::warn!(%warning, "the data directory was readable by others");
            }
            if let Some(r) = store.recovery() {
                tracing::warn!(offset = r.offset, dropped_bytes = r.dropped_bytes, reason = %r.reason, "dropped a torn tail of the log (an unacknowledged write)");
            }
            Ok((Arc::new(store), None))
        }
        crate::replica::StoreKind::Etcd => {
            let settings = replica.settings()?;
            // The store runs its own small runtime: start it off the async workers.
            let store =
                tokio::task::spawn_blocking(move || weft_etcd::EtcdStore::connect(settings))
                    .await??;
            tracing::info!(endpoints = ?store.settings().endpoints, prefix = %store.settings().prefix, "store: etcd");
            let store = Arc::new(store);
            Ok((Arc::clone(&store) as Arc<dyn Store>, Some(store)))
        }
    }
}

/// `service -> "rollout progressing 1/2: v2 10%"` for each progressing or paused rollout.
fn rollout_badges(statuses: &[weft_rollout::machine::Status]) -> BTreeMap<String, String> {
    statuses
        .iter()
        .filter(|s| s.phase == "Progressing" || s.phase == "Paused")
        .map(|s| {
            let text = format!(
                "rollout {} {}/{}: {} {}%",
                s.phase.to_lowercase(),
                s.step,
                s.steps,
                s.canary,
                f64::from(s.weight_bp) / 100.0
            );
            (s.service.clone(), text)
        })
        .collect()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
