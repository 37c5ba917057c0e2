//! Counter increments summed in the module and handed to the host one call per counter (D106).
//!
//! In wasm every `proxy_increment_metric` is a crossing of the VM boundary (V8's wasm-to-host
//! stub and back) for an addition of one. A [`CounterBatch`] holds a worker's counter
//! increments while other requests are still in flight on it and hands the sums over when
//! the last of them ends, when [`CounterBatch::MAX_ADDS`] increments or
//! [`CounterBatch::MAX_COUNTERS`] counters are pending, and on the root's tick. So:
//!
//! - a worker that serves one request at a time (every test, any quiet sidecar) hands each
//!   request's counts to Envoy when that request ends, as before;
//! - a busy worker, with requests overlapping, makes a counter call per counter per batch
//!   instead of one per increment, and Envoy's counter lags by at most the increments of
//!   requests still in flight on that worker, [`CounterBatch::MAX_ADDS`] of them, or one tick.
//!
//! Only counters are held: gauges (set or moved) and histograms go to the host at once. A
//! module that never reports a request in flight ([`CounterBatch::request_began`]) has every
//! increment sent at once. The batch is host-free; the wasm glue keeps one per VM (one VM per
//! worker) and passes the call that sends an increment to [`CounterBatch::increment`],
//! [`CounterBatch::request_ended`] and [`CounterBatch::drain_into`].

use super::{MetricId, MetricKind};

/// A worker's held counter increments; see the module docs.
#[derive(Debug, Default)]
pub struct CounterBatch {
    /// Ids the host handed out for counters, ascending.
    counters: Vec<MetricId>,
    /// Held sums, one entry per counter.
    pending: Vec<(MetricId, i64)>,
    /// Increments held since the last drain.
    adds: u32,
    /// Requests begun and not yet ended on this worker.
    in_flight: u32,
}

/// What to do with one increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Add {
    /// Not a counter, or no request is in flight: send it to the host now.
    Send,
    /// Held.
    Held,
    /// Held, and the batch is full: drain it now.
    Drain,
}

// === impl CounterBatch ===

impl CounterBatch {
    /// Increments held at most before a drain.
    pub const MAX_ADDS: u32 = 128;
    /// Distinct counters held at most before a drain (per-policy and per-version counters
    /// are many; the batch stays small and its lookups short).
    pub const MAX_COUNTERS: usize = 32;

    /// The host defined metric `id` of `kind` (defining again returns the same id).
    pub fn defined(&mut self, kind: MetricKind, id: MetricId) {
        if kind == MetricKind::Counter {
            if let Err(at) = self.counters.binary_search(&id) {
                self.counters.insert(at, id);
            }
        }
    }

    /// A request began on this worker.
    pub fn request_began(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A request ended on this worker; the last in flight hands what is held to `send`.
    pub fn request_ended(&mut self, send: impl FnMut(MetricId, i64)) {
        if self.ended() {
            self.drain_into(send);
        }
    }

    /// An increment of metric `id`: held, or handed to `send` (with the whole batch when
    /// it is full).
    pub fn increment(&mut self, id: MetricId, delta: i64, mut send: impl FnMut(MetricId, i64)) {
        match self.add(id, delta) {
            Add::Send => send(id, delta),
            Add::Held => {}
            Add::Drain => self.drain_into(send),
        }
    }

    /// Every held sum to `send` now (the root's tick, a retiring root).
    pub fn drain_into(&mut self, mut send: impl FnMut(MetricId, i64)) {
        for (id, sum) in self.drain() {
            send(id, sum);
        }
    }

    /// Counts a request's end; true when it was the last in flight and increments are held.
    fn ended(&mut self) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight == 0 && !self.pending.is_empty()
    }

