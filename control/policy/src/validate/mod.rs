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

mod authz;
mod rollout;
mod traffic;

use authz::{authentication, authorization};
pub use authz::{authz_rule, parse_condition_key, ConditionKey};
use rollout::rollout;
pub use rollout::{rollout_schedule, PlannedStep, MAX_INTERVAL_MS, MAX_STEPS, MIN_INTERVAL_MS};
use traffic::{breaker, fault, traffic_split};

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
        Spec::Rollout(s) => rollout(s, c),
        Spec::WebApplicationFirewall(s) => waf(doc, s, c),
    }
}

/// A WebApplicationFirewall is checked by the filter's own validation of what it compiles
/// to, with the field named as the document writes it.
fn waf(doc: &Document, s: &crate::model::WebApplicationFirewallSpec, c: &mut Collector<'_>) {
    let config = s.to_config(&format!("{}/{}", doc.namespace(), doc.metadata.name));
    if let Err(e) = weft_filter_core::waf::Waf::new(config) {
        c.push(crate::model::spec_field(&e.field), e.reason);
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
    if let Some(calls) = &s.calls {
        service_calls(calls, c);
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
/// A `spec.calls` entry naming no declared service: a typo would otherwise leave the
/// caller's sidecars without the route to a service it needs.
fn undeclared_calls(
    set: &PolicySet,
    label_of: &dyn Fn(&DocKey) -> String,
    out: &mut Vec<FieldError>,
) {
    for (ns, name, s) in set.services() {
        for (i, (call_ns, call_name)) in s.called_services(ns).into_iter().flatten().enumerate() {
            if set.service(&call_ns, &call_name).is_some() {
                continue;
            }
            let key = DocKey {
                kind: Kind::Service,
                namespace: ns.to_string(),
                name: name.to_string(),
            };
            out.push(FieldError::new(
                label_of(&key),
                format!("spec.calls[{i}]"),
                format!("unknown service {call_name:?} in namespace {call_ns:?}: declare it with a Service document"),
            ));
        }
    }
}

/// `spec.calls`: each `name` or `namespace/name` (DNS labels), each once. Whether they are
/// declared is [`validate_set`]'s.
fn service_calls(calls: &[String], c: &mut Collector<'_>) {
    let mut seen = BTreeSet::new();
    for (i, call) in calls.iter().enumerate() {
        let at = format!("spec.calls[{i}]");
        let parts: Vec<&str> = call.split('/').collect();
        let checked = match parts.as_slice() {
            [name] => check_name(name),
            [ns, name] => check_name(ns).and_then(|()| check_name(name)),
            _ => Err(format!(
                "invalid service {call:?}: expected `name` or `namespace/name`"
            )),
        };
        let failed = checked.is_err();
        c.check(&at, checked);
        if !failed && !seen.insert(call) {
            c.push(at, format!("duplicate service {call:?}"));
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
    if refs == References::Strict {
        undeclared_calls(set, &label_of, &mut out);
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
        if let Spec::Rollout(s) = &doc.spec {
            known(&mut c, "spec.stable".into(), &s.stable);
            known(&mut c, "spec.canary".into(), &s.canary);
        }
        // One TrafficSplit / FaultInjection / CircuitBreaker per service version: two would
        // compile into conflicting entries for the same cluster. One Rollout per service: two
        // would fight over its split.
        let exclusive = matches!(
            doc.kind(),
            Kind::TrafficSplit
                | Kind::FaultInjection
                | Kind::CircuitBreaker
                | Kind::Rollout
                | Kind::WebApplicationFirewall
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
                    let reason = if doc.kind() == Kind::Rollout {
                        format!(
                            "conflicts with {other}: service {}/{} already has a rollout (delete it first)",
                            doc.namespace(),
                            t.service
                        )
                    } else {
                        format!(
                            "conflicts with {other}: both apply to {}/{} version {v}",
                            doc.namespace(),
                            t.service
                        )
                    };
                    c.push("spec.target", reason);
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
