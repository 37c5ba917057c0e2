//! (Over 400 lines: the state machine, its status and event types are one unit, read together.)
//!
//! The rollout controller of one `Rollout` document, sans IO: [`Controller::step`] takes the
//! time and the versions' cumulative telemetry and answers with [`Action`]s (a transition to
//! write as a new policy version, an event to record). The driver in `weft serve` does the
//! writing; the store is the truth, and [`Controller::adopt`] takes back whatever progress it
//! holds (after a restart, a refused write, or another replica's step).

use serde::{Deserialize, Serialize};
use weft_policy::model::{RolloutAnalysis, RouteMatch, Spec};
use weft_policy::validate::{rollout_schedule, PlannedStep};
use weft_policy::Document;
use weft_telemetry_plane::Counts;

use crate::analysis::{delta, evaluate, Analysis, Verdict};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Progressing,
    Paused,
    Promoted,
    RolledBack,
    Aborted,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoted,
        Phase::RolledBack,
        Phase::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Promoted => "Promoted",
            Phase::RolledBack => "RolledBack",
            Phase::Aborted => "Aborted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Nothing moves a finished rollout; only a new generation of its document.
    pub fn finished(self) -> bool {
        matches!(self, Phase::Promoted | Phase::RolledBack | Phase::Aborted)
    }
}

/// What the store holds about a rollout (on the TrafficSplit it drives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub phase: Phase,
    /// Index into the schedule.
    pub step: usize,
    /// The canary's weight in basis points.
    pub weight_bp: u32,
}

/// One rollout's plan, from its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub namespace: String,
    pub name: String,
    pub service: String,
    pub stable: String,
    pub canary: String,
    pub steps: Vec<PlannedStep>,
    pub interval_ms: u64,
    pub analysis: RolloutAnalysis,
    /// A/B mode: the cohort routed to the canary while the rollout runs (weights stay 0).
    pub ab: Option<RouteMatch>,
    /// Hash of the spec: a changed spec is a new rollout.
    pub generation: String,
}

impl Plan {
    /// `None` for another kind, or a spec validation would refuse.
    pub fn from_document(doc: &Document) -> Option<Self> {
        let Spec::Rollout(s) = &doc.spec else {
            return None;
        };
        let steps = rollout_schedule(s).ok()?;
        let interval_ms = weft_policy::units::parse_duration(&s.interval).ok()?;
        let spec_json = serde_json::to_vec(s).ok()?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&spec_json);
        let generation = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Some(Self {
            namespace: doc.namespace().to_string(),
            name: doc.metadata.name.clone(),
            service: s.target.service.clone(),
            stable: s.stable.clone(),
            canary: s.canary.clone(),
            steps,
            interval_ms,
            analysis: s.analysis.clone(),
            ab: s.ab.as_ref().map(|ab| ab.matches.clone()),
            generation,
        })
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The versions' cumulative totals at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub canary: Counts,
    pub stable: Counts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    Started,
    CheckPassed,
    CheckFailed,
    Inconclusive,
    Advanced,
    Promoted,
    RolledBack,
    Paused,
    Resumed,
    Aborted,
    /// A transition the store refused (the rollout stays where the store says).
    WriteFailed,
}

/// One line of `weft rollout events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub time_unix_ms: u64,
    /// `namespace/name`.
    pub rollout: String,
    pub kind: EventKind,
    /// The canary's weight after the event, basis points.
    pub weight_bp: u32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// The policy version a transition wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write `progress` (weights, phase) as a new policy version, then record `event`.
    Transition { progress: Progress, event: Event },
    /// Record `event`.
    Record(Event),
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Promote,
    Abort,
    Pause,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("rollout {rollout} is {phase}: nothing to {command}")]
    WrongPhase {
        rollout: String,
        phase: &'static str,
        command: &'static str,
    },
}

/// What `weft rollout status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub namespace: String,
    pub name: String,
    pub service: String,
    pub stable: String,
    pub canary: String,
    /// `Pending` before the first transition is written.
    pub phase: String,
    /// 1-based; 0 before the first step.
    pub step: usize,
    pub steps: usize,
    pub weight_bp: u32,
    pub failed_checks: u32,
    pub failure_threshold: u32,
    pub interval_ms: u64,
    /// Time to the next check, while progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_in_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<Analysis>,
    pub generation: String,
}

/// The controller of one rollout.
#[derive(Debug, Clone)]
pub struct Controller {
    plan: Plan,
    progress: Option<Progress>,
    failed_checks: u32,
    /// When the current step began (or was adopted).
    since_ms: u64,
    /// The last check: its time and the totals then.
    baseline: Option<(u64, Observation)>,
    last: Option<Analysis>,
}