    /// Take `delta` for metric `id`, or say to send it now.
    fn add(&mut self, id: MetricId, delta: i64) -> Add {
        if self.in_flight == 0 || self.counters.binary_search(&id).is_err() {
            return Add::Send;
        }
        match self.pending.iter_mut().find(|(held, _)| *held == id) {
            Some((_, sum)) => *sum = sum.saturating_add(delta),
            None => self.pending.push((id, delta)),
        }
        self.adds = self.adds.saturating_add(1);
        if self.adds >= Self::MAX_ADDS || self.pending.len() >= Self::MAX_COUNTERS {
            Add::Drain
        } else {
            Add::Held
        }
    }

    /// The held sums (zero sums left out), emptying the batch.
    fn drain(&mut self) -> impl Iterator<Item = (MetricId, i64)> + '_ {
        self.adds = 0;
        self.pending.drain(..).filter(|(_, sum)| *sum != 0)
    }

    /// Increments held now.
    pub fn held(&self) -> u32 {
        self.adds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_with_counters(ids: &[MetricId]) -> CounterBatch {
        let mut batch = CounterBatch::default();
        for &id in ids {
            batch.defined(MetricKind::Counter, id);
        }
        batch
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn with_no_request_in_flight_every_increment_is_sent() {
        let mut batch = batch_with_counters(&[4, 8]);
        assert_eq!(batch.add(4, 1), Add::Send);
        assert_eq!(batch.held(), 0);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn gauges_histograms_and_unknown_ids_are_sent_even_under_load() {
        let mut batch = batch_with_counters(&[4]);
        batch.defined(MetricKind::Gauge, 5);
        batch.defined(MetricKind::Histogram, 6);
        batch.request_began();
        assert_eq!(batch.add(5, 1), Add::Send);
        assert_eq!(batch.add(6, 1), Add::Send);
        assert_eq!(batch.add(99, 1), Add::Send);
        assert_eq!(batch.add(4, 1), Add::Held);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn the_last_request_to_end_drains_the_sums_per_counter() {
        let mut batch = batch_with_counters(&[8, 4, 12]);
        batch.request_began();
        batch.request_began();
        assert_eq!(batch.add(4, 1), Add::Held);
        assert_eq!(batch.add(8, 2), Add::Held);
        assert_eq!(batch.add(4, 1), Add::Held);
        assert_eq!(batch.add(12, 3), Add::Held);
        assert_eq!(batch.add(12, -3), Add::Held);
        assert!(!batch.ended(), "one request is still in flight");
        assert!(batch.ended());
        let sent: Vec<_> = batch.drain().collect();
        assert_eq!(sent, vec![(4, 2), (8, 2)], "a zero sum is not sent");
        assert_eq!(batch.held(), 0);
        assert!(!batch.ended(), "nothing held, nothing to drain");
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_full_batch_asks_for_a_drain() {
        let mut batch = batch_with_counters(&[4]);
        batch.request_began();
        for _ in 1..CounterBatch::MAX_ADDS {
            assert_eq!(batch.add(4, 1), Add::Held);
        }
        assert_eq!(batch.add(4, 1), Add::Drain);
        let sent: Vec<_> = batch.drain().collect();
        assert_eq!(sent, vec![(4, i64::from(CounterBatch::MAX_ADDS))]);
        assert_eq!(batch.add(4, 1), Add::Held, "a new batch starts");
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn many_distinct_counters_ask_for_a_drain() {
        let ids: Vec<MetricId> = (0..40).map(|i| i * 4).collect();
        let mut batch = batch_with_counters(&ids);
        batch.request_began();
        let adds: Vec<Add> = ids.iter().map(|&id| batch.add(id, 1)).collect();
        let first_drain = adds.iter().position(|a| *a == Add::Drain);
        assert_eq!(first_drain, Some(CounterBatch::MAX_COUNTERS - 1));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn an_end_without_a_beginning_does_not_wrap() {
        let mut batch = batch_with_counters(&[4]);
        assert!(!batch.ended());
        assert_eq!(batch.add(4, 1), Add::Send, "still nothing in flight");
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn defining_twice_keeps_one_entry() {
        let batch = batch_with_counters(&[4, 4, 4]);
        assert_eq!(batch.counters, vec![4]);
    }
}
