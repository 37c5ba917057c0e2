//! `weft serve --store etcd`: the replicated store's flags, and the task that keeps this
//! replica's published snapshot caught up with versions other replicas append.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_state::ControlPlane;

/// Where versions are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded crash-safe log in `--data-dir` (one node).
    #[default]
    File,
    /// etcd v3 (`--etcd-endpoints`): any number of replicas share it.
    Etcd,
}

/// `weft serve` options for the store.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaArgs {
    /// `file` (default, one node) or `etcd` (replicas; needs --etcd-endpoints and
    /// --etcd-kek).
    #[arg(long = "store", env = "WEFT_STORE", value_enum, default_value_t = StoreKind::File)]
    pub kind: StoreKind,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// This replica's name in `weft status` (default: host name and process id).
    #[arg(long, env = "WEFT_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// `/healthz` answers 503 once etcd has not answered for this long, in ms.
    #[arg(long, env = "WEFT_ETCD_HEALTH_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub etcd_health_ms: u64,
}

/// How to reach etcd and open what is sealed there (`weft serve --store etcd`,
/// `weft etcd rekey`).
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated (`http://` or `https://`).
    #[arg(long, env = "WEFT_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Every key lives under this prefix.
    #[arg(long, env = "WEFT_ETCD_PREFIX", default_value = "/weft")]
    pub etcd_prefix: String,
    /// PEM CA bundle etcd's server certificates chain to (https endpoints).
    #[arg(long, env = "WEFT_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (PEM), with --etcd-key.
    #[arg(long, env = "WEFT_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "WEFT_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (authentication enabled in etcd); the password is read from
    /// --etcd-password-file.
    #[arg(long, env = "WEFT_ETCD_USER", requires = "etcd_password_file")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (first line).
    #[arg(long, env = "WEFT_ETCD_PASSWORD_FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
    /// Deadline of one etcd call, in ms: past it a change is refused (503).
    #[arg(long, env = "WEFT_ETCD_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub etcd_timeout_ms: u64,
    /// Key-encryption key (32 random bytes, or their 64 hex digits; mode 0600), the same file
    /// on every replica: everything secret kept in etcd (the CA's private keys, the join-token
    /// secret, the telemetry secret, the explain master key) is sealed with it
    /// (ChaCha20-Poly1305), never in clear. Required with `--store etcd`.
    #[arg(long, env = "WEFT_ETCD_KEK")]
    pub etcd_kek: Option<PathBuf>,
    /// During a KEK rotation: the previous key-encryption key, which still opens the values
    /// sealed with it (new values are sealed with --etcd-kek only). See `weft etcd rekey`.
    #[arg(long, env = "WEFT_ETCD_KEK_PREVIOUS", requires = "etcd_kek")]
    pub etcd_kek_previous: Option<PathBuf>,
}

/// How to make a key-encryption key file, for messages.
const MAKE_KEK: &str =
    "32 random bytes, mode 0600: `head -c 32 /dev/urandom > FILE; chmod 600 FILE`";

impl EtcdArgs {
    /// `--etcd-kek`, opening `--etcd-kek-previous`'s values too when given; refused when
    /// absent (nothing secret is kept in etcd in clear).
    pub fn kek(&self) -> anyhow::Result<weft_ca::Kek> {
        let Some(path) = &self.etcd_kek else {
            anyhow::bail!(
                "--store etcd keeps the CA's keys and the shared secrets in etcd, sealed with a \
                 key-encryption key: give every replica the same --etcd-kek FILE ({MAKE_KEK})"
            );
        };
        let kek = weft_ca::Kek::from_file(path).map_err(|e| anyhow::anyhow!("--etcd-kek: {e}"))?;
        match &self.etcd_kek_previous {
            Some(previous) => {
                let previous = weft_ca::Kek::from_file(previous)
                    .map_err(|e| anyhow::anyhow!("--etcd-kek-previous: {e}"))?;
                kek.with_previous(previous)
                    .map_err(|e| anyhow::anyhow!("--etcd-kek-previous: {e}"))
            }
            None => Ok(kek),
        }
    }

