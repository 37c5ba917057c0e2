//! Join tokens and SDS on the tonic ADS server over loopback: the right token gets its own
//! identity's secrets; a missing, foreign or revoked token gets a gRPC error and nothing else.
#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
    DiscoveryResponse,
};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use weft_ca::{CaSettings, Identity};
use weft_xds::sds::SECRET_TYPE;
use weft_xds::{WasmModules, XdsState};

mod common;
use common::{mk_node, settings};

struct Plane {
    addr: String,
    state: Arc<XdsState>,
    identity: Arc<Identity>,
    _dir: tempfile::TempDir,
}

async fn plane() -> Plane {
    let dir = tempfile::tempdir().unwrap();
    let identity = Arc::new(Identity::open(dir.path(), CaSettings::default()).unwrap());
    let state = XdsState::new(settings(Duration::ZERO), WasmModules::default());
    state.set_identity(Arc::clone(&identity)).unwrap();
    let (addr, _) = common::start(Arc::clone(&state)).await;
    Plane {
        addr,
        state,
        identity,
        _dir: dir,
    }
}

/// A token for `default/{service}`, valid for an hour.
fn token_for(plane: &Plane, service: &str) -> String {
    let hour = Duration::from_secs(3600);
    let (token, _) = plane
        .identity
        .tokens
        .create("default", service, hour)
        .unwrap();
    token
}

type Responses = tonic::Streaming<DiscoveryResponse>;

