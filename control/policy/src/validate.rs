//! Validation that reports every error at once.
//!
//! [`validate_documents`] judges each document on its own (names, durations, CIDRs, SPIFFE
//! ids, weights, ...) and refuses two documents with the same key in one request;
//! [`validate_set`] judges the set a request would produce (references to services and their
//! versions, conflicting documents). Both return all errors found; empty means valid.

use crate::error::{Collector, FieldError};
use crate::model::*;
use crate::set::PolicySet;
use crate::units::*;
use std::collections::{BTreeMap, BTreeSet};

/// How strictly references to services are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// Every target service must be declared by a `Service` in the set.
    Strict,
    /// Only references to services declared in the set are checked (offline validation of a
    /// file that does not carry the `Service` documents).
    Lenient,
}

/// Checks each document on its own. `documents[i]` is labelled `Kind/ns/name (#i+1)`.
pub fn validate_documents(documents: &[Document]) -> Vec<FieldError> {
    let indexed: Vec<(usize, &Document)> = documents.iter().enumerate().collect();
    validate_indexed(&indexed)
}

/// As [`validate_documents`], with each document's index in its request given.
pub fn validate_indexed(documents: &[(usize, &Document)]) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<DocKey, usize> = BTreeMap::new();
    for &(i, doc) in documents {
        let label = label(doc, i);
        let mut c = Collector::new(&label, &mut out);
        if let Some(first) = seen.insert(doc.key(), i) {
            c.push(
                "metadata.name",
                format!("duplicate of document #{} in the same request", first + 1),
            );
        }
        document(doc, &mut c);
    }
    out
}

/// `Kind/namespace/name (#n)`, counting from 1.
pub fn label(doc: &Document, index: usize) -> String {
    format!("{} (#{})", doc.key(), index + 1)
}

fn document(doc: &Document, c: &mut Collector<'_>) {
    c.check("metadata.name", check_name(&doc.metadata.name));
    if let Some(ns) = &doc.metadata.namespace {
        c.check("metadata.namespace", check_name(ns));
    }
    if let Some(t) = doc.target() {
        target(t, c);
    }
    match &doc.spec {
        Spec::Service(s) => service(s, c),
        Spec::AuthorizationPolicy(s) => authorization(s, c),
        Spec::RequestAuthentication(s) => authentication(s, c),
        Spec::TrafficSplit(s) => traffic_split(s, c),
        Spec::FaultInjection(s) => fault(s, c),
        Spec::CircuitBreaker(s) => breaker(s, c),
    }
}

fn target(t: &TargetRef, c: &mut Collector<'_>) {
    c.check("spec.target.service", check_name(&t.service));
    if let Some(versions) = &t.versions {
        non_empty_list(c, "spec.target.versions", versions, check_version);
    }
}

/// A present list must not be empty (it could never match) and each item must pass `check`.
fn non_empty_list(
    c: &mut Collector<'_>,
    at: &str,
    items: &[String],
    check: impl Fn(&str) -> Result<(), String>,
) {
    if items.is_empty() {
        c.push(at, "must not be empty (omit the field instead)");
    }
    for (i, item) in items.iter().enumerate() {
        c.check(format!("{at}[{i}]"), check(item));
    }
}

fn optional_list(
    c: &mut Collector<'_>,
    at: &str,
    items: &Option<Vec<String>>,
    check: impl Fn(&str) -> Result<(), String>,
) {
    if let Some(items) = items {
        non_empty_list(c, at, items, check);
    }
}

fn service(s: &ServiceSpec, c: &mut Collector<'_>) {
    if s.port == 0 {
        c.push("spec.port", "must be 1-65535");
    }
    non_empty_list(c, "spec.versions", &s.versions, check_version);
    let mut seen = BTreeSet::new();
    for (i, v) in s.versions.iter().enumerate() {
        if !seen.insert(v) {
            c.push(
                format!("spec.versions[{i}]"),
                format!("duplicate version {v:?}"),
            );
        }
    }
    if let Some(stable) = &s.stable_version {
        if !s.versions.contains(stable) {
            c.push(
                "spec.stableVersion",
                format!("unknown service version {stable:?}: not in spec.versions"),
            );
        }
    }
    if let Some(host) = &s.host {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            c.push(
                "spec.host",
                format!("invalid host {host:?}: expected a lower-case DNS name without port"),
            );
        }
    }
}