    pub fn settings(&self) -> anyhow::Result<weft_etcd::EtcdSettings> {
        let mut settings = weft_etcd::EtcdSettings::new(self.etcd_endpoints.clone());
        settings.prefix = self.etcd_prefix.clone();
        settings.tls = weft_etcd::EtcdTls {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        };
        if let (Some(user), Some(file)) = (&self.etcd_user, &self.etcd_password_file) {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("--etcd-password-file {}: {e}", file.display()))?;
            let password = text.lines().next().unwrap_or_default().to_string();
            settings.user = Some((user.clone(), password));
        }
        settings.timeout = Duration::from_millis(self.etcd_timeout_ms);
        Ok(settings)
    }
}

/// What replicas share besides the policy versions: etcd's state documents, and the KEK
/// that seals everything secret kept there.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<dyn weft_store::SharedState>,
    pub kek: Arc<weft_ca::Kek>,
}

/// The shared state of `--store etcd`; refuses etcd without a KEK, and a KEK without etcd.
pub fn shared(
    etcd: Option<&Arc<weft_etcd::EtcdStore>>,
    args: &ReplicaArgs,
) -> anyhow::Result<Option<Shared>> {
    let Some(etcd) = etcd else {
        if args.etcd.etcd_kek.is_some() {
            anyhow::bail!("--etcd-kek seals values kept in etcd: it needs --store etcd");
        }
        return Ok(None);
    };
    let kek = args.etcd.kek()?;
    tracing::info!(
        kek_id = kek.id(),
        previous = ?kek.previous_ids(),
        "secrets in etcd are sealed with the key-encryption key"
    );
    Ok(Some(Shared {
        state: Arc::clone(etcd) as Arc<dyn weft_store::SharedState>,
        kek: Arc::new(kek),
    }))
}

/// The secret `name` every replica shares (`<prefix>/state/secrets/<name>`, sealed with the
/// KEK; see `weft_ca::secrets`). A clear value an older version kept at
/// `<prefix>/secrets/<name>` becomes the sealed one (same bytes), and the clear key is
/// deleted.
pub async fn shared_secret(
    etcd: &Arc<weft_etcd::EtcdStore>,
    shared: &Shared,
    name: &str,
) -> anyhow::Result<[u8; 32]> {
    let (etcd, shared, name) = (Arc::clone(etcd), shared.clone(), name.to_string());
    tokio::task::spawn_blocking(move || -> anyhow::Result<[u8; 32]> {
        let legacy = etcd.legacy_secret(&name)?;
        let secret = weft_ca::secrets::open_named_secret(
            &*shared.state,
            &shared.kek,
            &name,
            legacy.map(|(value, _)| value),
        )
        .map_err(|e| anyhow::anyhow!("shared secret {name}: {e}"))?;
        if let Some((value, revision)) = legacy {
            if value == secret {
                tracing::warn!(secret = %name, "sealed the secret an older version kept in etcd in clear, and deleted the clear copy");
            }
            etcd.forget_legacy_secret(&name, revision)?;
        }
        Ok(secret)
    })
    .await?
}

/// Reloads what other replicas change in etcd (a root rotation, tokens, operators) on every
/// change `changes` reports, and every 2 s in case a change was missed across a
/// reconnection. A failed reload keeps what this replica held (and says why).
pub async fn reload_shared(
    mut changes: tokio::sync::watch::Receiver<i64>,
    identity: Option<Arc<weft_ca::Identity>>,
    access: Arc<weft_api::access::Access>,
) {
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let (identity, access) = (identity.clone(), Arc::clone(&access));
        let reloaded = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(identity) = &identity {
                if identity.reload().map_err(|e| e.to_string())? {
                    tracing::info!(
                        signing_root = identity.ca.signing_generation(),
                        "reloaded the mesh CA and join tokens from etcd"
                    );
                }
            }
            if let Some(ca) = &access.operator_ca {
                ca.reload().map_err(|e| e.to_string())?;
            }
            access.operators.reload().map_err(|e| e.to_string())?;
            Ok(())
        })
        .await;
        match reloaded {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot reload the shared state from etcd yet")
            }
            Err(error) => tracing::error!(%error, "reload task failed"),
        }
    }
}

