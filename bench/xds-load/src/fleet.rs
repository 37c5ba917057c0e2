//! Simulated sidecars: one ADS stream (state of the world, or delta with
//! [`FleetSpec::delta`], see `delta_stream`; real gRPC) per sidecar, many
//! streams multiplexed on one HTTP/2 connection, each behaving like Envoy with weft's sidecar
//! bootstrap: the first request carries the node (`set_node_on_first_message_only`), CDS is a
//! wildcard subscription, EDS names the EDS clusters CDS delivered, ECDS names the weft
//! filters of the bootstrap template, and every response is ACKed at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
    DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use weft_xds::bootstrap::{render_value, BootstrapParams};
use weft_xds::type_url;

use crate::delta_stream::eds_service_name;
use crate::tracker::Tracker;

/// The ECDS resources a sidecar subscribes to: every HTTP filter of weft's bootstrap template
/// (envoy-configs/bootstrap/sidecar.yaml) configured through `config_discovery`.
pub fn filter_names() -> anyhow::Result<Vec<String>> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("config_discovery") {
                    out.extend(map.get("name").and_then(|n| n.as_str()).map(String::from));
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let params = BootstrapParams::new("bench", "v1", "127.0.0.1", 18000);
    let mut names = Vec::new();
    walk(&render_value(&params)?, &mut names);
    names.sort();
    names.dedup();
    anyhow::ensure!(
        !names.is_empty(),
        "the sidecar bootstrap names no ECDS filter"
    );
    Ok(names)
}

/// Who the simulated sidecars are and how they connect.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    pub streams: usize,
    /// ADS streams per HTTP/2 connection.
    pub per_connection: usize,
    pub namespace: String,
    /// Sidecar `i` runs service `svc-<i % services>`, version `v<1 + (i / services) % versions>`.
    pub services: usize,
    pub versions: usize,
    /// Give each sidecar an `inbound_address` (10.x.y.z:15006), so it registers as an EDS
    /// endpoint of its service like a real sidecar and every connect changes EDS for all.
    pub endpoints: bool,
    /// Incremental (Delta) ADS instead of state of the world.
    pub delta: bool,
    /// Each `Service` declares `calls`: the next this many services (a ring), so each
    /// sidecar is served only their clusters and endpoints. `None`: no `calls` (every
    /// sidecar may call every service).
    pub calls: Option<usize>,
}

impl FleetSpec {
    pub fn connections(&self) -> usize {
        self.streams.div_ceil(self.per_connection.max(1))
    }

    /// The streams of connection `c`.
    pub fn streams_of(&self, c: usize) -> usize {
        let first = c * self.per_connection;
        (first + self.per_connection)
            .min(self.streams)
            .saturating_sub(first)
    }

    /// The node of sidecar `i`, with the metadata `weft bootstrap` sets; `inbound_address`
    /// only with [`FleetSpec::endpoints`] (a simulated sidecar takes no traffic).
    pub fn node(&self, i: usize) -> Node {
        let service = service_name(i % self.services.max(1));
        let version = format!("v{}", 1 + (i / self.services.max(1)) % self.versions.max(1));
        let text = |s: &str| Value {
            kind: Some(Kind::StringValue(s.to_string())),
        };
        let mut metadata = Struct::default();
        metadata
            .fields
            .insert("namespace".into(), text(&self.namespace));
        metadata.fields.insert("version".into(), text(&version));
        if self.endpoints {
            let address = format!(
                "10.{}.{}.{}:15006",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            );
            metadata
                .fields
                .insert("inbound_address".into(), text(&address));
        }
        Node {
            id: format!("sim-{i:05}"),
            cluster: service,
            metadata: Some(metadata),
            ..Default::default()
        }
    }
}

pub fn service_name(index: usize) -> String {
    format!("svc-{index:02}")
}

/// A running fleet; dropping it ends every stream.
pub struct Fleet {
    tasks: tokio::task::JoinSet<()>,
}

impl Fleet {
    /// Opens `spec.streams` ADS streams to `xds` (`http://host:port`) and returns once every
    /// one is started; [`Tracker::wait_ready`] tells when all have ACKed their filters.
    pub async fn start(xds: &str, spec: &FleetSpec, tracker: Arc<Tracker>) -> anyhow::Result<Self> {
        Self::start_spread(&[xds.to_string()], spec, tracker).await
    }

