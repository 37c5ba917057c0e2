//! The closed / open / half-open state machine and the in-flight count of one upstream.
//!
//! A worker changes a [`BreakerState`] by compare-and-swap on its bytes: read, decode, call
//! [`Policy::admit`] or [`Policy::on_result`], encode, write back with the CAS (retrying on a
//! mismatch). The functions are pure: time (`now_ms`) and randomness (an [`Rng`]) come in as
//! arguments.

use super::state::{BreakerState, Phase};
use crate::rng::Rng;

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The breaker is open.
    Open,
    /// Half-open and all probes are out.
    HalfOpenFull,
    /// The concurrency cap is reached.
    Overflow,
}

impl Rejection {
    /// Value of the `x-weft-breaker` reply header.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::HalfOpenFull => "half-open",
            Self::Overflow => "overflow",
        }
    }
}

/// Proof of admission, kept by the request until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub generation: u32,
    pub probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(Ticket),
    Rejected(Rejection),
}

/// How a finished request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Ended without a verdict on the upstream (e.g. the client went away first).
    Neutral,
}

/// Why the breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    ConsecutiveFailures(u32),
    FailureRate { failures: u32, requests: u32 },
    ProbeFailed,
}

/// A phase change, for logs and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened {
        reason: TripReason,
        interval_ms: u64,
    },
    HalfOpened,
    Closed,
}

/// Compiled failure-rate condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub threshold_percent: u32,
    pub bucket_ms: u64,
    pub min_requests: u32,
}

/// Envoy's legacy `response.flags` bits (`1 << CoreResponseFlag`), as `on_log` reads them.
pub mod flags {
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2; // UT
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6; // UC
    pub const UPSTREAM_MAX_STREAM_DURATION: u64 = 1 << 19; // UMSDR
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23; // UPE
}

/// A validated, precompiled [`crate::breaker::BreakerPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub consecutive_failures: u32,
    pub rate: Option<RateRule>,
    pub on_5xx: bool,
    pub on_gateway: bool,
    pub on_connect_failure: bool,
    pub on_reset: bool,
    pub on_timeout: bool,
    pub open_interval_ms: u64,
    pub max_open_interval_ms: u64,
    /// Back-off multiplier in thousandths.
    pub backoff_permille: u64,
    pub jitter_percent: u64,
    pub half_open_probes: u32,
    pub max_concurrent: Option<u32>,
    pub reject_status: u16,
    /// Run the machine, count what would fail fast, let it through.
    pub dry_run: bool,
}

// === impl Policy ===

impl Policy {
    /// Classify a finished request from `response.code` (0 when no response was sent) and
    /// `response.flags`.
    pub fn classify(&self, code: u64, response_flags: u64) -> Outcome {
        let failed = self.fails_by_code(code)
            || (self.on_connect_failure
                && response_flags & flags::UPSTREAM_CONNECTION_FAILURE != 0)
            || (self.on_reset
                && response_flags
                    & (flags::UPSTREAM_REMOTE_RESET
                        | flags::UPSTREAM_CONNECTION_TERMINATION
                        | flags::UPSTREAM_PROTOCOL_ERROR)
                    != 0)
            || (self.on_timeout
                && response_flags
                    & (flags::UPSTREAM_REQUEST_TIMEOUT | flags::UPSTREAM_MAX_STREAM_DURATION)
                    != 0);
        if failed {
            Outcome::Failure
        } else if code == 0 {
            Outcome::Neutral
        } else {
            Outcome::Success
        }
    }

    /// Whether [`classify`](Self::classify)`(code, flags)` depends on `flags` at all: not
    /// when the code alone fails the request, nor when no flag-based failure is configured.
    /// Lets the filter skip reading `response.flags`.
    pub fn needs_flags(&self, code: u64) -> bool {
        (self.on_connect_failure || self.on_reset || self.on_timeout) && !self.fails_by_code(code)
    }

    fn fails_by_code(&self, code: u64) -> bool {
        (self.on_5xx && (500..600).contains(&code))
            || (self.on_gateway && matches!(code, 502..=504))
    }

    /// Whether [`admit`](Self::admit) looks at `now_ms` for this state: only an open breaker
    /// does (to move to half-open), so a filter can skip the clock otherwise.
    pub fn admit_needs_time(&self, state: &BreakerState) -> bool {
        state.phase == Phase::Open
    }

    /// Decide one new request. Moves open to half-open once the open interval has passed.
    pub fn admit(&self, now_ms: u64, state: &mut BreakerState) -> (Admission, Option<Transition>) {
        let mut transition = None;
        if state.phase == Phase::Open && now_ms >= state.open_until_ms {
            state.phase = Phase::HalfOpen;
            state.generation = state.generation.wrapping_add(1);
            state.probes_admitted = 0;
            state.probe_successes = 0;
            transition = Some(Transition::HalfOpened);
        }
        let rejection = match state.phase {
            Phase::Open => Some(Rejection::Open),
            Phase::HalfOpen if state.probes_admitted >= self.half_open_probes => {
                Some(Rejection::HalfOpenFull)
            }
            _ if self
                .max_concurrent
                .is_some_and(|cap| state.in_flight >= cap) =>
            {
                Some(Rejection::Overflow)
            }
            _ => None,
        };
        if let Some(rejection) = rejection {
            return (Admission::Rejected(rejection), transition);
        }
        state.in_flight = state.in_flight.saturating_add(1);
        let probe = state.phase == Phase::HalfOpen;
        if probe {
            state.probes_admitted += 1;
        }
        (
            Admission::Admitted(Ticket {
                generation: state.generation,
                probe,
            }),
            transition,
        )
    }

