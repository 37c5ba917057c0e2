//! Replica registration: each replica keeps `<prefix>/replicas/<id>` (what it serves, the
//! policy version it publishes, the etcd revision it has seen, its xDS streams) under an etcd
//! lease it keeps alive; a replica that dies or loses etcd disappears from the list within
//! the lease's TTL. `weft status` lists them (`GET /api/v1/replicas`).

use crate::{now_unix_ms, EtcdStore};
use etcd_client::{Client, GetOptions, PutOptions};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_store::StoreError;

/// Seconds a registration outlives its replica's last keep-alive.
pub const REPLICA_TTL_SECS: i64 = 5;

/// One replica, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInfo {
    /// Unique per running replica (host name and process id unless `--replica-id`).
    pub id: String,
    /// Its REST API's base URL.
    pub api: String,
    /// Its xDS listener's address, when it serves xDS.
    pub xds: Option<String>,
    /// The policy version it publishes to its sidecars.
    pub policy_version: u64,
    /// The etcd revision of its last answer from etcd.
    pub etcd_revision: i64,
    /// Sidecars connected to it now.
    pub streams: usize,
    /// When it last wrote this (Unix ms).
    pub updated_unix_ms: u64,
    /// Set while the replica answering has lost etcd (past its health bound): what that
    /// means, in words, on its own entry ("etcd unreachable since …: writes refused, SVID
    /// renewal degraded"), and on the others' (known only as last seen). Never written to
    /// etcd: a replica without etcd cannot write its registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// What a replica says about itself, asked once per refresh.
pub type ReplicaReport = Arc<dyn Fn() -> ReplicaInfo + Send + Sync>;

impl EtcdStore {
    fn replicas_prefix(&self) -> String {
        format!("{}/replicas/", self.settings.prefix.trim_end_matches('/'))
    }

    /// Registers this replica (see the module documentation); runs on the store's runtime
    /// until the store is dropped.
    pub fn register(&self, report: ReplicaReport) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let id = report().id;
        let key = format!("{}{id}", self.replicas_prefix());
        runtime.spawn(keep_registered(
            self.client.clone(),
            key,
            report,
            Arc::clone(&self.revision),
        ));
    }

    /// Every registered replica, by id.
    pub fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError> {
        let prefix = self.replicas_prefix();
        let response = self.run(move |mut client| {
            let prefix = prefix.clone();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })?;
        response
            .kvs()
            .iter()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| StoreError::BadRecord {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

async fn keep_registered(
    mut client: Client,
    key: String,
    report: ReplicaReport,
    revision: Arc<AtomicI64>,
) {
    let pause = Duration::from_secs(1);
    loop {
        let lease = match client.lease_grant(REPLICA_TTL_SECS, None).await {
            Ok(lease) => lease.id(),
            Err(error) => {
                tracing::debug!(%error, "cannot register this replica in etcd yet");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        loop {
            let mut info = report();
            info.etcd_revision = revision.load(Ordering::Relaxed);
            info.updated_unix_ms = now_unix_ms();
            let Ok(body) = serde_json::to_vec(&info) else {
                return;
            };
            let put = PutOptions::new().with_lease(lease);
            if client.put(key.clone(), body, Some(put)).await.is_err() {
                break;
            }
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(2 * pause, answers.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                _ => break,
            }
            tokio::time::sleep(pause).await;
        }
        tokio::time::sleep(pause).await;
    }
}
