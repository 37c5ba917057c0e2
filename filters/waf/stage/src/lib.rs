//! weft WAF: protocol limits and anomaly-scored detection at the edge, as a stage.
//!
//! The decisions live in `weft_filter_core::waf`; [`WafStage`] reads the request through the
//! [`Host`] trait, holds a form or JSON body (up to the configured size) before the request
//! goes on, counts every outcome and rule, writes the reason into the access log's
//! `weft_decision` filter state and sends the refusal. The standalone module
//! (`filters/waf`, `waf.wasm`) wraps it; the combined module runs it as its first stage.
//!
//! Body handling: a body that is not inspected streams through untouched, its bytes counted
//! against `max_body_bytes` (over it: the configured 413, the upstream request reset). A form
//! or JSON body is held in the body callbacks until it ends or `inspect_body_bytes` are in,
//! then judged and released whole. The head has gone on by then (a paused head would never
//! see its body in proxy-wasm), so a refused body leaves the upstream a head and a reset.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use weft_filter_core::host::{Counter, Flow};
use weft_filter_core::telemetry::{WafMark, DECISION_PROPERTY, WAF_PROPERTY};
use weft_filter_core::waf::rules::RULES;
use weft_filter_core::waf::{Assessment, BodyKind, BodyPlan, Category, Head, Verdict, Waf};
use weft_filter_core::Host;

/// Every stat starts with this.
pub const STATS_PREFIX: &str = "weft.waf.";

/// Limit reason codes (one counter each).
const REASONS: [&str; 9] = [
    "method_not_allowed",
    "request_line_too_long",
    "header_too_large",
    "too_many_headers",
    "too_many_args",
    "arg_too_long",
    "body_too_large",
    "content_type_not_allowed",
    "anomaly_score",
];

struct Stats {
    passed: Counter,
    blocked: Counter,
    detected: Counter,
    /// Requests whose body was held for inspection.
    body_inspected: Counter,
    reason: HashMap<&'static str, Counter>,
    rule: HashMap<u32, Counter>,
    category: HashMap<Category, Counter>,
}

/// The WAF of one root context.
pub struct WafStage {
    waf: Waf,
    stats: Stats,
}

/// One request, between callbacks.
#[derive(Debug, Default)]
pub struct WafRequest {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Nothing more to do.
    #[default]
    Done,
    /// The head (and the body so far) is held until the body can be judged.
    Holding {
        assessment: Assessment,
        kind: BodyKind,
        held: usize,
    },
    /// Passed; the body streams, counted against the limit.
    Streaming { seen: u64 },
}

/// Tells telemetry what the WAF did (the decision property carries the access-log line in
/// detect mode too, so it cannot say whether a reply was sent).
fn mark(host: &impl Host, mark: WafMark) {
    host.set_property(WAF_PROPERTY, mark.encode().as_bytes());
}

fn stat(name: &str) -> String {
    format!("{STATS_PREFIX}{name}")
}

// === impl WafStage ===

impl WafStage {
    /// Defines the stats on `host` (from `on_configure`).
    pub fn new(waf: Waf, host: &impl Host) -> Self {
        let stats = Stats {
            passed: Counter::new(host, &stat("passed")),
            blocked: Counter::new(host, &stat("blocked")),
            detected: Counter::new(host, &stat("detected")),
            body_inspected: Counter::new(host, &stat("body_inspected")),
            reason: REASONS
                .iter()
                .map(|r| (*r, Counter::new(host, &stat(&format!("reason.{r}")))))
                .collect(),
            rule: RULES
                .iter()
                .map(|r| (r.id, Counter::new(host, &stat(&format!("rule.{}", r.id)))))
                .collect(),
            category: Category::ALL
                .iter()
                .map(|c| {
                    (
                        *c,
                        Counter::new(host, &stat(&format!("category.{}", c.as_str()))),
                    )
                })
                .collect(),
        };
        log::info!(
            "weft-waf: configured {} ({:?} mode, paranoia {}, threshold {})",
            waf.name(),
            waf.config().mode,
            waf.config().paranoia,
            waf.config().inbound_threshold
        );
        Self { waf, stats }
    }

    /// Counts the rules and categories that matched.
    fn count_matches(&self, host: &impl Host, a: &Assessment) {
        for id in a.rule_ids() {
            if let Some(c) = self.stats.rule.get(&id) {
                c.inc(host);
            }
        }
        for cat in a.categories() {
            if let Some(c) = self.stats.category.get(&cat) {
                c.inc(host);
            }
        }
    }

