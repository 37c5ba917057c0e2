//! One simulated sidecar on incremental (Delta) ADS, as Envoy with `api_type: DELTA_GRPC`:
//! the first request carries the node and subscribes CDS by wildcard, ECDS names the weft
//! filters, EDS follows the EDS clusters CDS delivered (subscribing new names, unsubscribing
//! vanished ones), and every response is ACKed at once by its own nonce.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weft_xds::type_url;

use crate::tracker::Tracker;

pub(crate) async fn run_stream(
    channel: Channel,
    node: Node,
    filters: &[String],
    tracker: &Tracker,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(16);
    let mut first = subscribe(type_url::CLUSTER, Vec::new(), Vec::new());
    first.node = Some(node);
    tx.send(first).await?;
    tx.send(subscribe(
        type_url::EXTENSION_CONFIG,
        filters.to_vec(),
        Vec::new(),
    ))
    .await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // Cluster name -> its EDS service name (`None`: not an EDS cluster).
    let mut clusters: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut eds_names: BTreeSet<String> = BTreeSet::new();
    let mut seen = 0u64;
    let mut ready = false;
    while let Some(response) = responses.message().await? {
        tx.send(ack(&response)).await?;
        match response.type_url.as_str() {
            type_url::CLUSTER => {
                apply_clusters(&response, &mut clusters);
                let wanted: BTreeSet<String> = clusters.values().flatten().cloned().collect();
                let added: Vec<String> = wanted.difference(&eds_names).cloned().collect();
                let gone: Vec<String> = eds_names.difference(&wanted).cloned().collect();
                if !added.is_empty() || !gone.is_empty() {
                    tx.send(subscribe(type_url::ENDPOINT, added, gone)).await?;
                    eds_names = wanted;
                }
            }
            type_url::EXTENSION_CONFIG => {
                if !ready {
                    ready = true;
                    tracker.stream_ready();
                }
                let bodies = response
                    .resources
                    .iter()
                    .filter_map(|r| r.resource.as_ref())
                    .map(|any| any.value.as_slice());
                tracker.observe_bodies(bodies, &mut seen);
            }
            _ => {}
        }
    }
    anyhow::bail!("the server ended the stream")
}

/// The CDS delta applied to what the stream knows.
fn apply_clusters(
    response: &DeltaDiscoveryResponse,
    clusters: &mut BTreeMap<String, Option<String>>,
) {
    for name in &response.removed_resources {
        clusters.remove(name);
    }
    for resource in &response.resources {
        let Some(any) = resource.resource.as_ref() else {
            continue;
        };
        if let Ok(cluster) = Cluster::decode(any.value.as_slice()) {
            let eds = eds_service_name(&cluster);
            clusters.insert(cluster.name, eds);
        }
    }
}

fn subscribe(type_url: &str, add: Vec<String>, remove: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: add,
        resource_names_unsubscribe: remove,
        ..Default::default()
    }
}

fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

/// The name Envoy subscribes (in either protocol) an EDS cluster's endpoints by; `None` for other clusters.
pub(crate) fn eds_service_name(cluster: &Cluster) -> Option<String> {
    let eds = DiscoveryType::Eds as i32;
    if !matches!(cluster.cluster_discovery_type, Some(ClusterDiscoveryType::Type(t)) if t == eds) {
        return None;
    }
    let name = cluster
        .eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| cluster.name.clone());
    Some(name)
}
