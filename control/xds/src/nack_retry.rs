//! When a stream sends a NACKed snapshot again: a sans-IO schedule (the time is passed in),
//! which the stream loop waits on. Tested on a paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// A NACKed snapshot is sent again after 0.2 s, 0.4 s, ... up to this many times, then left
/// until the next snapshot: it covers Envoy's background module fetch after a code cache
/// miss without hammering a sidecar that refuses the config for good.
pub(crate) const NACK_RETRIES: u32 = 5;
const NACK_RETRY_BASE: Duration = Duration::from_millis(200);

/// What the stream loop does at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryAction {
    /// Not due yet.
    Wait,
    /// Release the hold on the NACKed snapshot (later snapshots flow again); no retry.
    Release,
    /// Release the hold and re-issue the group's filters (same content, new module URL).
    Retry,
}

/// When to send a NACKed snapshot again.
#[derive(Default)]
pub(crate) struct NackRetry {
    pub(crate) attempts: u32,
    pub(crate) due: Option<Instant>,
    /// The last refusal's message. Envoy refuses a version naming several new remote
    /// modules once per module, one after another: a refusal naming another plugin is
    /// progress, so it starts a fresh budget instead of spending the old one.
    last_message: String,
    /// Fresh budgets granted so far; bounded so two refusals alternating forever cannot
    /// keep a sidecar retrying.
    fresh_budgets: u32,
}

/// More than the number of weft filters a sidecar runs.
const NACK_FRESH_BUDGETS: u32 = 8;

impl NackRetry {
    /// After the last attempt one more timer releases the hold without resending, so later
    /// snapshots flow again.
    pub(crate) fn schedule(&mut self, now: Instant, message: &str) {
        if message != self.last_message && self.fresh_budgets < NACK_FRESH_BUDGETS {
            self.attempts = 0;
            self.fresh_budgets += 1;
            self.last_message = message.to_string();
        }
        let delay =
            NACK_RETRY_BASE.saturating_mul(2u32.saturating_pow(self.attempts.min(NACK_RETRIES)));
        self.due = Some(now.checked_add(delay).unwrap_or(now));
        self.attempts = self.attempts.saturating_add(1);
    }

    /// When the stream loop must call [`NackRetry::on_tick`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// Time passed: at the due time the hold is released, and while attempts remain the
    /// group's filters are re-issued so Envoy tries again.
    pub(crate) fn on_tick(&mut self, now: Instant) -> RetryAction {
        match self.due {
            Some(due) if due <= now => {
                self.due = None;
                if self.attempts <= NACK_RETRIES {
                    RetryAction::Retry
                } else {
                    RetryAction::Release
                }
            }
            _ => RetryAction::Wait,
        }
    }
}

#[cfg(test)]
mod tests;