/// Opens a SotW stream with `token` (if any), sending `first` (if any); returns the first
/// answer within 5 s (or the stream's error) with the stream, kept open until dropped.
async fn sotw(
    plane: &Plane,
    first: Option<DiscoveryRequest>,
    token: Option<&str>,
) -> (
    Result<Option<DiscoveryResponse>, tonic::Status>,
    Responses,
    tokio::sync::mpsc::Sender<DiscoveryRequest>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(plane.addr.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    if let Some(first) = first {
        tx.send(first).await.unwrap();
    }
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
        .unwrap();
    (first, stream, tx)
}

/// Opens a SotW stream as node `service-v1` of `service` with `token`, asks for the two
/// secrets, and returns the first answer (or the stream's error).
async fn ask_secrets(
    plane: &Plane,
    service: &str,
    token: Option<&str>,
) -> (
    Result<Vec<Secret>, tonic::Status>,
    Responses,
    tokio::sync::mpsc::Sender<DiscoveryRequest>,
) {
    let request = DiscoveryRequest {
        node: Some(Node {
            id: format!("{service}-v1"),
            cluster: service.into(),
            ..Default::default()
        }),
        type_url: SECRET_TYPE.into(),
        resource_names: vec!["default".into(), "ROOTCA".into()],
        ..Default::default()
    };
    let (first, stream, tx) = sotw(plane, Some(request), token).await;
    let first = first.map(|response| {
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
    let (token, record) = plane
        .identity
        .tokens
        .create("default", "reviews", Duration::from_secs(3600))
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
    let stolen = token_for(&plane, "productpage");
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

// === hostile callers (issue 15): node binding, node bounds, stream and group limits ===

/// Opens a SotW stream as `node` with `token`, asking for the default secret; returns
/// whether the server answered (or its refusal) with the stream, kept open until dropped.
async fn open(
    plane: &Plane,
    node: Node,
    token: &str,
) -> (
    Result<(), tonic::Status>,
    Responses,
    tokio::sync::mpsc::Sender<DiscoveryRequest>,
) {
    let request = DiscoveryRequest {
        node: Some(node),
        type_url: SECRET_TYPE.into(),
        resource_names: vec!["default".into()],
        ..Default::default()
    };
    let (first, stream, tx) = sotw(plane, Some(request), Some(token)).await;
    let first = first.map(|m| assert!(m.is_some(), "the stream ended without an answer"));
    (first, stream, tx)
}

/// With an identity's limit at 2, opens `r-1` (version `versions[0]`) and `r-2`
/// (`versions[1]`) of reviews, then checks `r-3` (`versions[2]`) is refused with
/// RESOURCE_EXHAUSTED saying `refusal` and counted once under `reason`. Returns the two
/// open streams, `r-1`'s first.
async fn two_fit_and_a_third_is_refused(
    plane: &Plane,
    token: &str,
    versions: [&str; 3],
    refusal: &str,
    reason: &str,
) -> [(Responses, tokio::sync::mpsc::Sender<DiscoveryRequest>); 2] {
    let (a, sa, ta) = open(plane, mk_node("r-1", "reviews", versions[0], ":1"), token).await;
    let (b, sb, tb) = open(plane, mk_node("r-2", "reviews", versions[1], ":1"), token).await;
    a.unwrap();
    b.unwrap();
    let (c, _, _) = open(plane, mk_node("r-3", "reviews", versions[2], ":1"), token).await;
    let status = c.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(refusal), "{status:?}");
    assert_eq!(count(plane, reason), 1);
    [(sa, ta), (sb, tb)]
}

/// Closes `stream`, waits `wait`, then checks `r-3` of reviews at `version` is served.
async fn fits_once_closed(
    plane: &Plane,
    token: &str,
    stream: (Responses, tokio::sync::mpsc::Sender<DiscoveryRequest>),
    wait: Duration,
    version: &str,
) {
    drop(stream);
    tokio::time::sleep(wait).await;
    let (e, _se, _te) = open(plane, mk_node("r-3", "reviews", version, ":1"), token).await;
    e.unwrap();
}

fn count(plane: &Plane, reason: &str) -> u64 {
    plane
        .state
        .refusals()
        .by_reason
        .get(reason)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn another_identity_sending_the_same_node_id_cannot_displace_a_sidecars_endpoint() {
    use weft_xds::{type_url, MeshService, SidecarGroup};
    let plane = plane().await;
    plane
        .state
        .set_config(
            1,
            Default::default(),
            vec![MeshService::new("default", "reviews", 9080, "v1")],
        )
        .unwrap();
    let reviews = token_for(&plane, "reviews");
    let attacker = token_for(&plane, "productpage");
    let node = mk_node("reviews-v1", "reviews", "v1", "10.9.9.1:15006");
    let (ok, _b_stream, _b_tx) = open(&plane, node, &reviews).await;
    ok.unwrap();
    // productpage's token, reviews' node id, its own service (the token must match that),
    // another address: before issue 15 this replaced reviews-v1's registration.
    let evil = mk_node("reviews-v1", "productpage", "v1", "10.6.6.6:15006");
    let (ok, a_stream, a_tx) = open(&plane, evil, &attacker).await;
    ok.unwrap();
    let endpoints = |plane: &Plane| {
        let snapshot = plane
            .state
            .snapshot(&SidecarGroup::new("default", "reviews", "v1"));
        let bodies: Vec<u8> = snapshot
            .resources(type_url::ENDPOINT)
            .flat_map(|r| r.body.value.clone())
            .collect();
        let text = String::from_utf8_lossy(&bodies).into_owned();
        (text.contains("10.9.9.1"), text.contains("10.6.6.6"))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        endpoints(&plane),
        (true, false),
        "reviews keeps its endpoint"
    );
    let rows: Vec<(String, String, Option<String>, bool)> = plane
        .state
        .sidecars()
        .into_iter()
        .map(|s| (s.node_id, s.service, s.inbound_address, s.connected))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "reviews-v1".to_string(),
                "productpage".to_string(),
                Some("10.6.6.6:15006".to_string()),
                true
            ),
            (
                "reviews-v1".to_string(),
                "reviews".to_string(),
                Some("10.9.9.1:15006".to_string()),
                true
            ),
        ]
    );
    // The attacker leaving (and its grace passing) removes only its own registration.
    drop((a_stream, a_tx));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(endpoints(&plane), (true, false));
    let left: Vec<(String, bool)> = plane
        .state
        .sidecars()
        .into_iter()
        .map(|s| (s.service, s.connected))
        .collect();
    assert_eq!(left, [("reviews".to_string(), true)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_or_malformed_nodes_are_refused_with_invalid_argument_and_counted() {
    use envoy_types::pb::google::protobuf::{value::Kind, Value};
    let plane = plane().await;
    let token = token_for(&plane, "reviews");
    let mut fat = mk_node("reviews-v1", "reviews", "v1", ":15006");
    fat.metadata.as_mut().unwrap().fields.insert(
        "junk".into(),
        Value {
            kind: Some(Kind::StringValue("x".repeat(1 << 20))),
        },
    );
    let cases = [
        (
            "node.id",
            mk_node(&"r".repeat(257), "reviews", "v1", ":15006"),
        ),
        ("node.id", mk_node("", "reviews", "v1", ":15006")),
        ("node.metadata", fat),
        ("node.cluster", mk_node("r", "rev/iews", "v1", ":15006")),
        (
            "node.metadata.version",
            mk_node("r", "reviews", &"v".repeat(300), ":15006"),
        ),
    ];
    for (field, node) in cases {
        let (refused, _, _) = open(&plane, node, &token).await;
        let status = refused.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{field}: {status:?}"
        );
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    assert_eq!(count(&plane, "bad_node"), 5);
    assert!(plane.state.sidecars().is_empty(), "nothing registered");
    // Refusals keep at most 256 bytes of a node id.
    let longest = plane
        .state
        .refusals()
        .recent
        .iter()
        .map(|r| r.node_id.len())
        .max()
        .unwrap();
    assert!(longest <= 259, "{longest}");
    // The server keeps serving.
    let (ok, _s, _t) = open(
        &plane,
        mk_node(&"r".repeat(256), "reviews", "v1", ":15006"),
        &token,
    )
    .await;
    ok.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_beyond_an_identitys_limit_are_refused() {
    let plane = plane().await;
    plane.state.set_limits(weft_xds::StreamLimits {
        max_streams_per_identity: 2,
        ..Default::default()
    });
    let token = token_for(&plane, "reviews");
    let other = token_for(&plane, "ratings");
    let [first, _second] = two_fit_and_a_third_is_refused(
        &plane,
        &token,
        ["v1", "v1", "v1"],
        "default/reviews already has 2 open streams",
        "too_many_streams",
    )
    .await;
    // Another identity is not affected.
    let (d, _sd, _td) = open(&plane, mk_node("ra-1", "ratings", "v1", ":1"), &other).await;
    d.unwrap();
    // One stream closes: a new one fits again.
    fits_once_closed(&plane, &token, first, Duration::from_millis(50), "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn undeclared_versions_beyond_an_identitys_limit_are_refused_and_collected_when_left() {
    let plane = plane().await;
    plane.state.set_limits(weft_xds::StreamLimits {
        max_groups_per_identity: 2,
        ..Default::default()
    });
    let token = token_for(&plane, "reviews");
    let [first, _second] = two_fit_and_a_third_is_refused(
        &plane,
        &token,
        ["v1", "v2", "v3"],
        "versions no policy declares",
        "too_many_groups",
    )
    .await;
    // A version already running takes more sidecars.
    let (d, _sd, _td) = open(&plane, mk_node("r-4", "reviews", "v2", ":1"), &token).await;
    d.unwrap();
    // Once v1's sidecar is gone past its grace (100 ms), its group is collected: v3 fits.
    fits_once_closed(&plane, &token, first, Duration::from_millis(500), "v3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_sends_nothing_is_closed_after_the_first_message_timeout() {
    let plane = plane().await;
    plane.state.set_limits(weft_xds::StreamLimits {
        first_message_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let (ended, _stream, _tx) = sotw(&plane, None, None).await;
    assert_eq!(ended.unwrap_err().code(), tonic::Code::DeadlineExceeded);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(count(&plane, "first_message_timeout"), 1);
}