// === impl Controller ===

impl Controller {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            progress: None,
            failed_checks: 0,
            since_ms: 0,
            baseline: None,
            last: None,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn progress(&self) -> Option<Progress> {
        self.progress
    }

    /// Takes the store's progress when it differs from this controller's: the step restarts
    /// its clock and the next check waits a full interval of fresh totals.
    pub fn adopt(&mut self, stored: Option<Progress>, now_ms: u64) {
        if stored != self.progress {
            self.progress = stored;
            self.failed_checks = 0;
            self.since_ms = now_ms;
            self.baseline = None;
        }
    }

    /// One tick: starts the rollout, or checks the interval that ended and moves on.
    pub fn step(&mut self, now_ms: u64, totals: &Observation) -> Vec<Action> {
        let Some(progress) = self.progress else {
            let first = self.plan.steps.first().map_or(0, |s| s.weight_bp);
            let to = Progress {
                phase: Phase::Progressing,
                step: 0,
                weight_bp: first,
            };
            let message = format!(
                "{} -> {}: step 1 of {}",
                self.plan.stable,
                self.plan.canary,
                self.plan.steps.len()
            );
            self.baseline = Some((now_ms, totals.clone()));
            return vec![self.transition(now_ms, to, EventKind::Started, message, None)];
        };
        if progress.phase != Phase::Progressing {
            return Vec::new();
        }
        let Some((at, before)) = &self.baseline else {
            self.baseline = Some((now_ms, totals.clone()));
            return Vec::new();
        };
        if now_ms < at.saturating_add(self.plan.interval_ms) {
            return Vec::new();
        }
        let analysis = evaluate(
            &self.plan.analysis,
            &delta(&totals.canary, &before.canary),
            &delta(&totals.stable, &before.stable),
        );
        self.baseline = Some((now_ms, totals.clone()));
        self.last = Some(analysis.clone());
        match analysis.verdict {
            Verdict::Inconclusive => {
                let message = analysis.reason.clone().unwrap_or_default();
                vec![self.record(now_ms, EventKind::Inconclusive, message, Some(analysis))]
            }
            Verdict::Fail => self.failed(now_ms, progress, analysis),
            Verdict::Pass => self.passed(now_ms, progress, analysis),
        }
    }

    fn failed(&mut self, now_ms: u64, progress: Progress, analysis: Analysis) -> Vec<Action> {
        self.failed_checks += 1;
        let threshold = self.plan.analysis.failure_threshold;
        let failing: Vec<String> = analysis
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{} {} vs {}", c.name, c.value, c.threshold))
            .collect();
        let message = format!(
            "failed check {} of {threshold}: {}",
            self.failed_checks,
            failing.join(", ")
        );
        let mut out = vec![self.record(now_ms, EventKind::CheckFailed, message, Some(analysis))];
        if self.failed_checks >= threshold {
            let to = Progress {
                phase: Phase::RolledBack,
                weight_bp: 0,
                ..progress
            };
            let message = format!(
                "{threshold} failed checks: all traffic back to {}",
                self.plan.stable
            );
            out.push(self.transition(now_ms, to, EventKind::RolledBack, message, None));
        }
        out
    }

    fn passed(&mut self, now_ms: u64, progress: Progress, analysis: Analysis) -> Vec<Action> {
        let mut out = vec![self.record(
            now_ms,
            EventKind::CheckPassed,
            format!("checks passed at {}%", pct(progress.weight_bp)),
            Some(analysis),
        )];
        let pause = self.plan.steps.get(progress.step).map_or(0, |s| s.pause_ms);
        if now_ms < self.since_ms.saturating_add(pause) {
            return out;
        }
        let next = progress.step + 1;
        let transition = match self.plan.steps.get(next) {
            Some(step) => {
                let to = Progress {
                    phase: Phase::Progressing,
                    step: next,
                    weight_bp: step.weight_bp,
                };
                let message = format!("step {} of {}", next + 1, self.plan.steps.len());
                self.transition(now_ms, to, EventKind::Advanced, message, None)
            }
            None => self.promotion(now_ms, progress, "every step passed"),
        };
        out.push(transition);
        out
    }

    fn promotion(&mut self, now_ms: u64, progress: Progress, why: &str) -> Action {
        let to = Progress {
            phase: Phase::Promoted,
            weight_bp: 10_000,
            ..progress
        };
        let message = format!(
            "{why}: {} is the stable version, {} unused",
            self.plan.canary, self.plan.stable
        );
        self.transition(now_ms, to, EventKind::Promoted, message, None)
    }