impl ReplicaArgs {
    pub fn settings(&self) -> anyhow::Result<weft_etcd::EtcdSettings> {
        let mut settings = self.etcd.settings()?;
        settings.health_bound = Duration::from_millis(self.etcd_health_ms);
        Ok(settings)
    }
}

/// Follows `versions` (the etcd store's watch): whenever etcd is ahead of the published
/// snapshot, the plane catches up (off the async workers), which publishes the new version
/// to this replica's xDS streams. Retries each second while a catch-up fails.
pub async fn follow(plane: Arc<ControlPlane>, mut versions: tokio::sync::watch::Receiver<u64>) {
    loop {
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let seen = *versions.borrow_and_update();
        let published = plane.snapshot().version;
        if seen <= published {
            continue;
        }
        let plane = Arc::clone(&plane);
        match tokio::task::spawn_blocking(move || plane.refresh()).await {
            Ok(Ok(version)) => {
                tracing::info!(version, from = published, "caught up with etcd");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, seen, published, "cannot catch up with etcd yet");
            }
            Err(error) => tracing::error!(%error, "catch-up task failed"),
        }
    }
}

/// Where this replica serves xDS, as `weft status` lists it, and how long its sidecars'
/// rows outlive it.
pub struct XdsAddress {
    /// The address once bound (`--xds-listen` may ask for port 0).
    pub bound: Arc<std::sync::OnceLock<String>>,
    /// `--xds-listen`, until bound.
    pub listen: Option<String>,
    pub grace_ms: u64,
}

/// Registers this replica in etcd (refreshed each second under a lease) and returns the view
/// `GET /api/v1/replicas` answers with.
pub fn register(
    etcd: &Arc<weft_etcd::EtcdStore>,
    args: &ReplicaArgs,
    plane: &Arc<ControlPlane>,
    api: &str,
    xds: XdsAddress,
    xds_state: Option<Arc<weft_xds::XdsState>>,
) -> weft_api::ReplicasView {
    let id = replica_id(args);
    if let Some(state) = &xds_state {
        share_sidecars(etcd, &id, state, xds.grace_ms);
    }
    let (plane, api, me) = (Arc::clone(plane), api.to_string(), id.clone());
    let (xds_bound, xds_listen) = (xds.bound, xds.listen);
    let report: weft_etcd::ReplicaReport = Arc::new(move || weft_etcd::ReplicaInfo {
        id: id.clone(),
        api: api.clone(),
        xds: xds_bound.get().cloned().or_else(|| xds_listen.clone()),
        policy_version: plane.snapshot().version,
        etcd_revision: 0,
        streams: xds_state.as_ref().map_or(0, |state| connected(state, &me)),
        updated_unix_ms: 0,
        degraded: None,
    });
    etcd.register(Arc::clone(&report));
    let etcd = Arc::clone(etcd);
    let last_seen = std::sync::Mutex::new(Vec::new());
    Arc::new(move || {
        let list = match etcd.replicas() {
            Ok(list) => {
                *last_seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = list.clone();
                list
            }
            Err(error) => without_etcd(&etcd, &report, &last_seen, &error.to_string()),
        };
        serde_json::to_value(list).map_err(|e| e.to_string())
    })
}

/// The replicas list of a replica that cannot read etcd: its own entry as it knows itself,
/// saying what losing etcd means; the others as it last saw them, marked as such.
fn without_etcd(
    etcd: &weft_etcd::EtcdStore,
    report: &weft_etcd::ReplicaReport,
    last_seen: &std::sync::Mutex<Vec<weft_etcd::ReplicaInfo>>,
    error: &str,
) -> Vec<weft_etcd::ReplicaInfo> {
    let mut mine = report();
    mine.etcd_revision = etcd.revision();
    mine.updated_unix_ms = weft_etcd::now_unix_ms();
    mine.degraded = Some(
        etcd.degraded()
            .unwrap_or_else(|| format!("etcd did not answer ({error}); writes refused")),
    );
    let note = format!(
        "not known: etcd unreachable from replica {}; as last seen",
        mine.id
    );
    let mut list: Vec<weft_etcd::ReplicaInfo> = last_seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|r| r.id != mine.id)
        .cloned()
        .map(|mut r| {
            r.degraded = Some(note.clone());
            r
        })
        .collect();
    list.push(mine);
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