    /// Acts on the verdict: `Pause` after a refusal, else `Continue`.
    fn act(&self, host: &impl Host, a: &Assessment) -> Flow {
        self.count_matches(host, a);
        match self.waf.verdict(a) {
            Verdict::Pass => {
                self.stats.passed.inc(host);
                Flow::Continue
            }
            Verdict::Detected { log } => {
                self.stats.detected.inc(host);
                if let Some(c) = a
                    .refusal
                    .as_ref()
                    .and_then(|r| self.stats.reason.get(r.reason))
                {
                    c.inc(host);
                }
                log::debug!("weft-{log}");
                host.set_property(DECISION_PROPERTY, log.as_bytes());
                mark(
                    host,
                    WafMark {
                        detected: true,
                        ..WafMark::default()
                    },
                );
                Flow::Continue
            }
            Verdict::Block {
                status,
                reason,
                log,
            } => {
                self.stats.blocked.inc(host);
                if let Some(c) = self.stats.reason.get(reason) {
                    c.inc(host);
                }
                log::debug!("weft-{log}");
                host.set_property(DECISION_PROPERTY, log.as_bytes());
                mark(
                    host,
                    WafMark {
                        blocked: true,
                        ..WafMark::default()
                    },
                );
                // The reason code only: the rule ids stay in the access log.
                let body = format!("request refused by the web application firewall: {reason}\n");
                host.send_local_reply(
                    status,
                    &[("content-type".to_string(), "text/plain".to_string())],
                    &body,
                );
                Flow::Pause
            }
        }
    }

    /// The head: judged now (`Pause` after a refusal); a form or JSON body is then held and
    /// judged in [`Self::on_request_body`].
    pub fn on_request_headers(
        &self,
        r: &mut WafRequest,
        host: &impl Host,
        end_of_stream: bool,
    ) -> Flow {
        let method = host.method().unwrap_or_default();
        let path = host.path().unwrap_or_default();
        let headers = host.request_headers();
        let a = self.waf.check_head(&Head {
            method: &method,
            path: &path,
            headers: &headers,
            end_of_stream,
        });
        if a.refusal.is_some() || self.waf.verdict(&a) != Verdict::Pass {
            r.state = State::Done;
            return self.act(host, &a);
        }
        match a.body {
            BodyPlan::None => {
                r.state = State::Done;
                self.act(host, &a)
            }
            BodyPlan::Stream => {
                r.state = State::Streaming { seen: 0 };
                self.act(host, &a)
            }
            BodyPlan::Inspect(kind) => {
                // The head goes on (Envoy would not call the body callbacks of a paused head:
                // proxy-wasm turns a header `Pause` into StopAllIterationAndWatermark); the
                // body is held in the body callbacks.
                self.stats.body_inspected.inc(host);
                r.state = State::Holding {
                    assessment: a,
                    kind,
                    held: 0,
                };
                Flow::Continue
            }
        }
    }

    /// Whether the request is held (head and body) waiting for the WAF's verdict.
    pub fn is_holding(r: &WafRequest) -> bool {
        matches!(r.state, State::Holding { .. })
    }

    /// A body chunk. Held: `body_size` is everything held so far; streaming: this chunk.
    pub fn on_request_body(
        &self,
        r: &mut WafRequest,
        host: &impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Flow {
        let max = self.waf.max_body_bytes();
        match &mut r.state {
            State::Done => Flow::Continue,
            State::Streaming { seen } => {
                *seen = seen.saturating_add(body_size as u64);
                if *seen <= max {
                    return Flow::Continue;
                }
                let a = self.waf.oversized_body(*seen);
                r.state = State::Done;
                self.act(host, &a)
            }
            State::Holding { held, .. } => {
                *held = body_size;
                if (body_size as u64) > max {
                    let State::Holding { mut assessment, .. } = std::mem::take(&mut r.state) else {
                        return Flow::Continue;
                    };
                    self.waf.body_too_large(&mut assessment, body_size as u64);
                    return self.act(host, &assessment);
                }
                if !end_of_stream && body_size < self.waf.inspect_body_bytes() {
                    return Flow::Pause; // hold (buffer) more
                }
                self.judge_held(r, host, body_size, end_of_stream)
            }
        }
    }

    /// The body ended with trailers: judge what is held.
    pub fn on_request_trailers(&self, r: &mut WafRequest, host: &impl Host) -> Flow {
        let held = match &r.state {
            State::Holding { held, .. } => *held,
            _ => return Flow::Continue,
        };
        self.judge_held(r, host, held, true)
    }

    fn judge_held(
        &self,
        r: &mut WafRequest,
        host: &impl Host,
        size: usize,
        end_of_stream: bool,
    ) -> Flow {
        let State::Holding {
            mut assessment,
            kind,
            ..
        } = std::mem::take(&mut r.state)
        else {
            return Flow::Continue;
        };
        let inspect = self.waf.inspect_body_bytes();
        let bytes = host.request_body(size.min(inspect));
        let complete = end_of_stream && size <= inspect;
        if !bytes.is_empty() || size == 0 {
            self.waf.check_body(&mut assessment, kind, &bytes, complete);
        }
        let flow = self.act(host, &assessment);
        if flow == Flow::Continue && !end_of_stream {
            r.state = State::Streaming { seen: size as u64 };
        }
        flow
    }
}