    /// An operator's command, as actions; refused when the phase does not allow it.
    pub fn command(&mut self, now_ms: u64, command: Command) -> Result<Vec<Action>, CommandError> {
        let progress = self.progress.unwrap_or(Progress {
            phase: Phase::Progressing,
            step: 0,
            weight_bp: 0,
        });
        let refuse = |name: &'static str| CommandError::WrongPhase {
            rollout: self.plan.id(),
            phase: progress.phase.as_str(),
            command: name,
        };
        let (to, kind, message) = match (command, progress.phase) {
            (_, phase) if phase.finished() => {
                let name = match command {
                    Command::Promote => "promote",
                    Command::Abort => "abort",
                    Command::Pause => "pause",
                    Command::Resume => "resume",
                };
                return Err(refuse(name));
            }
            (Command::Promote, _) => {
                return Ok(vec![self.promotion(now_ms, progress, "promoted by hand")])
            }
            (Command::Abort, _) => (
                Progress {
                    phase: Phase::Aborted,
                    weight_bp: 0,
                    ..progress
                },
                EventKind::Aborted,
                format!("aborted by hand: all traffic back to {}", self.plan.stable),
            ),
            (Command::Pause, Phase::Progressing) => (
                Progress {
                    phase: Phase::Paused,
                    ..progress
                },
                EventKind::Paused,
                format!("paused at {}%", pct(progress.weight_bp)),
            ),
            (Command::Resume, Phase::Paused) => (
                Progress {
                    phase: Phase::Progressing,
                    ..progress
                },
                EventKind::Resumed,
                format!("resumed at {}%", pct(progress.weight_bp)),
            ),
            (Command::Pause, _) => return Err(refuse("pause")),
            (Command::Resume, _) => return Err(refuse("resume")),
        };
        Ok(vec![self.transition(now_ms, to, kind, message, None)])
    }

    pub fn status(&self, now_ms: u64) -> Status {
        let plan = &self.plan;
        let next_check_in_ms = match (self.progress, &self.baseline) {
            (Some(p), Some((at, _))) if p.phase == Phase::Progressing => {
                Some(at.saturating_add(plan.interval_ms).saturating_sub(now_ms))
            }
            _ => None,
        };
        Status {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            service: plan.service.clone(),
            stable: plan.stable.clone(),
            canary: plan.canary.clone(),
            phase: self
                .progress
                .map_or("Pending", |p| p.phase.as_str())
                .to_string(),
            step: self.progress.map_or(0, |p| p.step + 1),
            steps: plan.steps.len(),
            weight_bp: self.progress.map_or(0, |p| p.weight_bp),
            failed_checks: self.failed_checks,
            failure_threshold: plan.analysis.failure_threshold,
            interval_ms: plan.interval_ms,
            next_check_in_ms,
            last_analysis: self.last.clone(),
            generation: plan.generation.clone(),
        }
    }

    /// Moves to `to` in memory (the store catches up when the driver writes it; if it cannot,
    /// [`Self::adopt`] takes the store's progress back).
    fn transition(
        &mut self,
        now_ms: u64,
        to: Progress,
        kind: EventKind,
        message: String,
        analysis: Option<Analysis>,
    ) -> Action {
        let step_changed = self.progress.is_none_or(|p| p.step != to.step);
        if step_changed || to.phase == Phase::Progressing {
            self.since_ms = now_ms;
        }
        if to.phase == Phase::Progressing && self.progress.is_some_and(|p| p.phase != to.phase) {
            // Resumed: judge only traffic from now on.
            self.baseline = None;
        }
        self.progress = Some(to);
        let mut event = self.event(now_ms, kind, message, analysis);
        event.weight_bp = to.weight_bp;
        Action::Transition {
            progress: to,
            event,
        }
    }

    fn record(
        &self,
        now_ms: u64,
        kind: EventKind,
        message: String,
        analysis: Option<Analysis>,
    ) -> Action {
        Action::Record(self.event(now_ms, kind, message, analysis))
    }

    fn event(
        &self,
        now_ms: u64,
        kind: EventKind,
        message: String,
        analysis: Option<Analysis>,
    ) -> Event {
        Event {
            time_unix_ms: now_ms,
            rollout: self.plan.id(),
            kind,
            weight_bp: self.progress.map_or(0, |p| p.weight_bp),
            message,
            analysis,
            version: None,
        }
    }
}

/// Basis points as a percentage for messages (`1250` -> `12.5`).
pub fn pct(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}
