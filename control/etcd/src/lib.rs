//! weft's replicated store: [`EtcdStore`], the [`Store`] trait on etcd v3.
//!
//! Every `weft serve --store etcd` replica holds the same keys under one prefix:
//!
//! ```text
//! <prefix>/policy/head                 the latest version, decimal
//! <prefix>/policy/versions/<20 digits>  each version's record (JSON, the file store's Record)
//! <prefix>/replicas/<id>               each live replica (under its lease, see `replicas`)
//! <prefix>/<area>/<id>/<name>          rows replica <id> shares (under its lease, see `shared`):
//!                                      area `sidecars` (status and endpoint of each of its
//!                                      sidecars), `telemetry` (its edge counts)
//! ```
//!
//! An append is one etcd transaction: *if* `head` still holds the version the change was
//! computed from (or does not exist, for version 1), put the record and move `head`;
//! otherwise read `head` and answer [`StoreError::Conflict`] naming both versions. So two
//! replicas applying at once cannot both win, and no acknowledged version is overwritten.
//!
//! A background task on the store's own runtime ([`EtcdStore::versions`]) watches `head` and
//! probes etcd every second: the version it publishes is what each replica's control plane
//! catches up to, and the time of the last answer is what [`Store::health`] judges.
//!
//! The trait is synchronous (the control plane calls it from `spawn_blocking`); each call runs
//! on the store's own small runtime with a deadline, so a call never needs a worker of the
//! caller's runtime, and an unreachable etcd fails a call with [`StoreError::Unavailable`]
//! after the deadline instead of hanging.
#![forbid(unsafe_code)]

mod replicas;
mod settings;
mod shared;
mod state_docs;
mod watch;

pub use replicas::{ReplicaInfo, ReplicaReport, REPLICA_TTL_SECS};
pub use settings::{EtcdSettings, EtcdTls};
pub use shared::{Rows, ShareSettings};

use etcd_client::{Client, Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_store::{NewRecord, Record, RecordSummary, Store, StoreError};

/// The [`Store`] on etcd; see the crate documentation.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    settings: EtcdSettings,
    runtime: Option<tokio::runtime::Runtime>,
    /// Unix ms of etcd's last answer (any call, the watch or the probe).
    last_ok: Arc<AtomicU64>,
    /// The etcd revision of the watch's or probe's last answer.
    revision: Arc<AtomicI64>,
    versions: tokio::sync::watch::Receiver<u64>,
}

#[derive(Debug, Clone)]
struct Keys {
    head: String,
    versions: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Self {
            head: format!("{prefix}/policy/head"),
            versions: format!("{prefix}/policy/versions/"),
        }
    }

    fn version(&self, version: u64) -> String {
        format!("{}{version:020}", self.versions)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unavailable(settings: &EtcdSettings, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "etcd at {} did not answer: {e}",
        settings.endpoints.join(",")
    ))
}

fn parse_version(key: &str, value: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| StoreError::BadRecord {
            key: key.to_string(),
            reason: "not a decimal version".into(),
        })
}

fn decode(key: &str, value: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::BadRecord {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// [`decode`], refusing a record that is not the version its key names.
fn decode_at(keys: &Keys, key: &[u8], value: &[u8]) -> Result<Record, StoreError> {
    let key = String::from_utf8_lossy(key);
    let record = decode(&key, value)?;
    if keys.version(record.version) != key {
        return Err(StoreError::BadRecord {
            key: key.into_owned(),
            reason: format!("holds version {}", record.version),
        });
    }
    Ok(record)
}

impl EtcdStore {
    /// Connects (lazily: the first call reaches etcd) and starts the version watch.
    pub fn connect(settings: EtcdSettings) -> Result<Self, StoreError> {
        if settings.endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoint given (--etcd-endpoints)".into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start the etcd runtime: {e}")))?;
        let options = settings.connect_options()?;
        let endpoints = settings.endpoints.clone();
        let client = runtime
            .block_on(Client::connect(endpoints, Some(options)))
            .map_err(|e| unavailable(&settings, e))?;
        let keys = Keys::new(&settings.prefix);
        let last_ok = Arc::new(AtomicU64::new(now_unix_ms()));
        let revision = Arc::new(AtomicI64::new(0));
        let (tx, versions) = tokio::sync::watch::channel(0);
        runtime.spawn(watch::follow(
            client.clone(),
            keys.head.clone(),
            watch::Seen {
                last_ok: Arc::clone(&last_ok),
                revision: Arc::clone(&revision),
            },
            tx,
        ));
        Ok(Self {
            client,
            keys,
            settings,
            runtime: Some(runtime),
            last_ok,
            revision,
            versions,
        })
    }

    /// The latest version etcd reported (watch or probe); changes when any replica appends.
    pub fn versions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.versions.clone()
    }

    /// The etcd revision of the last answer the watch or the probe got.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    /// Milliseconds since etcd last answered this replica (any call, the watch or the probe).
    pub fn silent_ms(&self) -> u64 {
        now_unix_ms().saturating_sub(self.last_ok.load(Ordering::Relaxed))
    }

    /// Unix ms of etcd's last answer, once it is older than the health bound (this replica
    /// has lost etcd); `None` while etcd answers within it.
    pub fn lost_since(&self) -> Option<u64> {
        let bound = self.settings.health_bound;
        (u128::from(self.silent_ms()) > bound.as_millis())
            .then(|| self.last_ok.load(Ordering::Relaxed))
    }

    /// What losing etcd means for this replica, in words (`/healthz`, `weft status`), once
    /// etcd has not answered for longer than the health bound; `None` while it answers.
    pub fn degraded(&self) -> Option<String> {
        let since = self.lost_since()?;
        // No endpoints here: `/healthz` is open to anyone who reaches the API, and the etcd
        // addresses are the operator's business (they are in the log).
        Some(format!(
            "etcd unreachable since {} ({} s; bound {} ms): writes refused, SVID renewal degraded \
             (SVIDs renewed from the roots held; rotations and revocations made through other \
             replicas not seen, new join tokens not verified)",
            weft_store::time::rfc3339(since),
            now_unix_ms().saturating_sub(since) / 1000,
            self.settings.health_bound.as_millis()
        ))
    }

    /// Runs `f(client)` on the store's runtime within the call deadline, blocking this thread.
    /// A request that never left (no connection to the member the client picked: that
    /// member is down) is tried again, on another member, until the deadline.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Unavailable("the etcd store is closed".into()));
        };
        let deadline = self.settings.timeout;
        let client = self.client.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let attempts = async {
                loop {
                    match f(client.clone()).await {
                        Err(e) if never_sent(&e) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        done => return done,
                    }
                }
            };
            let _ = tx.send(tokio::time::timeout(deadline, attempts).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(value))) => {
                self.last_ok.store(now_unix_ms(), Ordering::Relaxed);
                Ok(value)
            }
            Ok(Ok(Err(e))) if timed_out(&e) => Err(unavailable(
                &self.settings,
                format!("{NO_ANSWER} {} ms ({e})", deadline.as_millis()),
            )),
            Ok(Ok(Err(e))) => Err(unavailable(&self.settings, e)),
            Ok(Err(_)) => Err(unavailable(
                &self.settings,
                format!("{NO_ANSWER} {} ms", deadline.as_millis()),
            )),
            Err(_) => Err(StoreError::Unavailable("the etcd runtime stopped".into())),
        }
    }
}

