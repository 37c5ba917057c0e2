//! What the loopback tests share: the settings, a node, a server on an ephemeral port.
#![cfg(test)]
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use weft_xds::{ModuleSource, XdsSettings, XdsState};

/// Modules from `http://cp` (cluster `weft_xds`), a 100 ms grace, `mesh_warmup`.
pub fn settings(mesh_warmup: Duration) -> XdsSettings {
    XdsSettings {
        module_source: ModuleSource {
            cluster: "weft_xds".into(),
            base_url: "http://cp".into(),
        },
        grace: Duration::from_millis(100),
        mesh_warmup,
    }
}

/// A node `id` of `service` with the metadata a sidecar sends.
pub fn mk_node(id: &str, service: &str, version: &str, inbound: &str) -> Node {
    let meta = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    Node {
        id: id.into(),
        cluster: service.into(),
        metadata: Some(Struct {
            fields: [
                ("version".to_string(), meta(version)),
                ("inbound_address".to_string(), meta(inbound)),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

/// Serves `state` on a loopback port: its `http://` address and the server task.
pub async fn start(state: Arc<XdsState>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        weft_xds::serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
    (addr, task)
}
