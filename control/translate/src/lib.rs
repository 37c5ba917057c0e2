//! The policy → xDS translation: from a published policy [`Snapshot`] to what each sidecar
//! group is served (its ECDS filter entries, as [`FilterSpec`]s) and the declared mesh
//! services (CDS/EDS/RDS). One function, [`sidecar_resources`], used by the xDS server (which
//! publishes its output) and by the sidecar-config API (which shows it), so the API shows
//! exactly what a sidecar receives.
//!
//! Pure: no I/O, no clock; a filter configuration that cannot be serialised is reported in
//! [`SidecarResources::errors`] (and its entry left out), never silently defaulted.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use weft_compile::{suite_configs, SidecarFilters};
use weft_filter_core::explain::ExplainConfig;
use weft_filter_core::registry::{Filter, SUITE_MODULE};
use weft_filter_core::telemetry::{Direction, TelemetryConfig};
use weft_policy::PolicySet;
use weft_state::Snapshot;
use weft_telemetry_plane::GroupKeys;
use weft_xds::{FailureMode, FilterSpec, MeshService, SidecarGroup};

#[cfg(test)]
mod tests;

/// How each group's filters are laid out in its sidecars' HTTP filter chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One entry per filter: `weft.authz`, `weft.canary`, `weft.fault`, `weft.breaker`, and
    /// `weft.telemetry.{inbound,outbound}` when [`Mode::telemetry`] is on.
    Separate,
    /// `weft.suite.inbound` (telemetry + authz) and `weft.suite.outbound` (telemetry +
    /// canary + fault + breaker), one VM per worker.
    Suite,
    /// Both sets of entries (`weft serve`'s default): ECDS entries are subscribed by name,
    /// so a sidecar bootstrapped either way (`weft bootstrap` makes suite bootstraps,
    /// `--modules` and gateways separate ones) receives the entries its chains name.
    Both,
}

/// What the translation produces besides the policies themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub layout: Layout,
    /// Separate layout only: add the telemetry entries (the server has `telemetry.wasm`).
    /// The suite always carries its telemetry sections.
    pub telemetry: bool,
}

/// The translation of one policy version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SidecarResources {
    /// The policy version translated (the xDS revision).
    pub revision: u64,
    /// Each group's ECDS filter entries, in filter-chain order.
    pub filters: BTreeMap<SidecarGroup, Vec<FilterSpec>>,
    /// The declared mesh services (their CDS/EDS/RDS resources).
    pub services: Vec<MeshService>,
    /// Entries left out, one line each (`group filter: reason`).
    pub errors: Vec<String>,
}

/// Translates `snapshot` for every sidecar group it compiles, with each group's telemetry
/// carrying its own key from `keys`.
pub fn sidecar_resources(snapshot: &Snapshot, keys: &GroupKeys, mode: Mode) -> SidecarResources {
    let mut out = SidecarResources {
        revision: snapshot.version,
        services: mesh_services(&snapshot.documents),
        ..SidecarResources::default()
    };
    for (id, compiled) in &snapshot.compiled {
        let group = SidecarGroup::new(&id.namespace, &id.service, &id.version);
        let explained;
        let compiled = match keys.explain_key_hex(&id.namespace, &id.service) {
            Some(key) => {
                explained = with_explain(compiled, &id.namespace, &id.service, key);
                &explained
            }
            None => compiled,
        };
        let specs = group_filters(&group, compiled, keys, mode, &mut out.errors);
        out.filters.insert(group, specs);
    }
    out
}

/// `compiled` with its authz configuration checking explain tokens of `namespace/service`
/// under `key` (the service's own key, never another's).
fn with_explain(
    compiled: &SidecarFilters,
    namespace: &str,
    service: &str,
    key: String,
) -> SidecarFilters {
    let mut out = compiled.clone();
    out.authz.explain = Some(ExplainConfig {
        namespace: namespace.to_string(),
        service: service.to_string(),
        key,
    });
    out
}

