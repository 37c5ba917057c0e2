// Over 400 lines: the call's path through every stage of two sidecars (one trace builder per
// stage, each small); the WAF's own part is in waf.rs.
//! Running one call through the compiled sidecars: the caller's outbound stages, then the
//! target's WAF (if any) and authz, each by its filter core.

use std::collections::BTreeMap;

use weft_filter_core::authz::{Action, Authz, Explanation, Reason, Verdict};
use weft_filter_core::breaker::Breaker;
use weft_filter_core::canary::{self, Canary};
use weft_filter_core::fault::{Fault, Skip};
use weft_filter_core::registry::Filter;
use weft_filter_core::rng::Rng;
use weft_filter_core::suite::MemoRequest;
use weft_filter_core::waf::Waf;
use weft_filter_core::MockHost;
use weft_state::Snapshot;
use weft_telemetry_plane::GroupKeys;
use weft_translate::{sidecar_resources, Layout, Mode};
use weft_xds::SidecarGroup;

use crate::call::{self, Call, Caller, Service};
use crate::trace::*;
use crate::waf::{waf_trace, WafInput};
use crate::CheckError;

/// What the control plane saw on one edge (caller service → target service) lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeObservation {
    pub window_secs: u64,
    pub requests: u64,
    /// Requests the caller's breaker failed fast.
    pub fail_fasts: u64,
    /// The phase the caller's breaker reported for its newest admission (`closed`, `open`,
    /// `half-open`), when it reported one.
    pub phase: Option<&'static str>,
}

/// The control plane's telemetry, for the breaker's state. Services as `namespace/name`.
pub trait BreakerView: Send + Sync {
    fn edge(&self, caller: &str, target: &str) -> Option<EdgeObservation>;
}

/// One sidecar group's filters, parsed from the configuration strings it is served.
struct Filters {
    authz: Authz,
    canary: Canary,
    fault: Fault,
    breaker: Breaker,
    /// The group's WAF, when a `WebApplicationFirewall` targets it.
    waf: Option<Waf>,
}

/// A policy snapshot, translated and parsed once, ready to check calls against.
pub struct Checker<'s> {
    snapshot: &'s Snapshot,
    groups: BTreeMap<SidecarGroup, Result<Filters, String>>,
}

/// The request as one sidecar's filters see it.
type View = MemoRequest<MockHost>;

impl<'s> Checker<'s> {
    /// Translates `snapshot` exactly as the xDS publisher does (one entry per filter) and
    /// parses every group's entries with the filters' own `from_json`.
    pub fn new(snapshot: &'s Snapshot) -> Self {
        // The keys sign telemetry only, which is not translated here.
        let keys = GroupKeys::new(vec![0; 32]);
        let mode = Mode {
            layout: Layout::Separate,
            telemetry: false,
        };
        let resources = sidecar_resources(snapshot, &keys, mode);
        let groups = resources
            .filters
            .iter()
            .map(|(group, specs)| {
                let config = |filter: Filter| {
                    specs
                        .iter()
                        .find(|s| s.module == filter.module())
                        .map(|s| s.configuration.as_bytes())
                        .ok_or_else(|| format!("{group}: no {} entry", filter.module()))
                };
                let parse = || -> Result<Filters, String> {
                    let err = |filter: Filter| {
                        move |e: weft_filter_core::ConfigError| {
                            format!("{group} {}: {}: {}", filter.module(), e.field, e.reason)
                        }
                    };
                    Ok(Filters {
                        authz: Authz::from_json(config(Filter::Authz)?)
                            .map_err(err(Filter::Authz))?,
                        canary: Canary::from_json(config(Filter::Canary)?)
                            .map_err(err(Filter::Canary))?,
                        fault: Fault::from_json(config(Filter::Fault)?)
                            .map_err(err(Filter::Fault))?,
                        breaker: Breaker::from_json(config(Filter::Breaker)?)
                            .map_err(err(Filter::Breaker))?,
                        waf: specs
                            .iter()
                            .find(|s| s.module == weft_compile::WAF)
                            .map(|s| Waf::from_json(s.configuration.as_bytes()))
                            .transpose()
                            .map_err(|e| {
                                format!("{group} {}: {}: {}", weft_compile::WAF, e.field, e.reason)
                            })?,
                    })
                };
                (group.clone(), parse())
            })
            .collect();
        Self { snapshot, groups }
    }

    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    fn filters(
        &self,
        namespace: &str,
        service: &str,
        version: &str,
    ) -> Result<&Filters, CheckError> {
        let group = SidecarGroup::new(namespace, service, version);
        match self.groups.get(&group) {
            Some(Ok(filters)) => Ok(filters),
            Some(Err(e)) => Err(CheckError::Config(e.clone())),
            None => Err(CheckError::Config(format!(
                "{group}: no sidecar configuration compiled"
            ))),
        }
    }

