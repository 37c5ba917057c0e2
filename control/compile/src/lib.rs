//! Policy documents -> the filter configurations each sidecar receives.
//!
//! [`compile`] is a pure function of a [`PolicySet`]: one [`SidecarFilters`] per declared
//! `(namespace, service, version)`. The output types are the filters' own configuration types
//! from `weft-filter-core`, so the control plane can only emit what the filters parse, and
//! [`check`] runs every filter's `from_json` over the serialised output as a last guard.
//!
//! Placement follows the mesh: authorization (and JWT validation) is inbound, so each sidecar
//! gets the policies targeting its own service and version; canary routing, fault injection
//! and circuit breaking act on the caller's side, so every sidecar gets those of every
//! service it may call -- except a fault scoped to callers (`match.principals`), which only
//! the named callers' sidecars get.
#![forbid(unsafe_code)]

mod authz;
mod outbound;
mod suite;
mod waf;

pub use suite::{suite_configs, SuiteConfigs};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use weft_filter_core::authz::AuthzConfig;
use weft_filter_core::breaker::BreakerConfig;
use weft_filter_core::canary::CanaryConfig;
use weft_filter_core::fault::FaultConfig;
use weft_filter_core::registry::Filter;
use weft_filter_core::waf::WafConfig;
use weft_policy::{FieldError, PolicySet};

/// One sidecar: a version of a declared service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SidecarId {
    pub namespace: String,
    pub service: String,
    pub version: String,
}

impl fmt::Display for SidecarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.service, self.version)
    }
}

/// Everything one sidecar's filters are configured with. An empty configuration is a no-op
/// filter (allow everything, route nothing, inject nothing, guard nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarFilters {
    pub authz: AuthzConfig,
    pub canary: CanaryConfig,
    pub fault: FaultConfig,
    pub breaker: BreakerConfig,
    /// The edge WAF (a `WebApplicationFirewall` targets this sidecar's service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafConfig>,
}

/// The WAF's name in diffs and [`check`] errors (not a registry filter: it runs on the
/// gateway's edge listener, or in the suite's inbound section).
pub const WAF: &str = "waf";

/// The compiled filters' modules (from the filter registry), as they appear in diffs and in
/// [`check`] errors, in the order of [`SidecarFilters`].
pub const FILTERS: [&str; 4] = [
    Filter::Authz.module(),
    Filter::Canary.module(),
    Filter::Fault.module(),
    Filter::Breaker.module(),
];

/// Compiled configurations of every sidecar.
pub type Compiled = BTreeMap<SidecarId, SidecarFilters>;

/// Envoy cluster of one service version (Istio's naming, so mesh users recognise it). The
/// xDS server creates clusters with the same function.
pub fn cluster_name(namespace: &str, service: &str, port: u16, version: &str) -> String {
    format!("outbound|{port}|{version}|{service}.{namespace}")
}

/// Compiles a validated set. Pure, deterministic and total: the same set always yields the same
/// configurations, in the same order, and a value it cannot compile (a `when` key, a duration,
/// a weight) is an error naming its document and field, never a dropped condition or a 0.
pub fn compile(set: &PolicySet) -> Result<Compiled, Vec<FieldError>> {
    let mut errors = Errors::default();
    let outbound = outbound::compile(set, &mut errors);
    let mut out = Compiled::new();
    for (namespace, service, spec) in set.services() {
        for version in &spec.versions {
            let id = SidecarId {
                namespace: namespace.into(),
                service: service.into(),
                version: version.clone(),
            };
            let filters = SidecarFilters {
                authz: authz::compile(set, &id, spec, &mut errors),
                canary: outbound.canary.clone(),
                fault: outbound.fault_for(&id),
                breaker: outbound.breaker.clone(),
                waf: waf::compile(set, &id),
            };
            out.insert(id, filters);
        }
    }
    errors.into_result(out)
}

/// The errors one compilation found. A document compiled for several sidecars reports once.
#[derive(Default)]
pub(crate) struct Errors(std::collections::BTreeSet<FieldError>);

// === impl Errors ===

impl Errors {
    pub(crate) fn push(
        &mut self,
        doc: &weft_policy::model::Document,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.0
            .insert(FieldError::new(doc.key().to_string(), field, reason));
    }

    fn into_result<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0.into_iter().collect())
        }
    }
}