fn str_pattern(p: &str) -> Result<(), String> {
    let stars = p.matches('*').count();
    if p.is_empty() {
        Err("must not be empty".into())
    } else if stars == 0 || p == "*" || (stars == 1 && (p.starts_with('*') || p.ends_with('*'))) {
        Ok(())
    } else {
        Err(format!(
            "invalid pattern {p:?}: `*` only alone, first or last"
        ))
    }
}

fn namespace_pattern(p: &str) -> Result<(), String> {
    if p.contains('/') {
        return Err(format!("invalid namespace {p:?}: must not contain `/`"));
    }
    str_pattern(p)
}

fn authorization(s: &AuthorizationPolicySpec, c: &mut Collector<'_>) {
    for (i, rule) in s.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(from) = &rule.from {
            let f = |name: &str| format!("{at}.from.{name}");
            optional_list(c, &f("principals"), &from.principals, check_principal);
            optional_list(
                c,
                &f("notPrincipals"),
                &from.not_principals,
                check_principal,
            );
            optional_list(c, &f("namespaces"), &from.namespaces, namespace_pattern);
            optional_list(
                c,
                &f("notNamespaces"),
                &from.not_namespaces,
                namespace_pattern,
            );
            optional_list(c, &f("ipBlocks"), &from.ip_blocks, check_cidr);
            optional_list(c, &f("notIpBlocks"), &from.not_ip_blocks, check_cidr);
        }
        if let Some(to) = &rule.to {
            let f = |name: &str| format!("{at}.to.{name}");
            optional_list(c, &f("methods"), &to.methods, check_method);
            optional_list(c, &f("notMethods"), &to.not_methods, check_method);
            optional_list(c, &f("paths"), &to.paths, check_path);
            optional_list(c, &f("notPaths"), &to.not_paths, check_path);
        }
        for (j, cond) in rule.when.iter().enumerate() {
            condition(&format!("{at}.when[{j}]"), cond, c);
        }
    }
    if let Some(d) = &s.deny_response {
        deny_response(d, c);
    }
}

/// What a `when[].key` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    Header(String),
    /// Nested claims joined with `.`.
    Claim(String),
}

/// Parses `request.headers[<name>]` or `request.auth.claims[<a>][<b>]...`.
pub fn parse_condition_key(key: &str) -> Result<ConditionKey, String> {
    let bad = || {
        format!("unsupported key {key:?}: expected `request.headers[<name>]` or `request.auth.claims[<name>]`")
    };
    if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        check_header_name(name)?;
        return Ok(ConditionKey::Header(name.to_ascii_lowercase()));
    }
    let inner = key
        .strip_prefix("request.auth.claims[")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split("][").collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains(['[', ']', '.']))
    {
        return Err(bad());
    }
    Ok(ConditionKey::Claim(parts.join(".")))
}

fn condition(at: &str, cond: &AuthzCondition, c: &mut Collector<'_>) {
    let key = parse_condition_key(&cond.key);
    c.check(format!("{at}.key"), key.clone().map(|_| ()));
    let check = |v: &str| match key {
        Ok(ConditionKey::Header(_)) => str_pattern(v),
        _ => Ok(()),
    };
    match (&cond.values, &cond.not_values) {
        (None, None) => c.push(at, "one of `values` or `notValues` is required"),
        (Some(_), Some(_)) => c.push(at, "only one of `values` or `notValues`"),
        (Some(v), None) => non_empty_list(c, &format!("{at}.values"), v, check),
        (None, Some(v)) => non_empty_list(c, &format!("{at}.notValues"), v, check),
    }
}

fn deny_response(d: &DenyResponseSpec, c: &mut Collector<'_>) {
    if let Some(status) = d.status {
        if !(200..=599).contains(&status) {
            c.push(
                "spec.denyResponse.status",
                format!("{status} is not an HTTP status in 200-599"),
            );
        }
    }
    for (name, value) in &d.headers {
        let at = format!("spec.denyResponse.headers[{name:?}]");
        c.check(at.clone(), check_header_name(name));
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            c.push(at, "value must not contain CR, LF or NUL");
        }
    }
}

