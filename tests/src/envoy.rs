//! One Envoy container for the e2e tests: options, start and readiness, admin reads, logs.
//! (Over 400 lines: the container's lifecycle and the requests made to it share its state.)

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use testcontainers::{
    core::{logs::LogFrame, AccessMode, IntoContainerPort, Mount},
    runners::AsyncRunner,
    ContainerAsync, ContainerRequest, GenericImage, ImageExt,
};

use crate::{
    filters_dir, poll_until,
    upstream::{split_image, start_publishing},
    TestNet,
};

/// The port of a bootstrap's loopback admin interface (`weft bootstrap`'s default); the
/// harness never maps it: it reads admin through [`ADMIN_SOCKET`].
pub const ADMIN_PORT: u16 = 9901;
/// Where Envoy's admin interface listens inside the container: a unix socket in a directory
/// bind-mounted from a per-container host temp dir, so the test process (and nothing on the
/// Docker network) can reach it.
pub const ADMIN_SOCKET: &str = "/run/weft-admin/admin.sock";
const ADMIN_SOCKET_DIR: &str = "/run/weft-admin";
/// Where the filters directory is mounted (read-only) inside the Envoy container.
pub const FILTERS_DIR: &str = "/etc/weft/filters";
const BOOTSTRAP_PATH: &str = "/etc/envoy/envoy.yaml";

/// The Envoy image: `$ENVOY_IMAGE`, else `weft-envoy:1.40.0` (built by scripts/setup).
pub fn envoy_image() -> String {
    std::env::var("ENVOY_IMAGE").unwrap_or_else(|_| "weft-envoy:1.40.0".into())
}

