//! One worker's side of a shared breaker record: the closed-state fast path.
//!
//! Every worker thread runs its own VM; the [`BreakerState`] in Envoy shared data is what
//! they share. Changing it costs a read, a compare-and-swap write and, on contention, more
//! of both. A closed breaker changes nothing per successful request except counts, so a
//! worker keeps those to itself ([`Local`]) and writes only when something happens:
//!
//! - **Admission** reads the record once (no write). Its phase and generation say whether
//!   the breaker is still closed; a closed breaker admits on the spot with a ticket of that
//!   generation. An open or half-open breaker goes through the compare-and-swap of
//!   [`Policy::admit`] as before, so the half-open probes are still counted in the record
//!   and exactly `half_open_probes` are admitted across all workers: an admission decided on
//!   a closed record is ordered before whatever changed the record after that read.
//! - **The concurrency cap** (`max_concurrent`) is kept with slot leases: a worker takes a
//!   few slots from the record's `in_flight` at once ([`Policy::lease_size`]), admits on
//!   them locally, keeps up to twice that many free ones, and gives the rest back. The
//!   record's `in_flight` counts every slot a worker holds, so the cap holds across workers
//!   exactly; the price is that a worker may be refused while another holds idle slots
//!   (at most `2 × lease` per worker, given back on the next tick).
//! - **Results.** A failure is written at once ([`Policy::record`]: streak, window, maybe
//!   open). A success is written at once only when this worker last saw a failure streak
//!   (it resets the streak); otherwise, with a failure-rate rule, it joins a batch of
//!   successes tagged with its generation, written with the next write of this worker, when
//!   the batch reaches [`Policy::success_batch`], or on the tick ([`settle`]). A batch from a
//!   generation the breaker has left is dropped, as a stale result is.
//! - **Learning of transitions** needs no message: every admission reads the record, and a
//!   ticket carries the generation it was admitted in, so a result from before an open (or
//!   a close) only gives its slot back.
//!
//! What a worker's batching costs in accuracy: the window may lack up to
//! `success_batch - 1` successes per worker (a rate trips a little early at low volume), and
//! a success that ends right after another worker's failures, before this worker read them,
//! does not break their streak. Both are decided by completion order across threads anyway.

use super::machine::{Admission, Outcome, Policy, Rejection, Ticket, Transition};
use super::state::{BreakerState, Phase};
use crate::host::shared::{self, SharedError};
use crate::host::Host;
use crate::rng::Rng;

/// CAS attempts per admission / release. Two threads rarely collide more than once; a
/// release gets more room because giving up would leak an in-flight slot.
pub const ADMIT_ATTEMPTS: u32 = 64;
pub const RELEASE_ATTEMPTS: u32 = 1024;

/// What one worker keeps about one guarded cluster between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Local {
    /// Slots leased from the record's `in_flight` and not in use.
    pub free: u32,
    /// Successes not yet written, all of closed generation `batch_generation`.
    pub batch: u32,
    pub batch_generation: u32,
    /// The consecutive-failure streak in the last record this worker read.
    pub seen_streak: u32,
}

/// Whose slot an admitted request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A slot in the record's `in_flight` (an admission through the CAS).
    Shared,
    /// One of this worker's leased slots.
    Leased,
    /// None: a closed breaker without a cap.
    Nothing,
}

/// An admitted request's claim, returned with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub ticket: Ticket,
    pub hold: Hold,
}

/// A decision and what it took: the phase change it made, the record when this worker
/// wrote it (for the gauges) and the CAS retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<T> {
    pub value: T,
    /// An admission's: the phase it saw (after any transition it made).
    pub phase: Option<Phase>,
    pub transition: Option<Transition>,
    pub written: Option<BreakerState>,
    pub cas_retries: u32,
}

impl<T> Step<T> {
    fn seen(value: T, phase: Phase) -> Self {
        Self {
            phase: Some(phase),
            ..Self::read(value)
        }
    }

    fn read(value: T) -> Self {
        Self {
            value,
            phase: None,
            transition: None,
            written: None,
            cas_retries: 0,
        }
    }
}

/// An admission's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Admitted(Held),
    Rejected(Rejection),
}

fn decode(bytes: &[u8]) -> BreakerState {
    // A record this build cannot read (a different format version) starts over as closed.
    BreakerState::decode(bytes).unwrap_or_default()
}

