//! What the simulated sidecars saw: how many are ready, and for the apply in flight, when each
//! one received and ACKed the filter configuration carrying its marker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use tokio::sync::Notify;

/// One apply being timed: the marker text only its policy contains.
pub struct Expectation {
    id: u64,
    marker: Vec<u8>,
    start: Instant,
    latencies: Mutex<Vec<Duration>>,
}

impl Expectation {
    /// The times from `start` to each stream's ACK, in arrival order.
    pub fn latencies(&self) -> Vec<Duration> {
        self.latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Shared by every stream of a fleet.
#[derive(Default)]
pub struct Tracker {
    ready: AtomicUsize,
    failed: AtomicUsize,
    first_failure: Mutex<Option<String>>,
    expectation: RwLock<Option<Arc<Expectation>>>,
    changed: Notify,
}

impl Tracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn stream_ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn stream_failed(&self, error: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert_with(|| error.to_string());
        drop(first);
        self.changed.notify_waiters();
    }

    /// Streams that ACKed their first filter configuration.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    /// Streams that ended with an error, and the first error.
    pub fn failures(&self) -> (usize, Option<String>) {
        let first = self
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.failed.load(Ordering::Relaxed), first)
    }

    /// Starts timing apply `id`: from now, a stream that receives a filter configuration
    /// containing `marker` records the time once it has queued the ACK.
    pub fn expect(&self, id: u64, marker: &str) -> Arc<Expectation> {
        let expectation = Arc::new(Expectation {
            id,
            marker: marker.as_bytes().to_vec(),
            start: Instant::now(),
            latencies: Mutex::new(Vec::new()),
        });
        *self
            .expectation
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&expectation));
        expectation
    }

    /// Called by a stream after ACKing an ECDS response; `seen` is the last apply it observed.
    pub(crate) fn observe(&self, response: &DiscoveryResponse, seen: &mut u64) {
        self.observe_bodies(response.resources.iter().map(|a| a.value.as_slice()), seen);
    }

    /// [`Tracker::observe`] for the resource bodies of any response (SotW or delta).
    pub(crate) fn observe_bodies<'a>(
        &self,
        mut bodies: impl Iterator<Item = &'a [u8]>,
        seen: &mut u64,
    ) {
        let Some(expectation) = self
            .expectation
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        if expectation.id <= *seen {
            return;
        }
        let finder = memchr::memmem::Finder::new(&expectation.marker);
        if bodies.any(|body| finder.find(body).is_some()) {
            *seen = expectation.id;
            let elapsed = expectation.start.elapsed();
            expectation
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(elapsed);
            self.changed.notify_waiters();
        }
    }

    /// Waits until `want` streams are ready, a stream fails, or `timeout` passes.
    pub async fn wait_ready(&self, want: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait(timeout, || self.ready() >= want)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: {} of {want} streams ready", self.ready()))
    }

    /// Waits until `want` streams observed `expectation`.
    pub async fn wait_observed(
        &self,
        expectation: &Expectation,
        want: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let count = || {
            expectation
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        };
        self.wait(timeout, || count() >= want).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}: apply {} observed by {} of {want} streams",
                expectation.id,
                count()
            )
        })?;
        Ok(expectation.latencies())
    }

    async fn wait(&self, timeout: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if done() {
                return Ok(());
            }
            if let (failed @ 1.., Some(first)) = self.failures() {
                anyhow::bail!("{failed} stream(s) failed, the first with: {first}");
            }
            // `notified` was created before the check, so no notification is lost; the tick
            // only re-checks the failure count now and then.
            let tick = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                () = notified => {}
                () = tick => {}
                () = tokio::time::sleep_until(deadline) => anyhow::bail!("timed out after {timeout:?}"),
            }
        }
    }
}
