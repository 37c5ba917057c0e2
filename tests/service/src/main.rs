//! `weft-test-service`: see the library docs. Configured by `PORT` (default 8080), `BIND` (the
//! address it listens on, default 0.0.0.0; 127.0.0.1 for an app in a pod), `SERVICE_NAME`,
//! `SERVICE_VERSION`, and `INSTRUMENT_PORT` (test-only instrumentation on 0.0.0.0:PORT, off
//! unless set). Prints `listening on ADDR` once everything is bound.
#![forbid(unsafe_code)]

use std::io::Write;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use weft_test_service::{serve_with_instrumentation, Identity};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 8080,
    };
    let bind: std::net::IpAddr = match std::env::var("BIND") {
        Ok(bind) => bind.parse().context("BIND must be an IP address")?,
        Err(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let instrument_port: Option<u16> = match std::env::var("INSTRUMENT_PORT") {
        Ok(port) => Some(
            port.parse()
                .context("INSTRUMENT_PORT must be a port number")?,
        ),
        Err(_) => None,
    };
    let identity = Identity {
        service: std::env::var("SERVICE_NAME").unwrap_or_else(|_| "weft-test-service".into()),
        version: std::env::var("SERVICE_VERSION").unwrap_or_else(|_| "v1".into()),
    };
    let mut stdout = std::io::stdout();
    let instrumentation = match instrument_port {
        Some(port) => {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("binding the instrumentation port 0.0.0.0:{port}"))?;
            writeln!(
                stdout,
                "test-only instrumentation on {}",
                listener.local_addr()?
            )?;
            Some(listener)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("binding {bind}:{port}"))?;
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
    serve_with_instrumentation(listener, instrumentation, identity, shutdown).await;
    Ok(())
}
