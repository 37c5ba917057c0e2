//! Mesh identity in real Envoy: the control plane's CA issues each sidecar a SPIFFE SVID over
//! SDS (secrets `default` and `ROOTCA` on the ADS stream), only for the identity its join
//! token names; sidecars talk TLS 1.3 with those certificates; authz allows or denies by the
//! verified SPIFFE id; certificates (and the root) rotate under load without a failed request.
//! The sidecars reach the control plane over TLS 1.3 (their bootstrap pins the trust bundle
//! and the control plane's SPIFFE id): tokens and SVID keys never cross the network in clear.
#![cfg(test)]

mod xds_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_ca::{CaSettings, Identity};
use weft_e2e::{http_client, poll_until, xds_support::network_gateway, Envoy, Pod, TestNet};
use weft_xds::{
    bootstrap::{BootstrapParams, XdsUpstreamTls},
    FilterSpec, MeshService, MeshTls, SidecarGroup, XdsTls,
};
use xds_common::{ControlPlane, INBOUND, OUTBOUND};

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";

struct Mesh {
    cp: ControlPlane,
    identity: Arc<Identity>,
    /// The bundle the sidecars' bootstraps pin for the xDS connection (taken at start).
    xds_bundle: String,
    xds_tls: Arc<XdsTls>,
    net: TestNet,
    gateway: String,
    _dir: tempfile::TempDir,
}

impl Mesh {
    /// The control plane with its CA on (SVIDs living `svid_ttl`), reviews v1 allowing only
    /// productpage, and the reviews app.
    async fn start(label: &str, svid_ttl: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = CaSettings {
            svid_ttl,
            root_propagation: Duration::from_secs(2),
            ..CaSettings::default()
        };
        let identity = Arc::new(Identity::open(&dir.path().join("ca"), settings).unwrap());
        let state = weft_xds::XdsState::new(ControlPlane::settings(), ControlPlane::modules());
        state.set_identity(Arc::clone(&identity)).unwrap();
        state
            .set_mesh_tls(Some(MeshTls::sds("cluster.local")))
            .unwrap();
        let reviews_only_productpage = json!({"trust_domain": "cluster.local", "policies": [
            {"name": "productpage-only", "action": "ALLOW",
             "rules": [{"principals": [PRODUCTPAGE]}]}]});
        let allow_all = FilterSpec::new("authz", r#"{"allow_all": true}"#.into());
        let filters = BTreeMap::from([
            (
                SidecarGroup::new("default", "reviews", "v1"),
                vec![FilterSpec::new(
                    "authz",
                    reviews_only_productpage.to_string(),
                )],
            ),
            (
                SidecarGroup::new("default", "productpage", "v1"),
                vec![allow_all.clone()],
            ),
            (
                SidecarGroup::new("default", "shadow", "v1"),
                vec![allow_all],
            ),
        ]);
        let services = vec![MeshService {
            namespace: "default".into(),
            name: "reviews".into(),
            port: 9080,
            host: "reviews".into(),
            stable_version: "v1".into(),
            calls: None,
        }];
        state.set_config(1, filters, services).unwrap();
        let net = TestNet::new(label);
        let gateway = network_gateway(&net).unwrap();
        // The sidecars reach the control plane at the gateway IP: that is its name.
        let tls = XdsTls::new(Arc::clone(&identity), vec![gateway.clone()]).unwrap();
        let cp = ControlPlane::serve_tls(state, 0, Some(Arc::clone(&tls))).await;
        Self {
            cp,
            xds_tls: tls,
            xds_bundle: identity.ca.trust_bundle(),
            identity,
            net,
            gateway,
            _dir: dir,
        }
    }

    fn token(&self, service: &str, ttl: Duration) -> String {
        self.identity
            .tokens
            .create("default", service, ttl)
            .unwrap()
            .0
    }

    /// A sidecar of `service` v1 in SDS mode presenting `token`.
    fn params(&self, service: &str, node_id: &str, token: Option<String>) -> BootstrapParams {
        let mut params = self.cp.bootstrap(&self.gateway, service, "v1");
        params.node_id = Some(node_id.into());
        params.sds = true;
        params.token = token;
        params.xds_tls =
            Some(XdsUpstreamTls::new(&self.xds_bundle, "cluster.local", &self.gateway).unwrap());
        params
    }

    async fn sidecar(&self, service: &str, node_id: &str, token: Option<String>) -> Pod {
        self.cp
            .sidecar_from(&self.net, &self.params(service, node_id, token))
            .await
    }

    /// `<service>-v1` with a valid token for its service.
    async fn joined(&self, service: &str) -> Pod {
        let token = self.token(service, Duration::from_secs(3600));
        self.sidecar(service, &format!("{service}-v1"), Some(token))
            .await
    }
}

/// `GET /reviews/1` with `Host: reviews` from `caller`'s app through its sidecar's outbound
/// listener.
async fn call_reviews(client: &reqwest::Client, caller: &Pod) -> Result<u16, String> {
    client
        .get(format!("{}/reviews/1", caller.local_url(OUTBOUND)))
        .header("host", "reviews")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

async fn wait_status(caller: &Pod, want: u16, what: &str) {
    let client = http_client();
    let result = poll_until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let client = client.clone();
            async move { Ok((call_reviews(&client, caller).await == Ok(want)).then_some(())) }
        },
    )
    .await;
    if let Err(error) = result {
        panic!("{error}\n{}", caller.logs().await);
    }
}