    /// Record the end of an admitted request: release its in-flight slot and, when its ticket
    /// is of the current generation, count its outcome.
    pub fn on_result(
        &self,
        now_ms: u64,
        ticket: Ticket,
        outcome: Outcome,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        state.in_flight = state.in_flight.saturating_sub(1);
        self.record(now_ms, ticket, outcome, rng, state)
    }

    /// [`on_result`](Self::on_result) for a request that held no shared in-flight slot (a
    /// closed-state admission on a worker's fast path): count its outcome, release nothing.
    pub fn record(
        &self,
        now_ms: u64,
        ticket: Ticket,
        outcome: Outcome,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        if ticket.generation != state.generation {
            return None;
        }
        match (state.phase, ticket.probe) {
            (Phase::Closed, false) => self.closed_result(now_ms, outcome, rng, state),
            (Phase::HalfOpen, true) => self.probe_result(now_ms, outcome, rng, state),
            // Same generation means same phase as at admission; nothing else is reachable.
            _ => None,
        }
    }

    fn closed_result(
        &self,
        now_ms: u64,
        outcome: Outcome,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        let failed = match outcome {
            Outcome::Neutral => return None,
            Outcome::Success => false,
            Outcome::Failure => true,
        };
        state.consecutive_failures = if failed {
            state.consecutive_failures.saturating_add(1)
        } else {
            0
        };
        if self.consecutive_failures > 0 && state.consecutive_failures >= self.consecutive_failures
        {
            let reason = TripReason::ConsecutiveFailures(state.consecutive_failures);
            return Some(self.open(now_ms, self.open_interval_ms, reason, rng, state));
        }
        let rate = self.rate?;
        let (requests, failures) = state.window.record(now_ms, rate.bucket_ms, failed);
        self.rate_trip(now_ms, rate, requests, failures, rng, state)
    }

    /// Count `successes` that ended in closed generation `generation` on one worker and were
    /// kept back (a batch): they enter the failure-rate window, which may then trip (enough
    /// requests for `min_requests` at a rate still over the threshold). They do not touch
    /// the consecutive-failure streak: the worker resets that at once when it sees one. A
    /// batch from an older generation is dropped, as a stale result is.
    pub fn record_successes(
        &self,
        now_ms: u64,
        generation: u32,
        successes: u32,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        if successes == 0 || state.phase != Phase::Closed || generation != state.generation {
            return None;
        }
        let rate = self.rate?;
        let (requests, failures) = state.window.record_n(now_ms, rate.bucket_ms, successes, 0);
        self.rate_trip(now_ms, rate, requests, failures, rng, state)
    }

    fn rate_trip(
        &self,
        now_ms: u64,
        rate: RateRule,
        requests: u32,
        failures: u32,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        let tripped = requests >= rate.min_requests
            && u64::from(failures) * 100 >= u64::from(rate.threshold_percent) * u64::from(requests);
        if tripped {
            let reason = TripReason::FailureRate { failures, requests };
            return Some(self.open(now_ms, self.open_interval_ms, reason, rng, state));
        }
        None
    }

    fn probe_result(
        &self,
        now_ms: u64,
        outcome: Outcome,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Option<Transition> {
        match outcome {
            Outcome::Success => {
                state.probe_successes += 1;
                if state.probe_successes < self.half_open_probes {
                    return None;
                }
                let in_flight = state.in_flight;
                *state = BreakerState {
                    generation: state.generation.wrapping_add(1),
                    in_flight,
                    ..BreakerState::default()
                };
                Some(Transition::Closed)
            }
            Outcome::Failure => {
                let interval = self.backoff(state.open_interval_ms);
                Some(self.open(now_ms, interval, TripReason::ProbeFailed, rng, state))
            }
            // A probe that proved nothing gives its slot back for another request.
            Outcome::Neutral => {
                state.probes_admitted = state.probes_admitted.saturating_sub(1);
                None
            }
        }
    }

    /// The next nominal open interval after a failed probe: multiplied, capped.
    pub fn backoff(&self, previous_ms: u64) -> u64 {
        let previous = previous_ms.max(self.open_interval_ms);
        let grown = u128::from(previous) * u128::from(self.backoff_permille) / 1000;
        u64::try_from(grown)
            .unwrap_or(u64::MAX)
            .clamp(self.open_interval_ms, self.max_open_interval_ms)
    }

    /// A nominal interval with jitter: uniform in `[interval * (1 - jitter), interval]`.
    pub fn jittered(&self, interval_ms: u64, rng: &mut Rng) -> u64 {
        let spread = u64::try_from(u128::from(interval_ms) * u128::from(self.jitter_percent) / 100)
            .unwrap_or(0);
        interval_ms - rng.below(spread.saturating_add(1)).min(interval_ms)
    }

    fn open(
        &self,
        now_ms: u64,
        interval_ms: u64,
        reason: TripReason,
        rng: &mut Rng,
        state: &mut BreakerState,
    ) -> Transition {
        let actual = self.jittered(interval_ms, rng);
        let in_flight = state.in_flight;
        *state = BreakerState {
            phase: Phase::Open,
            generation: state.generation.wrapping_add(1),
            in_flight,
            open_until_ms: now_ms.saturating_add(actual),
            open_interval_ms: interval_ms,
            ..BreakerState::default()
        };
        Transition::Opened {
            reason,
            interval_ms: actual,
        }
    }
}
