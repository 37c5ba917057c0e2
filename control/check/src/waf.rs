//! The target's WAF (a gateway's `weft.waf` entry, or the `waf` section of a service's
//! inbound suite), run by its own core (`weft_filter_core::waf`) the way the WAF stage runs
//! it: the head first (a refusal or a score at the threshold stops there), then a form or
//! JSON body held up to `inspectBodyBytes`, any other body only counted against
//! `maxBodyBytes`.
//!
//! Exclusions are shown, not re-decided: the call is judged a second time by the same core
//! with the exclusions taken out, and every match that appears only then was removed by an
//! exclusion (named by its index when its path, rule and argument cover the match).

use weft_filter_core::waf::{Assessment, BodyPlan, Head, Mode, Verdict, Waf, WafConfig};

use crate::trace::{WafExcluded, WafRule, WafTrace};

/// The request as the WAF reads it.
pub(crate) struct WafInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Lower-case names, in the order sent (`content-length` added for a body).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// What the WAF stage would conclude, with the assessment it concluded it from.
struct Judged {
    assessment: Assessment,
    /// Body bytes inspected (0: none were).
    inspected: usize,
    body: &'static str,
}

/// Mirrors `WafStage::on_request_headers` + `on_request_body` for a body sent whole.
fn judge(waf: &Waf, input: &WafInput<'_>) -> Judged {
    let mut a = waf.check_head(&Head {
        method: input.method,
        path: input.path,
        headers: input.headers,
        end_of_stream: input.body.is_empty(),
    });
    let decided_at_head = a.refusal.is_some() || waf.verdict(&a) != Verdict::Pass;
    let size = input.body.len();
    if decided_at_head {
        return Judged {
            assessment: a,
            inspected: 0,
            body: "not reached (decided on the head)",
        };
    }
    match a.body {
        BodyPlan::None => Judged {
            assessment: a,
            inspected: 0,
            body: "none",
        },
        BodyPlan::Stream if (size as u64) > waf.max_body_bytes() => Judged {
            assessment: waf.oversized_body(size as u64),
            inspected: 0,
            body: "streamed, over maxBodyBytes",
        },
        BodyPlan::Stream => Judged {
            assessment: a,
            inspected: 0,
            body: "streamed (not inspected: neither form nor JSON)",
        },
        BodyPlan::Inspect(_) if (size as u64) > waf.max_body_bytes() => {
            waf.body_too_large(&mut a, size as u64);
            Judged {
                assessment: a,
                inspected: 0,
                body: "held, over maxBodyBytes",
            }
        }
        BodyPlan::Inspect(kind) => {
            let limit = waf.inspect_body_bytes();
            let held = input.body.get(..size.min(limit)).unwrap_or_default();
            waf.check_body(&mut a, kind, held, size <= limit);
            Judged {
                assessment: a,
                inspected: held.len(),
                body: if size <= limit {
                    "inspected"
                } else {
                    "inspected (its first inspectBodyBytes), the rest streamed"
                },
            }
        }
    }
}

/// The matches only a judgement without exclusions finds.
fn excluded(config: &WafConfig, input: &WafInput<'_>, kept: &Assessment) -> Vec<WafExcluded> {
    if config.exclusions.is_empty() {
        return Vec::new();
    }
    let bare = WafConfig {
        exclusions: Vec::new(),
        ..config.clone()
    };
    let Ok(bare) = Waf::new(bare) else {
        return Vec::new();
    };
    let path = input.path.split_once('?').map_or(input.path, |(p, _)| p);
    let all = judge(&bare, input).assessment;
    let mut out: Vec<WafExcluded> = Vec::new();
    for m in &all.matches {
        let still = kept
            .matches
            .iter()
            .any(|k| k.rule == m.rule && k.target == m.target);
        if still || out.iter().any(|o| o.rule == m.rule && o.target == m.target) {
            continue;
        }
        out.push(WafExcluded {
            rule: m.rule,
            target: m.target.clone(),
            exclusions: (0..config.exclusions.len())
                .filter(|i| {
                    config
                        .exclusions
                        .get(*i)
                        .is_some_and(|e| e.covers(path, m.rule, &m.target))
                })
                .collect(),
        });
    }
    out
}

/// The WAF's trace for one call to `sidecar`.
pub(crate) fn waf_trace(waf: &Waf, input: &WafInput<'_>, sidecar: String) -> WafTrace {
    let config = waf.config();
    let judged = judge(waf, input);
    let a = &judged.assessment;
    let (outcome, status, reason, log) = match waf.verdict(a) {
        Verdict::Pass => ("pass", None, None, None),
        Verdict::Detected { log } => ("would-block", None, None, Some(log)),
        Verdict::Block {
            status,
            reason,
            log,
        } => ("blocked", Some(status), Some(reason.to_string()), Some(log)),
    };
    WafTrace {
        sidecar,
        name: waf.name().to_string(),
        mode: match config.mode {
            Mode::Detect => "detect",
            Mode::Block => "block",
        }
        .into(),
        paranoia: config.paranoia,
        threshold: config.inbound_threshold,
        score: a.score(),
        rules: a
            .matches
            .iter()
            .map(|m| WafRule {
                rule: m.rule,
                category: m.category.as_str().into(),
                score: m.score,
                target: m.target.clone(),
            })
            .collect(),
        limit: a.refusal.as_ref().map(|r| r.reason.to_string()),
        limit_detail: a.refusal.as_ref().map(|r| r.detail.clone()),
        outcome: outcome.into(),
        status,
        reason,
        log,
        body: judged.body.into(),
        body_inspected_bytes: judged.inspected,
        excluded: excluded(config, input, a),
    }
}
