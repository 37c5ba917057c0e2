//! A pod: an app and its Envoy sidecar sharing one network namespace, as in Kubernetes.
//!
//! The sidecar's container owns the namespace (its listeners, its hostname on the test
//! network, its port mappings); the app joins it (`--network container:<sidecar>`) and listens
//! on 127.0.0.1 only, so the sidecar's inbound listener is the only way in from the network.
//! The test reaches the app's counters, and sends requests from inside the pod (into the
//! sidecar's loopback outbound listener, say), through the app's test-only instrumentation
//! port ([`INSTRUMENT_PORT`]), which the sidecar's container maps to the host.

use anyhow::Context;

use crate::{upstream::INSTRUMENT_PORT, Envoy, EnvoyOptions, TestNet, Upstream, UpstreamOptions};

/// A running pod. The app is dropped (removed) before the sidecar whose namespace it uses.
pub struct Pod {
    app: Upstream,
    sidecar: Envoy,
}

// === impl Pod ===

/// A pod is reached through its sidecar: `pod.url(INBOUND)`, `pod.stats()`, `&pod` where an
/// `&Envoy` is wanted.
impl std::ops::Deref for Pod {
    type Target = Envoy;

    fn deref(&self) -> &Envoy {
        &self.sidecar
    }
}

impl Pod {
    /// Starts the sidecar from `sidecar` (the instrumentation port is added to its mapped
    /// ports) and then the app `app` inside its network namespace.
    pub async fn start(
        net: &TestNet,
        sidecar: EnvoyOptions,
        app: UpstreamOptions,
    ) -> anyhow::Result<Self> {
        let mut options = sidecar;
        if !options.ports.contains(&INSTRUMENT_PORT) {
            options.ports.push(INSTRUMENT_PORT);
        }
        let sidecar = Envoy::start(net, options).await?;
        let instrument = sidecar
            .host_port(INSTRUMENT_PORT)
            .context("the instrumentation port is not mapped")?;
        let app = Upstream::start_in_pod(sidecar.id(), instrument, app).await?;
        Ok(Self { app, sidecar })
    }

    pub fn sidecar(&self) -> &Envoy {
        &self.sidecar
    }

    /// The app: counters, mode, last headers (through the instrumentation port).
    pub fn app(&self) -> &Upstream {
        &self.app
    }

    /// A base URL that sends requests to `127.0.0.1:<port>` from inside the pod, as the app
    /// would: `format!("{}/reviews/1", pod.local_url(15001))` goes through the sidecar's
    /// outbound listener. Method, headers (`Host` included) and body are passed on, the reply
    /// comes back as it was; a reply the forwarder made itself (nothing listening) carries
    /// the header `x-forward-failed`.
    pub fn local_url(&self, port: u16) -> String {
        format!("{}/_forward/127.0.0.1:{port}", self.app.url())
    }

    /// [`Self::local_url`] for any `host:port` (as seen from inside the pod).
    pub fn forward_url(&self, authority: &str) -> String {
        format!("{}/_forward/{authority}", self.app.url())
    }

    /// The sidecar's IP on the test network (the pod's IP).
    pub async fn ip(&self) -> anyhow::Result<String> {
        self.sidecar.ip().await
    }
}
