use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context};
use serde::Deserialize;
use testcontainers::{
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
    ContainerAsync, ContainerRequest, GenericImage, ImageExt, TestcontainersError,
};

use crate::{http_client, poll_until, TestNet};

/// The test service's test-only instrumentation port (`INSTRUMENT_PORT`), on 0.0.0.0 in a
/// pod app: `/_admin/*`, `/_forward/<host:port>/<path>`, `/_probe/<host:port>`.
pub const INSTRUMENT_PORT: u16 = 9000;

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
    /// Also serve the test-only instrumentation port ([`INSTRUMENT_PORT`], mapped to the
    /// host): a prober that sends requests from inside the Docker network.
    pub instrumented: bool,
}

impl UpstreamOptions {
    /// Name, version, and the alias `name`.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            alias: name.into(),
            instrumented: false,
        }
    }

    /// With the instrumentation port ([`Upstream::instrument_url`]).
    pub fn instrumented(mut self) -> Self {
        self.instrumented = true;
        self
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

/// A running `weft-test-service` container: on a [`TestNet`], or inside a [`crate::Pod`].
pub struct Upstream {
    alias: String,
    base_url: String,
    instrument_url: Option<String>,
    client: reqwest::Client,
    container: Handle,
}

/// Pod apps are started with the docker CLI: testcontainers 0.28 would first create a bridge
/// network literally named `container:<id>` (taking an address pool) for `--network container:`.
enum Handle {
    Managed(Box<ContainerAsync<GenericImage>>),
    Cli(CliContainer),
}

/// A container started with `docker run`, removed (`docker rm -f`) on drop.
struct CliContainer {
    id: String,
}

impl Drop for CliContainer {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await.
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
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
        let build = || {
            let mut generic =
                GenericImage::new(repo.clone(), tag.clone()).with_exposed_port(SERVICE_PORT.tcp());
            if options.instrumented {
                generic = generic.with_exposed_port(INSTRUMENT_PORT.tcp());
            }
            let mut request = generic
                .with_wait_for(WaitFor::message_on_stdout("listening on"))
                .with_network(net.name())
                // Docker adds the hostname to the container's DNS aliases on a user network.
                .with_hostname(options.alias.clone())
                .with_env_var("SERVICE_NAME", options.name.clone())
                .with_env_var("SERVICE_VERSION", options.version.clone())
                .with_env_var("PORT", SERVICE_PORT.to_string())
                .with_startup_timeout(std::time::Duration::from_secs(30));
            if options.instrumented {
                request = request.with_env_var("INSTRUMENT_PORT", INSTRUMENT_PORT.to_string());
            }
            Ok((request, ()))
        };
        let (started, ()) = start_publishing(build).await?;
        let container = started.with_context(|| {
            format!(
                "starting upstream {} ({image}); is the image built? run scripts/build-test-service-image",
                options.alias
            )
        })?;
        let port = container
            .get_host_port_ipv4(SERVICE_PORT.tcp())
            .await
            .context("upstream port mapping")?;
        let instrument_url = if options.instrumented {
            let port = container
                .get_host_port_ipv4(INSTRUMENT_PORT.tcp())
                .await
                .context("instrumentation port mapping")?;
            Some(format!("http://127.0.0.1:{port}"))
        } else {
            None
        };
        Ok(Self {
            alias: options.alias,
            base_url: format!("http://127.0.0.1:{port}"),
            instrument_url,
            client: http_client(),
            container: Handle::Managed(Box::new(container)),
        })
    }

    /// Starts the app of a pod: in the network namespace of container `sidecar_id`
    /// (`--network container:<id>`), listening on 127.0.0.1:[`SERVICE_PORT`] only, with the
    /// instrumentation port on [`INSTRUMENT_PORT`], which the sidecar's container maps to
    /// host port `instrument_host_port`. Ready once `/_admin/stats` answers through it.
    pub(crate) async fn start_in_pod(
        sidecar_id: &str,
        instrument_host_port: u16,
        options: UpstreamOptions,
    ) -> anyhow::Result<Self> {
        let image = test_service_image();
        let output = Command::new("docker")
            .args(["run", "-d", "--network"])
            .arg(format!("container:{sidecar_id}"))
            .args(["--label", "weft.e2e=pod-app"])
            .arg("-e")
            .arg(format!("SERVICE_NAME={}", options.name))
            .arg("-e")
            .arg(format!("SERVICE_VERSION={}", options.version))
            .args(["-e", "BIND=127.0.0.1"])
            .arg("-e")
            .arg(format!("PORT={SERVICE_PORT}"))
            .arg("-e")
            .arg(format!("INSTRUMENT_PORT={INSTRUMENT_PORT}"))
            .arg(&image)
            .output()
            .context("running docker run")?;
        if !output.status.success() {
            bail!(
                "starting pod app {} ({image}); is the image built? run scripts/build-test-service-image: {}",
                options.alias,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let upstream = Self {
            alias: options.alias,
            base_url: format!("http://127.0.0.1:{instrument_host_port}"),
            instrument_url: Some(format!("http://127.0.0.1:{instrument_host_port}")),
            client: http_client(),
            container: Handle::Cli(CliContainer { id }),
        };
        let ready = poll_until(
            "the pod app's instrumentation port",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async { Ok(upstream.stats().await.is_ok().then_some(())) },
        )
        .await;
        if let Err(error) = ready {
            let logs = upstream.logs().await.unwrap_or_default();
            return Err(error.context(format!("pod app log:\n{logs}")));
        }
        Ok(upstream)
    }

    /// The hostname Envoy reaches this service by.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// `http://127.0.0.1:<mapped port>`: the service straight from the host, bypassing Envoy.
    /// For a pod app, its instrumentation port (the app itself is on the pod's loopback).
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The test-only instrumentation port from the host (a pod app, or
    /// [`UpstreamOptions::instrumented`]): `/_forward/<host:port>/<path>` and
    /// `/_probe/<host:port>` act from inside the container's network namespace.
    pub fn instrument_url(&self) -> Option<&str> {
        self.instrument_url.as_deref()
    }

    pub fn id(&self) -> &str {
        match &self.container {
            Handle::Managed(container) => container.id(),
            Handle::Cli(container) => &container.id,
        }
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

    /// Every `every`-th following request answers `fail` (`every` 5: 20 %).
    pub async fn set_fail_every(&self, fail: u16, every: u64) -> anyhow::Result<()> {
        self.post(&format!("/_admin/mode?fail={fail}&fail_every={every}"))
            .await
    }

    /// Headers of the last counted request (joined with ", " when repeated).
    pub async fn last_headers(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.get_json("/_admin/last").await
    }

    /// The service's stdout and stderr so far.
    pub async fn logs(&self) -> anyhow::Result<String> {
        match &self.container {
            Handle::Managed(container) => {
                let mut out = container.stdout_to_vec().await?;
                out.extend(container.stderr_to_vec().await?);
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
            Handle::Cli(container) => {
                let output = Command::new("docker")
                    .args(["logs", &container.id])
                    .output()
                    .context("running docker logs")?;
                let mut out = output.stdout;
                out.extend(output.stderr);
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
        }
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

/// Starts the container of the request `build` makes (with what belongs to it, `T`), and
/// starts a new one, at most 4 times in all, when Docker refuses to publish a port because
/// a host process holds it ("address already in use": Docker picks a free-looking host
/// port, and a test's own client or `weft serve` may take it first). The last start's
/// outcome comes back with its `T`.
pub(crate) async fn start_publishing<T>(
    mut build: impl FnMut() -> anyhow::Result<(ContainerRequest<GenericImage>, T)>,
) -> anyhow::Result<(Result<ContainerAsync<GenericImage>, TestcontainersError>, T)> {
    let mut attempt = 1;
    loop {
        let (request, with) = build()?;
        match request.start().await {
            Err(error) if attempt < 4 && is_host_port_taken(&error.to_string()) => attempt += 1,
            started => return Ok((started, with)),
        }
    }
}

fn is_host_port_taken(error: &str) -> bool {
    error.contains("address already in use") || error.contains("port is already allocated")
}