// === impl Policy (worker sizes) ===

impl Policy {
    /// Slots a worker leases at once under a cap: an eighth of it, 1 to 16.
    pub fn lease_size(&self) -> u32 {
        self.max_concurrent.map_or(0, |cap| (cap / 8).clamp(1, 16))
    }

    /// Successes a worker batches before writing them: a quarter of the rate rule's
    /// `min_requests`, 1 to 32 (0 without a rate rule: nothing to count).
    pub fn success_batch(&self) -> u32 {
        self.rate.map_or(0, |r| (r.min_requests / 4).clamp(1, 32))
    }
}

/// Admit a request to the breaker of record `key`, or refuse it.
pub fn admit(
    host: &impl Host,
    key: &str,
    policy: &Policy,
    local: &mut Local,
) -> Result<Step<Admit>, SharedError> {
    let bytes = shared::read(host, key)?.ok_or(SharedError::Missing)?;
    let state = decode(&bytes);
    if state.phase == Phase::Closed {
        local.seen_streak = state.consecutive_failures;
        let ticket = Ticket {
            generation: state.generation,
            probe: false,
        };
        if policy.max_concurrent.is_none() {
            let held = Held {
                ticket,
                hold: Hold::Nothing,
            };
            return Ok(Step::seen(Admit::Admitted(held), Phase::Closed));
        }
        if local.free > 0 {
            local.free -= 1;
            let held = Held {
                ticket,
                hold: Hold::Leased,
            };
            return Ok(Step::seen(Admit::Admitted(held), Phase::Closed));
        }
    }
    let mut now = None;
    if state.phase != Phase::Closed && local.free == 0 {
        // Open, or half-open with every probe out: refused on what was read, no write.
        let mut probe = state;
        let at = if policy.admit_needs_time(&state) {
            *now.get_or_insert_with(|| host.now_millis())
        } else {
            0
        };
        if let (Admission::Rejected(why), None) = policy.admit(at, &mut probe) {
            return Ok(Step::seen(Admit::Rejected(why), state.phase));
        }
    }
    admit_shared(host, key, policy, local, now)
}

/// The admission through the CAS: a lease when closed under a cap, [`Policy::admit`]
/// otherwise (giving back this worker's free slots first).
fn admit_shared(
    host: &impl Host,
    key: &str,
    policy: &Policy,
    local: &mut Local,
    mut now: Option<u64>,
) -> Result<Step<Admit>, SharedError> {
    let free = local.free;
    let lease = policy.lease_size();
    let updated = shared::update(host, key, ADMIT_ATTEMPTS, |bytes| {
        let mut state = decode(bytes);
        if let (Phase::Closed, Some(cap)) = (state.phase, policy.max_concurrent) {
            // A closed breaker under a cap: one of this worker's free slots (it read
            // another phase a moment ago), or a new lease.
            let held = Held {
                ticket: Ticket {
                    generation: state.generation,
                    probe: false,
                },
                hold: Hold::Leased,
            };
            if free > 0 {
                return (None, (Admit::Admitted(held), None, state, Some(0), false));
            }
            let grant = lease.min(cap.saturating_sub(state.in_flight));
            if grant == 0 {
                let refused = Admit::Rejected(Rejection::Overflow);
                return (None, (refused, None, state, Some(0), false));
            }
            state.in_flight += grant;
            let write = state.to_bytes();
            return (
                Some(write),
                (Admit::Admitted(held), None, state, Some(grant), true),
            );
        }
        state.in_flight = state.in_flight.saturating_sub(free);
        let now = if policy.admit_needs_time(&state) {
            *now.get_or_insert_with(|| host.now_millis())
        } else {
            0
        };
        let (admission, transition) = policy.admit(now, &mut state);
        let admit = match admission {
            Admission::Admitted(ticket) => Admit::Admitted(Held {
                ticket,
                hold: Hold::Shared,
            }),
            Admission::Rejected(rejection) => Admit::Rejected(rejection),
        };
        let encoded = state.to_bytes();
        let write = (encoded[..] != *bytes).then_some(encoded);
        let wrote = write.is_some();
        (write, (admit, transition, state, None, wrote))
    })?;
    let (admit, transition, state, grant, wrote) = updated.value;
    match (admit, grant) {
        // The lease branch: one of the slots (leased now or before) is this request's.
        (Admit::Admitted(_), Some(grant)) => local.free = (local.free + grant).saturating_sub(1),
        (Admit::Rejected(_), Some(_)) => {}
        // Any other admission gave this worker's free slots back.
        (_, None) => local.free = 0,
    }
    local.seen_streak = streak(&state);
    Ok(Step {
        value: admit,
        phase: Some(state.phase),
        transition,
        written: wrote.then_some(state),
        cas_retries: updated.cas_retries,
    })
}

