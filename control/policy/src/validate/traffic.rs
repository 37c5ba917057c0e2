//! Checks of TrafficSplit, FaultInjection and CircuitBreaker documents.

use super::*;

pub(super) fn percent(c: &mut Collector<'_>, at: String, value: f64) -> Option<u32> {
    match percent_to_bp(value) {
        Ok(bp) => Some(bp),
        Err(e) => {
            c.push(at, e);
            None
        }
    }
}

pub(super) fn traffic_split(s: &TrafficSplitSpec, c: &mut Collector<'_>) {
    if s.target.versions.is_some() {
        c.push(
            "spec.target.versions",
            "not supported: a split is about choosing among the versions",
        );
    }
    if let Some(p) = &s.path_prefix {
        if !p.starts_with('/') {
            c.push(
                "spec.pathPrefix",
                format!("invalid path prefix {p:?}: must start with `/`"),
            );
        }
    }
    if s.split.is_empty() {
        c.push("spec.split", "must not be empty");
    }
    let mut total: Option<u32> = Some(0);
    let mut seen = BTreeSet::new();
    for (i, w) in s.split.iter().enumerate() {
        c.check(
            format!("spec.split[{i}].version"),
            check_version(&w.version),
        );
        if !seen.insert(&w.version) {
            c.push(
                format!("spec.split[{i}].version"),
                format!("duplicate version {:?}", w.version),
            );
        }
        let bp = percent(c, format!("spec.split[{i}].weight"), w.weight);
        total = total.zip(bp).map(|(t, b)| t + b);
    }
    if let Some(total) = total {
        if !s.split.is_empty() && total != 10_000 {
            c.push(
                "spec.split",
                format!(
                    "weights sum to {}%, expected 100%",
                    f64::from(total) / 100.0
                ),
            );
        }
    }
    for (i, r) in s.routes.iter().enumerate() {
        let at = format!("spec.routes[{i}]");
        c.check(format!("{at}.version"), check_version(&r.version));
        route_match(c, &format!("{at}.match"), &r.matches);
    }
    if let Some(st) = &s.sticky {
        let sources = [&st.header, &st.cookie, &st.claim]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if sources != 1 {
            c.push(
                "spec.sticky",
                "exactly one of `header`, `cookie` or `claim`",
            );
        }
        if let Some(h) = &st.header {
            c.check("spec.sticky.header", check_header_name(h));
        }
    }
    if let Some(co) = &s.cohort {
        for (n, h) in [
            ("requestHeader", &co.request_header),
            ("responseHeader", &co.response_header),
        ] {
            if let Some(h) = h {
                c.check(format!("spec.cohort.{n}"), check_header_name(h));
            }
        }
    }
    if let Some(m) = &s.mirror {
        c.check("spec.mirror.version", check_version(&m.version));
        percent(c, "spec.mirror.percent".into(), m.percent);
        at_most(
            c,
            "spec.mirror.maxBodyBytes",
            m.max_body_bytes,
            MAX_MIRROR_BODY_BYTES,
        );
        if let Some(t) = &m.timeout {
            c.check("spec.mirror.timeout", parse_duration(t).map(|_| ()));
        }
    }
}