/// How to run one Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    /// The bootstrap, mounted at `/etc/envoy/envoy.yaml`.
    pub bootstrap_yaml: String,
    /// Mounted read-only at [`FILTERS_DIR`]; `None` mounts nothing.
    pub wasm_dir: Option<PathBuf>,
    /// `(path in the container, contents)`, each mounted read-only (certificates, keys, ...).
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// Listener ports to map to the host; the admin port is always mapped.
    pub ports: Vec<u16>,
    pub concurrency: u32,
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug` (the filters' debug lines, which name the
    /// policy and rule of every decision, without Envoy's own debug noise).
    pub component_log_level: Option<String>,
    /// Bound on waiting for admin `/ready`.
    pub ready_timeout: Duration,
    /// The container's hostname on the test network.
    pub hostname: String,
    /// How the harness reaches Envoy's admin interface.
    pub admin: AdminAccess,
}

/// How the harness reaches Envoy's admin interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdminAccess {
    /// On [`ADMIN_SOCKET`]: a bootstrap that does not already put admin there gets it moved
    /// there (`--config-yaml`, merged over the bootstrap), whatever address it names.
    #[default]
    Socket,
    /// Where the bootstrap says, untouched; the harness has no admin access (readiness is
    /// Envoy's "all dependencies initialized. starting workers" log line). For tests of the
    /// bootstrap's own admin address.
    Bootstrap,
}

impl EnvoyOptions {
    /// `bootstrap_yaml` with `dist/filters` mounted, listener 10000 mapped, one worker, log
    /// level info and 30 s to become ready.
    pub fn new(bootstrap_yaml: impl Into<String>) -> Self {
        Self {
            bootstrap_yaml: bootstrap_yaml.into(),
            wasm_dir: Some(filters_dir()),
            extra_files: Vec::new(),
            ports: vec![10_000],
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(30),
            hostname: "envoy".into(),
            admin: AdminAccess::Socket,
        }
    }

    pub fn extra_file(mut self, container_path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.extra_files
            .push((container_path.into(), contents.into()));
        self
    }

    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = ports.into_iter().collect();
        self
    }

    pub fn concurrency(mut self, concurrency: u32) -> Self {
        self.concurrency = concurrency;
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn component_log_level(mut self, levels: &str) -> Self {
        self.component_log_level = Some(levels.into());
        self
    }
}

/// A running Envoy container. Dropped while the thread panics, it prints its log to stderr.
pub struct Envoy {
    container: ContainerAsync<GenericImage>,
    mapped: HashMap<u16, u16>,
    log: LogBuffer,
    /// The host side of [`ADMIN_SOCKET`]; `None` with [`AdminAccess::Bootstrap`].
    admin_socket: Option<PathBuf>,
    /// Holds the bootstrap, extra files and the admin socket's directory for as long as the
    /// container mounts them.
    _files: tempfile::TempDir,
}

// === impl Envoy ===

impl Envoy {
    /// Starts Envoy and waits until admin `/ready` answers 200.
    ///
    /// Fails with Envoy's log when it exits (a refused config) or is not ready in time.
    pub async fn start(net: &TestNet, options: EnvoyOptions) -> anyhow::Result<Self> {
        let (started, (files, log)) = start_publishing(|| {
            let (request, files, log) = request(net, &options)?;
            Ok((request, (files, log)))
        })
        .await?;
        let container = started.with_context(|| {
            format!(
                "starting Envoy ({}); is the image built? run scripts/setup\n{}",
                envoy_image(),
                log.text()
            )
        })?;
        let mut mapped = HashMap::new();
        for port in options.ports.iter().copied() {
            match container.get_host_port_ipv4(port.tcp()).await {
                Ok(host_port) => mapped.insert(port, host_port),
                Err(error) => {
                    let logs = container_logs(&container, &log).await;
                    bail!("Envoy port {port} is not mapped ({error}); Envoy log:\n{logs}");
                }
            };
        }
        let admin_socket = (options.admin == AdminAccess::Socket)
            .then(|| files.path().join("admin").join("admin.sock"));
        let envoy = Self {
            container,
            mapped,
            log,
            admin_socket,
            _files: files,
        };
        envoy.wait_ready(options.ready_timeout).await?;
        Ok(envoy)
    }

    /// Runs Envoy on a config it must refuse: waits for the container to exit and returns its
    /// log. Fails when Envoy becomes ready instead, or neither happens within `ready_timeout`.
    pub async fn start_expect_failure(
        net: &TestNet,
        options: EnvoyOptions,
    ) -> anyhow::Result<String> {
        // No ports: an exited container has no mappings to read.
        let options = EnvoyOptions {
            ports: Vec::new(),
            ..options
        };
        let (request, _files, log) = request(net, &options)?;
        let container = request
            .start()
            .await
            .with_context(|| format!("starting Envoy\n{}", log.text()))?;
        let code = wait_exit(&container, options.ready_timeout).await;
        let logs = container_logs(&container, &log).await;
        match code {
            Ok(Some(0)) => bail!("Envoy exited 0, expected it to refuse the config:\n{logs}"),
            Ok(_) => Ok(logs),
            Err(error) => Err(error.context(format!("Envoy did not exit; its log:\n{logs}"))),
        }
    }

    /// Runs `envoy --mode validate -c <config>` with `dir` mounted read-only at `mount_at` and
    /// `dist/filters` (when built) at [`FILTERS_DIR`]; returns the exit code and Envoy's output.
    /// `extra_mounts` are further `(host dir, container path)` pairs, e.g. test certificates.
    pub async fn validate(
        dir: &std::path::Path,
        mount_at: &str,
        config: &str,
        extra_mounts: &[(&std::path::Path, &str)],
    ) -> anyhow::Result<(Option<i64>, String)> {
        let (repo, tag) = split_image(&envoy_image());
        let mut request = GenericImage::new(repo, tag)
            .with_mount(read_only(dir, mount_at))
            .with_cmd(["--mode", "validate", "-c", config, "-l", "warning"]);
        let filters = filters_dir();
        if filters.is_dir() {
            request = request.with_mount(read_only(&filters, FILTERS_DIR));
        }
        for (host_dir, container_path) in extra_mounts {
            request = request.with_mount(read_only(host_dir, container_path));
        }
        let container = request
            .start()
            .await
            .with_context(|| format!("starting Envoy ({}) to validate", envoy_image()))?;
        let code = wait_exit(&container, Duration::from_secs(60)).await?;
        let log = LogBuffer::default();
        Ok((code, container_logs(&container, &log).await))
    }

    /// `http://127.0.0.1:<host port>` for listener `port` (which must be in `options.ports`).
    pub fn url(&self, port: u16) -> String {
        match self.mapped.get(&port) {
            Some(host_port) => format!("http://127.0.0.1:{host_port}"),
            // A test asking for a port it did not expose is a bug in the test.
            #[allow(clippy::panic)]
            None => panic!("Envoy port {port} is not exposed: add it to EnvoyOptions::ports"),
        }
    }

    /// The host port listener `port` is mapped to, if it is in `options.ports`.
    pub fn host_port(&self, port: u16) -> Option<u16> {
        self.mapped.get(&port).copied()
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// The container's IP on its test network.
    pub async fn ip(&self) -> anyhow::Result<String> {
        Ok(self.container.get_bridge_ip_address().await?.to_string())
    }

    /// `GET path` on Envoy's admin interface (over its unix socket): the status and body.
    pub async fn admin_request(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let Some(socket) = &self.admin_socket else {
            bail!("this Envoy runs with AdminAccess::Bootstrap: the harness has no admin access");
        };
        unix_get(socket, path).await
    }

    /// The body of admin `GET path`; an error unless the status is 2xx.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = self.admin_request(path).await?;
        if !(200..300).contains(&status) {
            bail!("admin GET {path}: status {status}: {body}");
        }
        Ok(body)
    }

    /// Counters and gauges from admin `/stats?format=json`.
    pub async fn stats(&self) -> anyhow::Result<HashMap<String, u64>> {
        let body: serde_json::Value =
            serde_json::from_str(&self.admin_get("/stats?format=json").await?)
                .context("admin /stats?format=json is not JSON")?;
        let entries = body["stats"]
            .as_array()
            .ok_or_else(|| anyhow!("admin /stats: no \"stats\" array"))?;
        Ok(entries
            .iter()
            .filter_map(|entry| {
                Some((entry["name"].as_str()?.to_owned(), entry["value"].as_u64()?))
            })
            .collect())
    }

    /// One counter or gauge; `None` when Envoy has not created it (yet).
    pub async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.stats().await?.get(name).copied())
    }

    /// Envoy's stdout and stderr so far.
    pub async fn logs(&self) -> String {
        container_logs(&self.container, &self.log).await
    }

    /// Envoy's output once it holds every one of `needles`, or after 15 s without them (the
    /// caller's assertion then shows what was logged). Docker copies a container's output to
    /// its log asynchronously, so a line Envoy wrote before answering a request can still be
    /// missing from `docker logs` a moment later on a loaded machine.
    pub async fn logs_showing(&self, needles: &[&str]) -> String {
        let shown = poll_until(
            "lines in Envoy's log",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || async {
                let logs = self.logs().await;
                Ok(needles
                    .iter()
                    .all(|needle| logs.contains(needle))
                    .then_some(logs))
            },
        )
        .await;
        match shown {
            Ok(logs) => logs,
            Err(_) => self.logs().await,
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let exited = poll_until(
            "Envoy admin /ready",
            timeout,
            Duration::from_millis(50),
            || async move {
                if !self.container.is_running().await? {
                    return Ok(Some(true));
                }
                if self.admin_socket.is_none() {
                    // Logged once the init manager is done and listeners accept: /ready's LIVE.
                    let started = self.log.text().contains("starting workers");
                    return Ok(started.then_some(false));
                }
                let ready =
                    tokio::time::timeout(Duration::from_secs(1), self.admin_request("/ready"))
                        .await
                        .map_err(|_| anyhow!("admin /ready timed out"))??;
                Ok((ready.0 == 200).then_some(false))
            },
        )
        .await;
        match exited {
            Ok(false) => Ok(()),
            Ok(true) => {
                let code = self.container.exit_code().await.ok().flatten();
                let logs = self.logs().await;
                bail!("Envoy exited (code {code:?}) before it was ready; its log:\n{logs}")
            }
            Err(error) => {
                let logs = self.logs().await;
                Err(error.context(format!("Envoy did not become ready; its log:\n{logs}")))
            }
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Drop cannot await: print what the log stream delivered, which trails by milliseconds.
            eprintln!(
                "===== Envoy {} log (test failed) =====\n{}\n===== end of Envoy log =====",
                self.container.id(),
                self.log.text()
            );
        }
    }
}

