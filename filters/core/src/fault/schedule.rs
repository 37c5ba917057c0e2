//! Due-time bookkeeping for requests paused until a later tick.
//!
//! proxy-wasm has no per-request timer: a filter pauses the request, remembers
//! `(context_id, due_ms)` in its root context, and on every root tick resumes whatever is
//! due. This is that pending set, with time passed in, so due times and cancellation are
//! tested without a host. `weft_proxy_glue::TickScheduler` drives it with hostcalls; any
//! filter that delays requests can use the pair.

/// Shortest tick: Envoy's timers have millisecond resolution.
pub const MIN_TICK_MS: u64 = 1;
/// Longest tick, however long the delays: keeps a delay's overshoot small in absolute terms.
pub const MAX_TICK_MS: u64 = 50;
/// A tick is at most 1/`TICK_DIVISOR` of the shortest delay, so it overshoots by <= 5 %.
pub const TICK_DIVISOR: u64 = 20;

/// The tick period for a set of delays (each the shortest a source can ask for), or
/// `None` when there are none: no delay configured, no tick at all.
///
/// A delay is resumed on the first tick at or after its due time, so it lasts between
/// the delay and the delay plus one tick (plus the host's own timer latency).
pub fn tick_period_ms(shortest_delays_ms: impl IntoIterator<Item = u64>) -> Option<u64> {
    shortest_delays_ms
        .into_iter()
        .min()
        .map(|shortest| (shortest / TICK_DIVISOR).clamp(MIN_TICK_MS, MAX_TICK_MS))
}

/// Requests waiting for their due time, keyed by context id, each with a payload saying
/// what to do when it is due (resume, or e.g. answer with an abort after the delay).
#[derive(Debug, Clone)]
pub struct DelaySchedule<T> {
    // A few hundred entries at most (bounded by a concurrency cap): a vector scanned once
    // per tick beats a heap that would also need removal by id for cancellation.
    entries: Vec<Entry<T>>,
    next_seq: u64,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    context_id: u32,
    due_ms: u64,
    // Ties on due time resume in the order they were paused.
    seq: u64,
    payload: T,
}

impl<T> Default for DelaySchedule<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            next_seq: 0,
        }
    }
}

// === impl DelaySchedule ===

impl<T> DelaySchedule<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pause `context_id` until `now_ms + delay_ms`. Pausing a context already pending
    /// replaces its entry (a context is paused at most once at a time).
    pub fn pause(&mut self, context_id: u32, now_ms: u64, delay_ms: u64, payload: T) -> u64 {
        let due_ms = now_ms.saturating_add(delay_ms);
        self.entries.retain(|e| e.context_id != context_id);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.entries.push(Entry {
            context_id,
            due_ms,
            seq,
            payload,
        });
        due_ms
    }

    /// Forget `context_id` (its client went away); its payload if it was pending.
    pub fn cancel(&mut self, context_id: u32) -> Option<T> {
        let index = self
            .entries
            .iter()
            .position(|e| e.context_id == context_id)?;
        Some(self.entries.swap_remove(index).payload)
    }

    /// Remove and return every entry due at `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(u32, T)> {
        if !self.entries.iter().any(|e| e.due_ms <= now_ms) {
            return Vec::new();
        }
        let (mut due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.due_ms <= now_ms);
        self.entries = waiting;
        // Insertion sort: a handful of entries per tick, and no sort machinery in the binary.
        for i in 1..due.len() {
            let mut j = i;
            while j > 0 && (due[j - 1].due_ms, due[j - 1].seq) > (due[j].due_ms, due[j].seq) {
                due.swap(j - 1, j);
                j -= 1;
            }
        }
        due.into_iter().map(|e| (e.context_id, e.payload)).collect()
    }

    /// When the earliest pending entry is due.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.due_ms).min()
    }

    pub fn contains(&self, context_id: u32) -> bool {
        self.entries.iter().any(|e| e.context_id == context_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
