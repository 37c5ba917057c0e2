//! Rows each replica shares with the others: `<prefix>/<area>/<replica>/<name>`, written by
//! that replica only, under a lease of its own, and read by every replica through one watch
//! of `<prefix>/<area>/`.
//!
//! A replica writes only keys under its own id, so no two replicas ever write the same key
//! and no write needs a compare: readers merge the rows (a sidecar that moved has a row
//! under each replica it was connected to, and the reader keeps the connected, newest one).
//! Writes are coalesced: at most one round per `every`, carrying every row that changed
//! since the last round, in transactions of [`TXN_OPS`] operations. A replica that dies
//! leaves its rows until its lease lapses: that TTL is the grace other replicas get.

use crate::{now_unix_ms, EtcdStore};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use weft_store::StoreError;

/// Rows by name (this replica's) or by `<replica>/<name>` (everyone's).
pub type Rows = BTreeMap<String, Vec<u8>>;

/// etcd refuses a transaction of more than 128 operations (`--max-txn-ops`).
const TXN_OPS: usize = 100;
/// Pause after a failed round or a lost watch before trying again.
const RETRY: Duration = Duration::from_millis(500);

/// How one area is shared: see the module documentation.
#[derive(Debug, Clone)]
pub struct ShareSettings {
    /// The area under the prefix (`sidecars`, `telemetry`).
    pub area: String,
    /// This replica's id (one path segment).
    pub replica: String,
    /// The lease's TTL: how long rows outlive their replica's last keep-alive.
    pub ttl_secs: i64,
    /// At most one write round per this much time.
    pub every: Duration,
}

impl EtcdStore {
    fn area_prefix(&self, area: &str) -> String {
        format!("{}/{area}/", self.settings.prefix.trim_end_matches('/'))
    }

    /// Keeps `mine` (this replica's rows) in etcd (see the module documentation); runs on the
    /// store's runtime until `mine`'s sender is dropped.
    pub fn share(&self, settings: ShareSettings, mine: watch::Receiver<Rows>) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let prefix = format!("{}{}/", self.area_prefix(&settings.area), settings.replica);
        runtime.spawn(keep_shared(self.client.clone(), prefix, settings, mine));
    }

    fn legacy_secret_key(&self, name: &str) -> String {
        format!(
            "{}/secrets/{name}",
            self.settings.prefix.trim_end_matches('/')
        )
    }

    /// A secret an older version kept in clear at `<prefix>/secrets/<name>` (32 bytes in
    /// hex), with its revision, for [`EtcdStore::forget_legacy_secret`]; `None` when absent.
    /// Secrets are kept sealed under `<prefix>/state/secrets/` now (`weft_ca::secrets`).
    pub fn legacy_secret(&self, name: &str) -> Result<Option<([u8; 32], i64)>, StoreError> {
        let key = self.legacy_secret_key(name);
        let got = {
            let key = key.clone();
            self.run(move |mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })?
        };
        let Some(kv) = got.kvs().first() else {
            return Ok(None);
        };
        let secret = decode_hex(kv.value())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| StoreError::BadRecord {
                key,
                reason: "not 32 bytes in hex".into(),
            })?;
        Ok(Some((secret, kv.mod_revision())))
    }

    /// Deletes the clear secret [`EtcdStore::legacy_secret`] read, if it is still the value
    /// read at `revision` (another replica may have removed it first: fine).
    pub fn forget_legacy_secret(&self, name: &str, revision: i64) -> Result<(), StoreError> {
        let key = self.legacy_secret_key(name);
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then(vec![TxnOp::delete(key, None)]);
        self.run(move |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })?;
        Ok(())
    }

    /// Every replica's rows of `area`, by `<replica>/<name>`, as etcd holds them (a get, then
    /// a watch from its revision; again after a lost watch).
    pub fn follow_area(&self, area: &str) -> watch::Receiver<Rows> {
        let (tx, rx) = watch::channel(Rows::new());
        if let Some(runtime) = &self.runtime {
            runtime.spawn(follow_rows(self.client.clone(), self.area_prefix(area), tx));
        }
        rx
    }
}