/// Envoy admin `/certs`: (SANs, serial) of the sidecar's own certificates and the CA
/// certificates it trusts.
async fn admin_certs(envoy: &Envoy) -> (Vec<(Vec<String>, String)>, usize) {
    let body: Value = serde_json::from_str(&admin_get(envoy, "/certs").await).unwrap();
    let mut own = BTreeSet::new();
    let mut cas = BTreeSet::new();
    for context in body["certificates"].as_array().into_iter().flatten() {
        for cert in context["cert_chain"].as_array().into_iter().flatten() {
            let sans: Vec<String> = cert["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["uri"].as_str().map(str::to_string))
                .collect();
            own.insert((
                sans,
                cert["serial_number"].as_str().unwrap_or("").to_string(),
            ));
        }
        for cert in context["ca_cert"].as_array().into_iter().flatten() {
            cas.insert(cert["serial_number"].as_str().unwrap_or("").to_string());
        }
    }
    (own.into_iter().collect(), cas.len())
}

/// A counter of `envoy` (0 until it exists).
async fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).await.unwrap().unwrap_or(0)
}

/// How many SDS secrets the sidecar holds (the xDS cluster's pinned bundle is static, so it
/// is not one of them).
async fn active_secrets(envoy: &Envoy) -> usize {
    let dump = admin_get(envoy, "/config_dump?resource=dynamic_active_secrets").await;
    let body: Value = serde_json::from_str(&dump).unwrap_or(Value::Null);
    body["configs"].as_array().map_or(0, Vec::len)
}

async fn admin_get(envoy: &Envoy, path: &str) -> String {
    envoy.admin_get(path).await.unwrap()
}

/// A client straight to a sidecar's inbound port: presenting `identity` (cert + key PEM) if
/// given, TLS 1.3 unless `tls12_only`. The server certificate carries only a SPIFFE id (no
/// DNS name), so the client does not check it: what is tested is what the server accepts.
fn direct_client(identity: Option<String>, tls12_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5));
    builder = if tls12_only {
        builder.max_tls_version(reqwest::tls::Version::TLS_1_2)
    } else {
        builder.min_tls_version(reqwest::tls::Version::TLS_1_3)
    };
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// A certificate for `spiffe_id` from a CA that is not the mesh's.
fn foreign_identity(spiffe_id: &str) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