    /// Checks one call at `now_ms` (JWT expiry, fault expiry).
    pub fn check(
        &self,
        call: &Call,
        now_ms: u64,
        breakers: Option<&dyn BreakerView>,
    ) -> Result<CheckResult, CheckError> {
        call.validate()?;
        let set = &self.snapshot.documents;
        let target = call::service(set, &call.to, "to")?;
        if let Some(v) = &call.version {
            if !target.spec.versions.contains(v) {
                return Err(CheckError::invalid(
                    "version",
                    &format!(
                        "{v:?} is not a version of {} ({})",
                        target.key(),
                        target.spec.versions.join(", ")
                    ),
                ));
            }
        }
        let stable = target
            .stable()
            .ok_or_else(|| CheckError::Config(format!("{}: no versions", target.key())))?;
        let stable_authz = &self.filters(target.namespace, target.name, stable)?.authz;
        let caller = call::caller(
            set,
            call.from.as_deref(),
            &stable_authz.config().trust_domain,
        )?;
        let host = target.host();

        let outbound = self.outbound(
            call,
            &caller,
            (&target, &host),
            stable_authz,
            (now_ms, breakers),
        )?;
        let (version, version_from) = match (&call.version, &outbound.picked) {
            (Some(v), _) => (v.clone(), "given"),
            (None, Some(v)) => (v.clone(), "canary"),
            (None, None) => (stable.to_string(), "stable"),
        };
        let target_filters = self.filters(target.namespace, target.name, &version)?;
        let authz = &target_filters.authz;
        let sidecar = format!("{}/{}/{version}", target.namespace, target.name);
        let waf = target_filters.waf.as_ref().map(|waf| {
            let headers = waf_headers(call, authz);
            let input = WafInput {
                method: &call.method.to_ascii_uppercase(),
                path: &call.path,
                headers: &headers,
                body: call.body.as_deref().unwrap_or_default().as_bytes(),
            };
            waf_trace(waf, &input, sidecar.clone())
        });
        let mut host_req = request(call, &host, authz);
        if let Some(principal) = &caller.principal {
            host_req = host_req.peer(principal);
        }
        if let Some(ip) = &call.ip {
            host_req = host_req.with_property("source.address", ip.as_bytes());
        }
        let explained = authz.explain(&MemoRequest::new(host_req), now_ms / 1000);
        let authz = authz_trace(authz, explained, sidecar);
        // The WAF runs first: its refusal is the answer, and authz never sees the call.
        let (allowed, status) = match waf.as_ref().and_then(|w| w.status) {
            Some(status) => (false, Some(status)),
            None => (authz.allowed, authz.status),
        };
        Ok(CheckResult {
            allowed,
            status,
            policy_version: self.snapshot.version,
            caller: CallerView {
                principal: caller.principal.clone(),
                sidecar: outbound.sidecar,
            },
            target: TargetView {
                namespace: target.namespace.to_string(),
                service: target.name.to_string(),
                version,
                version_from: version_from.into(),
                host,
            },
            canary: outbound.canary,
            fault: outbound.fault,
            breaker: outbound.breaker,
            waf,
            authz,
        })
    }