/// The streak a worker keeps in view: only a closed breaker's counts.
fn streak(state: &BreakerState) -> u32 {
    if state.phase == Phase::Closed {
        state.consecutive_failures
    } else {
        0
    }
}

/// The end of an admitted request with `outcome`: its slot back and its outcome counted,
/// in memory when nothing needs writing. The clock is read only for a write.
pub fn release(
    host: &impl Host,
    key: &str,
    policy: &Policy,
    local: &mut Local,
    held: Held,
    outcome: Outcome,
    rng: &mut Rng,
) -> Result<Step<()>, SharedError> {
    let ticket = held.ticket;
    if held.hold == Hold::Leased {
        local.free = local.free.saturating_add(1);
    }
    let lease = policy.lease_size();
    let surplus = if local.free > 2 * lease {
        local.free - lease
    } else {
        0
    };
    let success = outcome == Outcome::Success;
    // A success resets a streak this worker saw: written at once.
    let resets = success && local.seen_streak > 0;
    let batched = success && !resets && held.hold != Hold::Shared && policy.rate.is_some();
    if batched {
        if local.batch > 0 && local.batch_generation != ticket.generation {
            // The breaker moved on since the batch began: its successes are stale.
            local.batch = 0;
        }
        local.batch_generation = ticket.generation;
        local.batch += 1;
    }
    let write = held.hold == Hold::Shared
        || outcome == Outcome::Failure
        || resets
        || surplus > 0
        || (batched && local.batch >= policy.success_batch());
    if !write {
        return Ok(Step::read(()));
    }
    let now = host.now_millis();
    let (batch, batch_generation) = (local.batch, local.batch_generation);
    let updated = shared::update(host, key, RELEASE_ATTEMPTS, |bytes| {
        let mut state = decode(bytes);
        state.in_flight = state.in_flight.saturating_sub(surplus);
        let flushed = policy.record_successes(now, batch_generation, batch, rng, &mut state);
        // After a batch that opened the breaker, the ticket is stale: only its slot goes back.
        let own = match (batched, held.hold) {
            (true, _) => None,
            (false, Hold::Shared) => policy.on_result(now, ticket, outcome, rng, &mut state),
            (false, Hold::Leased | Hold::Nothing) => {
                policy.record(now, ticket, outcome, rng, &mut state)
            }
        };
        (Some(state.to_bytes()), (flushed.or(own), state))
    })?;
    let (transition, state) = updated.value;
    local.batch = 0;
    local.free -= surplus;
    local.seen_streak = streak(&state);
    Ok(Step {
        value: (),
        phase: None,
        transition,
        written: Some(state),
        cas_retries: updated.cas_retries,
    })
}

/// From the root's tick: write this worker's batched successes and give back its free
/// slots, so the record (and the gauges read from it) settle while traffic is idle.
/// `None`: nothing to write.
pub fn settle(
    host: &impl Host,
    key: &str,
    policy: &Policy,
    local: &mut Local,
    rng: &mut Rng,
) -> Result<Option<Step<()>>, SharedError> {
    if local.free == 0 && local.batch == 0 {
        return Ok(None);
    }
    let now = host.now_millis();
    let (free, batch, batch_generation) = (local.free, local.batch, local.batch_generation);
    let updated = shared::update(host, key, RELEASE_ATTEMPTS, |bytes| {
        let mut state = decode(bytes);
        state.in_flight = state.in_flight.saturating_sub(free);
        let transition = policy.record_successes(now, batch_generation, batch, rng, &mut state);
        (Some(state.to_bytes()), (transition, state))
    })?;
    let (transition, state) = updated.value;
    *local = Local {
        seen_streak: streak(&state),
        ..Local::default()
    };
    Ok(Some(Step {
        value: (),
        phase: None,
        transition,
        written: Some(state),
        cas_retries: updated.cas_retries,
    }))
}