async fn direct_get(client: &reqwest::Client, sidecar: &Envoy) -> Result<u16, String> {
    client
        .get(format!(
            "{}/reviews/1",
            sidecar.url(INBOUND).replace("http://", "https://")
        ))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn refusals(cp: &ControlPlane, reason: &str) -> u64 {
    cp.state
        .refusals()
        .by_reason
        .get(reason)
        .copied()
        .unwrap_or(0)
}

/// A plaintext client on the xDS port of a CA-enabled control plane gets nowhere: neither the
/// HTTP routes nor an ADS stream carrying a token (which a network observer could read).
async fn assert_plaintext_refused(mesh: &Mesh) {
    use envoy_types::pb::envoy::service::discovery::v3::{
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
    };
    let base = format!("http://127.0.0.1:{}", mesh.cp.port);
    let http = http_client()
        .get(format!("{base}/v1/sidecars"))
        .send()
        .await;
    assert!(http.is_err(), "plain HTTP answered: {http:?}");
    let grpc = async {
        let channel = tonic::transport::Endpoint::from_shared(base.clone())?
            .connect()
            .await?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let mut request = tonic::Request::new(tokio_stream::iter([DiscoveryRequest::default()]));
        let token = mesh.token("reviews", Duration::from_secs(60));
        request
            .metadata_mut()
            .insert("x-weft-token", token.parse().unwrap());
        let mut stream = client
            .stream_aggregated_resources(request)
            .await?
            .into_inner();
        stream.message().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let grpc = tokio::time::timeout(Duration::from_secs(10), grpc)
        .await
        .expect("a plaintext gRPC call neither failed nor finished");
    assert!(grpc.is_err(), "plaintext ADS accepted");
    println!(
        "plaintext on the xDS port: HTTP refused ({}), gRPC refused ({})",
        http.unwrap_err(),
        grpc.unwrap_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_talk_tls13_with_mesh_svids_and_only_a_valid_token_gets_an_identity() {
    let mesh = Mesh::start("identity", Duration::from_secs(3600)).await;
    let hour = Duration::from_secs(3600);
    let (reviews, productpage, shadow) = tokio::join!(
        mesh.joined("reviews"),
        mesh.joined("productpage"),
        mesh.joined("shadow")
    );

    // Allowed and denied by the verified SPIFFE id.
    wait_status(&productpage, 200, "productpage -> reviews allowed").await;
    wait_status(&shadow, 403, "shadow -> reviews denied by authz").await;
    let client = http_client();
    for _ in 0..20 {
        assert_eq!(call_reviews(&client, &productpage).await, Ok(200));
        assert_eq!(call_reviews(&client, &shadow).await, Ok(403));
    }

    // Each sidecar holds exactly its own SVID and the mesh root.
    let (own, cas) = admin_certs(&reviews).await;
    assert!(
        !own.is_empty()
            && own
                .iter()
                .all(|(sans, _)| sans == &["spiffe://cluster.local/ns/default/sa/reviews"]),
        "{own:?}"
    );
    assert!(cas >= 1, "the trust bundle is installed");
    assert_eq!(active_secrets(&reviews).await, 2, "`default` and `ROOTCA`");
    // Their xDS stream, module downloads and telemetry go through cluster weft_xds: TLS 1.3.
    let xds_13 = counter(&reviews, "cluster.weft_xds.ssl.versions.TLSv1.3").await;
    let xds_tls_errors = counter(&reviews, "cluster.weft_xds.ssl.connection_error").await;
    println!("reviews -> control plane: {xds_13} TLS 1.3 handshakes, {xds_tls_errors} TLS errors");
    assert!(xds_13 >= 1, "the xDS cluster speaks TLS 1.3");
    assert_plaintext_refused(&mesh).await;

    // TLS 1.3 on both ends of the sidecar-to-sidecar hop.
    let inbound_13 = counter(&reviews, "listener.0.0.0.0_15006.ssl.versions.TLSv1.3").await;
    let outbound_13 = counter(&productpage, "cluster.reviews.ssl.versions.TLSv1.3").await;
    println!(
        "TLS 1.3 handshakes: reviews inbound {inbound_13}, productpage -> reviews {outbound_13}"
    );
    assert!(inbound_13 >= 2 && outbound_13 >= 1);

    // Straight to reviews' inbound port: a mesh SVID over TLS 1.3 passes (and authz sees the
    // id); plaintext, TLS 1.2, no client certificate and a foreign CA are refused.
    let svid = mesh.identity.ca.issue("default", "productpage").unwrap();
    let mesh_pem = format!("{}{}", svid.cert_chain_pem, svid.key_pem);
    let ok = direct_get(&direct_client(Some(mesh_pem.clone()), false), &reviews).await;
    assert_eq!(ok, Ok(200));
    let shadow_svid = mesh.identity.ca.issue("default", "shadow").unwrap();
    let denied = direct_get(
        &direct_client(
            Some(format!(
                "{}{}",
                shadow_svid.cert_chain_pem, shadow_svid.key_pem
            )),
            false,
        ),
        &reviews,
    )
    .await;
    assert_eq!(denied, Ok(403));
    let plaintext = http_client()
        .get(format!("{}/reviews/1", reviews.url(INBOUND)))
        .send()
        .await;
    assert!(plaintext.is_err(), "plaintext accepted: {plaintext:?}");
    for (what, client) in [
        ("TLS 1.2", direct_client(Some(mesh_pem), true)),
        ("no client certificate", direct_client(None, false)),
        (
            "a foreign CA",
            direct_client(Some(foreign_identity(PRODUCTPAGE)), false),
        ),
    ] {
        let result = direct_get(&client, &reviews).await;
        assert!(result.is_err(), "{what} accepted: {result:?}");
        println!(
            "{what}: refused ({})",
            result.unwrap_err().lines().next().unwrap_or("")
        );
    }

    // A stolen token (productpage's, in a sidecar that claims to be reviews), an expired
    // token, a revoked token, no token.
    let before = refusals(&mesh.cp, "identity_mismatch");
    let stolen = mesh.token("productpage", hour);
    let (expiring, _) = mesh
        .identity
        .tokens
        .create("default", "shadow", Duration::from_secs(1))
        .unwrap();
    let (revoked_token, record) = mesh
        .identity
        .tokens
        .create("default", "shadow", hour)
        .unwrap();
    mesh.identity.tokens.revoke(&record.claims.id).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (thief, expired, revoked, tokenless) = tokio::join!(
        mesh.sidecar("reviews", "thief-v1", Some(stolen)),
        mesh.sidecar("shadow", "expired-v1", Some(expiring)),
        mesh.sidecar("shadow", "revoked-v1", Some(revoked_token)),
        mesh.sidecar("shadow", "tokenless-v1", None),
    );
    poll_until(
        "every bad token refused",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            Ok((refusals(&mesh.cp, "identity_mismatch") > before
                && refusals(&mesh.cp, "expired") >= 1
                && refusals(&mesh.cp, "revoked") >= 1
                && refusals(&mesh.cp, "missing") >= 1)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let refused = mesh.cp.state.refusals();
    println!("refusals: {:?}", refused.by_reason);
    let mismatch = refused
        .recent
        .iter()
        .find(|r| r.node_id == "thief-v1")
        .unwrap();
    assert_eq!(mismatch.claimed, "default/reviews");
    assert_eq!(
        mismatch.token_identity.as_deref(),
        Some("default/productpage")
    );
    // None of them got a certificate, a cluster or a registration.
    for envoy in [&thief, &expired, &revoked, &tokenless] {
        let (own, _) = admin_certs(envoy).await;
        let secrets = active_secrets(envoy).await;
        assert!(own.is_empty() && secrets == 0, "{own:?} {secrets}");
        let clusters = admin_get(envoy, "/clusters").await;
        assert!(!clusters.contains("reviews::"), "{clusters}");
    }
    let connected: BTreeSet<String> = mesh
        .cp
        .state
        .sidecars()
        .into_iter()
        .filter(|s| s.connected)
        .map(|s| s.node_id)
        .collect();
    assert_eq!(
        connected,
        BTreeSet::from(["productpage-v1", "reviews-v1", "shadow-v1"].map(String::from))
    );

    // Revoking a connected sidecar's token ends its stream at once.
    let shadow_token = mesh
        .identity
        .tokens
        .list()
        .into_iter()
        .find(|t| t.claims.service == "shadow" && t.revoked_at.is_none())
        .unwrap();
    let revoked_at = Instant::now();
    mesh.identity
        .tokens
        .revoke(&shadow_token.claims.id)
        .unwrap();
    poll_until(
        "shadow's stream closed",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            Ok(mesh
                .cp
                .state
                .sidecars()
                .iter()
                .any(|s| s.node_id == "shadow-v1" && !s.connected)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    println!(
        "a revoked token's stream closed {} ms after the revocation",
        revoked_at.elapsed().as_millis()
    );
    drop((
        reviews,
        productpage,
        shadow,
        thief,
        expired,
        revoked,
        tokenless,
    ));
    mesh.cp.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_and_the_root_rotate_under_load_without_a_failed_request() {
    const TTL: Duration = Duration::from_secs(8);
    const LOAD: Duration = Duration::from_secs(24);
    let mesh = Mesh::start("identity-rotation", TTL).await;
    let (reviews, productpage) = tokio::join!(mesh.joined("reviews"), mesh.joined("productpage"));
    wait_status(&productpage, 200, "productpage -> reviews").await;
    let xds_serial = mesh.xds_tls.serial();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + LOAD;
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut workers = Vec::new();
    // Steady load through the sidecars (pooled connections).
    for _ in 0..3 {
        let (ok, failed, first_failure) = (ok.clone(), failed.clone(), first_failure.clone());
        let caller = productpage.local_url(OUTBOUND);
        workers.push(tokio::spawn(async move {
            let client = http_client();
            while Instant::now() < deadline {
                let result = client
                    .get(format!("{caller}/reviews/1"))
                    .header("host", "reviews")
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match result {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        first_failure
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // A new TLS handshake to reviews' inbound every 100 ms, with a fresh productpage SVID:
    // the rotating server certificate and the changing trust bundle meet new connections.
    let handshakes = {
        let (identity, failed, first_failure) =
            (mesh.identity.clone(), failed.clone(), first_failure.clone());
        let url = format!(
            "{}/reviews/1",
            reviews.url(INBOUND).replace("http://", "https://")
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let svid = identity.ca.issue("default", "productpage").unwrap();
                let client = direct_client(
                    Some(format!("{}{}", svid.cert_chain_pem, svid.key_pem)),
                    false,
                );
                match client.get(&url).send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => n += 1,
                    other => {
                        first_failure
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("direct: {other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };
    // Watch reviews' own certificate change; rotate the root a third of the way in.
    let mut serials: Vec<String> = Vec::new();
    let mut roots_seen = 0;
    let mut rotated = false;
    while Instant::now() < deadline {
        let (own, cas) = admin_certs(&reviews).await;
        roots_seen = roots_seen.max(cas);
        for (_, serial) in own {
            if serials.last() != Some(&serial) && !serial.is_empty() {
                serials.push(serial);
            }
        }
        if !rotated && Instant::now() + LOAD * 2 / 3 > deadline {
            let root = mesh.identity.ca.rotate_root().unwrap();
            println!("root rotated to generation {}", root.generation);
            rotated = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let direct_ok = handshakes.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{} s of load with {} s SVIDs: {ok} requests through the sidecars and {direct_ok} new handshakes ok, {failed} failed; reviews' certificate serials: {serials:?}; up to {roots_seen} roots trusted at once",
        LOAD.as_secs(),
        TTL.as_secs()
    );
    if failed > 0 {
        let first = first_failure.lock().unwrap().clone();
        panic!(
            "{failed} failed; first failure: {first:?}\n{}",
            reviews.logs().await
        );
    }
    assert!(ok > 100 && direct_ok > 50);
    // Renewed at half the lifetime (every ~4 s) plus once for the new root.
    assert!(serials.len() >= 4, "{serials:?}");
    assert!(
        roots_seen >= 2,
        "old and new root trusted during the rotation"
    );
    assert_eq!(mesh.identity.ca.signing_generation(), 2);

    // The xDS server certificate renewed at half its lifetime, yet still signed by root 1 (in
    // the bundle until its last SVID expires): a sidecar bootstrapped with the bundle pinned
    // before the rotation still joins.
    assert_ne!(mesh.xds_tls.serial(), xds_serial);
    assert_eq!(mesh.xds_tls.root_generation(), 1);
    let late = mesh.joined("shadow").await;
    poll_until(
        "a sidecar with the pre-rotation bundle gets its secrets",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { Ok((active_secrets(&late).await == 2).then_some(())) },
    )
    .await
    .unwrap();
    let (own, _) = admin_certs(&late).await;
    println!("after the rotation, a sidecar pinning root 1 joined: {own:?}");
    drop((reviews, productpage, late));
    mesh.cp.stop().await;
}