    /// [`Fleet::start`] over several servers (replicas): connection `c` goes to
    /// `servers[c % servers.len()]`.
    pub async fn start_spread(
        servers: &[String],
        spec: &FleetSpec,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<Self> {
        let endpoints = servers
            .iter()
            .map(|xds| {
                Ok(Endpoint::from_shared(xds.clone())?
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(10)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!endpoints.is_empty(), "no server to connect to");
        let filters = Arc::new(filter_names()?);
        let mut tasks = tokio::task::JoinSet::new();
        for connection in 0..spec.connections() {
            let channel = endpoints[connection % endpoints.len()].connect().await?;
            let first = connection * spec.per_connection;
            let last = (first + spec.per_connection).min(spec.streams);
            for i in first..last {
                let (channel, node, tracker, filters) = (
                    channel.clone(),
                    spec.node(i),
                    Arc::clone(&tracker),
                    Arc::clone(&filters),
                );
                let delta = spec.delta;
                tasks.spawn(async move {
                    let ran = if delta {
                        crate::delta_stream::run_stream(channel, node, &filters, &tracker).await
                    } else {
                        run_stream(channel, node, &filters, &tracker).await
                    };
                    if let Err(error) = ran {
                        tracker.stream_failed(&format!("{error:#}"));
                    }
                });
            }
        }
        Ok(Self { tasks })
    }

    /// Streams still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

/// What one stream remembers per type, as Envoy does.
#[derive(Default)]
struct TypeState {
    version: String,
    nonce: String,
}

async fn run_stream(
    channel: Channel,
    node: Node,
    filters: &[String],
    tracker: &Tracker,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(request(type_url::CLUSTER, Vec::new(), Some(node), None))
        .await?;
    tx.send(request(
        type_url::EXTENSION_CONFIG,
        filters.to_vec(),
        None,
        None,
    ))
    .await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut eds_names: Vec<String> = Vec::new();
    let mut eds = TypeState::default();
    let mut seen = 0u64;
    let mut ready = false;
    while let Some(response) = responses.message().await? {
        let ack = TypeState {
            version: response.version_info.clone(),
            nonce: response.nonce.clone(),
        };
        match response.type_url.as_str() {
            type_url::CLUSTER => {
                let names = eds_clusters(&response);
                tx.send(request(type_url::CLUSTER, Vec::new(), None, Some(&ack)))
                    .await?;
                if names != eds_names {
                    eds_names = names;
                    let previous = (!eds.nonce.is_empty()).then_some(&eds);
                    tx.send(request(
                        type_url::ENDPOINT,
                        eds_names.clone(),
                        None,
                        previous,
                    ))
                    .await?;
                }
            }
            type_url::ENDPOINT => {
                tx.send(request(
                    type_url::ENDPOINT,
                    eds_names.clone(),
                    None,
                    Some(&ack),
                ))
                .await?;
                eds = ack;
            }
            type_url::EXTENSION_CONFIG => {
                tx.send(request(
                    type_url::EXTENSION_CONFIG,
                    filters.to_vec(),
                    None,
                    Some(&ack),
                ))
                .await?;
                if !ready {
                    ready = true;
                    tracker.stream_ready();
                }
                tracker.observe(&response, &mut seen);
            }
            other => {
                tx.send(request(other, Vec::new(), None, Some(&ack)))
                    .await?;
            }
        }
    }
    anyhow::bail!("the server ended the stream")
}

fn request(
    type_url: &str,
    resource_names: Vec<String>,
    node: Option<Node>,
    ack: Option<&TypeState>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: ack.map(|a| a.version.clone()).unwrap_or_default(),
        node,
        resource_names,
        type_url: type_url.to_string(),
        response_nonce: ack.map(|a| a.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// The EDS clusters of a CDS response, by their EDS service name, as Envoy subscribes them.
fn eds_clusters(response: &DiscoveryResponse) -> Vec<String> {
    let names: BTreeSet<String> = response
        .resources
        .iter()
        .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
        .filter_map(|c| eds_service_name(&c))
        .collect();
    names.into_iter().collect()
}
