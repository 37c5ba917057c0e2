//! `weft serve`: opens the store, serves the API, stops cleanly on SIGTERM or SIGINT.

use crate::Exit;
use std::path::Path;
use std::sync::Arc;
use weft_policy::Limits;
use weft_state::ControlPlane;
use weft_store::FileStore;

pub fn run(data_dir: &Path, listen: &str, level: tracing::Level) -> Exit {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return Exit::Server;
        }
    };
    match runtime.block_on(serve(data_dir, listen)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            Exit::Server
        }
    }
}

async fn serve(data_dir: &Path, listen: &str) -> anyhow::Result<()> {
    let store = FileStore::open(data_dir)?;
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
    weft_api::serve(listener, plane, shutdown_signal()).await?;
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
