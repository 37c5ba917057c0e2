//! Building each sidecar group's snapshot from the state's inputs: a pure function, so what a
//! group is served is testable without a server, a lock or a CA.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ecds::{extension_config, FilterSpec, ModuleSource};
use crate::mesh::{MeshIndex, ServiceKey};
use crate::modules::WasmModules;
use crate::resource::{type_url, Resource};
use crate::sds::SECRET_TYPE;
use crate::sidecar::SidecarGroup;
use crate::snapshot::{Snapshot, SnapshotError};

#[cfg(test)]
mod tests;

/// Resources by type URL.
type ByType = Vec<(String, Vec<Resource>)>;

/// Why a configuration was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("group {group}: filter {filter} needs module {module:?}, which is not loaded")]
    MissingModule {
        group: String,
        filter: String,
        module: String,
    },
    #[error("group {group}: {source}")]
    Inconsistent {
        group: String,
        source: SnapshotError,
    },
}

/// What the groups' snapshots are made of, read from the state under its lock.
pub(crate) struct SnapshotInputs<'a> {
    pub revision: u64,
    /// Each group's filter entries (ECDS).
    pub filters: &'a BTreeMap<SidecarGroup, Vec<FilterSpec>>,
    pub modules: &'a WasmModules,
    pub module_source: &'a ModuleSource,
    /// Per group, the module URL's `?refresh=N` (see [`extension_config`]).
    pub refresh: &'a HashMap<SidecarGroup, u64>,
    /// CDS/EDS/RDS, each group served the part its service calls (none during the warm-up).
    pub mesh: Option<&'a MeshIndex>,
    /// SDS secrets of the groups that get them (a registered sidecar, the CA on).
    pub secrets: &'a BTreeMap<SidecarGroup, Vec<Resource>>,
}

/// The snapshot of every group in `groups`; refused as a whole when a filter needs a module
/// that is not loaded or a group's snapshot would be inconsistent.
pub(crate) fn build_snapshots(
    groups: impl IntoIterator<Item = SidecarGroup>,
    inputs: &SnapshotInputs<'_>,
) -> Result<Vec<(SidecarGroup, Snapshot)>, PublishError> {
    let mut built = Vec::new();
    // Groups calling the same services share one selection (and its route configurations).
    let mut scoped: BTreeMap<Option<BTreeSet<ServiceKey>>, ByType> = BTreeMap::new();
    for group in groups {
        let name = group.to_string();
        let refresh = inputs.refresh.get(&group).copied().unwrap_or(0);
        let mut ecds = Vec::new();
        let mut modules = BTreeMap::new();
        for spec in inputs.filters.get(&group).into_iter().flatten() {
            let module =
                inputs
                    .modules
                    .get(&spec.module)
                    .ok_or_else(|| PublishError::MissingModule {
                        group: name.clone(),
                        filter: spec.name.clone(),
                        module: spec.module.clone(),
                    })?;
            modules.insert(
                spec.name.clone(),
                (spec.module.clone(), module.sha256.clone()),
            );
            ecds.push(extension_config(
                spec,
                module,
                inputs.module_source,
                refresh,
            ));
        }
        let secrets = inputs.secrets.get(&group).cloned();
        let mesh = match inputs.mesh {
            Some(index) => {
                let scope = index.scope_of(&group);
                scoped
                    .entry(scope)
                    .or_insert_with_key(|scope| index.resources(scope.as_ref()))
                    .clone()
            }
            None => Vec::new(),
        };
        let by_type = mesh
            .into_iter()
            .chain([(type_url::EXTENSION_CONFIG.to_string(), ecds)])
            .chain(secrets.map(|s| (SECRET_TYPE.to_string(), s)));
        let snapshot = Snapshot::new(inputs.revision, by_type)
            .map_err(|source| PublishError::Inconsistent {
                group: name,
                source,
            })?
            .with_modules(modules);
        built.push((group, snapshot));
    }
    Ok(built)
}
