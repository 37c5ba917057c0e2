//! `TrafficSplit`, `FaultInjection` and `CircuitBreaker` -> the caller-side filter
//! configurations. Splits and breakers are the same for every sidecar (any of them may call
//! any service); a FaultInjection scoped to callers (`match.principals`) goes only to the
//! sidecars of the callers it names, since the caller's outbound hop carries no peer
//! identity a filter could match on. (Over 400 lines: the three caller-side kinds share the
//! unit helpers and the per-caller assembly, and each mapping is an exhaustive destructuring.)

use crate::{cluster_name, Errors, SidecarId};
use std::collections::BTreeMap;
use weft_filter_core::breaker::{BreakerConfig, BreakerPolicy, FailureKind, FailureRate};
use weft_filter_core::canary::config::{
    default_mirror_max_body, default_mirror_timeout, CanaryConfig, Cohort, KeySource, MatchRule,
    Mirror, Service, SplitEntry, Sticky, ValueMatch, Version,
};
use weft_filter_core::fault::{
    AbortSpec, DelaySpec, FaultConfig, FaultMatch, FaultPolicy, HeaderMatch,
};
use weft_filter_core::grammar::{parse_principal, StrMatcher};
use weft_policy::expiry::Expiry;
use weft_policy::model::{
    CircuitBreakerSpec, Document, FaultInjectionSpec, ServiceSpec, Spec, TrafficSplitSpec,
};
use weft_policy::units::{parse_duration, percent_to_bp};
use weft_policy::PolicySet;

pub(crate) struct Outbound {
    pub canary: CanaryConfig,
    faults: Vec<ScopedFault>,
    pub breaker: BreakerConfig,
}

/// One compiled FaultInjection and the callers whose sidecars get it.
struct ScopedFault {
    policy: FaultPolicy,
    percent_cap: Option<f64>,
    /// `None`: every caller.
    callers: Option<Vec<StrMatcher>>,
}

/// The SPIFFE id a sidecar of `id` presents, in weft-compile's trust domain (the one the
/// authz configuration carries).
pub(crate) fn spiffe_id(id: &SidecarId) -> String {
    format!(
        "spiffe://{}/ns/{}/sa/{}",
        weft_filter_core::authz::default_trust_domain(),
        id.namespace,
        id.service
    )
}

// === impl Outbound ===

impl Outbound {
    /// The fault configuration of `caller`'s sidecar: the policies that name no caller and
    /// those whose `match.principals` match its SPIFFE id.
    pub fn fault_for(&self, caller: &SidecarId) -> FaultConfig {
        let principal = spiffe_id(caller);
        let mut fault = FaultConfig::default();
        for scoped in &self.faults {
            let included = scoped
                .callers
                .as_ref()
                .is_none_or(|callers| callers.iter().any(|m| m.matches(&principal)));
            if !included {
                continue;
            }
            if let Some(cap) = scoped.percent_cap {
                fault.percent_cap = fault.percent_cap.max(cap);
            }
            fault.policies.push(scoped.policy.clone());
        }
        fault
    }
}

pub(crate) fn compile(set: &PolicySet, errors: &mut Errors) -> Outbound {
    let mut canary = CanaryConfig::default();
    let mut faults = Vec::new();
    let mut breaker = BreakerConfig::default();
    for doc in set.iter() {
        let Some(t) = doc.target() else { continue };
        let Some(svc) = set.service(doc.namespace(), &t.service) else {
            continue;
        };
        match &doc.spec {
            Spec::TrafficSplit(s) => canary.services.push(split(doc, svc, s, errors)),
            Spec::FaultInjection(s) => faults.push(ScopedFault {
                policy: fault_policy(doc, svc, s, errors),
                percent_cap: s.percent_cap,
                callers: callers(doc, s, errors),
            }),
            Spec::CircuitBreaker(s) => {
                let versions = t.versions.as_ref().unwrap_or(&svc.versions);
                let policy = breaker_policy(doc, s, errors);
                for v in versions {
                    let cluster = cluster_name(doc.namespace(), &t.service, svc.port, v);
                    breaker.clusters.insert(cluster, policy.clone());
                }
                // Without a split, callers reach the stable version through the fallback
                // cluster named by the service's host: guard it too.
                let stable = svc.stable_version.as_ref().or_else(|| svc.versions.first());
                if stable.is_some_and(|st| versions.contains(st)) {
                    breaker.clusters.insert(host(&t.service, svc), policy);
                }
            }
            _ => {}
        }
    }
    if !canary.services.is_empty() && !breaker.clusters.is_empty() {
        // The canary filter picks the version's cluster after routing: the breaker must read
        // the choice from the same header.
        breaker.cluster_header = Some(canary.cluster_header.clone());
    }
    Outbound {
        canary,
        faults,
        breaker,
    }
}

