//! When a stream checks its join token again: a sans-IO machine (both clocks are passed in).
//! The token is checked when the stream starts, again on every revocation, and at its
//! expiry; a check that fails ends the stream. The stream loop in [`crate::server`] is only
//! a `select!` that feeds it ticks and events and performs the check it asks for.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a stream waits before checking its token again (a bound on every timer).
pub(crate) const MAX_TOKEN_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The timer may fire a hair before the expiry second: never sooner again than this.
const MIN_TOKEN_WAIT: Duration = Duration::from_millis(100);

/// Both clocks at one moment: the monotonic one for timers, the wall clock (since the Unix
/// epoch) to compare with a token's `exp`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) instant: Instant,
    pub(crate) unix: Duration,
}

impl Now {
    /// Reads both clocks (the IO side's only use of time).
    pub(crate) fn current() -> Self {
        Self {
            instant: Instant::now(),
            unix: std::time::UNIX_EPOCH.elapsed().unwrap_or_default(),
        }
    }
}

/// What happened to the token, besides time passing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenEvent {
    /// Some token was revoked (maybe this one).
    Revocation,
    /// The check asked for passed; the token expires at `exp` (unix seconds).
    Verified { exp: u64 },
    /// The check asked for failed (the stream's refusal was already logged and counted).
    Refused,
}

/// What the stream loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenAction {
    /// Nothing to do until [`TokenWatch::deadline`] or the next event.
    Wait,
    /// Verify the token again and report [`TokenEvent::Verified`] or [`TokenEvent::Refused`].
    Check,
    /// End the stream.
    End,
}

/// The schedule of one stream's token checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TokenWatch {
    /// Whether there is a token to watch (the CA is on).
    active: bool,
    /// When to check again (at the token's expiry, bounded).
    next_check: Option<Instant>,
}

// === impl TokenWatch ===

impl TokenWatch {
    /// No CA, no token: never checks.
    pub(crate) fn off() -> Self {
        Self {
            active: false,
            next_check: None,
        }
    }

    /// The token checked out when the stream started; it expires at `exp` (unix seconds).
    pub(crate) fn admitted(exp: u64, now: Now) -> Self {
        Self {
            active: true,
            next_check: Some(check_at(exp, now)),
        }
    }

    /// When the loop must call [`TokenWatch::on_tick`] (none: only events matter).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next_check
    }

    /// Time passed: a check when the expiry (or the bound) is reached.
    pub(crate) fn on_tick(&mut self, now: Now) -> TokenAction {
        match self.next_check {
            Some(at) if at <= now.instant => TokenAction::Check,
            _ => TokenAction::Wait,
        }
    }

    pub(crate) fn on_event(&mut self, event: TokenEvent, now: Now) -> TokenAction {
        if !self.active {
            return TokenAction::Wait;
        }
        match event {
            TokenEvent::Revocation => TokenAction::Check,
            TokenEvent::Verified { exp } => {
                // Checked at the expiry timer (fired early, or at the bound): next time.
                // A check after a revocation keeps the timer as it was.
                if self.next_check.is_some_and(|at| at <= now.instant) {
                    self.next_check = Some(check_at(exp, now));
                }
                TokenAction::Wait
            }
            TokenEvent::Refused => {
                self.active = false;
                self.next_check = None;
                TokenAction::End
            }
        }
    }
}

/// When to check a token expiring at `exp` (unix seconds) again: at its expiry, at most
/// [`MAX_TOKEN_WAIT`] and at least [`MIN_TOKEN_WAIT`] from `now`. No expiry, however far,
/// can overflow the clock.
fn check_at(exp: u64, now: Now) -> Instant {
    let left = Duration::from_secs(exp)
        .saturating_sub(now.unix)
        .clamp(MIN_TOKEN_WAIT, MAX_TOKEN_WAIT);
    now.instant.checked_add(left).unwrap_or(now.instant)
}

#[cfg(test)]
mod tests;
