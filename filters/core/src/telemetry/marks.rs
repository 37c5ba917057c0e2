//! What the other weft stages did to a request, as the telemetry stage reads it in `on_log`:
//! who answered it locally ([`LocalReply`], from [`super::DECISION_PROPERTY`] or the
//! missing upstream) and what happened on its way without a reply ([`Marks`]: a fault
//! delay, dry-run verdicts, the breaker's phase).
//!
//! Stages talk to telemetry through stream properties (Envoy filter state), never through
//! memory, so the same record is made whether the stages run as separate filters or in the
//! suite: the fault stage writes [`FAULT_PROPERTY`], the breaker [`BREAKER_PROPERTY`], each
//! at most once per request, as the comma-joined words of [`FaultMarks::encode`] and
//! [`BreakerMark::encode`]. Unknown words are ignored, so a newer stage never breaks an
//! older telemetry stage.

use crate::breaker::Phase;
use std::borrow::Cow;

/// Stream property the fault stage sets when it delays a request or a dry-run policy would
/// have acted (`delayed`, `would_abort`, `would_delay`).
pub const FAULT_PROPERTY: &str = "weft_fault";
/// Stream property the breaker stage sets on every request to a guarded cluster: the phase it
/// saw when admitting (`closed`, `open`, `half-open`), plus `would_fail_fast` in a dry run.
pub const BREAKER_PROPERTY: &str = "weft_breaker";
/// Stream property the WAF stage sets when it refuses a request (`blocked`) or, in detect
/// mode, would have (`detected`). Its access-log line goes into the decision property in
/// both cases, so the mark, not that line, says whether a reply was sent.
pub const WAF_PROPERTY: &str = "weft_waf";

/// Who answered a request without the callee seeing it (or, inbound, without the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    /// authz denied it.
    Denied,
    /// fault injected an abort.
    Aborted,
    /// The breaker failed it fast (open, half-open with all probes out, or over its cap).
    FailFast,
    /// Envoy answered without reaching an upstream host (no healthy upstream, no route, a
    /// client that went away first): not a weft decision, but the callee never saw it.
    Unreached,
    /// The WAF refused it (a limit, or its anomaly score): known from [`WafMark`].
    WafBlocked,
}

impl LocalReply {
    /// From [`super::DECISION_PROPERTY`]: its first word names the stage (`authz: 403 by
    /// ...`). `None` when no weft stage answered.
    pub fn from_decision(value: Option<&[u8]>) -> Option<Self> {
        let value = value?;
        let stage = value.split(|b| *b == b':').next()?;
        match stage {
            b"authz" => Some(Self::Denied),
            b"fault" => Some(Self::Aborted),
            b"breaker" => Some(Self::FailFast),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Aborted => "aborted",
            Self::FailFast => "fail_fast",
            Self::Unreached => "unreached",
            Self::WafBlocked => "waf",
        }
    }
}

/// What the fault stage did to a request that it did not answer (an abort after a delay is
/// both delayed and a [`LocalReply::Aborted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultMarks {
    pub delayed: bool,
    pub would_abort: bool,
    pub would_delay: bool,
}

impl FaultMarks {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The property's value.
    pub fn encode(&self) -> String {
        let words = [
            (self.delayed, "delayed"),
            (self.would_abort, "would_abort"),
            (self.would_delay, "would_delay"),
        ];
        join(words)
    }

    pub fn parse(value: Option<&[u8]>) -> Self {
        let mut marks = Self::default();
        for word in words(value) {
            match word {
                b"delayed" => marks.delayed = true,
                b"would_abort" => marks.would_abort = true,
                b"would_delay" => marks.would_delay = true,
                _ => {}
            }
        }
        marks
    }
}

/// The breaker's view of a request to a guarded cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerMark {
    /// The phase the admission saw (after any transition it made); `None`: unguarded.
    pub phase: Option<Phase>,
    /// Dry run: the breaker would have failed it fast (it went through).
    pub would_fail_fast: bool,
}

impl BreakerMark {
    /// The property's value: the phase alone (every admitted request of a guarded
    /// cluster) is a constant, not built.
    pub fn encode(&self) -> Cow<'static, str> {
        if let (Some(phase), false) = (self.phase, self.would_fail_fast) {
            return Cow::Borrowed(phase.as_str());
        }
        let phase = self.phase.map(Phase::as_str);
        let mut out = join([(self.would_fail_fast, "would_fail_fast")]);
        if let Some(phase) = phase {
            out = if out.is_empty() {
                phase.to_string()
            } else {
                format!("{phase},{out}")
            };
        }
        Cow::Owned(out)
    }

    pub fn parse(value: Option<&[u8]>) -> Self {
        let mut mark = Self::default();
        for word in words(value) {
            match word {
                b"closed" => mark.phase = Some(Phase::Closed),
                b"open" => mark.phase = Some(Phase::Open),
                b"half-open" => mark.phase = Some(Phase::HalfOpen),
                b"would_fail_fast" => mark.would_fail_fast = true,
                _ => {}
            }
        }
        mark
    }
}

/// What the WAF concluded about a request it judged anomalous (or over a limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WafMark {
    /// Refused (the WAF's local reply).
    pub blocked: bool,
    /// Detect mode: it would have been refused; it went on.
    pub detected: bool,
}

impl WafMark {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The property's value.
    pub fn encode(&self) -> String {
        join([(self.blocked, "blocked"), (self.detected, "detected")])
    }

    pub fn parse(value: Option<&[u8]>) -> Self {
        let mut mark = Self::default();
        for word in words(value) {
            match word {
                b"blocked" => mark.blocked = true,
                b"detected" => mark.detected = true,
                _ => {}
            }
        }
        mark
    }
}

/// Everything telemetry learns about a request from the other stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    pub fault: FaultMarks,
    pub breaker: BreakerMark,
    pub waf: WafMark,
}

fn join<const N: usize>(words: [(bool, &str); N]) -> String {
    words
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, word)| *word)
        .collect::<Vec<_>>()
        .join(",")
}

fn words(value: Option<&[u8]>) -> impl Iterator<Item = &[u8]> {
    value
        .unwrap_or_default()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
}
