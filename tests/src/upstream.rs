use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde::Deserialize;
use testcontainers::{
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
    ContainerAsync, GenericImage, ImageExt,
};

use crate::{http_client, TestNet};

/// The port the test service listens on inside its container.
pub const SERVICE_PORT: u16 = 8080;

/// The test-service image: `$TEST_SERVICE_IMAGE`, else `weft-test-service:dev`.
pub fn test_service_image() -> String {
    std::env::var("TEST_SERVICE_IMAGE").unwrap_or_else(|_| "weft-test-service:dev".into())
}

/// How to start an [`Upstream`].
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// `SERVICE_NAME`: what the service says it is.
    pub name: String,
    /// `SERVICE_VERSION`.
    pub version: String,
    /// The hostname other containers on the network reach it by (Envoy's DNS name for it).
    pub alias: String,
}

impl UpstreamOptions {
    /// Name, version, and the alias `name`.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            alias: name.into(),
        }
    }

    /// Reachable as `alias` instead of the service name (e.g. `reviews-v2`).
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = alias.into();
        self
    }
}

/// What `GET /_admin/stats` reports.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct UpstreamStats {
    pub requests: u64,
    pub in_flight: u64,
    pub peak_in_flight: u64,
    pub by_path: BTreeMap<String, u64>,
}

/// A running `weft-test-service` container on a [`TestNet`].
pub struct Upstream {
    alias: String,
    base_url: String,
    client: reqwest::Client,
    container: ContainerAsync<GenericImage>,
}

// === impl Upstream ===

impl Upstream {
    /// Starts service `name` at `version`, reachable on the network as `name`.
    pub async fn start(net: &TestNet, name: &str, version: &str) -> anyhow::Result<Self> {
        Self::start_with(net, UpstreamOptions::new(name, version)).await
    }

    pub async fn start_with(net: &TestNet, options: UpstreamOptions) -> anyhow::Result<Self> {
        let image = test_service_image();
        let (repo, tag) = split_image(&image);
        let container = GenericImage::new(repo, tag)
            .with_exposed_port(SERVICE_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("listening on"))
            .with_network(net.name())
            // Docker adds the hostname to the container's DNS aliases on a user network.
            .with_hostname(options.alias.clone())
            .with_env_var("SERVICE_NAME", options.name.clone())
            .with_env_var("SERVICE_VERSION", options.version.clone())
            .with_env_var("PORT", SERVICE_PORT.to_string())
            .with_startup_timeout(std::time::Duration::from_secs(30))
            .start()
            .await
            .with_context(|| {
                format!(
                    "starting upstream {} ({image}); is the image built? run scripts/build-test-service-image",
                    options.alias
                )
            })?;
        let port = container
            .get_host_port_ipv4(SERVICE_PORT.tcp())
            .await
            .context("upstream port mapping")?;
        Ok(Self {
            alias: options.alias,
            base_url: format!("http://127.0.0.1:{port}"),
            client: http_client(),
            container,
        })
    }

    /// The hostname Envoy reaches this service by.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// `http://127.0.0.1:<mapped port>`: the service straight from the host, bypassing Envoy.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    pub async fn stats(&self) -> anyhow::Result<UpstreamStats> {
        self.get_json("/_admin/stats").await
    }

    /// Zeroes the counters.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.post("/_admin/reset").await
    }

    /// Every following request answers `fail` (0: normally) after `delay_ms`.
    pub async fn set_mode(&self, fail: u16, delay_ms: u64) -> anyhow::Result<()> {
        self.post(&format!("/_admin/mode?fail={fail}&delay_ms={delay_ms}"))
            .await
    }

    /// Headers of the last counted request (joined with ", " when repeated).
    pub async fn last_headers(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.get_json("/_admin/last").await
    }

    /// The service's stdout and stderr so far.
    pub async fn logs(&self) -> anyhow::Result<String> {
        let mut out = self.container.stdout_to_vec().await?;
        out.extend(self.container.stderr_to_vec().await?);
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let response = self.client.get(&url).send().await.context(url.clone())?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        response.json().await.with_context(|| format!("GET {url}"))
    }

    async fn post(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base_url);
        let response = self.client.post(&url).send().await.context(url.clone())?;
        if !response.status().is_success() {
            bail!("POST {url}: {}", response.status());
        }
        Ok(())
    }
}

/// `repo[:tag]` split at the tag's colon (a registry's `host:port/` is not a tag).
pub(crate) fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.into(), tag.into()),
        _ => (image.into(), "latest".into()),
    }
}
