//! The background task of every replica: watch `<prefix>/policy/head`, probe etcd each
//! [`PROBE_INTERVAL`](crate::PROBE_INTERVAL), publish the latest version seen and the time of
//! etcd's last answer.

use crate::now_unix_ms;
use etcd_client::{Client, EventType, WatchStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What the task records of etcd's answers.
pub(crate) struct Seen {
    /// Unix ms of the last answer.
    pub last_ok: Arc<AtomicU64>,
    /// The etcd revision in it.
    pub revision: Arc<AtomicI64>,
}

impl Seen {
    fn answered(&self, header: Option<&etcd_client::ResponseHeader>) {
        self.last_ok.store(now_unix_ms(), Ordering::Relaxed);
        if let Some(h) = header {
            self.revision.fetch_max(h.revision(), Ordering::Relaxed);
        }
    }
}

fn version_of(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Runs until every receiver of `tx` is gone.
pub(crate) async fn follow(
    mut client: Client,
    head: String,
    seen: Seen,
    tx: tokio::sync::watch::Sender<u64>,
) {
    let mut stream: Option<WatchStream> = None;
    let mut probe = tokio::time::interval(crate::PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publish = |version: u64| {
        tx.send_if_modified(|seen| {
            let moved = *seen != version;
            *seen = version;
            moved
        });
    };
    loop {
        if tx.is_closed() {
            return;
        }
        let event = async {
            match stream.as_mut() {
                Some(s) => Some(s.message().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = event => match message {
                Some(Ok(Some(response))) => {
                    seen.answered(response.header());
                    for e in response.events() {
                        if e.event_type() == EventType::Put {
                            if let Some(v) = e.kv().and_then(|kv| version_of(kv.value())) {
                                publish(v);
                            }
                        }
                    }
                }
                other => {
                    if let Some(Err(error)) = other {
                        tracing::warn!(%error, "etcd watch ended; probing and re-watching");
                    }
                    stream = None;
                }
            },
            _ = probe.tick() => {
                let got = tokio::time::timeout(crate::PROBE_INTERVAL * 2, client.get(head.clone(), None)).await;
                match got {
                    Ok(Ok(response)) => {
                        seen.answered(response.header());
                        let version = response
                            .kvs()
                            .first()
                            .and_then(|kv| version_of(kv.value()))
                            .unwrap_or(0);
                        publish(version);
                        if stream.is_none() {
                            stream = client.watch(head.clone(), None).await.ok();
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "etcd probe failed"),
                    Err(_) => tracing::debug!("etcd probe timed out"),
                }
            }
        }
    }
}