fn authentication(s: &RequestAuthenticationSpec, c: &mut Collector<'_>) {
    if s.jwt_rules.is_empty() {
        c.push("spec.jwtRules", "must not be empty");
    }
    for (i, rule) in s.jwt_rules.iter().enumerate() {
        let at = format!("spec.jwtRules[{i}]");
        if rule.issuer.trim().is_empty() {
            c.push(format!("{at}.issuer"), "must not be empty");
        }
        if let Some(h) = &rule.from_header {
            c.check(format!("{at}.fromHeader.name"), check_header_name(&h.name));
        }
        if let Some(skew) = &rule.clock_skew {
            c.check(format!("{at}.clockSkew"), parse_duration(skew).map(|_| ()));
        }
        match &rule.jwks {
            None if rule.hs256_secrets.is_empty() => {
                c.push(at.clone(), "one of `jwks` or `hs256Secrets` is required")
            }
            None => {}
            Some(jwks) => c.check(format!("{at}.jwks"), check_jwks(jwks)),
        }
        for (k, out) in rule.output_claim_to_headers.iter().enumerate() {
            let field = format!("{at}.outputClaimToHeaders[{k}]");
            c.check(format!("{field}.header"), check_header_name(&out.header));
            if out.claim.is_empty() || out.claim.split('.').any(str::is_empty) {
                c.push(
                    format!("{field}.claim"),
                    format!("invalid claim name {:?}", out.claim),
                );
            }
        }
        for (k, secret) in rule.hs256_secrets.iter().enumerate() {
            if secret.len() < 32 {
                c.push(
                    format!("{at}.hs256Secrets[{k}]"),
                    "an HS256 secret must be at least 32 bytes (RFC 7518 section 3.2)",
                );
            }
        }
    }
}