    /// The caller's outbound canary, fault and breaker.
    fn outbound(
        &self,
        call: &Call,
        caller: &Caller<'_>,
        (target, host): (&Service<'_>, &str),
        target_authz: &Authz,
        (now_ms, breakers): (u64, Option<&dyn BreakerView>),
    ) -> Result<Outbound, CheckError> {
        let Some(service) = &caller.service else {
            let note = Some("the caller has no weft sidecar: no outbound stage runs".to_string());
            return Ok(Outbound {
                sidecar: None,
                picked: None,
                canary: CanaryTrace {
                    note: note.clone(),
                    ..CanaryTrace::default()
                },
                fault: FaultTrace {
                    note,
                    ..FaultTrace::default()
                },
                breaker: BreakerTrace {
                    state: "unknown".into(),
                    ..BreakerTrace::default()
                },
            });
        };
        let version = service
            .stable()
            .ok_or_else(|| CheckError::Config(format!("{}: no versions", service.key())))?;
        let filters = self.filters(service.namespace, service.name, version)?;
        let view: View = MemoRequest::new(request(call, host, target_authz));
        let (canary, picked) = canary_trace(&filters.canary, &view);
        let fault = fault_trace(&filters.fault, &view, now_ms);
        // The cluster the breaker guards: the canary's pick, else the route's fallback,
        // which is named by the host.
        let cluster = match (&call.version, &picked) {
            (Some(v), _) | (None, Some(v)) if canary.applies && !canary.dry_run => {
                weft_compile::cluster_name(target.namespace, target.name, target.spec.port, v)
            }
            _ => host.to_string(),
        };
        let observed = breakers.and_then(|b| b.edge(&service.key(), &target.key()));
        let breaker = breaker_trace(&filters.breaker, cluster, observed, breakers.is_some());
        Ok(Outbound {
            sidecar: Some(format!("{}/{}/{version}", service.namespace, service.name)),
            picked: picked.filter(|_| !canary.dry_run),
            canary,
            fault,
            breaker,
        })
    }
}

struct Outbound {
    sidecar: Option<String>,
    /// The version the canary deterministically routes to (not a random draw, not dry-run).
    picked: Option<String>,
    canary: CanaryTrace,
    fault: FaultTrace,
    breaker: BreakerTrace,
}

/// The request the app sends: method, path, `Host`, its headers (names lower-cased, as
/// Envoy hands them to filters) and the JWT in the target's provider header.
fn request(call: &Call, host: &str, authz: &Authz) -> MockHost {
    let mut req = MockHost::request(&call.method.to_ascii_uppercase(), host, &call.path);
    for h in &call.headers {
        req = req.header(&h.name.to_ascii_lowercase(), &h.value);
    }
    if let Some((name, value)) = jwt_header(call, authz) {
        req = req.header(&name, &value);
    }
    req
}

/// The header carrying the call's JWT, as the target's first JWT provider expects it.
fn jwt_header(call: &Call, authz: &Authz) -> Option<(String, String)> {
    let token = call.jwt.as_ref()?;
    let (header, prefix) = authz
        .config()
        .jwt
        .first()
        .map_or(("authorization".to_string(), "Bearer ".to_string()), |p| {
            (p.from_header.to_ascii_lowercase(), p.prefix.clone())
        });
    Some((header, format!("{prefix}{token}")))
}

/// The headers the WAF reads: the call's (lower-case names), its JWT header, and
/// `content-length` for a body unless the call gave one (as any HTTP client sends it).
fn waf_headers(call: &Call, authz: &Authz) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = call
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
        .collect();
    headers.extend(jwt_header(call, authz));
    let body = call.body.as_deref().unwrap_or_default();
    if !body.is_empty() && !headers.iter().any(|(n, _)| n == "content-length") {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    headers
}

fn canary_trace(canary: &Canary, view: &View) -> (CanaryTrace, Option<String>) {
    let Some(index) = canary.service_for(view) else {
        return (CanaryTrace::default(), None);
    };
    let config = canary.config().services.get(index);
    let split = config
        .map(|s| {
            s.split
                .iter()
                .map(|e| (e.version.clone(), e.weight))
                .collect()
        })
        .unwrap_or_default();
    let dry_run = config.is_some_and(|s| s.dry_run);
    // The draw only matters for `Random`, which is reported as such.
    let Some(decision) = canary.decide(view, &mut Rng::new(0)) else {
        return (CanaryTrace::default(), None);
    };
    let mut trace = CanaryTrace {
        applies: true,
        decided_by: Some(decision.reason.kind().to_string()),
        split,
        dry_run,
        ..CanaryTrace::default()
    };
    let picked = match decision.reason {
        canary::Reason::Random(_) => {
            trace.note = Some("a random draw by the split's weights".into());
            None
        }
        canary::Reason::Rule(i) => {
            trace.rule = Some(i);
            Some(decision.version_name.to_string())
        }
        canary::Reason::Sticky(bucket) => {
            trace.bucket = Some(bucket);
            Some(decision.version_name.to_string())
        }
        canary::Reason::Cohort => Some(decision.version_name.to_string()),
    };
    trace.version.clone_from(&picked);
    if dry_run {
        trace.note = Some("dry run: counted as would_route, routed as before".into());
    }
    (trace, picked)
}

fn fault_trace(fault: &Fault, view: &View, now_ms: u64) -> FaultTrace {
    // No delay is pending in a fresh check; the coin is reported as percentages.
    let decision = fault.decide(view, now_ms, 0, &mut Rng::new(0));
    let names: Vec<&str> = fault.policy_names().collect();
    let name = |i: usize| names.get(i).map_or_else(String::new, |n| n.to_string());
    let config = |i: usize| fault.config().policies.get(i);
    let mut trace = FaultTrace {
        skipped: decision
            .skipped
            .iter()
            .map(|(i, why)| {
                let why = match why {
                    Skip::Expired => "expired",
                    Skip::DelayCap => "delay-cap",
                    Skip::MaxActive => "max-active",
                    Skip::MaxPercent => "max-percent",
                };
                (name(*i), why.to_string())
            })
            .collect(),
        dry_run: decision.dry_run.map(|d| {
            let policy = config(d.policy);
            FaultDryRun {
                policy: name(d.policy),
                abort_percent: policy.and_then(|p| p.abort.as_ref()).map(|a| a.percent),
                delay_percent: policy.and_then(|p| p.delay.as_ref()).map(|d| d.percent),
            }
        }),
        ..FaultTrace::default()
    };
    let Some(index) = decision.policy else {
        return trace;
    };
    trace.policy = Some(name(index));
    trace.by_header = decision.by_header;
    if decision.by_header {
        trace.abort = decision.abort.as_ref().map(|a| FaultAbort {
            percent: 100.0,
            status: a.status,
        });
        trace.delay = decision.delay_ms.map(|ms| FaultDelay {
            percent: 100.0,
            min_ms: ms,
            max_ms: ms,
        });
    } else if let Some(policy) = config(index) {
        trace.abort = policy.abort.as_ref().map(|a| FaultAbort {
            percent: a.percent,
            status: a.http_status,
        });
        trace.delay = policy.delay.as_ref().map(|d| FaultDelay {
            percent: d.percent,
            min_ms: d.fixed_ms,
            max_ms: d.max_ms.unwrap_or(d.fixed_ms),
        });
    }
    trace
}

fn breaker_trace(
    breaker: &Breaker,
    cluster: String,
    observed: Option<EdgeObservation>,
    online: bool,
) -> BreakerTrace {
    let guarded = breaker.policy(&cluster).is_some();
    let Some(policy) = breaker.config().clusters.get(&cluster).filter(|_| guarded) else {
        return BreakerTrace {
            cluster: Some(cluster),
            state: "unknown".into(),
            observed: Some("no CircuitBreaker guards this cluster".into()),
            ..BreakerTrace::default()
        };
    };
    let (state, observed) = match observed {
        Some(o @ EdgeObservation {
            phase: Some(phase), ..
        }) => (
            phase,
            format!(
                "the caller's breaker reported it for its newest admission; {} requests, {} failed fast, in the last {} s",
                o.requests, o.fail_fasts, o.window_secs
            ),
        ),
        Some(o) if o.fail_fasts > 0 => (
            "open",
            format!(
                "{} of {} requests failed fast in the last {} s",
                o.fail_fasts, o.requests, o.window_secs
            ),
        ),
        Some(o) if o.requests > 0 => (
            "closed",
            format!(
                "{} requests, none failed fast, in the last {} s",
                o.requests, o.window_secs
            ),
        ),
        _ if online => ("unknown", "no recent telemetry of this edge".to_string()),
        _ => ("unknown", "offline: no telemetry".to_string()),
    };
    BreakerTrace {
        cluster: Some(cluster),
        guarded,
        dry_run: policy.dry_run,
        consecutive_failures: Some(policy.consecutive_failures),
        open_interval_ms: Some(policy.open_interval_ms),
        reject_status: Some(policy.reject_status),
        state: state.into(),
        observed: Some(observed),
    }
}

fn authz_trace(authz: &Authz, explained: Explanation, sidecar: String) -> AuthzTrace {
    let Explanation { decision, policies } = explained;
    let (allowed, status, policy) = match &decision.verdict {
        Verdict::Allow { policy } => (true, None, policy.clone()),
        Verdict::Deny { policy, status, .. } => (false, Some(*status), Some(policy.clone())),
    };
    let rule = match &decision.reason {
        Reason::DenyMatched { rule, .. } | Reason::AllowMatched { rule, .. } => Some(*rule),
        _ => None,
    };
    let condition = policy.as_ref().zip(rule).and_then(|(name, rule)| {
        let p = authz.config().policies.iter().find(|p| &p.name == name)?;
        serde_json::to_value(p.rules.get(rule)?).ok()
    });
    AuthzTrace {
        sidecar,
        allowed,
        status,
        policy,
        rule,
        reason: decision.reason.to_string(),
        condition,
        dry_run_denied: decision.dry_run_denied,
        audited: decision.audited,
        policies: policies
            .into_iter()
            .map(|p| PolicyView {
                matched_rule: p.matched_rule(),
                action: match p.action {
                    Action::Allow => "ALLOW",
                    Action::Deny => "DENY",
                    Action::Audit => "AUDIT",
                }
                .into(),
                name: p.name,
                dry_run: p.dry_run,
                rules: p.rules.iter().map(|m| m.map(|m| m.field())).collect(),
            })
            .collect(),
    }
}