/// The callers `match.principals` names, as matchers; `None` when it names none.
fn callers(doc: &Document, s: &FaultInjectionSpec, errors: &mut Errors) -> Option<Vec<StrMatcher>> {
    let principals = &s.matches.as_ref()?.principals;
    if principals.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (i, p) in principals.iter().enumerate() {
        match parse_principal(p) {
            Ok(m) => out.push(m),
            Err(e) => errors.push(doc, format!("spec.match.principals[{i}]"), e),
        }
    }
    Some(out)
}

fn host(name: &str, svc: &ServiceSpec) -> String {
    svc.host.clone().unwrap_or_else(|| name.to_string())
}

/// A percentage as basis points; a bad one is recorded against `field` (the compilation then
/// fails, so the 0 returned never reaches a sidecar).
fn bp(doc: &Document, field: String, percent: f64, errors: &mut Errors) -> u32 {
    percent_to_bp(percent).unwrap_or_else(|e| {
        errors.push(doc, field, e);
        0
    })
}

/// A duration in milliseconds, `default` when absent; a bad one is recorded against `field`.
fn ms(doc: &Document, field: &str, text: Option<&str>, default: u64, errors: &mut Errors) -> u64 {
    match text.map(parse_duration) {
        None => default,
        Some(Ok(ms)) => ms,
        Some(Err(e)) => {
            errors.push(doc, field, e);
            default
        }
    }
}

