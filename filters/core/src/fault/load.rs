//! Per-worker running counts behind the runtime caps `max_active` and `max_percent`.
//!
//! A [`Fault`](super::Fault) is immutable and shared by every request of a worker; what the
//! caps need to remember (requests held now, requests matched and faulted so far) lives
//! here, one [`FaultLoad`] per root context, passed to
//! [`Fault::decide_with`](super::Fault::decide_with). The filter reports a delay's start and
//! end, since only it knows whether the host accepted the pause.

/// Running counts per policy, indexed like the configured policies.
#[derive(Debug, Clone, Default)]
pub struct FaultLoad {
    policies: Vec<PolicyLoad>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PolicyLoad {
    /// Requests held delayed by this policy now.
    pub active: u32,
    /// Enforced decisions by this policy (it matched and had not expired).
    pub matched: u64,
    /// Of those, the requests that got a fault.
    pub faulted: u64,
}

// === impl FaultLoad ===

impl FaultLoad {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests held delayed by `policy` now.
    pub fn active(&self, policy: usize) -> u32 {
        self.policies.get(policy).map_or(0, |p| p.active)
    }

    /// `policy` holds one more request (the host accepted the pause).
    pub fn delay_started(&mut self, policy: usize) {
        if let Some(entry) = self.entry(policy) {
            entry.active = entry.active.saturating_add(1);
        }
    }

    /// A request `policy` held was released, answered or cancelled.
    pub fn delay_ended(&mut self, policy: usize) {
        if let Some(entry) = self.entry(policy) {
            entry.active = entry.active.saturating_sub(1);
        }
    }

    /// The counts of `policy` (grown on first use; `None` only for an index no
    /// configuration can have).
    pub(super) fn entry(&mut self, policy: usize) -> Option<&mut PolicyLoad> {
        if self.policies.len() <= policy && policy < MAX_POLICIES {
            self.policies.resize(policy + 1, PolicyLoad::default());
        }
        self.policies.get_mut(policy)
    }
}

/// Far above any configuration: a bad index never grows the vector without bound.
const MAX_POLICIES: usize = 65_536;

// === impl PolicyLoad ===

impl PolicyLoad {
    /// Would one more faulted request keep `faulted / matched` within `max_bp` basis points?
    /// (`matched` already counts this request.)
    pub fn within_percent(&self, max_bp: u32) -> bool {
        let faulted = u128::from(self.faulted) + 1;
        faulted * 10_000 <= u128::from(self.matched) * u128::from(max_bp)
    }
}