/// The store's health as Prometheus text (`/metrics`): whether this replica has lost etcd
/// (past `--etcd-health-ms`) and since how long etcd has not answered it.
pub fn etcd_metrics(etcd: &Arc<weft_etcd::EtcdStore>) -> weft_telemetry_plane::MetricsText {
    let weak = Arc::downgrade(etcd);
    Arc::new(move || {
        let Some(etcd) = weak.upgrade() else {
            return String::new();
        };
        format!(
            "# HELP weft_etcd_degraded 1 while this replica has lost etcd past --etcd-health-ms: writes refused, SVID renewal degraded.\n\
             # TYPE weft_etcd_degraded gauge\n\
             weft_etcd_degraded {}\n\
             # HELP weft_etcd_silent_seconds Seconds since etcd last answered this replica.\n\
             # TYPE weft_etcd_silent_seconds gauge\n\
             weft_etcd_silent_seconds {:.3}\n",
            u8::from(etcd.lost_since().is_some()),
            etcd.silent_ms() as f64 / 1000.0
        )
    })
}

/// `--replica-id`, or the host name and process id; one etcd path segment either way.
pub fn replica_id(args: &ReplicaArgs) -> String {
    let id = args.replica_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "weft".into());
        format!("{host}-{}", std::process::id())
    });
    id.replace(['/', '%'], "_")
}

/// How often at most a replica rewrites its sidecars' rows: an apply's ACKs from all its
/// sidecars ride one round (the write budget: see D84).
const SIDECAR_ROWS_EVERY: Duration = Duration::from_millis(150);

/// Shares this replica's sidecars through etcd and takes the others' (see
/// `weft_xds::state::SharedSidecar`): rows under a lease of the grace period (a dead
/// replica's sidecars stay endpoints that long), rewritten at most every
/// [`SIDECAR_ROWS_EVERY`].
fn share_sidecars(
    etcd: &Arc<weft_etcd::EtcdStore>,
    id: &str,
    state: &Arc<weft_xds::XdsState>,
    grace_ms: u64,
) {
    state.set_replica(id.to_string());
    let (rows_tx, rows_rx) = tokio::sync::watch::channel(state.shared_rows());
    etcd.share(
        weft_etcd::ShareSettings {
            area: "sidecars".into(),
            replica: id.to_string(),
            // etcd grants no lease shorter than about 2 s.
            ttl_secs: i64::try_from(grace_ms.div_ceil(1000).max(2)).unwrap_or(i64::MAX),
            every: SIDECAR_ROWS_EVERY,
        },
        rows_rx,
    );
    let mut changes = state.status_changes();
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let Some(state) = weak.upgrade() else { return };
            let rows = state.shared_rows();
            drop(state);
            rows_tx.send_if_modified(|held| {
                let moved = *held != rows;
                *held = rows;
                moved
            });
            // The rows are written at most this often anyway: changes meanwhile (an apply's
            // ACKs arrive one by one, each a change) are taken in one pass over the sidecars
            // rather than one pass each.
            tokio::time::sleep(SIDECAR_ROWS_EVERY).await;
        }
    });
    let (mut rows, mut replicas) = (etcd.follow_area("sidecars"), etcd.follow_area("replicas"));
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = rows.changed() => if r.is_err() { return },
                r = replicas.changed() => if r.is_err() { return },
            }
            let Some(state) = weak.upgrade() else { return };
            let live = replicas.borrow_and_update().keys().cloned().collect();
            let rows = rows.borrow_and_update().clone();
            state.set_remote_rows(&rows, &live);
            drop(state);
            // Every row written is an event; those within this pause are taken together.
            tokio::time::sleep(REMOTE_ROWS_EVERY).await;
        }
    });
}