/// Exactly one of header, cookie or claim, with a usable name; `at` is the `match` field.
pub(super) fn route_match(c: &mut Collector<'_>, at: &str, m: &RouteMatch) {
    let set: Vec<(&str, &NameValue)> = [
        ("header", &m.header),
        ("cookie", &m.cookie),
        ("claim", &m.claim),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
    .collect();
    if set.len() != 1 {
        c.push(at, "exactly one of `header`, `cookie` or `claim`");
    }
    for (n, v) in set {
        if v.name.is_empty() {
            c.push(format!("{at}.{n}.name"), "must not be empty");
        } else if n == "header" {
            c.check(format!("{at}.header.name"), check_header_name(&v.name));
        }
    }
}

/// Most requests one FaultInjection may hold delayed at once (the fault filter's bound).
pub const MAX_FAULT_ACTIVE: u32 = weft_filter_core::fault::MAX_ACTIVE_LIMIT;

/// Longest fault delay: five minutes (the fault filter's own bound).
pub const MAX_FAULT_DELAY_MS: u64 = 300_000;

pub(super) fn fault(s: &FaultInjectionSpec, c: &mut Collector<'_>) {
    if s.delay.is_none() && s.abort.is_none() {
        c.push("spec", "at least one of `delay` or `abort` is required");
    }
    if s.target.versions.is_some() {
        c.push(
            "spec.target.versions",
            "not supported: callers inject faults before a version is chosen",
        );
    }
    let cap = s.percent_cap.unwrap_or(50.0);
    if let Some(v) = s.percent_cap {
        percent(c, "spec.percentCap".into(), v);
    }
    if let Some(text) = &s.expiry {
        c.check("spec.expiry", crate::expiry::parse_expiry(text).map(drop));
    }
    if let Some(n) = s.max_active {
        if n == 0 {
            c.push("spec.maxActive", "must be at least 1");
        }
        at_most(c, "spec.maxActive", Some(n), MAX_FAULT_ACTIVE);
    }
    if let Some(v) = s.max_percent {
        if percent(c, "spec.maxPercent".into(), v) == Some(0) {
            c.push("spec.maxPercent", "must be at least 0.01");
        }
    }
    let fault_percent = |c: &mut Collector<'_>, at: &str, value: f64| {
        if percent(c, at.to_string(), value) == Some(0) {
            c.push(at, "must be at least 0.01");
        } else if value > cap {
            c.push(
                at,
                format!("{value}% is above the cap of {cap}%: set spec.percentCap to allow it"),
            );
        }
    };
    if let Some(d) = &s.delay {
        let ms = |c: &mut Collector<'_>, at: &str, text: &str| {
            let checked = parse_duration(text).and_then(|v| match v {
                0 => Err("must be more than 0".to_string()),
                v if v > MAX_FAULT_DELAY_MS => Err("must be at most 5m".to_string()),
                v => Ok(v),
            });
            checked.map_err(|e| c.push(at, e)).ok()
        };
        let fixed = ms(c, "spec.delay.fixedDelay", &d.fixed_delay);
        let max = d
            .max_delay
            .as_ref()
            .and_then(|m| ms(c, "spec.delay.maxDelay", m));
        if let (Some(f), Some(m)) = (fixed, max) {
            if m < f {
                c.push(
                    "spec.delay.maxDelay",
                    "must not be less than spec.delay.fixedDelay",
                );
            }
        }
        fault_percent(c, "spec.delay.percent", d.percent);
    }
    if let Some(a) = &s.abort {
        if !(200..=599).contains(&a.http_status) {
            c.push(
                "spec.abort.httpStatus",
                format!("{} is not an HTTP status in 200-599", a.http_status),
            );
        }
        if a.grpc_status.is_some_and(|g| g > 16) {
            c.push("spec.abort.grpcStatus", "must be 0-16");
        }
        fault_percent(c, "spec.abort.percent", a.percent);
    }
    if let Some(m) = &s.matches {
        for (i, p) in m.path_prefixes.iter().enumerate() {
            if !p.starts_with('/') {
                c.push(
                    format!("spec.match.pathPrefixes[{i}]"),
                    format!("invalid path prefix {p:?}: must start with `/`"),
                );
            }
        }
        for (i, p) in m.principals.iter().enumerate() {
            c.check(format!("spec.match.principals[{i}]"), check_principal(p));
        }
        for (i, h) in m.headers.iter().enumerate() {
            c.check(
                format!("spec.match.headers[{i}].name"),
                check_header_name(&h.name),
            );
            if h.exact.is_some() && h.prefix.is_some() {
                c.push(
                    format!("spec.match.headers[{i}]"),
                    "only one of `exact` or `prefix`",
                );
            }
        }
    }
}

