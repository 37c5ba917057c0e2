//! A server on its own runtime thread, bound to a free loopback port.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Runs `serve` on 127.0.0.1:0 on a thread with a two-worker runtime; returns the address
/// and the thread (its result is `serve`'s).
pub fn spawn_server<F, Fut>(serve: F) -> (SocketAddr, std::thread::JoinHandle<std::io::Result<()>>)
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?).ok();
            serve(listener).await
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (addr, thread)
}
