//! [`SharedState`] on etcd: documents and entry directories under `<prefix>/state/`
//! (the CA's roots with sealed keys, the sealed token secret, token records, operators, the
//! audit log). A write is a transaction comparing the key's `mod_revision` with the one the
//! writer read (0: the key must not exist), so concurrent writers through two replicas
//! cannot both win. [`EtcdStore::state_changes`] follows every change under the prefix, for
//! the replicas' reloads.

use crate::{now_unix_ms, EtcdStore};
use etcd_client::{Compare, CompareOp, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use std::time::Duration;
use weft_store::{SharedState, StoreError, Versioned};

impl EtcdStore {
    fn state_prefix(&self) -> String {
        format!("{}/state/", self.settings.prefix.trim_end_matches('/'))
    }

    fn state_key(&self, name: &str) -> String {
        format!("{}{name}", self.state_prefix())
    }

    /// Changes (to the etcd revision seen) whenever anything under `<prefix>/state/`
    /// changes, whichever replica wrote it; a missed event across a reconnection is made up
    /// by the readers' own periodic reload.
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<i64> {
        let (tx, rx) = tokio::sync::watch::channel(0);
        if let Some(runtime) = &self.runtime {
            runtime.spawn(watch_state(self.client.clone(), self.state_prefix(), tx));
        }
        rx
    }
}

async fn watch_state(
    mut client: etcd_client::Client,
    prefix: String,
    tx: tokio::sync::watch::Sender<i64>,
) {
    let pause = Duration::from_secs(1);
    while !tx.is_closed() {
        let options = etcd_client::WatchOptions::new().with_prefix();
        let Ok(mut stream) = client.watch(prefix.clone(), Some(options)).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        // Reconnected: whatever changed meanwhile is read again.
        tx.send_modify(|seen| *seen = seen.wrapping_add(1));
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                () = tx.closed() => return,
            };
            match message {
                Ok(Some(response)) => {
                    // Audit entries are only ever listed on demand: appending one must not
                    // make every replica reload the CA, tokens and operators.
                    let audit = format!("{prefix}audit/");
                    let changed = response.events().iter().any(|e| {
                        matches!(e.event_type(), EventType::Put | EventType::Delete)
                            && e.kv()
                                .is_some_and(|kv| !kv.key().starts_with(audit.as_bytes()))
                    });
                    if changed {
                        let revision = response.header().map_or(0, |h| h.revision());
                        tx.send_modify(|seen| *seen = revision.max(seen.wrapping_add(1)));
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        tokio::time::sleep(pause).await;
    }
}

impl SharedState for EtcdStore {
    fn read(&self, name: &str) -> Result<Option<Versioned>, StoreError> {
        let key = self.state_key(name);
        let response = self.run(move |mut client| {
            let key = key.clone();
            async move { client.get(key, None).await }
        })?;
        Ok(response.kvs().first().map(|kv| Versioned {
            bytes: kv.value().to_vec(),
            revision: kv.mod_revision(),
        }))
    }

    fn write(&self, name: &str, bytes: Vec<u8>, expected: i64) -> Result<Option<i64>, StoreError> {
        let key = self.state_key(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::put(key, bytes, None)]);
        let response = self.run(move |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })?;
        if !response.succeeded() {
            return Ok(None);
        }
        // The transaction's revision is the key's new mod_revision.
        Ok(Some(response.header().map_or(0, |h| h.revision())))
    }

    fn list(&self, dir: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = self.state_key(&format!("{dir}/"));
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let response = {
            let prefix = prefix.clone();
            self.run(move |mut client| {
                let (prefix, options) = (prefix.clone(), options.clone());
                async move { client.get(prefix, Some(options)).await }
            })?
        };
        let mut entries: Vec<(String, Vec<u8>)> = response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let name = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
                (name, kv.value().to_vec())
            })
            .collect();
        entries.reverse();
        Ok(entries)
    }

    fn append(&self, dir: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        // Time first (entries of all replicas sort by time), then randomness so two
        // replicas appending in the same millisecond never collide; create-only.
        let unique = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
            h.finish()
        };
        let name = format!("{dir}/{:020}-{unique:016x}", now_unix_ms());
        match self.write(&name, bytes, 0)? {
            Some(_) => Ok(()),
            None => Err(StoreError::BadRecord {
                key: self.state_key(&name),
                reason: "an entry with this key exists".into(),
            }),
        }
    }

    fn describe(&self, name: &str) -> String {
        format!("etcd key {}", self.state_key(name))
    }
}
