//! TLS on the xDS listener when the mesh CA is on: join tokens (gRPC metadata) and SVID
//! private keys (SDS) never cross the network in clear.
//!
//! The server certificate is issued by the weft CA for the control plane's own SPIFFE id
//! (`spiffe://<trust-domain>/ns/weft-system/sa/weft-control`, what sidecars match) plus the
//! DNS names and IP addresses other clients may check. It is signed by the oldest root still
//! in the trust bundle, so a sidecar whose bootstrap pinned the bundle before a root rotation
//! keeps connecting until its root leaves the bundle, and it is renewed at half its lifetime
//! (or when that root changes) without a restart: the rustls resolver hands every new
//! handshake the current certificate; open connections keep theirs.
//!
//! Handshakes run in their own tasks (at most [`HANDSHAKE_TIMEOUT`] each), so a slow or
//! plaintext client never holds back the accept loop. TLS 1.3 only, ALPN `h2` and `http/1.1`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use weft_ca::{CaError, Identity};

/// The control plane's identity: `spiffe://<trust-domain>/ns/weft-system/sa/weft-control`.
pub const CONTROL_NAMESPACE: &str = "weft-system";
pub const CONTROL_SERVICE: &str = "weft-control";
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted-and-handshaken connections queued for the server.
const ACCEPT_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // No `#[source]`: the message already holds the cause (anyhow would print it twice).
    #[error("xDS server certificate: {0}")]
    Ca(CaError),
    #[error("xDS server certificate: {0}")]
    Key(String),
}

impl From<CaError> for TlsError {
    fn from(error: CaError) -> Self {
        Self::Ca(error)
    }
}

/// The SPIFFE id the xDS server certificate carries in trust domain `trust_domain`.
pub fn control_plane_spiffe_id(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{CONTROL_NAMESPACE}/sa/{CONTROL_SERVICE}")
}

/// The certificate the next handshake gets.
#[derive(Debug)]
struct CurrentCert {
    key: Arc<CertifiedKey>,
    serial: String,
    root_generation: u64,
    renew_at_ms: u64,
}

/// The rustls side: reads the current certificate on every handshake.
#[derive(Debug)]
struct Resolver {
    current: RwLock<CurrentCert>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&current.key))
    }
}

/// TLS for the xDS listener: the server configuration and its renewing certificate.
pub struct XdsTls {
    identity: Arc<Identity>,
    names: Vec<String>,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

// === impl XdsTls ===

impl XdsTls {
    /// Issues the first certificate for the control plane's SPIFFE id and `names` (DNS names
    /// or IP addresses). Fails on a name that is neither.
    pub fn new(identity: Arc<Identity>, names: Vec<String>) -> Result<Arc<Self>, TlsError> {
        Self::with_alpn(identity, names, &[b"h2", b"http/1.1"])
    }

    /// [`XdsTls::new`] offering only the ALPN protocols `alpn` (the REST API: `http/1.1`).
    pub fn with_alpn(
        identity: Arc<Identity>,
        names: Vec<String>,
        alpn: &[&[u8]],
    ) -> Result<Arc<Self>, TlsError> {
        Self::with_client_roots(identity, names, alpn, None)
    }

    /// [`XdsTls::with_alpn`] that also accepts (never requires) client certificates chaining
    /// to `client_roots_pem` (the REST API's operator CA); other client certificates fail the
    /// handshake.
    pub fn with_client_roots(
        identity: Arc<Identity>,
        names: Vec<String>,
        alpn: &[&[u8]],
        client_roots_pem: Option<&str>,
    ) -> Result<Arc<Self>, TlsError> {
        let current = issue(&identity, &names)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(current),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let builder = match client_roots_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| TlsError::Key(e.to_string()))?;
                    roots.add(cert).map_err(|e| TlsError::Key(e.to_string()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Key(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(Self {
            identity,
            names,
            resolver,
            config: Arc::new(config),
        }))
    }

    /// The SPIFFE id in the certificate (what a sidecar's bootstrap matches).
    pub fn spiffe_id(&self) -> String {
        control_plane_spiffe_id(&self.identity.ca.settings().trust_domain)
    }

    /// Hex serial of the certificate handshakes get now.
    pub fn serial(&self) -> String {
        self.read().serial.clone()
    }

    /// The root generation that signed the current certificate.
    pub fn root_generation(&self) -> u64 {
        self.read().root_generation
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CurrentCert> {
        self.resolver
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-issues the certificate when half its lifetime is over or the oldest trusted root
    /// changed (the old one left the bundle). Returns whether it did.
    pub fn refresh(&self) -> Result<bool, TlsError> {
        let now = unix_ms(SystemTime::now());
        let due = {
            let current = self.read();
            now >= current.renew_at_ms
                || self.identity.ca.oldest_trusted_generation() != current.root_generation
        };
        if !due {
            return Ok(false);
        }
        let next = issue(&self.identity, &self.names)?;
        tracing::info!(serial = %next.serial, root = next.root_generation, "renewed the xDS server certificate");
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
        Ok(true)
    }

    /// Renews on a tick a twentieth of the SVID lifetime (0.2 s to 30 s) while `self` lives.
    pub fn spawn_renewal(self: &Arc<Self>) {
        let tick = (self.identity.ca.settings().svid_ttl / 20)
            .clamp(Duration::from_millis(200), Duration::from_secs(30));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(tls) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = tls.refresh() {
                    tracing::error!(%error, "cannot renew the xDS server certificate; keeping the current one");
                }
            }
        });
    }

    /// Accepts on `listener` and hands the server TLS connections whose handshake finished;
    /// stops accepting when the returned stream is dropped.
    pub fn incoming(&self, listener: TcpListener) -> ReceiverStream<Result<TlsConn, io::Error>> {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config));
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of descriptors, say: back off instead of spinning.
                            tracing::warn!(%error, "xDS accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                // Responses go out as several DATA frames (a head, then shared resource
                // bytes, D102): without TCP_NODELAY a small last segment can wait for the
                // peer's delayed ACK (~40 ms).
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "TCP_NODELAY not set");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let info = tcp.connect_info();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(inner)) => {
                            let _ = tx.send(Ok(TlsConn { inner, info })).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "xDS TLS handshake refused")
                        }
                        Err(_) => tracing::debug!(%peer, "xDS TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

fn issue(identity: &Identity, names: &[String]) -> Result<CurrentCert, TlsError> {
    let issued_ms = unix_ms(SystemTime::now());
    let cert = identity
        .ca
        .issue_server(CONTROL_NAMESPACE, CONTROL_SERVICE, names)?;
    let chain = CertificateDer::pem_slice_iter(cert.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(CurrentCert {
        key: Arc::new(CertifiedKey::new(chain, signer)),
        serial: cert.serial,
        root_generation: cert.root_generation,
        // Half the lifetime from now (not from the backdated not-before).
        renew_at_ms: issued_ms.saturating_add(cert.not_after_ms.saturating_sub(issued_ms) / 2),
    })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A server-side TLS connection that tells tonic its TCP peer (the xDS stream's source IP
/// is a sidecar's default inbound address).
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl TlsConn {
    /// The client's address.
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.info.remote_addr()
    }

    /// The client's certificate (DER), when it presented one that verified.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref())
    }
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