fn split(doc: &Document, svc: &ServiceSpec, s: &TrafficSplitSpec, errors: &mut Errors) -> Service {
    // Exhaustive on purpose: a new field must be mapped here (or named and ignored).
    let TrafficSplitSpec {
        target,
        path_prefix,
        routes,
        split,
        sticky,
        cohort,
        mirror,
        dry_run,
    } = s;
    let (ns, name) = (doc.namespace(), target.service.as_str());
    let cluster = |v: &str| cluster_name(ns, name, svc.port, v);
    let value = |nv: &Option<weft_policy::model::NameValue>| {
        nv.as_ref().map(|nv| ValueMatch {
            name: nv.name.clone(),
            value: nv.value.clone(),
        })
    };
    Service {
        // `_` cannot occur in either DNS label, so the stats name is unique.
        name: Some(format!("{name}_{ns}")),
        host: host(name, svc),
        path_prefix: path_prefix.clone(),
        stable: svc
            .stable_version
            .clone()
            .or_else(|| svc.versions.first().cloned())
            .unwrap_or_default(),
        versions: svc
            .versions
            .iter()
            .map(|v| {
                (
                    v.clone(),
                    Version {
                        cluster: cluster(v),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        rules: routes
            .iter()
            .map(|r| MatchRule {
                header: value(&r.matches.header),
                cookie: value(&r.matches.cookie),
                claim: value(&r.matches.claim),
                version: r.version.clone(),
            })
            .collect(),
        split: split
            .iter()
            .enumerate()
            .map(|(i, w)| SplitEntry {
                version: w.version.clone(),
                weight: bp(doc, format!("spec.split[{i}].weight"), w.weight, errors),
            })
            .collect(),
        sticky: sticky.as_ref().and_then(|st| {
            let key = match (&st.header, &st.cookie, &st.claim) {
                (Some(h), _, _) => KeySource::Header(h.to_ascii_lowercase()),
                (_, Some(c), _) => KeySource::Cookie(c.clone()),
                (_, _, Some(c)) => KeySource::Claim(c.clone()),
                _ => return None,
            };
            Some(Sticky {
                key,
                salt: st.salt.clone().unwrap_or_else(|| format!("{ns}/{name}")),
            })
        }),
        cohort: cohort.as_ref().map(|c| Cohort {
            request_header: c.request_header.as_ref().map(|h| h.to_ascii_lowercase()),
            response_header: c.response_header.as_ref().map(|h| h.to_ascii_lowercase()),
            honour_incoming: c.honour_incoming,
        }),
        mirror: mirror.as_ref().map(|m| {
            let default = u64::from(default_mirror_timeout());
            let timeout = ms(
                doc,
                "spec.mirror.timeout",
                m.timeout.as_deref(),
                default,
                errors,
            );
            Mirror {
                cluster: cluster(&m.version),
                percent_bp: bp(doc, "spec.mirror.percent".into(), m.percent, errors),
                max_body_bytes: m.max_body_bytes.unwrap_or_else(default_mirror_max_body),
                timeout_ms: u32::try_from(timeout).unwrap_or_else(|_| {
                    errors.push(doc, "spec.mirror.timeout", "too large");
                    default_mirror_timeout()
                }),
            }
        }),
        dry_run: *dry_run,
    }
}

fn fault_policy(
    doc: &Document,
    svc: &ServiceSpec,
    s: &FaultInjectionSpec,
    errors: &mut Errors,
) -> FaultPolicy {
    // Exhaustive on purpose: a new field must be mapped here (or named and ignored).
    let FaultInjectionSpec {
        target,
        matches,
        delay,
        abort,
        allow_header_trigger,
        // Applied per caller sidecar, in `Outbound::fault_for`.
        percent_cap: _,
        dry_run,
        expiry,
        max_active,
        max_percent,
    } = s;
    let m = matches.clone().unwrap_or_default();
    FaultPolicy {
        name: format!("{}_{}", doc.metadata.name, doc.namespace()),
        matcher: FaultMatch {
            hosts: vec![host(&target.service, svc)],
            path_prefixes: m.path_prefixes,
            // Caller scope is compiled into which sidecars get the policy (`callers`):
            // the outbound hop has no peer identity to match.
            principals: Vec::new(),
            headers: m
                .headers
                .into_iter()
                .map(|h| HeaderMatch {
                    name: h.name.to_ascii_lowercase(),
                    exact: h.exact,
                    prefix: h.prefix,
                })
                .collect(),
        },
        abort: abort.as_ref().map(|a| AbortSpec {
            percent: a.percent,
            http_status: a.http_status,
            grpc_status: a.grpc_status,
            body: a.body.clone(),
        }),
        delay: delay.as_ref().map(|d| DelaySpec {
            percent: d.percent,
            fixed_ms: ms(
                doc,
                "spec.delay.fixedDelay",
                Some(&d.fixed_delay),
                0,
                errors,
            ),
            max_ms: d
                .max_delay
                .as_deref()
                .map(|t| ms(doc, "spec.delay.maxDelay", Some(t), 0, errors)),
        }),
        allow_header_trigger: *allow_header_trigger,
        expires_at_unix_ms: expiry
            .as_deref()
            .and_then(|text| expires_at(doc, text, errors)),
        dry_run: *dry_run,
        max_active: *max_active,
        max_percent: *max_percent,
    }
}

/// An `expiry` as Unix milliseconds; a duration the apply has not turned into a time yet
/// (or a value that does not parse) is an error.
fn expires_at(doc: &Document, text: &str, errors: &mut Errors) -> Option<u64> {
    match weft_policy::expiry::parse_expiry(text) {
        Ok(Expiry::At(ms)) => Some(ms),
        Ok(Expiry::After(_)) => {
            errors.push(
                doc,
                "spec.expiry",
                "a duration becomes a time when the document is applied; this one was not",
            );
            None
        }
        Err(e) => {
            errors.push(doc, "spec.expiry", e);
            None
        }
    }
}

fn breaker_policy(doc: &Document, s: &CircuitBreakerSpec, errors: &mut Errors) -> BreakerPolicy {
    // Exhaustive on purpose: a new field must be mapped here (or named and ignored).
    let CircuitBreakerSpec {
        // The clusters it guards are named in `compile`.
        target: _,
        consecutive_failures,
        failure_rate,
        failure_on,
        open_interval,
        max_open_interval,
        backoff_multiplier,
        jitter_percent,
        half_open_probes,
        max_concurrent,
        reject_status,
        dry_run,
    } = s;
    let d = BreakerPolicy::default();
    let mut dur = |field: &str, v: &Option<String>, default: u64| {
        ms(doc, field, v.as_deref(), default, errors)
    };
    let open_interval_ms = dur("spec.openInterval", open_interval, d.open_interval_ms);
    let max_open_interval_ms = dur(
        "spec.maxOpenInterval",
        max_open_interval,
        d.max_open_interval_ms,
    );
    let window_ms = failure_rate.as_ref().map(|r| {
        dur(
            "spec.failureRate.window",
            &r.window,
            weft_filter_core::breaker::default_window_ms(),
        )
    });
    BreakerPolicy {
        consecutive_failures: consecutive_failures.unwrap_or(d.consecutive_failures),
        failure_rate: failure_rate.as_ref().map(|r| FailureRate {
            threshold_percent: r.threshold_percent,
            window_ms: window_ms.unwrap_or_else(weft_filter_core::breaker::default_window_ms),
            min_requests: r
                .min_requests
                .unwrap_or_else(weft_filter_core::breaker::default_min_requests),
        }),
        failure_on: failure_on.as_ref().map_or(d.failure_on, |kinds| {
            let mut known = Vec::with_capacity(kinds.len());
            for (i, k) in kinds.iter().enumerate() {
                match failure_kind(k) {
                    Some(kind) => known.push(kind),
                    None => errors.push(
                        doc,
                        format!("spec.failureOn[{i}]"),
                        format!("unknown failure kind {k:?}"),
                    ),
                }
            }
            known
        }),
        open_interval_ms,
        backoff_multiplier: backoff_multiplier.unwrap_or(d.backoff_multiplier),
        max_open_interval_ms: max_open_interval_ms.max(open_interval_ms),
        jitter_percent: jitter_percent.unwrap_or(d.jitter_percent),
        half_open_probes: half_open_probes.unwrap_or(d.half_open_probes),
        max_concurrent: *max_concurrent,
        reject_status: reject_status.unwrap_or(d.reject_status),
        dry_run: *dry_run,
    }
}

fn failure_kind(k: &str) -> Option<FailureKind> {
    Some(match k {
        "5xx" => FailureKind::Status5xx,
        "gatewayErrors" => FailureKind::GatewayErrors,
        "connectFailure" => FailureKind::ConnectFailure,
        "reset" => FailureKind::Reset,
        "timeout" => FailureKind::Timeout,
        _ => return None,
    })
}
