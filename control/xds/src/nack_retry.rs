//! When a stream sends a NACKed snapshot again: a sans-IO schedule (the time is passed in),
//! which the stream loop waits on. Tested on a paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// A NACKed snapshot is sent again after 0.2 s, 0.4 s, ... up to this many times, then left
/// until the next snapshot: it covers Envoy's background module fetch after a code cache
/// miss without hammering a sidecar that refuses the config for good.
pub(crate) const NACK_RETRIES: u32 = 5;
const NACK_RETRY_BASE: Duration = Duration::from_millis(200);

/// Envoy's refusal of a wasm plugin it could not create: most often the module is still
/// being fetched, or its fetch failed and Envoy will not try again for 10 s (its negative
/// code-cache period). On a loaded machine that outlasts the doubling budget, so this
/// refusal keeps being retried every [`MODULE_RETRY_EVERY`] for up to
/// [`MODULE_RETRY_WINDOW`] from its first occurrence.
const MODULE_REFUSAL: &str = "Unable to create Wasm plugin";
/// Just over Envoy's `CODE_CACHE_SECONDS_NEGATIVE_CACHING` (10 s).
const MODULE_RETRY_EVERY: Duration = Duration::from_secs(11);
/// A module that still cannot be created after this is refused for good (a broken
/// module): the stream stops re-issuing it until the next snapshot.
const MODULE_RETRY_WINDOW: Duration = Duration::from_secs(600);

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
    /// When the current run of module refusals started (see [`MODULE_REFUSAL`]).
    module_since: Option<Instant>,
}

/// More than the number of weft filters a sidecar runs.
const NACK_FRESH_BUDGETS: u32 = 8;

impl NackRetry {
    /// After the last attempt one more timer releases the hold without resending, so later
    /// snapshots flow again.
    pub(crate) fn schedule(&mut self, now: Instant, message: &str) {
        if message.contains(MODULE_REFUSAL) {
            let since = *self.module_since.get_or_insert(now);
            if self.attempts >= NACK_RETRIES
                && now.saturating_duration_since(since) < MODULE_RETRY_WINDOW
            {
                self.last_message = message.to_string();
                self.due = Some(now.checked_add(MODULE_RETRY_EVERY).unwrap_or(now));
                self.attempts = NACK_RETRIES;
                return;
            }
        } else {
            self.module_since = None;
        }
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

    /// A new snapshot revision: a fresh budget. A retry already due stays due: the NACKed
    /// type is held until it fires, and a new revision whose selection for that type did not
    /// change sends nothing that could be refused or acknowledged, so without the timer the
    /// sidecar would stay on the refused configuration (CI's `check.rs`: a sidecar NACKed
    /// revision 1, revision 2 arrived before the retry, and it never synced).
    pub(crate) fn new_revision(&mut self) {
        *self = Self {
            due: self.due,
            ..Self::default()
        };
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
