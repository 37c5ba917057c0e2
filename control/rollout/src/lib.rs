//! Progressive delivery: `Rollout` documents run by the control plane from the telemetry it
//! already receives.
//!
//! - [`analysis`]: one interval's checks (success rate, p99 from the telemetry histogram,
//!   both optionally relative to the stable version; inconclusive below `minRequests`);
//! - [`machine`]: the controller of one rollout, sans IO (`step(now, totals) -> actions`);
//! - [`split`]: a rollout's progress in the store (the TrafficSplit's weights + annotations);
//! - [`events`]: the event log; [`runtime`]: the driver in `weft serve`; [`routes`]: its REST
//!   API.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod events;
pub mod machine;
pub mod routes;
pub mod runtime;
pub mod split;

pub use events::EventLog;
pub use machine::{
    Command, Controller, Event, EventKind, Observation, Phase, Plan, Progress, Status,
};
pub use runtime::Rollouts;

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