/// The ECDS filter entries of one group, in filter-chain order; entries that cannot be
/// serialised are left out and named in `errors`.
fn group_filters(
    group: &SidecarGroup,
    compiled: &SidecarFilters,
    keys: &GroupKeys,
    mode: Mode,
    errors: &mut Vec<String>,
) -> Vec<FilterSpec> {
    let mut failed = |filter: &str, error: serde_json::Error| {
        errors.push(format!("{group} {filter}: cannot serialise: {error}"));
    };
    let mut specs = Vec::new();
    if matches!(mode.layout, Layout::Suite | Layout::Both) {
        let inbound = telemetry_config(keys, group, Direction::Inbound);
        let outbound = telemetry_config(keys, group, Direction::Outbound);
        match suite_configs(compiled, Some((&inbound, &outbound))) {
            Ok(configs) => {
                specs.push(FilterSpec::suite_inbound(configs.inbound));
                specs.push(FilterSpec::suite_outbound(configs.outbound));
            }
            Err(error) => failed(SUITE_MODULE, error),
        }
        if mode.layout == Layout::Suite {
            return specs;
        }
    }
    let json = [
        (
            Filter::Authz.module(),
            serde_json::to_string(&compiled.authz),
        ),
        (
            Filter::Canary.module(),
            serde_json::to_string(&compiled.canary),
        ),
        (
            Filter::Fault.module(),
            serde_json::to_string(&compiled.fault),
        ),
        (
            Filter::Breaker.module(),
            serde_json::to_string(&compiled.breaker),
        ),
    ];
    for (module, json) in json {
        match json {
            Ok(json) => specs.push(FilterSpec::new(module, json)),
            Err(error) => failed(module, error),
        }
    }
    // `weft.waf`: only a gateway's bootstrap has the entry (its edge listener); another
    // sidecar never asks for it (a service's inbound WAF needs suite mode).
    if let Some(waf) = &compiled.waf {
        match serde_json::to_string(waf) {
            Ok(json) => specs.push(FilterSpec::new(weft_compile::WAF, json)),
            Err(error) => failed(weft_compile::WAF, error),
        }
    }
    if mode.telemetry {
        for direction in [Direction::Inbound, Direction::Outbound] {
            match telemetry_spec(keys, group, direction) {
                Ok(spec) => specs.push(spec),
                Err(error) => failed(
                    &format!("{}.{}", Filter::Telemetry.module(), direction.as_str()),
                    error,
                ),
            }
        }
    }
    specs
}

/// The `weft.telemetry.<direction>` entry of one group.
fn telemetry_spec(
    keys: &GroupKeys,
    group: &SidecarGroup,
    direction: Direction,
) -> serde_json::Result<FilterSpec> {
    Ok(FilterSpec {
        name: format!("{}.{}", Filter::Telemetry.name(), direction.as_str()),
        module: Filter::Telemetry.module().into(),
        configuration: serde_json::to_string(&telemetry_config(keys, group, direction))?,
        // Telemetry never stands in a request's way.
        failure: FailureMode::FailOpen,
    })
}

/// The telemetry configuration of one group and direction, carrying the group's own key
/// (a separate `weft.telemetry.<direction>` filter, or the suite's `telemetry` section).
pub fn telemetry_config(
    keys: &GroupKeys,
    group: &SidecarGroup,
    direction: Direction,
) -> TelemetryConfig {
    TelemetryConfig {
        direction,
        namespace: group.namespace.clone(),
        service: group.service.clone(),
        version: group.version.clone(),
        key: keys.key_hex(&group.namespace, &group.service, &group.version),
        ..TelemetryConfig::default()
    }
}

/// The declared mesh services; a service without `host` is reached by its name, one
/// without `stableVersion` falls back to its first version, and one without `calls` may
/// call every service.
pub fn mesh_services(documents: &PolicySet) -> Vec<MeshService> {
    documents
        .services()
        .map(|(namespace, name, spec)| MeshService {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port: spec.port,
            host: spec.host.clone().unwrap_or_else(|| name.to_string()),
            stable_version: spec
                .stable_version
                .clone()
                .or_else(|| spec.versions.first().cloned())
                .unwrap_or_default(),
            calls: spec.called_services(namespace),
        })
        .collect()
}

/// What the sidecar-config API shows for one group: the revision and each ECDS entry with
/// its configuration as JSON (the exact string the sidecar's filter parses, decoded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupView {
    pub revision: u64,
    pub group: SidecarGroup,
    pub filters: Vec<FilterView>,
}

/// One ECDS entry of [`GroupView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilterView {
    /// The ECDS resource name (the filter chain entry), e.g. `weft.authz`.
    pub name: String,
    pub module: String,
    pub failure: FailureMode,
    /// The configuration string, verbatim as the sidecar receives it.
    pub configuration: String,
}

// === impl SidecarResources ===

impl SidecarResources {
    /// The view of `group`, `None` when no policy version compiles it.
    pub fn group_view(&self, group: &SidecarGroup) -> Option<GroupView> {
        let specs = self.filters.get(group)?;
        Some(GroupView {
            revision: self.revision,
            group: group.clone(),
            filters: specs
                .iter()
                .map(|s| FilterView {
                    name: s.name.clone(),
                    module: s.module.clone(),
                    failure: s.failure,
                    configuration: s.configuration.clone(),
                })
                .collect(),
        })
    }
}
