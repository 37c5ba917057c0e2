//! The human forms: one line per stage for a call, a table for the matrix.

use crate::matrix::Matrix;
use crate::trace::*;

/// One line per stage, in chain order, then the outcome.
pub fn render_text(r: &CheckResult) -> String {
    let target = &r.target;
    let from = match (&r.caller.principal, &r.caller.sidecar) {
        (Some(p), Some(s)) => format!("{p} (sidecar {s})"),
        (Some(p), None) => format!("{p} (no weft sidecar)"),
        (None, _) => "a caller without a mesh identity".to_string(),
    };
    let mut out = format!(
        "call     {} {}/{}/{} ({}) from {from}\n",
        target.host, target.namespace, target.service, target.version, target.version_from
    );
    out.push_str(&format!("canary   {}\n", canary_line(&r.canary)));
    out.push_str(&format!("fault    {}\n", fault_line(&r.fault)));
    out.push_str(&format!("breaker  {}\n", breaker_line(&r.breaker)));
    if let Some(waf) = &r.waf {
        out.push_str(&format!("waf      {}\n", waf_line(waf)));
    }
    let blocked = r.waf.as_ref().is_some_and(|w| w.status.is_some());
    if blocked {
        out.push_str(&format!(
            "authz    not reached (the WAF refused the call); would be: {}\n",
            authz_line(&r.authz)
        ));
    } else {
        out.push_str(&format!("authz    {}\n", authz_line(&r.authz)));
    }
    let result = match r.status {
        Some(status) if blocked => format!("blocked by the WAF ({status})"),
        Some(status) => format!("denied ({status})"),
        None if r.fault.abort.is_some() => "allowed (the fault may abort it)".to_string(),
        None => "allowed".to_string(),
    };
    out.push_str(&format!(
        "result   {result} at policy version {}\n",
        r.policy_version
    ));
    out
}

fn percent_bp(bp: u32) -> String {
    format!("{}%", f64::from(bp) / 100.0)
}

fn canary_line(c: &CanaryTrace) -> String {
    if !c.applies {
        return c
            .note
            .clone()
            .unwrap_or_else(|| "no TrafficSplit applies".to_string());
    }
    let split: Vec<String> = c
        .split
        .iter()
        .map(|(v, bp)| format!("{v} {}", percent_bp(*bp)))
        .collect();
    let why = match (c.decided_by.as_deref(), c.rule, c.bucket) {
        (Some("rule"), Some(rule), _) => format!("by rule {rule}"),
        (Some("sticky"), _, Some(bucket)) => format!("by sticky bucket {bucket}"),
        (Some("cohort"), _, _) => "by the incoming cohort header".to_string(),
        _ => "by a random draw".to_string(),
    };
    let version = c
        .version
        .as_deref()
        .unwrap_or("one of the split's versions");
    let dry = if c.dry_run {
        " [dry run: counted as would_route, routed as before]"
    } else {
        ""
    };
    format!("{version} {why} (split {}){dry}", split.join(", "))
}

fn fault_line(f: &FaultTrace) -> String {
    let mut parts = Vec::new();
    if let Some(policy) = &f.policy {
        let mut what = Vec::new();
        if let Some(a) = &f.abort {
            what.push(format!("abort {} at {}%", a.status, a.percent));
        }
        if let Some(d) = &f.delay {
            let ms = if d.min_ms == d.max_ms {
                format!("{} ms", d.min_ms)
            } else {
                format!("{}-{} ms", d.min_ms, d.max_ms)
            };
            what.push(format!("delay {ms} at {}%", d.percent));
        }
        let header = if f.by_header { " (trigger header)" } else { "" };
        parts.push(format!("{policy}: {}{header}", what.join(", ")));
    }
    if let Some(d) = &f.dry_run {
        let mut what = Vec::new();
        if let Some(p) = d.abort_percent {
            what.push(format!("abort at {p}%"));
        }
        if let Some(p) = d.delay_percent {
            what.push(format!("delay at {p}%"));
        }
        parts.push(format!("dry run {} would {}", d.policy, what.join(", ")));
    }
    for (policy, why) in &f.skipped {
        parts.push(format!("{policy} skipped ({why})"));
    }
    if parts.is_empty() {
        return f
            .note
            .clone()
            .unwrap_or_else(|| "no FaultInjection applies".to_string());
    }
    parts.join("; ")
}

