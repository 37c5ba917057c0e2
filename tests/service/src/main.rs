//! `weft-test-service`: see the library docs. Configured by `PORT` (default 8080),
//! `SERVICE_NAME` and `SERVICE_VERSION`; prints `listening on ADDR` once bound.
#![forbid(unsafe_code)]

use std::io::Write;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use weft_test_service::{serve, Identity};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 8080,
    };
    let identity = Identity {
        service: std::env::var("SERVICE_NAME").unwrap_or_else(|_| "weft-test-service".into()),
        version: std::env::var("SERVICE_VERSION").unwrap_or_else(|_| "v1".into()),
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding 0.0.0.0:{port}"))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    // As PID 1 in a container, SIGTERM has no default action: handle it or `docker stop` waits.
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    serve(listener, identity, shutdown).await;
    Ok(())
}