/// How a call that got no answer in time is described (and recognised).
const NO_ANSWER: &str = "no answer within";

/// The client's own deadline expired on the request (it may have reached etcd).
fn timed_out(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    }
}

/// A request that failed before it reached etcd (connecting to the chosen member failed):
/// safe to send again, even a transaction.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && status.message().contains("connect")
        }
        _ => false,
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime may block; the server drops its store inside its own runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn append(&self, new: NewRecord) -> Result<Record, StoreError> {
        let parent = new.parent;
        let record = weft_store::next_record(parent, new)?;
        let body = serde_json::to_vec(&record)?;
        let head = self.keys.head.clone();
        let key = self.keys.version(record.version);
        let guard = if parent == 0 {
            Compare::create_revision(head.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(head.clone(), CompareOp::Equal, parent.to_string())
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([
                TxnOp::put(key, body, None),
                TxnOp::put(head.clone(), record.version.to_string(), None),
            ])
            .or_else([TxnOp::get(head.clone(), None)]);
        let response = self
            .run(move |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .map_err(|e| match e {
                // The transaction may have reached etcd: do not call it refused.
                StoreError::Unavailable(why) if why.contains(NO_ANSWER) => {
                    StoreError::Unconfirmed(why)
                }
                e => e,
            })?;
        if response.succeeded() {
            return Ok(record);
        }
        let mut latest = 0;
        for op in response.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    latest = parse_version(&head, kv.value())?;
                }
            }
        }
        Err(StoreError::Conflict { parent, latest })
    }

    fn latest(&self) -> Result<Option<Record>, StoreError> {
        let prefix = self.keys.versions.clone();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(1);
        let response = self.run(move |mut client| {
            let (prefix, options) = (prefix.clone(), options.clone());
            async move { client.get(prefix, Some(options)).await }
        })?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(decode_at(&self.keys, kv.key(), kv.value())?)),
            None => Ok(None),
        }
    }

    fn get(&self, version: u64) -> Result<Option<Record>, StoreError> {
        let key = self.keys.version(version);
        let response = self.run(move |mut client| {
            let key = key.clone();
            async move { client.get(key, None).await }
        })?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(decode_at(&self.keys, kv.key(), kv.value())?)),
            None => Ok(None),
        }
    }

    fn history(&self) -> Result<Vec<RecordSummary>, StoreError> {
        let prefix = self.keys.versions.clone();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let response = self.run(move |mut client| {
            let (prefix, options) = (prefix.clone(), options.clone());
            async move { client.get(prefix, Some(options)).await }
        })?;
        response
            .kvs()
            .iter()
            .map(|kv| decode_at(&self.keys, kv.key(), kv.value()).map(|r| RecordSummary::from(&r)))
            .collect()
    }

    fn head(&self) -> Result<Option<u64>, StoreError> {
        let head = self.keys.head.clone();
        let response = {
            let head = head.clone();
            self.run(move |mut client| {
                let head = head.clone();
                async move { client.get(head, None).await }
            })?
        };
        match response.kvs().first() {
            Some(kv) => parse_version(&head, kv.value()).map(Some),
            None => Ok(Some(0)),
        }
    }

    fn health(&self) -> Result<(), String> {
        match self.degraded() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// How often the background task probes etcd (and re-reads `head`, in case a watch event
/// was missed across a reconnection).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