fn breaker_line(b: &BreakerTrace) -> String {
    let cluster = b.cluster.as_deref().unwrap_or("-");
    if !b.guarded {
        return match &b.cluster {
            Some(_) => format!("cluster {cluster} not guarded"),
            None => "no outbound stage runs".to_string(),
        };
    }
    let dry = if b.dry_run { " [dry run]" } else { "" };
    format!(
        "{cluster} guarded (opens after {} consecutive failures, for {} ms, fail-fast {}){dry}; state {}: {}",
        b.consecutive_failures.unwrap_or(0),
        b.open_interval_ms.unwrap_or(0),
        b.reject_status.unwrap_or(503),
        b.state,
        b.observed.as_deref().unwrap_or("")
    )
}

fn waf_line(w: &WafTrace) -> String {
    let verdict = match (w.outcome.as_str(), w.status) {
        ("blocked", Some(status)) => format!("BLOCK {status}"),
        ("would-block", _) => "WOULD BLOCK (detect mode: counted, not refused)".to_string(),
        _ => "PASS".to_string(),
    };
    let mut line = format!(
        "{verdict} by {} ({} mode, paranoia {}): ",
        w.name, w.mode, w.paranoia
    );
    match (&w.limit, &w.limit_detail) {
        (Some(limit), detail) => line.push_str(&format!(
            "limit {limit}: {}",
            detail.as_deref().unwrap_or("")
        )),
        (None, _) => line.push_str(&format!("anomaly score {} of {}", w.score, w.threshold)),
    }
    if !w.rules.is_empty() {
        let rules: Vec<String> = w
            .rules
            .iter()
            .map(|m| format!("{}@{} ({}, +{})", m.rule, m.target, m.category, m.score))
            .collect();
        line.push_str(&format!("; rules {}", rules.join(", ")));
    }
    if !w.excluded.is_empty() {
        let excluded: Vec<String> = w
            .excluded
            .iter()
            .map(|e| {
                let by: Vec<String> = e.exclusions.iter().map(ToString::to_string).collect();
                format!("{}@{} (exclusion {})", e.rule, e.target, by.join(","))
            })
            .collect();
        line.push_str(&format!("; excluded {}", excluded.join(", ")));
    }
    line.push_str(&format!("; body {} [{}]", w.body, w.sidecar));
    line
}

fn authz_line(a: &AuthzTrace) -> String {
    let verdict = match a.status {
        None => "ALLOW".to_string(),
        Some(status) => format!("DENY {status}"),
    };
    let by = match (&a.policy, a.rule) {
        (Some(p), Some(rule)) => format!(" by {p} rule {rule}"),
        (Some(p), None) => format!(" by {p}"),
        (None, _) => String::new(),
    };
    let mut line = format!("{verdict}{by}: {} [{}]", a.reason, a.sidecar);
    // A default deny: where each ALLOW policy's rules failed.
    if a.policy.as_deref() == Some(weft_filter_core::authz::DEFAULT_DENY_POLICY) {
        let misses: Vec<String> = a
            .policies
            .iter()
            .filter(|p| p.action == "ALLOW" && !p.dry_run)
            .map(|p| {
                let rules: Vec<String> = p
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("rule {i}: {}", m.as_deref().unwrap_or("matched")))
                    .collect();
                format!("{} ({})", p.name, rules.join(", "))
            })
            .collect();
        line.push_str(&format!("; failed: {}", misses.join("; ")));
    }
    if !a.dry_run_denied.is_empty() {
        line.push_str(&format!(
            "; dry run would deny: {}",
            a.dry_run_denied.join(", ")
        ));
    }
    if !a.audited.is_empty() {
        line.push_str(&format!("; audited by {}", a.audited.join(", ")));
    }
    line
}

/// Callers down, services across; `allow`, or the status and the deciding policy.
pub fn render_matrix(m: &Matrix) -> String {
    let cell = |from: &str, to: &str| -> String {
        m.cells
            .iter()
            .find(|c| c.from == from && c.to == to)
            .map_or_else(String::new, |c| match c.status {
                None => "allow".to_string(),
                Some(status) => format!("{status} {}", c.policy.as_deref().unwrap_or("")),
            })
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![format!("{} {}  from \\ to", m.method, m.path)];
    header.extend(m.services.iter().cloned());
    rows.push(header);
    for from in &m.callers {
        let mut row = vec![from.clone()];
        row.extend(m.services.iter().map(|to| cell(from, to)));
        rows.push(row);
    }
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("policy version {}\n", m.policy_version));
    out
}
