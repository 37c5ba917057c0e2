//! `weft serve`: opens the store, serves the API, stops cleanly on SIGTERM or SIGINT.

use crate::Exit;
use std::path::Path;
use std::sync::Arc;
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::FileStore;

pub fn run(
    data_dir: &Path,
    listen: &str,
    level: tracing::Level,
    workers: Option<u16>,
    xds: crate::xds::XdsServeArgs,
    store: crate::store_cmd::CompactionArgs,
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
    match runtime.block_on(serve(data_dir, listen, xds, store)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            Exit::Server
        }
    }
}

async fn serve(
    data_dir: &Path,
    listen: &str,
    xds: crate::xds::XdsServeArgs,
    compaction: crate::store_cmd::CompactionArgs,
) -> anyhow::Result<()> {
    let store = FileStore::open_with(data_dir, compaction.compaction())?;
    for warning in store.warnings() {
        tracing::warn!(%warning, "the data directory was readable by others");
    }
    if let Some(r) = store.recovery() {
        tracing::warn!(offset = r.offset, dropped_bytes = r.dropped_bytes, reason = %r.reason, "dropped a torn tail of the log (an unacknowledged write)");
    }
    let plane = Arc::new(ControlPlane::open(Arc::new(store), Limits::default())?);
    tracing::info!(data_dir = %data_dir.display(), version = plane.snapshot().version, "store opened");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving the REST API");
    // The one line on stdout: tests and scripts read the chosen port from it.
    println!("listening on http://{addr}");
    // One signal stops both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_on = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Telemetry: batches arrive on the xDS listener, the views are on the API's.
    let telemetry =
        weft_telemetry_plane::Telemetry::new(weft_telemetry_plane::GroupKeys::random()?);
    let identity = crate::identity::open(data_dir, &xds.identity, &xds.mesh_trust_domain)?;
    let identity_routes = weft_api::identity_router(identity.clone());
    let xds_state = crate::xds::state(&xds, identity.clone())?;
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
            let suite = xds.suite;
            Arc::new(move |namespace, service, version| {
                let resources = crate::xds::translate(&state, &telemetry, &plane.snapshot(), suite);
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
    let views = weft_telemetry_plane::api_router(telemetry)
        .merge(weft_rollout::routes::router(rollouts))
        .merge(identity_routes)
        .merge(weft_api::xds_router(sidecar_view))
        .merge(weft_api::xds_resources_router(resources_view));
    let api = weft_api::serve_with(listener, plane, views, stop_on(stopped));
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