/// Bytes a mirrored request body is buffered up to (the sidecar holds them per request).
pub const MAX_MIRROR_BODY_BYTES: u32 = 16 * 1024 * 1024;
/// Failures, probes and minimum requests a breaker counts.
pub const MAX_BREAKER_COUNT: u32 = 100_000;
/// Concurrent requests a breaker admits.
pub const MAX_CONCURRENT: u32 = 1_000_000;

/// Every count a document carries has an upper bound: `value` above `max` is an error.
fn at_most(c: &mut Collector<'_>, at: &str, value: Option<u32>, max: u32) {
    if let Some(v) = value.filter(|v| *v > max) {
        c.push(at, format!("{v} is more than the maximum of {max}"));
    }
}

/// Failure classes a `CircuitBreaker` may count.
pub const FAILURE_KINDS: [&str; 5] = ["5xx", "gatewayErrors", "connectFailure", "reset", "timeout"];

pub(super) fn breaker(s: &CircuitBreakerSpec, c: &mut Collector<'_>) {
    if let Some(kinds) = &s.failure_on {
        non_empty_list(c, "spec.failureOn", kinds, |k| {
            if FAILURE_KINDS.contains(&k) {
                Ok(())
            } else {
                Err(format!(
                    "unknown failure kind {k:?}: expected one of {FAILURE_KINDS:?}"
                ))
            }
        });
    }
    let mut durations = vec![
        ("spec.openInterval", &s.open_interval),
        ("spec.maxOpenInterval", &s.max_open_interval),
    ];
    if let Some(fr) = &s.failure_rate {
        durations.push(("spec.failureRate.window", &fr.window));
        if !(1..=100).contains(&fr.threshold_percent) {
            c.push(
                "spec.failureRate.thresholdPercent",
                format!("{} is not in 1-100", fr.threshold_percent),
            );
        }
    }
    let mut ms = BTreeMap::new();
    for (at, d) in durations {
        if let Some(d) = d {
            match parse_duration(d) {
                Ok(0) => c.push(at, "must be more than 0"),
                Ok(v) => {
                    ms.insert(at, v);
                }
                Err(e) => c.push(at, e),
            }
        }
    }
    if let (Some(open), Some(max)) = (ms.get("spec.openInterval"), ms.get("spec.maxOpenInterval")) {
        if max < open {
            c.push(
                "spec.maxOpenInterval",
                "must not be less than spec.openInterval",
            );
        }
    }
    if let Some(m) = s.backoff_multiplier {
        if !m.is_finite() || !(1.0..=100.0).contains(&m) {
            c.push("spec.backoffMultiplier", format!("{m} is not in 1-100"));
        }
    }
    if s.jitter_percent.is_some_and(|j| j > 100) {
        c.push("spec.jitterPercent", "must be at most 100");
    }
    at_most(
        c,
        "spec.consecutiveFailures",
        s.consecutive_failures,
        MAX_BREAKER_COUNT,
    );
    at_most(
        c,
        "spec.halfOpenProbes",
        s.half_open_probes,
        MAX_BREAKER_COUNT,
    );
    at_most(c, "spec.maxConcurrent", s.max_concurrent, MAX_CONCURRENT);
    if let Some(fr) = &s.failure_rate {
        at_most(
            c,
            "spec.failureRate.minRequests",
            fr.min_requests,
            MAX_BREAKER_COUNT,
        );
    }
    if s.half_open_probes == Some(0) {
        c.push("spec.halfOpenProbes", "must be at least 1");
    }
    if s.max_concurrent == Some(0) {
        c.push("spec.maxConcurrent", "must be at least 1 (omit for no cap)");
    }
    if let Some(st) = s.reject_status {
        if !(200..=599).contains(&st) {
            c.push(
                "spec.rejectStatus",
                format!("{st} is not an HTTP status in 200-599"),
            );
        }
    }
}
