//! The workers' ticks: one process-wide timer thread that marks a worker's tick due and, while
//! the worker holds delayed requests, wakes it through the ABI's filter scheduler.
//!
//! Envoy 1.40's dynamic-module scheduler only posts an event to a filter's worker
//! (`scheduler_commit` → `on_http_filter_scheduled`); it has no delay. proxy-wasm's root tick
//! is therefore rebuilt here: while a worker wants ticks, this thread sets the worker's `due`
//! flag every period; the worker runs the tick at its next request (the slow ticks — breaker
//! gauges — ride on traffic), and, when a delayed request carries a scheduler, at once through
//! a commit (the ABI's thread-safe post). Everything the tick does runs on the worker, as in
//! wasm. A worker takes its scheduler out (under the lock) before it deletes it, so a commit
//! never meets a freed one.

use crate::envoy::Scheduler;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The event id of a tick.
pub const TICK_EVENT: u64 = 1;

struct Entry {
    due: Arc<AtomicBool>,
    scheduler: Option<Scheduler>,
    period: Duration,
    next: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    running: bool,
}

struct Timer {
    state: Mutex<State>,
    wake: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| Timer {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    })
}

fn lock(timer: &Timer) -> MutexGuard<'_, State> {
    timer
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ticks worker `key` every `period` (sets `due`; commits to its scheduler if it has one).
/// An entry that already ticks at `period` keeps its schedule. False when the timer thread
/// cannot be started.
pub fn arm(key: u64, period: Duration, due: &Arc<AtomicBool>) -> bool {
    let timer = timer();
    let mut state = lock(timer);
    let existing = state.entries.get_mut(&key);
    match existing {
        Some(entry) if entry.period == period => return true,
        Some(entry) => {
            entry.period = period;
            entry.next = Instant::now() + period;
        }
        None => {
            state.entries.insert(
                key,
                Entry {
                    due: Arc::clone(due),
                    scheduler: None,
                    period,
                    next: Instant::now() + period,
                },
            );
        }
    }
    if !state.running {
        let spawned = std::thread::Builder::new()
            .name("weft-tick".into())
            .spawn(run);
        match spawned {
            Ok(_) => state.running = true,
            Err(err) => {
                log::error!("weft-suite: cannot start the tick thread: {err}");
                state.entries.remove(&key);
                return false;
            }
        }
    }
    timer.wake.notify_one();
    true
}

/// Sets worker `key`'s scheduler (the tick then wakes it at once); returns the previous one,
/// which the timer no longer commits to.
pub fn set_scheduler(key: u64, scheduler: Option<Scheduler>) -> Option<Scheduler> {
    let mut state = lock(timer());
    match state.entries.get_mut(&key) {
        Some(entry) => std::mem::replace(&mut entry.scheduler, scheduler),
        None => scheduler,
    }
}

/// Stops ticking worker `key`; its scheduler, which the timer no longer commits to.
pub fn disarm(key: u64) -> Option<Scheduler> {
    lock(timer()).entries.remove(&key).and_then(|e| e.scheduler)
}

fn run() {
    let timer = timer();
    let mut state = lock(timer);
    loop {
        let now = Instant::now();
        for entry in state.entries.values_mut() {
            if entry.next <= now {
                entry.due.store(true, Ordering::Release);
                if let Some(scheduler) = entry.scheduler {
                    scheduler.commit(TICK_EVENT);
                }
                let next = entry.next + entry.period;
                entry.next = if next <= now {
                    now + entry.period
                } else {
                    next
                };
            }
        }
        let wait = state
            .entries
            .values()
            .map(|e| e.next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        state = match timer.wake.wait_timeout(state, wait) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}
