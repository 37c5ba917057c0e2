use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_stream::StreamExt;
use weft_ca::{CaSettings, Identity};
use x509_parser::extensions::GeneralName;

use super::*;

fn mk_identity(dir: &std::path::Path, svid_ttl: Duration) -> Arc<Identity> {
    let settings = CaSettings {
        svid_ttl,
        root_propagation: Duration::ZERO,
        ..CaSettings::default()
    };
    Arc::new(Identity::open(dir, settings).unwrap())
}

fn mk_client(bundle: &str, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Handshakes with `config` as `localhost`: the peer's leaf (DER) and the ALPN chosen.
async fn handshake(
    addr: std::net::SocketAddr,
    config: ClientConfig,
) -> Result<(Vec<u8>, Option<Vec<u8>>), std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await?;
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    Ok((leaf, session.alpn_protocol().map(<[u8]>::to_vec)))
}

fn serial_of(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

#[tokio::test]
async fn handshakes_get_the_current_certificate_and_plaintext_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let identity = mk_identity(dir.path(), Duration::from_secs(2));
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let tls = XdsTls::new(Arc::clone(&identity), names).unwrap();
    assert_eq!(
        tls.spiffe_id(),
        "spiffe://cluster.local/ns/weft-system/sa/weft-control"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = tls.incoming(listener);
    let bundle = identity.ca.trust_bundle();
    let tls13 = [&rustls::version::TLS13];

    // A client trusting the bundle verifies the certificate for `localhost` and gets h2.
    let (leaf, alpn) = handshake(addr, mk_client(&bundle, &tls13)).await.unwrap();
    let conn = incoming.next().await.unwrap().unwrap();
    assert_eq!(
        conn.connect_info().remote_addr.map(|a| a.ip().to_string()),
        Some("127.0.0.1".to_string())
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        sans.value.general_names,
        vec![
            GeneralName::URI("spiffe://cluster.local/ns/weft-system/sa/weft-control"),
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
        ]
    );
    let first = serial_of(&leaf);
    assert_eq!(first, tls.serial());

    // Plaintext (an HTTP request, as a sniffable gRPC client would send) gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /v1/sidecars HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // TLS 1.2 and a client that does not trust the mesh roots are refused.
    let tls12 = [&rustls::version::TLS12];
    assert!(handshake(addr, mk_client(&bundle, &tls12)).await.is_err());
    let other = tempfile::tempdir().unwrap();
    let stranger = mk_identity(other.path(), Duration::from_secs(60));
    let foreign = mk_client(&stranger.ca.trust_bundle(), &tls13);
    assert!(handshake(addr, foreign).await.is_err());

    // Not due yet; at half the lifetime a new certificate, which the next handshake gets.
    assert!(!tls.refresh().unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(tls.refresh().unwrap());
    assert_ne!(tls.serial(), first);
    let (leaf, _) = handshake(addr, mk_client(&bundle, &tls13)).await.unwrap();
    assert_eq!(serial_of(&leaf), tls.serial());
    drop(conn);
}

#[tokio::test]
async fn after_a_root_rotation_the_certificate_stays_on_the_old_root_while_it_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let identity = mk_identity(dir.path(), Duration::from_secs(3600));
    let tls = XdsTls::new(Arc::clone(&identity), vec!["localhost".into()]).unwrap();
    let pinned = identity.ca.trust_bundle();
    identity.ca.rotate_root().unwrap();
    assert_eq!(identity.ca.signing_generation(), 2);
    // Nothing to do: root 1 is still trusted, and the certificate is young.
    assert!(!tls.refresh().unwrap());
    assert_eq!(tls.root_generation(), 1);
    // A sidecar that pinned the bundle before the rotation still verifies it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = tls.incoming(listener);
    let client = handshake(addr, mk_client(&pinned, &[&rustls::version::TLS13]));
    let (client, server) = tokio::join!(client, incoming.next());
    client.unwrap();
    server.unwrap().unwrap();
}

#[test]
fn a_name_that_is_neither_dns_nor_ip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let identity = mk_identity(dir.path(), Duration::from_secs(60));
    let error = XdsTls::new(identity, vec!["weft control".into()])
        .err()
        .unwrap();
    assert!(error.to_string().contains("weft control"), "{error}");
}