fn request(
    net: &TestNet,
    options: &EnvoyOptions,
) -> anyhow::Result<(ContainerRequest<GenericImage>, tempfile::TempDir, LogBuffer)> {
    let files = tempfile::Builder::new()
        .prefix("weft-e2e-envoy-")
        .tempdir()
        .context("creating a temp dir for Envoy's files")?;
    let bootstrap = files.path().join("envoy.yaml");
    std::fs::write(&bootstrap, &options.bootstrap_yaml)?;

    let (repo, tag) = split_image(&envoy_image());
    let mut image = GenericImage::new(repo, tag);
    for port in options.ports.iter().copied() {
        image = image.with_exposed_port(port.tcp());
    }
    let mut cmd = vec![
        "-c".to_owned(),
        BOOTSTRAP_PATH.to_owned(),
        "--concurrency".to_owned(),
        options.concurrency.to_string(),
        "-l".to_owned(),
        options.log_level.clone(),
        "--file-flush-interval-msec".to_owned(),
        "100".to_owned(),
    ];
    if let Some(levels) = &options.component_log_level {
        cmd.push("--component-log-level".to_owned());
        cmd.push(levels.clone());
    }
    let admin_dir = files.path().join("admin");
    std::fs::create_dir(&admin_dir).context("creating the admin socket's directory")?;
    if options.admin == AdminAccess::Socket && !options.bootstrap_yaml.contains(ADMIN_SOCKET) {
        // Merged over the bootstrap: the address oneof becomes the pipe.
        cmd.push("--config-yaml".to_owned());
        cmd.push(format!(
            "{{admin: {{address: {{pipe: {{path: {ADMIN_SOCKET}, mode: {}}}}}}}}}",
            0o600
        ));
    }
    let log = LogBuffer::default();
    let mut request = image
        .with_network(net.name())
        .with_hostname(options.hostname.clone())
        .with_mount(read_only(&bootstrap, BOOTSTRAP_PATH))
        .with_mount(Mount::bind_mount(
            admin_dir.to_string_lossy(),
            ADMIN_SOCKET_DIR,
        ))
        .with_log_consumer(log.consumer())
        // Where Envoy looks for a dynamic module named in the config (`libweft_suite.so`).
        .with_env_var("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", FILTERS_DIR)
        .with_cmd(cmd);
    if let Some(dir) = &options.wasm_dir {
        if !dir.is_dir() {
            bail!(
                "filter directory {} is missing: run scripts/build-filters first",
                dir.display()
            );
        }
        request = request.with_mount(read_only(dir, FILTERS_DIR));
    }
    for (index, (container_path, contents)) in options.extra_files.iter().enumerate() {
        let host_path = files.path().join(format!("extra-{index}"));
        std::fs::write(&host_path, contents)?;
        request = request.with_mount(read_only(&host_path, container_path));
    }
    Ok((request, files, log))
}

