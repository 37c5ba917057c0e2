//! TLS on the REST API: the xDS listener's machinery ([`weft_xds::tls::XdsTls`]: a
//! certificate from the mesh CA for the API's names, renewed without a restart, TLS 1.3,
//! handshakes off the accept loop) offering HTTP/1.1 only, as an axum listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use weft_xds::tls::{TlsConn, XdsTls};

/// Accepted TLS connections whose handshake finished.
pub struct TlsListener {
    incoming: ReceiverStream<Result<TlsConn, std::io::Error>>,
    local: SocketAddr,
    _tls: Arc<XdsTls>,
}

impl TlsListener {
    /// Serves `tls` on `listener` (and keeps its certificate renewed).
    pub fn new(listener: TcpListener, tls: Arc<XdsTls>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        tls.spawn_renewal();
        Ok(Self {
            incoming: tls.incoming(listener),
            local,
            _tls: tls,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.peer().unwrap_or(self.local);
                    return (conn, peer);
                }
                Some(Err(_)) => continue,
                // The accept task ended (it never does while the receiver lives).
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
