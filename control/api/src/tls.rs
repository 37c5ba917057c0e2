//! TLS on the REST API: the xDS listener's machinery ([`weft_xds::tls::XdsTls`]: a
//! certificate from the mesh CA for the API's names, renewed without a restart, TLS 1.3,
//! handshakes off the accept loop) offering HTTP/1.1 only, as an axum listener; operator
//! client certificates (from the operator CA, optional) name the connection's operator.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use weft_xds::tls::{TlsConn, XdsTls};

/// Accepted TLS connections whose handshake finished.
pub struct TlsListener {
    incoming: ReceiverStream<Result<TlsConn, std::io::Error>>,
    local: SocketAddr,
    /// `spiffe://<trust-domain>/ns/weft-system/operator/`.
    operator_prefix: String,
    _tls: Arc<XdsTls>,
}

impl TlsListener {
    /// Serves `tls` on `listener` (and keeps its certificate renewed); a verified client
    /// certificate whose URI SAN is `<operator_prefix><name>` names operator `name`.
    pub fn new(
        listener: TcpListener,
        tls: Arc<XdsTls>,
        operator_prefix: String,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        tls.spawn_renewal();
        Ok(Self {
            incoming: tls.incoming(listener),
            local,
            operator_prefix,
            _tls: tls,
        })
    }
}

/// The operator a (verified) client certificate names: its one URI SAN under `prefix`.
pub fn operator_of(der: &[u8], prefix: &str) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    let uris: Vec<&str> = sans
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] => uri
            .strip_prefix(prefix)
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .map(str::to_string),
        _ => None,
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = Peer {
                        addr: conn.peer().unwrap_or(self.local),
                        operator: conn
                            .peer_certificate()
                            .and_then(|der| operator_of(der, &self.operator_prefix)),
                    };
                    return (conn, peer);
                }
                Some(Err(_)) => continue,
                // The accept task ended (it never does while the receiver lives).
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            operator: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn only_an_operator_spiffe_id_under_the_prefix_names_an_operator() {
        let dir = tempfile::tempdir().unwrap();
        let ca = weft_ca::Ca::open(dir.path(), weft_ca::CaSettings::default()).unwrap();
        let prefix = "spiffe://cluster.local/ns/weft-system/operator/";
        let operator = ca.issue_operator("alice").unwrap();
        assert_eq!(operator.spiffe_id, format!("{prefix}alice"));
        assert_eq!(
            operator_of(&der(&operator.cert_chain_pem), prefix),
            Some("alice".into())
        );
        // A workload SVID, another trust domain, garbage: no operator.
        let workload = ca.issue("finance", "teller").unwrap();
        assert_eq!(operator_of(&der(&workload.cert_chain_pem), prefix), None);
        let other = "spiffe://evil.local/ns/weft-system/operator/";
        assert_eq!(operator_of(&der(&operator.cert_chain_pem), other), None);
        assert_eq!(operator_of(b"not a certificate", prefix), None);
        assert!(ca.issue_operator("../admin").is_err());
    }
}

/// A connection's client: its address (as the audit log records it) and, over TLS, the
/// operator its verified client certificate names.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub operator: Option<String>,
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            operator: None,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