/// Runs each filter's own `from_json` over the serialised configurations; an error here
/// means validation let through something a filter would refuse (a bug), reported against
/// the sidecar and the filter's field path.
pub fn check(compiled: &Compiled) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (id, f) in compiled {
        for (filter, json) in serialised(f) {
            let name = filter.module();
            let json = match json {
                Ok(json) => json,
                Err(e) => {
                    errors.push(FieldError::new(
                        format!("sidecar {id}"),
                        name,
                        e.to_string(),
                    ));
                    continue;
                }
            };
            // Outbound configurations are shared by every sidecar: check each once.
            if !seen.insert(json.clone()) {
                continue;
            }
            if let Err(e) = parse(filter, &json) {
                errors.push(FieldError::new(
                    format!("sidecar {id}"),
                    format!("{name}.{}", e.field),
                    e.reason,
                ));
            }
        }
        if let Some(waf) = &f.waf {
            let checked = serde_json::to_vec(waf)
                .map_err(|e| weft_filter_core::ConfigError::new("", e.to_string()))
                .and_then(|json| weft_filter_core::waf::Waf::from_json(&json));
            if let Err(e) = checked {
                errors.push(FieldError::new(
                    format!("sidecar {id}"),
                    format!("{WAF}.{}", e.field),
                    e.reason,
                ));
            }
        }
    }
    errors
}

fn serialised(f: &SidecarFilters) -> [(Filter, serde_json::Result<Vec<u8>>); 4] {
    [
        (Filter::Authz, serde_json::to_vec(&f.authz)),
        (Filter::Canary, serde_json::to_vec(&f.canary)),
        (Filter::Fault, serde_json::to_vec(&f.fault)),
        (Filter::Breaker, serde_json::to_vec(&f.breaker)),
    ]
}

/// Parses `json` as the filter does. Exhaustive: a new filter must say how it parses.
fn parse(filter: Filter, json: &[u8]) -> Result<(), weft_filter_core::ConfigError> {
    use weft_filter_core::{
        authz::Authz, breaker::Breaker, canary::Canary, fault::Fault, telemetry::TelemetryConfig,
    };
    match filter {
        Filter::Authz => Authz::from_json(json).map(drop),
        Filter::Canary => Canary::from_json(json).map(drop),
        Filter::Fault => Fault::from_json(json).map(drop),
        Filter::Breaker => Breaker::from_json(json).map(drop),
        Filter::Telemetry => TelemetryConfig::from_json(json).map(drop),
    }
}

/// How one sidecar's configuration changes between two compilations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarChange {
    pub sidecar: SidecarId,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// The filters whose configuration differs.
    pub filters: Vec<String>,
}

/// Per sidecar: what an apply would change.
pub fn diff(before: &Compiled, after: &Compiled) -> Vec<SidecarChange> {
    let mut out = Vec::new();
    let names = |a: Option<&SidecarFilters>, b: Option<&SidecarFilters>| -> Vec<String> {
        // Per filter: its serialised configuration, or None for an absent sidecar.
        let json = |f: Option<&SidecarFilters>| -> Vec<Option<Vec<u8>>> {
            match f {
                Some(f) => serialised(f).into_iter().map(|(_, j)| j.ok()).collect(),
                None => vec![None; FILTERS.len()],
            }
        };
        let (x, y) = (json(a), json(b));
        let mut names: Vec<String> = FILTERS
            .iter()
            .zip(x.iter().zip(&y))
            .filter(|(_, (x, y))| x != y)
            .map(|(n, _)| n.to_string())
            .collect();
        if a.and_then(|f| f.waf.as_ref()) != b.and_then(|f| f.waf.as_ref()) {
            names.push(WAF.to_string());
        }
        names
    };
    for (id, f) in after {
        match before.get(id) {
            None => out.push(SidecarChange {
                sidecar: id.clone(),
                change: "added".into(),
                filters: names(None, Some(f)),
            }),
            Some(old) if old != f => out.push(SidecarChange {
                sidecar: id.clone(),
                change: "changed".into(),
                filters: names(Some(old), Some(f)),
            }),
            Some(_) => {}
        }
    }
    for (id, f) in before {
        if !after.contains_key(id) {
            out.push(SidecarChange {
                sidecar: id.clone(),
                change: "removed".into(),
                filters: names(Some(f), None),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