fn check_jwks(jwks: &serde_json::Value) -> Result<(), String> {
    let parsed;
    let doc = match jwks {
        serde_json::Value::String(text) => {
            parsed = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("invalid JWKS JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    match doc.get("keys").and_then(|k| k.as_array()) {
        Some(keys) if !keys.is_empty() => Ok(()),
        _ => Err("a JWKS must be an object with a non-empty `keys` array".into()),
    }
}

fn percent(c: &mut Collector<'_>, at: String, value: f64) -> Option<u32> {
    match percent_to_bp(value) {
        Ok(bp) => Some(bp),
        Err(e) => {
            c.push(at, e);
            None
        }
    }
}

fn traffic_split(s: &TrafficSplitSpec, c: &mut Collector<'_>) {
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
        let m = &r.matches;
        let set: Vec<(&str, &NameValue)> = [
            ("header", &m.header),
            ("cookie", &m.cookie),
            ("claim", &m.claim),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        if set.len() != 1 {
            c.push(
                format!("{at}.match"),
                "exactly one of `header`, `cookie` or `claim`",
            );
        }
        for (n, v) in set {
            if v.name.is_empty() {
                c.push(format!("{at}.match.{n}.name"), "must not be empty");
            } else if n == "header" {
                c.check(
                    format!("{at}.match.header.name"),
                    check_header_name(&v.name),
                );
            }
        }
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
        if let Some(t) = &m.timeout {
            c.check("spec.mirror.timeout", parse_duration(t).map(|_| ()));
        }
    }
}

/// Longest fault delay: five minutes (the fault filter's own bound).
pub const MAX_FAULT_DELAY_MS: u64 = 300_000;

fn fault(s: &FaultInjectionSpec, c: &mut Collector<'_>) {
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

/// Failure classes a `CircuitBreaker` may count.
pub const FAILURE_KINDS: [&str; 5] = ["5xx", "gatewayErrors", "connectFailure", "reset", "timeout"];

fn breaker(s: &CircuitBreakerSpec, c: &mut Collector<'_>) {
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

/// Parses a request and checks each document on its own: every parse and validation error of
/// every document, or the documents. Cross-document checks are [`validate_set`]'s.
pub fn load(input: &[u8], limits: &crate::Limits) -> Result<Vec<Document>, crate::PolicyError> {
    let (docs, mut errors) = crate::parse::parse_partial(input, limits)?;
    let indexed: Vec<(usize, &Document)> = docs.iter().map(|(i, d)| (*i, d)).collect();
    errors.extend(validate_indexed(&indexed));
    if errors.is_empty() {
        Ok(docs.into_iter().map(|(_, d)| d).collect())
    } else {
        errors.sort_by_key(|e| document_index(&e.document));
        Err(crate::PolicyError::Invalid(errors))
    }
}

/// The `n` of a `... (#n)` label, so errors list in document order (stable within one).
fn document_index(label: &str) -> usize {
    label
        .rsplit('#')
        .next()
        .and_then(|n| n.trim_end_matches(')').parse().ok())
        .unwrap_or(usize::MAX)
}

/// Labels for the documents of one request, for [`validate_set`].
pub fn labels(documents: &[Document]) -> BTreeMap<DocKey, String> {
    documents
        .iter()
        .enumerate()
        .map(|(i, d)| (d.key(), label(d, i)))
        .collect()
}

/// Checks the set a request would produce. `labels` names the documents of the request;
/// any other document is reported as `<key> (stored)`.
pub fn validate_set(
    set: &PolicySet,
    labels: &BTreeMap<DocKey, String>,
    refs: References,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    let label_of = |key: &DocKey| {
        labels
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{key} (stored)"))
    };
    let mut hosts: BTreeMap<String, DocKey> = BTreeMap::new();
    for (ns, name, s) in set.services() {
        let host = s.host.clone().unwrap_or_else(|| name.to_string());
        let key = DocKey {
            kind: Kind::Service,
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        if let Some(other) = hosts.insert(host.clone(), key.clone()) {
            let l = label_of(&key);
            out.push(FieldError::new(
                l,
                "spec.host",
                format!("host {host:?} is also used by {other}"),
            ));
        }
    }
    // (kind, namespace, service, version) -> first document claiming it.
    let mut claimed: BTreeMap<(Kind, String, String, String), DocKey> = BTreeMap::new();
    for doc in set.iter() {
        let Some(t) = doc.target() else { continue };
        let key = doc.key();
        let label = label_of(&key);
        let mut c = Collector::new(&label, &mut out);
        let Some(svc) = set.service(doc.namespace(), &t.service) else {
            if refs == References::Strict {
                c.push(
                    "spec.target.service",
                    format!("unknown service {:?} in namespace {:?}: declare it with a Service document", t.service, doc.namespace()),
                );
            }
            continue;
        };
        let known = |c: &mut Collector<'_>, at: String, v: &str| {
            if !svc.versions.iter().any(|x| x == v) {
                c.push(
                    at,
                    format!(
                        "unknown service version {v:?} of {}/{}: known {:?}",
                        doc.namespace(),
                        t.service,
                        svc.versions
                    ),
                );
            }
        };
        for (i, v) in t.versions.iter().flatten().enumerate() {
            known(&mut c, format!("spec.target.versions[{i}]"), v);
        }
        if let Spec::TrafficSplit(s) = &doc.spec {
            for (i, w) in s.split.iter().enumerate() {
                known(&mut c, format!("spec.split[{i}].version"), &w.version);
            }
            for (i, r) in s.routes.iter().enumerate() {
                known(&mut c, format!("spec.routes[{i}].version"), &r.version);
            }
            if let Some(m) = &s.mirror {
                known(&mut c, "spec.mirror.version".into(), &m.version);
            }
        }
        // One TrafficSplit / FaultInjection / CircuitBreaker per service version: two would
        // compile into conflicting entries for the same cluster.
        let exclusive = matches!(
            doc.kind(),
            Kind::TrafficSplit | Kind::FaultInjection | Kind::CircuitBreaker
        );
        if exclusive {
            let versions: Vec<&String> = match (&t.versions, doc.kind()) {
                (Some(v), k) if k != Kind::TrafficSplit => v.iter().collect(),
                _ => svc.versions.iter().collect(),
            };
            for v in versions {
                let slot = (
                    doc.kind(),
                    doc.namespace().to_string(),
                    t.service.clone(),
                    v.clone(),
                );
                if let Some(other) = claimed.get(&slot) {
                    c.push(
                        "spec.target",
                        format!(
                            "conflicts with {other}: both apply to {}/{} version {v}",
                            doc.namespace(),
                            t.service
                        ),
                    );
                    break;
                }
                claimed.insert(slot, key.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
