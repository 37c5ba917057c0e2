//! Join tokens and SDS on the tonic ADS server over loopback: the right token gets its own
//! identity's secrets; a missing, foreign or revoked token gets a gRPC error and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use weft_ca::{CaSettings, Identity};
use weft_xds::sds::SECRET_TYPE;
use weft_xds::{ModuleSource, WasmModules, XdsSettings, XdsState};

struct Plane {
    addr: String,
    state: Arc<XdsState>,
    identity: Arc<Identity>,
    _dir: tempfile::TempDir,
}

async fn plane() -> Plane {
    let dir = tempfile::tempdir().unwrap();
    let identity = Arc::new(Identity::open(dir.path(), CaSettings::default()).unwrap());
    let settings = XdsSettings {
        module_source: ModuleSource {
            cluster: "weft_xds".into(),
            base_url: "http://cp".into(),
        },
        grace: Duration::from_millis(100),
        mesh_warmup: Duration::ZERO,
    };
    let state = XdsState::new(settings, WasmModules::default());
    state.set_identity(Arc::clone(&identity)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let serving = Arc::clone(&state);
    tokio::spawn(async move {
        weft_xds::serve(listener, serving, std::future::pending())
            .await
            .unwrap();
    });
    Plane {
        addr,
        state,
        identity,
        _dir: dir,
    }
}

/// Opens a SotW stream as node `service-v1` of `service` with `token`, asks for the two
/// secrets, and returns the first answer (or the stream's error).
async fn ask_secrets(
    plane: &Plane,
    service: &str,
    token: Option<&str>,
) -> (
    Result<Vec<Secret>, tonic::Status>,
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
    tokio::sync::mpsc::Sender<DiscoveryRequest>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(plane.addr.clone())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: format!("{service}-v1"),
            cluster: service.into(),
            ..Default::default()
        }),
        type_url: SECRET_TYPE.into(),
        resource_names: vec!["default".into(), "ROOTCA".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("x-weft-token", token.parse().unwrap());
    }
    let mut stream = client
        .stream_aggregated_resources(request)
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .map(|response| {
            response
                .unwrap()
                .resources
                .iter()
                .map(|any| Secret::decode(any.value.as_slice()).unwrap())
                .collect()
        });
    (first, stream, tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_gets_its_own_identity_and_nothing_else_gets_anything() {
    let plane = plane().await;
    let hour = Duration::from_secs(3600);
    let (token, record) = plane
        .identity
        .tokens
        .create("default", "reviews", hour)
        .unwrap();

    let (secrets, mut stream, _tx) = ask_secrets(&plane, "reviews", Some(&token)).await;
    let secrets = secrets.unwrap();
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ROOTCA", "default"]);
    let Some(secret::Type::TlsCertificate(cert)) = &secrets[1].r#type else {
        panic!("no certificate")
    };
    assert!(cert.certificate_chain.is_some() && cert.private_key.is_some());

    // Another service's token, no token, a forged one.
    let (stolen, _) = plane
        .identity
        .tokens
        .create("default", "productpage", hour)
        .unwrap();
    let (refused, _, _) = ask_secrets(&plane, "reviews", Some(&stolen)).await;
    let status = refused.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("default/productpage"),
        "{status:?}"
    );
    let (refused, _, _) = ask_secrets(&plane, "reviews", None).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    // One signature character changed (not the last, whose low bits base64 ignores).
    let at = token.len() - 5;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    let (refused, _, _) = ask_secrets(&plane, "reviews", Some(&forged)).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    let refusals = plane.state.refusals();
    assert_eq!(refusals.total, 3);
    assert_eq!(refusals.by_reason.get("identity_mismatch"), Some(&1));
    assert_eq!(refusals.by_reason.get("missing"), Some(&1));
    assert_eq!(refusals.by_reason.get("bad_signature"), Some(&1));
    let connected: Vec<String> = plane
        .state
        .sidecars()
        .into_iter()
        .map(|s| s.node_id)
        .collect();
    assert_eq!(
        connected,
        ["reviews-v1"],
        "refused nodes are not registered"
    );

    // Revoking the valid token ends its open stream.
    plane.identity.tokens.revoke(&record.claims.id).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert_eq!(ended.unwrap_err().code(), tonic::Code::Unauthenticated);
}
