//! The load tool's core against an in-process xDS server: 20 simulated sidecars over two
//! HTTP/2 connections get ready, observe a new policy revision and ACK it, and the server
//! agrees. No timing asserts: performance is the benchmark's business.
#![cfg(test)]

use std::collections::BTreeMap;
use std::time::Duration;

use weft_xds::{
    type_url, FilterSpec, MeshService, ModuleSource, SidecarGroup, WasmModules, XdsSettings,
    XdsState,
};
use weft_xds_load::fleet::{service_name, Fleet, FleetSpec};
use weft_xds_load::tracker::Tracker;

const STREAMS: usize = 20;

fn filters(spec: &FleetSpec, marker: &str) -> BTreeMap<SidecarGroup, Vec<FilterSpec>> {
    let mut out = BTreeMap::new();
    for s in 0..spec.services {
        for v in 1..=spec.versions {
            let group = SidecarGroup::new(&spec.namespace, &service_name(s), &format!("v{v}"));
            let config = format!(r#"{{"deny_paths":["/weft-bench/{marker}"]}}"#);
            out.insert(
                group,
                vec![
                    FilterSpec::new("authz", config),
                    FilterSpec::new("fault", "{}".into()),
                ],
            );
        }
    }
    out
}

fn services(spec: &FleetSpec) -> Vec<MeshService> {
    (0..spec.services)
        .map(|s| MeshService {
            namespace: spec.namespace.clone(),
            name: service_name(s),
            port: 8080,
            host: service_name(s),
            stable_version: "v1".into(),
            calls: None,
        })
        .collect()
}

#[tokio::test]
async fn twenty_streams_observe_and_ack_an_apply() {
    observe_and_ack(false).await;
}

#[tokio::test]
async fn twenty_delta_streams_observe_and_ack_an_apply() {
    observe_and_ack(true).await;
}

async fn observe_and_ack(delta: bool) {
    let spec = FleetSpec {
        streams: STREAMS,
        per_connection: 10,
        namespace: "bench".into(),
        services: 3,
        versions: 2,
        endpoints: true,
        delta,
        calls: None,
    };
    let mut modules = WasmModules::default();
    for name in ["authz", "fault"] {
        modules.insert(name, b"\0asm".to_vec(), "00".repeat(32));
    }
    let settings = XdsSettings {
        module_source: ModuleSource {
            cluster: "weft_xds".into(),
            base_url: "http://weft-control".into(),
        },
        grace: Duration::from_secs(5),
        mesh_warmup: Duration::ZERO,
    };
    let state = XdsState::new(settings, modules);
    state
        .set_config(1, filters(&spec, "first"), services(&spec))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(weft_xds::serve(
        listener,
        std::sync::Arc::clone(&state),
        std::future::pending(),
    ));

    let tracker = Tracker::new();
    let fleet = Fleet::start(&format!("http://{addr}"), &spec, tracker.clone())
        .await
        .unwrap();
    assert_eq!(spec.connections(), 2);
    let timeout = Duration::from_secs(20);
    tracker.wait_ready(STREAMS, timeout).await.unwrap();

    let expectation = tracker.expect(1, "/weft-bench/second");
    state
        .set_config(2, filters(&spec, "second"), services(&spec))
        .unwrap();
    let latencies = tracker
        .wait_observed(&expectation, STREAMS, timeout)
        .await
        .unwrap();
    assert_eq!(
        latencies.len(),
        STREAMS,
        "each stream records an apply once"
    );
    assert_eq!(fleet.running(), STREAMS);

    // The server's own view: every simulated sidecar ACKed revision 2, EDS included (the
    // streams subscribed the EDS clusters CDS named, as Envoy does).
    let sidecars = state.wait_synced(2, Some(STREAMS), timeout).await;
    let synced: Vec<_> = sidecars
        .iter()
        .filter(|s| s.connected && s.synced_revision == Some(2))
        .collect();
    assert_eq!(synced.len(), STREAMS);
    assert!(synced
        .iter()
        .all(|s| s.acked.contains_key(type_url::ENDPOINT)
            && s.acked.contains_key(type_url::CLUSTER)
            && s.acked.contains_key(type_url::EXTENSION_CONFIG)));
    assert!(synced.iter().all(|s| s.current_nack.is_none()));
    let groups: std::collections::BTreeSet<_> =
        synced.iter().map(|s| (&s.service, &s.version)).collect();
    assert_eq!(groups.len(), 6, "streams spread over services x versions");
    let protocol = if delta { "delta" } else { "sotw" };
    assert!(
        synced.iter().all(|s| s.protocol == protocol),
        "every stream spoke {protocol}"
    );

    // Every sidecar's inbound address reaches EDS (endpoint changes are published debounced).
    let group = SidecarGroup::new("bench", &service_name(0), "v1");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let addresses = endpoint_addresses(&state.snapshot(&group));
        if addresses.len() == STREAMS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "EDS has {} of {STREAMS} endpoints",
            addresses.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn endpoint_addresses(snapshot: &weft_xds::Snapshot) -> std::collections::BTreeSet<String> {
    use envoy_types::pb::envoy::config::core::v3::address::Address as Kind;
    use envoy_types::pb::envoy::config::endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment,
    };
    use prost::Message;
    let mut out = std::collections::BTreeSet::new();
    for resource in snapshot.resources(type_url::ENDPOINT) {
        let assignment = ClusterLoadAssignment::decode(resource.body.value.as_slice()).unwrap();
        for endpoint in assignment.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
            if let Some(HostIdentifier::Endpoint(e)) = &endpoint.host_identifier {
                if let Some(Kind::SocketAddress(a)) =
                    e.address.as_ref().and_then(|a| a.address.as_ref())
                {
                    out.insert(a.address.clone());
                }
            }
        }
    }
    out
}