/// `GET path` over HTTP/1.1 on the unix socket `socket` (an Envoy admin interface): the
/// status and body. Bounded to 15 s.
pub async fn unix_get(socket: &std::path::Path, path: &str) -> anyhow::Result<(u16, String)> {
    let what = || format!("GET {path} over {}", socket.display());
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "envoy-admin")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|result| result)
        .with_context(what)
}

/// Polls until the container has exited; its exit code.
async fn wait_exit(
    container: &ContainerAsync<GenericImage>,
    timeout: Duration,
) -> anyhow::Result<Option<i64>> {
    poll_until(
        "the Envoy container to exit",
        timeout,
        Duration::from_millis(50),
        || async {
            if container.is_running().await? {
                return Ok(None);
            }
            Ok(Some(container.exit_code().await?))
        },
    )
    .await
}

fn read_only(host: &std::path::Path, container: &str) -> Mount {
    Mount::bind_mount(host.to_string_lossy(), container).with_access_mode(AccessMode::ReadOnly)
}

/// Complete logs from the engine; what the stream delivered if the engine cannot answer.
async fn container_logs(container: &ContainerAsync<GenericImage>, log: &LogBuffer) -> String {
    let stdout = container.stdout_to_vec().await;
    let stderr = container.stderr_to_vec().await;
    match (stdout, stderr) {
        (Ok(mut out), Ok(err)) => {
            out.extend(err);
            String::from_utf8_lossy(&out).into_owned()
        }
        _ => log.text(),
    }
}

/// Container output as it streams in, readable without awaiting (for `Drop`).
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn consumer(&self) -> impl Fn(&LogFrame) + Send + Sync + 'static {
        let buffer = self.0.clone();
        move |frame: &LogFrame| {
            let bytes = match frame {
                LogFrame::StdOut(bytes) | LogFrame::StdErr(bytes) => bytes,
            };
            buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}
