//! The tonic ADS server end to end over loopback with envoy-types' own client: SotW and
//! Delta handshakes, ACK tracking for `weft status`, and a sidecar that stops reading not
//! holding back updates to another.
#![cfg(test)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest,
    DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use weft_xds::{type_url, FilterSpec, SidecarGroup, WasmModules, XdsState};

mod common;
use common::{settings, start};

const ECDS: &str = type_url::EXTENSION_CONFIG;

/// One module, `authz`.
fn modules() -> WasmModules {
    let mut modules = WasmModules::default();
    modules.insert(
        "authz",
        b"\0asm".to_vec(),
        weft_xds::modules::sha256_hex(b"\0asm"),
    );
    modules
}

fn mk_state() -> Arc<XdsState> {
    XdsState::new(settings(Duration::ZERO), modules())
}

fn publish(state: &XdsState, revision: u64, config: &str) {
    let filters = BTreeMap::from([(
        SidecarGroup::new("default", "reviews", "v1"),
        vec![FilterSpec::new("authz", config.into())],
    )]);
    state.set_config(revision, filters, Vec::new()).unwrap();
}

fn mk_node(id: &str) -> Node {
    common::mk_node(id, "reviews", "v1", ":15006")
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
}

async fn sotw(addr: &str, node: &str) -> Sotw {
    let mut client = AggregatedDiscoveryServiceClient::connect(addr.to_string())
        .await
        .unwrap();
    let (tx, requests) = mpsc::channel(16);
    tx.send(DiscoveryRequest {
        node: Some(mk_node(node)),
        type_url: ECDS.into(),
        resource_names: vec!["weft.authz".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let rx = client
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    Sotw { tx, rx }
}

impl Sotw {
    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), self.rx.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    async fn ack(&self, response: &DiscoveryResponse) {
        self.tx
            .send(DiscoveryRequest {
                type_url: ECDS.into(),
                resource_names: vec!["weft.authz".into()],
                version_info: response.version_info.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sotw_handshake_ack_and_status() {
    let state = mk_state();
    publish(&state, 1, "{}");
    let (addr, _server) = start(Arc::clone(&state)).await;
    let mut sidecar = sotw(&addr, "reviews-1").await;
    let first = sidecar.next().await;
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.type_url, ECDS);
    sidecar.ack(&first).await;
    let statuses = state.wait_synced(1, Some(1), Duration::from_secs(5)).await;
    assert_eq!(statuses[0].synced_revision, Some(1), "{statuses:?}");
    // What it runs: the module hash of the filter entry it acknowledged.
    assert_eq!(
        statuses[0].modules,
        std::sync::Arc::new(BTreeMap::from([(
            "authz".to_string(),
            weft_xds::modules::sha256_hex(b"\0asm")
        )]))
    );
    assert_eq!(
        statuses[0]
            .inbound_address
            .as_deref()
            .map(|a| a.starts_with("127.0.0.1:")),
        Some(true)
    );

    publish(&state, 2, r#"{"policies":[]}"#);
    let second = sidecar.next().await;
    assert_ne!(second.version_info, first.version_info);
    sidecar.ack(&second).await;
    let statuses = state.wait_synced(2, Some(1), Duration::from_secs(5)).await;
    assert_eq!(statuses[0].synced_revision, Some(2));

    drop(sidecar);
    // Shown disconnected, then removed after the grace period.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !state.sidecars().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_that_stops_reading_does_not_hold_back_another() {
    let state = mk_state();
    publish(&state, 1, "{}");
    let (addr, _server) = start(Arc::clone(&state)).await;
    // `stuck` never reads after its first response: its stream buffers fill up.
    let mut stuck = sotw(&addr, "stuck").await;
    let _ = stuck.next().await;
    let mut healthy = sotw(&addr, "healthy").await;
    let mut latest = healthy.next().await;
    healthy.ack(&latest).await;
    // ~2 KB per response, 400 KB in all: far beyond what HTTP/2 flow control and the
    // server's per-stream buffer hold for a reader that does not read.
    let padding = "x".repeat(2048);
    for revision in 2..=200u64 {
        publish(
            &state,
            revision,
            &format!(r#"{{"trust_domain":"r{revision}","pad":"{padding}"}}"#),
        );
        tokio::task::yield_now().await;
    }
    // The healthy sidecar converges on the last revision even though `stuck` is not reading.
    let want = state.snapshot(&SidecarGroup::new("default", "reviews", "v1"));
    let want_version = want.resources(ECDS).next().unwrap().version.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let body = &latest.resources[0].value;
            let text = String::from_utf8_lossy(body);
            if text.contains("\"r200\"") {
                break;
            }
            latest = healthy.next().await;
            healthy.ack(&latest).await;
        }
    })
    .await
    .unwrap();
    let statuses = state
        .wait_synced(200, Some(1), Duration::from_secs(5))
        .await;
    let healthy_status = statuses.iter().find(|s| s.node_id == "healthy").unwrap();
    assert_eq!(
        healthy_status.synced_revision,
        Some(200),
        "{statuses:?} (want {want_version})"
    );
    let stuck_status = statuses.iter().find(|s| s.node_id == "stuck").unwrap();
    assert_ne!(stuck_status.synced_revision, Some(200));
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_handshake_and_ack() {
    let state = mk_state();
    publish(&state, 1, "{}");
    let (addr, _server) = start(Arc::clone(&state)).await;
    let mut client = AggregatedDiscoveryServiceClient::connect(addr)
        .await
        .unwrap();
    let (tx, requests) = mpsc::channel(16);
    tx.send(DeltaDiscoveryRequest {
        node: Some(mk_node("delta-1")),
        type_url: ECDS.into(),
        resource_names_subscribe: vec!["weft.authz".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rx = client
        .delta_aggregated_resources(ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.resources[0].name, "weft.authz");
    tx.send(DeltaDiscoveryRequest {
        type_url: ECDS.into(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let statuses = state.wait_synced(1, Some(1), Duration::from_secs(5)).await;
    assert_eq!(statuses[0].protocol, "delta");
    assert_eq!(statuses[0].synced_revision, Some(1));
}

#[test]
fn modules_whose_hash_does_not_match_sha256sums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("authz.wasm"), b"\0asm-good").unwrap();
    let good = weft_xds::modules::sha256_hex(b"\0asm-good");
    std::fs::write(
        dir.path().join("SHA256SUMS"),
        format!("{good}  authz.wasm\n"),
    )
    .unwrap();
    let modules = WasmModules::load_dir(dir.path()).unwrap();
    assert_eq!(modules.get("authz").unwrap().sha256, good);
    std::fs::write(dir.path().join("authz.wasm"), b"\0asm-tampered").unwrap();
    let error = WasmModules::load_dir(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("refusing to serve it"),
        "{error}"
    );
}

#[test]
fn only_modules_signed_by_a_trusted_key_load_even_when_sha256sums_was_rewritten() {
    use weft_supply::signing::{sign_files, SigningKey, TrustList};
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    std::fs::write(keys.path().join("release.pub"), key.public_key().to_pem()).unwrap();
    let trust = TrustList::load(keys.path()).unwrap();
    let write = |bytes: &[u8]| {
        std::fs::write(dir.path().join("authz.wasm"), bytes).unwrap();
        let sha = weft_xds::modules::sha256_hex(bytes);
        std::fs::write(
            dir.path().join("SHA256SUMS"),
            format!("{sha}  authz.wasm\n"),
        )
        .unwrap();
    };
    write(b"\0asm-good");
    sign_files(&key, &[dir.path().join("authz.wasm")]).unwrap();
    let modules = WasmModules::load_dir_signed(dir.path(), &trust).unwrap();
    let signer = modules.get("authz").unwrap().signer.clone().unwrap();
    assert_eq!(signer.key_id, key.public_key().key_id());
    assert_eq!(
        modules.summary()[0].signer.as_deref(),
        Some(signer.key_id.as_str())
    );

    // Someone who can write the directory changes the bytes and the sums: the sums pass,
    // the signature does not.
    write(b"\0asm-tampered");
    assert!(WasmModules::load_dir(dir.path()).is_ok());
    let error = WasmModules::load_dir_signed(dir.path(), &trust).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("authz.wasm: signature authz.wasm.sig does not verify"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("authz.wasm.sig")).unwrap();
    let error = WasmModules::load_dir_signed(dir.path(), &trust).unwrap_err();
    assert_eq!(
        error.to_string(),
        "authz.wasm: unsigned: no authz.wasm.sig; refusing to serve it"
    );
}

#[test]
fn cds_and_eds_wait_for_the_mesh_warmup_while_filters_go_out_at_once() {
    let state = XdsState::new(settings(Duration::from_secs(60)), modules());
    publish(&state, 1, "{}");
    let group = SidecarGroup::new("default", "reviews", "v1");
    assert!(state.snapshot(&group).has_type(ECDS));
    assert!(!state.snapshot(&group).has_type(type_url::CLUSTER));
    assert!(!state.snapshot(&group).has_type(type_url::ENDPOINT));
    state.end_mesh_warmup();
    assert!(state.snapshot(&group).has_type(type_url::CLUSTER));
    assert!(state.snapshot(&group).has_type(type_url::ENDPOINT));
}

/// Sends raw bytes as the request message, decodes responses as `DiscoveryResponse`.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = DiscoveryResponse;
    type Encoder = RawEncoder;
    type Decoder = <weft_xds::ads_server::SizedCodec<DiscoveryRequest, DiscoveryResponse> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut weft_xds::ads_server::SizedCodec::<
            DiscoveryRequest,
            DiscoveryResponse,
        >::new())
    }
}

/// The status a stream to `path` ends with after sending `message` as its first request.
async fn raw_call(addr: &str, path: &'static str, message: Vec<u8>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let reply = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter([message])),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await;
    let mut stream = match reply {
        Ok(stream) => stream.into_inner(),
        Err(status) => return status,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return tonic::Status::ok("ended"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("no end of stream on {path}"),
        }
    }
}

/// The hand-routed ADS service (`weft_xds::ads_server`): a large response arrives whole, and
/// what a hostile client sends — an unknown method, bytes that are not a `DiscoveryRequest`,
/// a request over the 16 MiB limit — ends its stream with the matching gRPC status and
/// leaves the server serving.
#[tokio::test(flavor = "multi_thread")]
async fn the_ads_service_serves_large_responses_and_refuses_what_it_cannot_decode() {
    use prost::Message;
    let state = mk_state();
    // ~1 MiB configuration: larger than any encode buffer the codec keeps.
    let rules: Vec<String> = (0..20_000).map(|i| format!("\"/p{i:05}\"")).collect();
    let big = format!(r#"{{"paths":[{}]}}"#, rules.join(","));
    publish(&state, 1, &big);
    let (addr, _server) = start(Arc::clone(&state)).await;
    let mut sidecar = sotw(&addr, "reviews-1").await;
    let first = sidecar.next().await;
    assert!(
        first.resources[0].value.len() > big.len(),
        "{} bytes for a {} byte configuration",
        first.resources[0].value.len(),
        big.len()
    );

    let unknown = raw_call(
        &addr,
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/FetchClusters",
        Vec::new(),
    )
    .await;
    assert_eq!(unknown.code(), tonic::Code::Unimplemented, "{unknown:?}");

    let garbage = raw_call(
        &addr,
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        vec![0xff; 64],
    )
    .await;
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
    assert!(
        garbage.message().contains("malformed request"),
        "{garbage:?}"
    );

    let oversized = DiscoveryRequest {
        node: Some(mk_node("reviews-2")),
        type_url: ECDS.into(),
        error_detail: Some(envoy_types::pb::google::rpc::Status {
            message: "x".repeat(17 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    for method in ["StreamAggregatedResources", "DeltaAggregatedResources"] {
        let path: &'static str = match method {
            "StreamAggregatedResources" => {
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
            }
            _ => "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
        };
        let refused = raw_call(&addr, path, oversized.encode_to_vec()).await;
        assert_eq!(
            refused.code(),
            tonic::Code::OutOfRange,
            "{method}: {refused:?}"
        );
    }

    // The first sidecar is still served.
    sidecar.ack(&first).await;
    publish(&state, 2, "{}");
    let second = sidecar.next().await;
    assert_ne!(second.version_info, first.version_info);
}