async fn keep_shared(
    mut client: Client,
    prefix: String,
    settings: ShareSettings,
    mut mine: watch::Receiver<Rows>,
) {
    loop {
        let Ok(lease) = client.lease_grant(settings.ttl_secs, None).await else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let lease = lease.id();
        let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        // What etcd holds under this lease; a new lease starts from nothing.
        let mut written = Rows::new();
        let keep_every =
            Duration::from_millis(u64::try_from(settings.ttl_secs.max(1)).unwrap_or(1) * 1000 / 3);
        let mut kept = now_unix_ms();
        mine.mark_changed();
        loop {
            tokio::select! {
                changed = mine.changed() => {
                    if changed.is_err() {
                        let _ = client.lease_revoke(lease).await;
                        return;
                    }
                    tokio::time::sleep(settings.every).await;
                    let rows = mine.borrow_and_update().clone();
                    if let Err(error) = write_round(&mut client, &prefix, lease, &mut written, rows).await {
                        tracing::debug!(%error, area = %settings.area, "sharing rows in etcd failed; retrying");
                        mine.mark_changed();
                        tokio::time::sleep(RETRY).await;
                    }
                }
                () = tokio::time::sleep(keep_every) => {}
            }
            if now_unix_ms().saturating_sub(kept)
                >= u64::try_from(keep_every.as_millis()).unwrap_or(1000)
            {
                let alive = keeper.keep_alive().await.is_ok()
                    && matches!(
                        tokio::time::timeout(keep_every, answers.message()).await,
                        Ok(Ok(Some(answer))) if answer.ttl() > 0
                    );
                if !alive {
                    tracing::warn!(area = %settings.area, "lost the etcd lease of this replica's rows; writing them again under a new one");
                    break;
                }
                kept = now_unix_ms();
            }
        }
    }
}

/// Puts what changed and deletes what went, in transactions of [`TXN_OPS`]; `written` follows
/// what etcd acknowledged.
async fn write_round(
    client: &mut Client,
    prefix: &str,
    lease: i64,
    written: &mut Rows,
    rows: Rows,
) -> Result<(), etcd_client::Error> {
    let mut ops: Vec<(String, Option<Vec<u8>>)> = rows
        .iter()
        .filter(|(name, body)| written.get(*name) != Some(*body))
        .map(|(name, body)| (name.clone(), Some(body.clone())))
        .collect();
    ops.extend(
        written
            .keys()
            .filter(|name| !rows.contains_key(*name))
            .map(|name| (name.clone(), None)),
    );
    for chunk in ops.chunks(TXN_OPS) {
        let txn_ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(name, body)| match body {
                Some(body) => TxnOp::put(
                    format!("{prefix}{name}"),
                    body.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                None => TxnOp::delete(format!("{prefix}{name}"), None),
            })
            .collect();
        client.txn(Txn::new().and_then(txn_ops)).await?;
        for (name, body) in chunk {
            match body {
                Some(body) => written.insert(name.clone(), body.clone()),
                None => written.remove(name),
            };
        }
    }
    Ok(())
}

async fn follow_rows(mut client: Client, prefix: String, tx: watch::Sender<Rows>) {
    let name_of = |key: &[u8]| {
        String::from_utf8_lossy(key)
            .strip_prefix(prefix.as_str())
            .map(str::to_string)
    };
    while !tx.is_closed() {
        let Ok(got) = client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
        else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let revision = got.header().map_or(0, |h| h.revision());
        let mut rows: Rows = got
            .kvs()
            .iter()
            .filter_map(|kv| Some((name_of(kv.key())?, kv.value().to_vec())))
            .collect();
        tx.send_replace(rows.clone());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let Ok(mut stream) = client.watch(prefix.clone(), Some(options)).await else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() {
                break;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Some(name) = name_of(kv.key()) else {
                    continue;
                };
                match event.event_type() {
                    EventType::Put => rows.insert(name, kv.value().to_vec()),
                    EventType::Delete => rows.remove(&name),
                };
            }
            tx.send_replace(rows.clone());
            if tx.is_closed() {
                return;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
