//! The VM's [`CounterBatch`] (D106): counter increments are summed while other requests are
//! in flight on this worker, and handed to Envoy when the last of them ends
//! ([`request_ended`]), when the batch is full, and on the root's tick ([`flush_counters`]).
//! A module that never calls [`request_began`] (the single filters) sends every increment.

use proxy_wasm::hostcalls;
use std::cell::RefCell;
use weft_filter_core::host::{CounterBatch, MetricId, MetricKind};

thread_local! {
    /// One VM runs on one worker thread: this is that worker's batch.
    static BATCH: RefCell<CounterBatch> = RefCell::new(CounterBatch::default());
}

/// The host defined metric `id` of `kind`.
pub(crate) fn defined(kind: MetricKind, id: MetricId) {
    BATCH.with(|batch| batch.borrow_mut().defined(kind, id));
}

/// An increment of metric `id`: held, or sent now.
pub(crate) fn increment(id: MetricId, delta: i64) {
    BATCH.with(|batch| batch.borrow_mut().increment(id, delta, send));
}

/// A request (HTTP context) began on this worker.
pub fn request_began() {
    BATCH.with(|batch| batch.borrow_mut().request_began());
}

/// A request (HTTP context) ended on this worker: the last one in flight hands the held
/// increments over.
pub fn request_ended() {
    BATCH.with(|batch| batch.borrow_mut().request_ended(send));
}

/// Hand every held increment to Envoy now (the root's tick, a retiring root).
pub fn flush_counters() {
    BATCH.with(|batch| batch.borrow_mut().drain_into(send));
}

/// `proxy_increment_metric` never calls back into the module, so it runs inside the borrow.
fn send(id: MetricId, delta: i64) {
    if let Err(status) = hostcalls::increment_metric(id, delta) {
        log::debug!("weft: cannot increment metric {id}: {status:?}");
    }
}
