//! The VM's [`CounterBatch`] (D106): a module that opts in with [`batch_counters`] has its
//! counter increments summed while other requests are in flight on its worker, and handed to
//! Envoy when the last of them ends ([`request_ended`]), when the batch is full, and on the
//! root's tick ([`flush_counters`]). A module that does not opt in sends every increment.

use proxy_wasm::hostcalls;
use std::cell::{Cell, RefCell};
use weft_filter_core::host::{Add, CounterBatch, MetricId, MetricKind};

thread_local! {
    /// One VM runs on one worker thread: this is that worker's batch.
    static BATCH: RefCell<CounterBatch> = RefCell::new(CounterBatch::default());
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// From the module's start: hold counter increments from now on.
pub fn batch_counters() {
    BATCHING.with(|on| on.set(true));
}

/// The host defined metric `id` of `kind`.
pub(crate) fn defined(kind: MetricKind, id: MetricId) {
    BATCH.with(|batch| batch.borrow_mut().defined(kind, id));
}

/// An increment of metric `id`: held, or sent now.
pub(crate) fn increment(id: MetricId, delta: i64) {
    let add = if BATCHING.with(Cell::get) {
        BATCH.with(|batch| batch.borrow_mut().add(id, delta))
    } else {
        Add::Send
    };
    match add {
        Add::Send => send(id, delta),
        Add::Held => {}
        Add::Drain => flush_counters(),
    }
}

/// A request (HTTP context) began on this worker.
pub fn request_began() {
    BATCH.with(|batch| batch.borrow_mut().request_began());
}

/// A request (HTTP context) ended on this worker: the last one in flight hands the held
/// increments over.
pub fn request_ended() {
    if BATCH.with(|batch| batch.borrow_mut().request_ended()) {
        flush_counters();
    }
}

/// Hand every held increment to Envoy now (the root's tick, a retiring root).
pub fn flush_counters() {
    BATCH.with(|batch| {
        for (id, sum) in batch.borrow_mut().drain() {
            send(id, sum);
        }
    });
}

fn send(id: MetricId, delta: i64) {
    if let Err(status) = hostcalls::increment_metric(id, delta) {
        log::debug!("weft: cannot increment metric {id}: {status:?}");
    }
}