/// How often at most a replica takes the other replicas' sidecar rows (each pass looks at
/// every row; the others write theirs at most every [`SIDECAR_ROWS_EVERY`]).
const REMOTE_ROWS_EVERY: Duration = Duration::from_millis(50);

/// How often a replica shares its telemetry edges (at most; only edges that changed).
const TELEMETRY_ROWS_EVERY: Duration = Duration::from_secs(1);

/// Shares this replica's telemetry edges through etcd and merges the others' (see
/// `weft_telemetry_plane::shared`): every replica's graph shows every replica's batches.
pub fn share_telemetry(
    etcd: &Arc<weft_etcd::EtcdStore>,
    args: &ReplicaArgs,
    telemetry: &Arc<weft_telemetry_plane::Telemetry>,
) {
    let id = replica_id(args);
    let now = weft_etcd::now_unix_ms;
    let (rows_tx, rows_rx) = tokio::sync::watch::channel(telemetry.shared_rows(now()));
    etcd.share(
        weft_etcd::ShareSettings {
            area: "telemetry".into(),
            replica: id.clone(),
            // A dead replica's counts stay in the others' graphs for the window shared.
            ttl_secs: i64::try_from(weft_telemetry_plane::shared::SHARED_WINDOW_SECS)
                .unwrap_or(300),
            every: Duration::ZERO,
        },
        rows_rx,
    );
    let weak = Arc::downgrade(telemetry);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TELEMETRY_ROWS_EVERY).await;
            let Some(telemetry) = weak.upgrade() else {
                return;
            };
            let rows = telemetry.shared_rows(now());
            rows_tx.send_if_modified(|held| {
                let moved = *held != rows;
                *held = rows;
                moved
            });
        }
    });
    let mut rows = etcd.follow_area("telemetry");
    let weak = Arc::downgrade(telemetry);
    tokio::spawn(async move {
        while rows.changed().await.is_ok() {
            let Some(telemetry) = weak.upgrade() else {
                return;
            };
            let held = rows.borrow_and_update().clone();
            telemetry.set_remote_rows(&id, &held);
        }
    });
}

/// Sidecars with an open xDS stream to this replica (the list holds the others' too).
fn connected(state: &weft_xds::XdsState, id: &str) -> usize {
    state
        .sidecars()
        .iter()
        .filter(|s| s.connected && s.replica.as_deref().is_none_or(|r| r == id))
        .count()
}

/// `weft status`: the replicas registered in etcd, after the sidecars; nothing for a server on
/// the file store (404).
pub fn print_replicas(
    client: &crate::client::Client,
    format: crate::output::Output,
) -> Result<(), crate::client::Failure> {
    let body = match client.get("/api/v1/replicas") {
        Ok(body) => body,
        Err(f) if f.exit == crate::Exit::NotFound => return Ok(()),
        Err(f) => {
            eprintln!("replicas unavailable: {}", f.message);
            return Ok(());
        }
    };
    let list: Vec<weft_etcd::ReplicaInfo> = crate::client::decode(&body)?;
    crate::output::print(format, &body, |_| {
        let now = weft_etcd::now_unix_ms();
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.api.clone(),
                    r.xds.clone().unwrap_or_else(|| "-".into()),
                    r.policy_version.to_string(),
                    r.etcd_revision.to_string(),
                    r.streams.to_string(),
                    format!("{} ms", now.saturating_sub(r.updated_unix_ms)),
                    r.degraded.clone().unwrap_or_else(|| "ok".into()),
                ]
            })
            .collect();
        format!("replicas: {}\n", list.len())
            + &crate::output::table(
                &[
                    "REPLICA",
                    "API",
                    "XDS",
                    "VERSION",
                    "ETCD REVISION",
                    "STREAMS",
                    "SEEN",
                    "HEALTH",
                ],
                &rows,
            )
    });
    Ok(())
}
